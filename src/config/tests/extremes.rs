//! Every numeric key at its extremes: refused by name, or loaded and harmless to compute with.

use std::time::Duration;

use crate::config::{Config, ConfigError};

/// Every key, spelled out with its default, for the extreme-value test.
const EVERY_KEY: &str = r#"
    [broker]
    prefetch = 64
    delivery_limit = 20
    reconnect_max_delay_secs = 30
    retry_tiers_ms = [1000, 30000, 3600000]
    [worker]
    max_event_bytes = 1048576
    shutdown_grace_secs = 30
    queue_sample_secs = 15
    [store]
    kind = "embedded"
    ttl_secs = 259200
    [journal]
    retention_days = 30
    buffer = 10000
    [[destinations]]
    name = "hoqu"
    kind = "hoqu"
    base_url = "https://trackerdomain.com"
    match = { networks = ["hoqu"] }
    timeout_ms = 5000
    concurrency = 64
    rate_limit_per_sec = 50
    click_lifetime_days = 30
    hoqu = { api_key = "k", payout = "percentage", status_wait_secs = 300 }
    [destinations.retry]
    immediate_attempts = 2
    immediate_delay_ms = 200
    initial_delay_ms = 30000
    factor = 2.0
    max_delay_ms = 3600000
    jitter = 0.2
    max_attempts = 60
    max_age_secs = 172800
    [destinations.circuit]
    failure_threshold = 5
    open_ms = 30000
"#;

/// Sets `path` (`a.b`, `destinations.0.c`) in a TOML document to `value` (TOML text).
fn with_value(path: &str, value: &str) -> String {
    let mut doc: toml::Table = toml::from_str(EVERY_KEY).unwrap();
    let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .unwrap()
        .remove("v")
        .unwrap();
    let (parents, last) = path.rsplit_once('.').unwrap();
    let mut at = doc.get_mut(parents.split('.').next().unwrap()).unwrap();
    for seg in parents.split('.').skip(1) {
        at = match seg.parse::<usize>() {
            Ok(i) => &mut at.as_array_mut().unwrap()[i],
            Err(_) => at.get_mut(seg).unwrap(),
        };
    }
    at.as_table_mut().unwrap().insert(last.into(), value);
    toml::to_string(&doc).unwrap()
}

/// What the relay computes from a loaded config, where an extreme value could overflow.
fn exercise(c: &Config) {
    let topology = crate::relay::broker::Topology::from_config(c);
    let tiers: Vec<Duration> = topology.tiers.iter().map(|(d, _)| *d).collect();
    let now = chrono::Utc::now();
    for d in &c.destinations {
        let _ = tokio::sync::Semaphore::new(d.concurrency);
        let p = &d.retry;
        let _ = (p.claim_lease(d.timeout()), p.pause_cap());
        for retry in [0, 1, 64, u32::MAX] {
            for ra in [None, Some(Duration::ZERO), Some(Duration::MAX)] {
                let delay = p.delay(retry, 0.999, ra);
                assert!(delay <= tiers[crate::config::retry::tier_for(&tiers, delay)]);
                let _ = p.exhausted(p.max_attempts, now, now, delay);
            }
        }
        let circuit = crate::shared::circuit::Circuit::new(d.circuit.clone());
        let t = std::time::Instant::now();
        circuit.record(false, t);
        let _ = circuit.admit(t);
    }
}

#[test]
fn extreme_values_are_refused_by_name_or_harmless() {
    Config::from_toml(EVERY_KEY, &|_| None).unwrap();
    let integers = [
        "broker.prefetch",
        "broker.delivery_limit",
        "broker.reconnect_max_delay_secs",
        "worker.max_event_bytes",
        "worker.shutdown_grace_secs",
        "worker.queue_sample_secs",
        "store.ttl_secs",
        "destinations.0.timeout_ms",
        "destinations.0.concurrency",
        "destinations.0.rate_limit_per_sec",
        "destinations.0.click_lifetime_days",
        "destinations.0.hoqu.status_wait_secs",
        "destinations.0.retry.immediate_attempts",
        "destinations.0.retry.immediate_delay_ms",
        "destinations.0.retry.initial_delay_ms",
        "destinations.0.retry.max_delay_ms",
        "destinations.0.retry.max_attempts",
        "destinations.0.retry.max_age_secs",
        "destinations.0.circuit.failure_threshold",
        "destinations.0.circuit.open_ms",
        "journal.retention_days",
        "journal.buffer",
    ];
    let mut cases: Vec<(&str, String)> = Vec::new();
    for key in integers {
        for v in ["-1", "0", "65536", "4294967296", "9223372036854775807"] {
            cases.push((key, v.to_owned()));
        }
    }
    for key in ["destinations.0.retry.factor", "destinations.0.retry.jitter"] {
        for v in ["-1.0", "0.0", "1e308", "inf", "-inf", "nan"] {
            cases.push((key, v.to_owned()));
        }
    }
    let many: Vec<String> = (1..=1000u64).map(|i| (i * 3_600_000).to_string()).collect();
    for v in [
        "[]".to_owned(),
        "[0]".to_owned(),
        "[-1]".to_owned(),
        "[3600000, 4294967296000]".to_owned(),
        "[3600000, 9223372036854775807]".to_owned(),
        format!("[{}]", many.join(", ")),
    ] {
        cases.push(("broker.retry_tiers_ms", v));
    }
    for (key, value) in cases {
        let text = with_value(key, &value);
        let name = key.rsplit('.').next().unwrap();
        match Config::from_toml(&text, &|_| None) {
            Err(e @ ConfigError::Key { .. }) => {
                let e = e.to_string();
                assert!(e.contains(name), "{key} = {value}: {e}");
            }
            Err(e) => panic!("{key} = {value}: not a keyed error: {e}"),
            Ok(c) => exercise(&c),
        }
    }
    // Extremes that are refused rather than merely survived: they would hang, exhaust
    // memory, or overflow further on.
    for (key, value) in [
        ("broker.reconnect_max_delay_secs", "9223372036854775807"),
        ("worker.max_event_bytes", "9223372036854775807"),
        ("worker.shutdown_grace_secs", "9223372036854775807"),
        ("worker.queue_sample_secs", "9223372036854775807"),
        ("destinations.0.concurrency", "9223372036854775807"),
        ("destinations.0.retry.max_age_secs", "9223372036854775807"),
        ("destinations.0.circuit.open_ms", "9223372036854775807"),
        ("store.ttl_secs", "9223372036854775807"),
        ("journal.buffer", "9223372036854775807"),
        ("journal.retention_days", "0"),
        ("broker.retry_tiers_ms", "[3600000, 9223372036854775807]"),
    ] {
        let e = Config::from_toml(&with_value(key, value), &|_| None)
            .expect_err(key)
            .to_string();
        assert!(e.contains(key.rsplit('.').next().unwrap()), "{e}");
    }
}
