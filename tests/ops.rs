//! The operations side: metrics that promtool accepts, rules and alerts that are unit-tested,
//! a dashboard and rules that only use metrics the relay exports, a drain on SIGTERM that
//! loses nothing, and a reconnect after the broker closes the relay's connections.

mod common;

use common::RelayProcess as Process;

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::broker::{close_connection, worker_connections};
use common::partner::{self, until_clicks, until_received};
use common::{Env, event, until};
use postback_relay::interfaces::sandbox::Rule;

/// promtool, or `None` outside CI when it is not installed (CI installs it).
fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("promtool");
    }
    assert!(
        std::env::var("CI").is_err(),
        "promtool is required in CI (Debian package prometheus)"
    );
    eprintln!("promtool not installed: skipped (apt-get install prometheus)");
    None
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn rules_pass_promtool_check_and_unit_tests() {
    let Some(promtool) = promtool() else { return };
    run(Command::new(promtool).args(["check", "rules", "deploy/prometheus/rules.yml"]));
    let out =
        run(Command::new(promtool).args(["test", "rules", "deploy/prometheus/rules.test.yml"]));
    assert!(out.contains("SUCCESS"), "{out}");

    // Every alert has a unit test and a runbook section.
    let rules = std::fs::read_to_string("deploy/prometheus/rules.yml").unwrap();
    let tests = std::fs::read_to_string("deploy/prometheus/rules.test.yml").unwrap();
    let runbook = std::fs::read_to_string("docs/runbook.md").unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 7);
    for a in alerts {
        let tested = tests.matches(&format!("alertname: {a}")).count();
        assert!(
            tested >= 2,
            "{a}: needs a test that fires and one that stays silent"
        );
        assert!(
            runbook.contains(&format!("## {a}")),
            "{a}: no runbook section"
        );
        assert!(rules.contains(&format!("/docs/runbook.md#{}\"", a.to_lowercase())));
    }
}

#[test]
fn the_kubernetes_prometheus_rule_is_the_same_as_the_rules_file() {
    // Both are YAML; compare them as data with the YAML parser Python ships with PyYAML.
    let check = r#"
import sys, yaml
rules = yaml.safe_load(open("deploy/prometheus/rules.yml"))
crd = yaml.safe_load(open("deploy/kubernetes/prometheusrule.yaml"))
sys.exit(0 if crd["spec"] == rules else 1)
"#;
    match Command::new("python3").args(["-c", check]).status() {
        Ok(s) if s.code() == Some(0) => {}
        Ok(s) if s.code() == Some(1) => {
            panic!("deploy/kubernetes/prometheusrule.yaml differs from deploy/prometheus/rules.yml")
        }
        _ => assert!(
            std::env::var("CI").is_err(),
            "python3 with PyYAML is needed for this check"
        ),
    }
}

/// Metric names a PromQL text uses (`postback_relay_...`, not recording rules).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("postback_relay_") {
        let start = i + at;
        // Recording rules are `postback_relay:...`; a name preceded by a word char is not one.
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let name = &text[start..end];
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
        names.insert(base.to_owned());
        i = end;
    }
    names
}

