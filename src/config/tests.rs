//! The configuration's own tests: defaults, keys named in errors, limits, environment
//! references; every key at its extremes in `extremes`.

use std::time::Duration;

use super::env::expand_str;
use super::*;

#[cfg(test)]
mod extremes;

fn err(text: &str) -> String {
    Config::from_toml(text, &|n| (n == "SET").then(|| "value".to_owned()))
        .unwrap_err()
        .to_string()
}

const MINIMAL: &str = r#"
    [[destinations]]
    name = "ps"
    kind = "powerspace"
    base_url = "https://a.pwspace.com"
    match = { networks = ["powerspace"] }
"#;

#[test]
fn minimal_config_gets_defaults() {
    let c = Config::from_toml(MINIMAL, &|_| None).unwrap();
    assert_eq!(c.broker.url, DEFAULT_AMQP_URL);
    assert_eq!(
        crate::relay::broker::Topology::from_config(&c).events,
        "postback-relay.events"
    );
    assert_eq!(c.destinations[0].timeout(), Duration::from_secs(5));
}

#[test]
fn unknown_keys_are_named() {
    let e = err(&format!("{MINIMAL}\ntimeout = 3"));
    assert!(
        e.contains("destinations[0]") && e.contains("unknown field `timeout`"),
        "{e}"
    );
    let e = err(&format!("[broker]\nprefech = 3\n{MINIMAL}"));
    assert!(e.contains("`broker") && e.contains("prefech"), "{e}");
}

#[test]
fn bad_values_are_named() {
    let e = err(&MINIMAL.replace("https://a.pwspace.com", "ftp://x"));
    assert!(e.contains("destinations[0].base_url"), "{e}");
    let e = err(&MINIMAL.replace("powerspace\"\n", "hoqu\"\n"));
    assert!(
        e.contains("destinations[0].hoqu") && e.contains("required"),
        "{e}"
    );
    let e = err(&MINIMAL.replace("powerspace\"\n", "carrier-pigeon\"\n"));
    assert!(
        e.contains("destinations[0].kind") && e.contains("unknown variant"),
        "{e}"
    );
    let e = err(&format!(
        "{MINIMAL}\n[destinations.hoqu]\napi_key = \"k\"\npayout = \"fixed\""
    ));
    assert!(
        e.contains("destinations[0].hoqu") && e.contains("kind powerspace"),
        "{e}"
    );
    let e = err(&format!("{MINIMAL}\nconcurrency = 0"));
    assert!(e.contains("destinations[0].concurrency"), "{e}");
    let e = err(&MINIMAL.replace(
        "networks = [\"powerspace\"]",
        "networks = [\"p\"], types = [\"rebill\"]",
    ));
    assert!(e.contains("match.types") && e.contains("rebill"), "{e}");
    let e = err(&format!(
        "{MINIMAL}\n[[destinations]]\nname = \"ps\"\nkind = \"powerspace\"\nbase_url = \"http://x\"\nmatch = {{ networks = [\"a\"] }}"
    ));
    assert!(
        e.contains("destinations[1].name") && e.contains("twice"),
        "{e}"
    );
    assert!(err("").contains("destinations"));
}

#[test]
fn a_longest_delay_beyond_every_tier_is_refused() {
    // The longest default tier is 1 h: a 2 h delay would wait 1 h and come early.
    let e = err(&format!("{MINIMAL}\nretry = {{ max_delay_ms = 7200000 }}"));
    assert!(
        e.contains("destinations[0].retry.max_delay_ms")
            && e.contains("7200000")
            && e.contains("3600000")
            && e.contains("broker.retry_tiers_ms"),
        "{e}"
    );
    // Equal to the longest tier is fine, and so is a tier added for it.
    Config::from_toml(
        &format!("{MINIMAL}\nretry = {{ max_delay_ms = 3600000 }}"),
        &|_| None,
    )
    .unwrap();
    Config::from_toml(
        &format!(
            "[broker]\nretry_tiers_ms = [30000, 7200000]\n{MINIMAL}\nretry = {{ max_delay_ms = 7200000 }}"
        ),
        &|_| None,
    )
    .unwrap();
    // Shorter tiers bring the check along: the default 1 h ceiling is above a 10 s tier.
    let e = err(&format!(
        "[broker]\nretry_tiers_ms = [1000, 10000]\n{MINIMAL}"
    ));
    assert!(e.contains("destinations[0].retry.max_delay_ms"), "{e}");
}

#[test]
fn records_must_outlive_the_retries_of_their_delivery() {
    // Records kept 24 h while retries go on for 48 h (plus one 1 h tier): a retry or a
    // redelivery after the record expired would be sent to the partner again.
    let e = err(&format!(
        "[store]\nkind = \"embedded\"\nttl_secs = 86400\n{MINIMAL}"
    ));
    assert!(
        e.contains("store.ttl_secs")
            && e.contains("destinations[0].retry.max_age_secs")
            && e.contains("176400"),
        "{e}"
    );
    let e = err(&format!(
        "[store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1\"\nttl_secs = 60\n{MINIMAL}\nretry = {{ max_age_secs = 60 }}"
    ));
    assert!(e.contains("store.ttl_secs"), "{e}");
    // Exactly enough is fine.
    Config::from_toml(
        &format!("[store]\nkind = \"embedded\"\nttl_secs = 176400\n{MINIMAL}"),
        &|_| None,
    )
    .unwrap();
}

#[test]
fn environment_references() {
    let text = MINIMAL.replace("a.pwspace.com", "${SET}.example");
    let c = Config::from_toml(&text, &|n| (n == "SET").then(|| "value".into())).unwrap();
    assert_eq!(
        c.destinations[0].base_url.as_deref(),
        Some("https://value.example")
    );
    let e = err(&MINIMAL.replace("a.pwspace.com", "${UNSET}"));
    assert!(
        e.contains("destinations[0].base_url") && e.contains("UNSET is not set"),
        "{e}"
    );
    assert_eq!(expand_str("k", "a$${b}$c", &|_| None).unwrap(), "a${b}$c");
    // A secret in the wrong place is not repeated in the error.
    let e = Config::from_toml(&format!("{MINIMAL}\ntimeout_ms = \"${{SET}}\""), &|n| {
        (n == "SET").then(|| "hunter2".into())
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("timeout_ms") && !e.contains("hunter2"), "{e}");
}

#[test]
fn a_status_wait_beyond_the_retry_age_is_refused() {
    let load = |wait: &str| {
        Config::from_toml(
            &format!(
                r#"[[destinations]]
                name = "hoqu"
                kind = "hoqu"
                base_url = "https://trackerdomain.com"
                match = {{ networks = ["hoqu"] }}
                hoqu = {{ api_key = "k", payout = "percentage", action = "lead", status_wait_secs = {wait} }}"#
            ),
            &|_| None,
        )
    };
    // An update waits in the retry tiers, on its delivery's retry age.
    for wait in ["172801", "10000000000000000", "9223372036854775807"] {
        let e = load(wait).unwrap_err().to_string();
        assert!(
            e.contains("destinations[0].hoqu.status_wait_secs") && e.contains("retry.max_age_secs"),
            "{e}"
        );
    }
    load("172800").unwrap();
    load("0").unwrap();
}

#[test]
fn the_partner_proxy_is_the_environments_none_or_a_url() {
    let load = |value: &str| {
        Config::from_toml(
            &format!("[worker]\npartner_proxy = {value:?}\n{MINIMAL}"),
            &|n| (n == "PROXY_PASSWORD").then(|| "env-pr0xy-pass".to_owned()),
        )
    };
    let c = Config::from_toml(MINIMAL, &|_| None).unwrap();
    assert_eq!(c.worker.partner_proxy, PartnerProxy::Environment);
    assert_eq!(
        load("environment").unwrap().worker.partner_proxy,
        PartnerProxy::Environment
    );
    assert_eq!(
        load("none").unwrap().worker.partner_proxy,
        PartnerProxy::None
    );
    let c = load("http://relay:s3cret-pw@proxy.internal:3128").unwrap();
    let PartnerProxy::Url(url) = &c.worker.partner_proxy else {
        panic!("{:?}", c.worker.partner_proxy)
    };
    assert_eq!(url.host_str(), Some("proxy.internal"));
    // Shown as its host and port only, in the log line and in Debug output alike; the
    // password is a secret the relay keeps out of what it writes.
    assert_eq!(
        c.worker.partner_proxy.to_string(),
        "the proxy http://proxy.internal:3128"
    );
    let debug = format!("{:?}", c.worker);
    assert!(!debug.contains("s3cret-pw"), "{debug}");
    assert!(c.secrets.scrub("x s3cret-pw y").contains("REDACTED"));
    let c = load("https://${PROXY_PASSWORD}@proxy.internal").unwrap();
    assert_eq!(
        c.worker.partner_proxy.to_string(),
        "the proxy https://proxy.internal:443"
    );
    for (value, want) in [
        ("Environment ", "\"environment\", \"none\" or"),
        ("", "\"environment\", \"none\" or"),
        ("socks5://proxy.internal:1080", "http:// or https://"),
        ("proxy.internal:3128", "http:// or https://"),
        ("http://u:hunter2-pw@proxy.internal:3128/path", "no path"),
        ("http://u:hunter2-pw@proxy.internal:3128/?q", "no path"),
        ("http://:3128", "http:// or https://"),
    ] {
        let e = load(value).unwrap_err().to_string();
        assert!(
            e.contains("config key `worker.partner_proxy`") && e.contains(want),
            "{value:?}: {e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
    }
}

#[test]
fn tracing_settings_are_checked_naming_the_key() {
    let e = err(&format!(
        "[tracing]\notlp_endpoint = \"collector:4318\"\n{MINIMAL}"
    ));
    assert!(e.contains("`tracing.otlp_endpoint`"), "{e}");
    let e = err(&format!(
        "[tracing]\notlp_endpoint = \"http://u:${{SET}}@c:4318/?x\"\n{MINIMAL}"
    ));
    assert!(
        e.contains("`tracing.otlp_endpoint`") && !e.contains("value"),
        "{e}"
    );
    let e = err(&format!(
        "[console]\ntrace_url = \"https://grafana.example/explore\"\n{MINIMAL}"
    ));
    assert!(e.contains("`console.trace_url`"), "{e}");
    let e = err(&format!("{MINIMAL}send_traceparent = true\n"));
    assert!(e.contains("`destinations[0].send_traceparent`"), "{e}");
    let on = format!(
        "[tracing]\notlp_endpoint = \"http://collector:4318\"\n{MINIMAL}send_traceparent = true\n"
    );
    let c = Config::from_toml(&on, &|_| None).unwrap();
    assert!(c.tracing.enabled() && c.destinations[0].send_traceparent);
    assert_eq!(c.tracing.service_name, "postback-relay");
}