#[tokio::test]
async fn a_real_scrape_passes_promtool_and_has_every_metric_rules_and_dashboard_use() {
    let env = Env::new().await;
    env.sandbox
        .add_rule(&Rule::answer(404).on_query("qci=gone"))
        .await
        .unwrap();
    let running = env.start(&env.default_config()).await;
    env.publish(&event("a", "lead", "ok", None)).await;
    env.publish(&event("b", "lead", "gone", None)).await;
    until(&running, "both settled", |m| m.events_acked.get() == 2).await;
    let scrape = reqwest::get(format!("http://{}/metrics", running.http_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let exported = metric_names(&scrape);
    for file in [
        "deploy/prometheus/rules.yml",
        "deploy/grafana/dashboards/postback-relay.json",
    ] {
        let used = metric_names(&std::fs::read_to_string(file).unwrap());
        let missing: Vec<_> = used.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{file} uses metrics the relay does not export: {missing:?}"
        );
    }
    // The dashboard's destination variable narrows every panel whose metric has the label.
    let labelled: BTreeSet<String> = scrape
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("destination=\""))
        .flat_map(metric_names)
        .collect();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("deploy/grafana/dashboards/postback-relay.json").unwrap(),
    )
    .unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let filters = expr.contains(r#"destination=~"$destination""#);
            let needs =
                !metric_names(expr).is_disjoint(&labelled) || expr.contains("postback_relay:");
            assert_eq!(
                filters, needs,
                "{}: {expr} and the destination variable",
                panel["title"]
            );
        }
    }
    for line in [
        r#"postback_relay_deliveries_total{destination="powerspace",outcome="delivered"} 1"#,
        r#"postback_relay_deliveries_total{destination="powerspace",outcome="dead_lettered"} 1"#,
        r#"postback_relay_end_to_end_seconds_count{destination="powerspace"} 1"#,
        r#"postback_relay_circuit_state{destination="powerspace"} 0"#,
        r#"postback_relay_delivered_on_attempt_total{attempt="1",destination="powerspace"} 1"#,
    ] {
        assert!(scrape.lines().any(|l| l == line), "missing {line:?}");
    }

    if let Some(promtool) = promtool() {
        let mut child = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(scrape.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Requests per click at the sandbox.
async fn per_click(env: &Env) -> HashMap<String, usize> {
    partner::per_click(&env.sandbox.requests().await.unwrap(), false)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_burst_drains_exits_zero_and_loses_nothing() {
    const N: usize = 1500;
    let env = Env::new().await;
    env.sandbox
        .add_rule(&Rule::answer(200).after_ms(5))
        .await
        .unwrap();
    env.declare().await;
    for i in 0..N {
        env.publish(&event(&format!("t{i}"), "lead", &format!("term-{i}"), None))
            .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = env.default_config().write(&dir);

    let mut first = Process::run(&config);
    let some = Duration::from_secs(60);
    until_received(&env.sandbox, (N / 4) as u64, some, "a quarter delivered").await;
    let signalled = Instant::now();
    first.signal_term();
    // worker.shutdown_grace_secs is 5 in the test config; the settle pause and closing add a
    // little.
    let status = first
        .wait(Duration::from_secs(10))
        .expect("exits within the grace period");
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status:?}");
    let at_stop = env.sandbox.stats().await.unwrap().total;
    assert!(
        (at_stop as usize) < N,
        "the stop must land mid-burst ({at_stop} of {N})"
    );

    let mut second = Process::run(&config);
    let every = Duration::from_secs(120);
    until_clicks(&env.sandbox, N, false, every, "every event delivered").await;
    second.signal_term();
    assert!(second.wait(Duration::from_secs(10)).unwrap().success());
    let counts = per_click(&env).await;
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    eprintln!(
        "SIGTERM after {at_stop} of {N}: exited 0 in {took:?}; duplicates after restart: {duplicates}"
    );
    assert_eq!(counts.len(), N, "nothing lost");
    assert_eq!(duplicates, 0, "a drained relay acks what it sent");
    assert_eq!(env.ready(&env.topology().events).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_broker_connections_mid_stream_are_survived_and_every_event_delivered_once() {
    const N: usize = 1000;
    let env = Env::new().await;
    env.sandbox
        .add_rule(&Rule::answer(200).after_ms(3))
        .await
        .unwrap();
    let running = env.start(&env.default_config()).await;
    for i in 0..N {
        env.publish(&event(&format!("r{i}"), "lead", &format!("rc-{i}"), None))
            .await;
    }
    let some = Duration::from_secs(60);
    until_received(&env.sandbox, (N / 3) as u64, some, "a third delivered").await;
    // The broker closes both of the relay's connections, as on a node restart.
    let connections = worker_connections(&env.prefix);
    assert_eq!(
        connections.pids.len(),
        2,
        "consumer and publisher connections:\n{}",
        connections.listing
    );
    for pid in &connections.pids {
        assert!(close_connection(pid, "test: node restart"));
    }
    until(&running, "reconnected", |m| {
        m.broker_reconnects.get() >= 1 && m.broker_connected.get() == 1
    })
    .await;
    let m = running.metrics.clone();
    let every = Duration::from_secs(120);
    until_clicks(&env.sandbox, N, false, every, "every event delivered").await;
    let events = env.topology().events;
    env.until_holds(&events, 0, Duration::from_secs(30), "every event settled")
        .await;
    let counts = per_click(&env).await;
    let sent_twice: usize = counts.values().map(|c| c - 1).sum();
    let suppressed = m
        .deliveries
        .with_label_values(&["powerspace", "duplicate"])
        .get();
    eprintln!(
        "connections closed mid-stream: {N} events, sent twice {sent_twice}, redeliveries suppressed {suppressed}"
    );
    assert_eq!(counts.len(), N, "nothing lost");
    // Redelivered events that had been accepted are suppressed; only calls cut off by the
    // close itself (in flight, answer never seen) can reach the partner twice.
    assert!(
        sent_twice <= 32,
        "at most the deliveries in flight at the close: {sent_twice}"
    );
}
