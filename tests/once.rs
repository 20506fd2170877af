//! Effectively once: a redelivered event reaches its partner once (with the embedded store and
//! with Redis), statuses never go backwards, and replicas share the work.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Env, event, eventually, until};

const WAIT: Duration = Duration::from_secs(30);

async fn redelivered_event_reaches_the_partner_once(redis: bool) {
    let env = Env::new().await;
    let mut toml = env.config_toml("");
    if redis {
        toml = toml
            .replace("kind = \"embedded\"", "kind = \"redis\"")
            .replace(
                &format!(
                    "path = \"{}\"",
                    std::env::temp_dir()
                        .join(format!("{}.db", env.prefix))
                        .display()
                ),
                &format!(
                    "url = \"redis://127.0.0.1:6379/0\"\nkey_prefix = \"{}\"",
                    env.prefix
                ),
            );
        assert!(toml.contains("kind = \"redis\""));
    }
    let running = env.start(&toml).await;
    let body = event("same-event", "order", "once", Some("10.00"));
    env.publish(&body).await;
    until(&running, "delivered", |m| {
        m.deliveries
            .with_label_values(&["powerspace", "delivered"])
            .get()
            == 1
    })
    .await;
    // The same event again, as a redelivery or a producer retry would bring it.
    env.publish(&body).await;
    until(&running, "the second copy suppressed", |m| {
        m.deliveries
            .with_label_values(&["powerspace", "duplicate"])
            .get()
            == 1
    })
    .await;
    assert_eq!(env.sandbox.requests().await.unwrap().len(), 1);
    env.cleanup().await;
}

#[tokio::test]
async fn a_redelivered_event_reaches_the_partner_once_with_the_embedded_store() {
    redelivered_event_reaches_the_partner_once(false).await;
}

#[tokio::test]
async fn a_redelivered_event_reaches_the_partner_once_with_redis() {
    redelivered_event_reaches_the_partner_once(true).await;
}

fn hoqu_toml(env: &Env, status_wait_secs: u64) -> String {
    format!(
        r#"{broker}
        [[destinations]]
        name = "hoqu"
        kind = "hoqu"
        base_url = "{base}"
        match = {{ networks = ["hoqu"] }}
        retry = {{ immediate_attempts = 1, initial_delay_ms = 100, max_delay_ms = 400 }}
        hoqu = {{ api_key = "k", payout = "percentage", action = "lead", status_wait_secs = {status_wait_secs} }}
        "#,
        broker = env.broker_toml(),
        base = env.sandbox.base_url()
    )
}

fn hoqu_event(id: &str, kind: &str, status: Option<&str>) -> Vec<u8> {
    let status = status
        .map(|s| format!(r#","status":"{s}""#))
        .unwrap_or_default();
    format!(
        r#"{{"event_id":"{id}","type":"{kind}","occurred_at":"2026-11-22T10:00:00Z","attribution":{{"network":"hoqu","click_id":"c7e2206f"}},"order":{{"id":"12345","amount":"30"{status}}}}}"#
    )
    .into_bytes()
}

fn statuses(requests: &[postback_relay::sandbox::Recorded]) -> Vec<String> {
    requests.iter().filter_map(|r| r.param("status")).collect()
}

#[tokio::test]
async fn approved_then_a_late_hold_sends_only_approved() {
    let env = Env::new().await;
    let running = env.start(&hoqu_toml(&env, 300)).await;
    env.publish(&hoqu_event("paid", "order", Some("paid")))
        .await;
    until(&running, "approved sent", |m| {
        m.deliveries.with_label_values(&["hoqu", "delivered"]).get() == 1
    })
    .await;
    // A late "pending" for the same order: sending it would put an approved order on hold.
    env.publish(&hoqu_event("late", "order_status", Some("pending")))
        .await;
    until(&running, "the late hold superseded", |m| {
        m.deliveries
            .with_label_values(&["hoqu", "superseded"])
            .get()
            == 1
    })
    .await;
    // A refund may still reject it.
    env.publish(&hoqu_event("refund", "order_status", Some("refunded")))
        .await;
    until(&running, "rejected sent", |m| {
        m.deliveries.with_label_values(&["hoqu", "delivered"]).get() == 2
    })
    .await;
    assert_eq!(
        statuses(&env.sandbox.requests().await.unwrap()),
        ["approved", "rejected"]
    );
    assert!(
        env.take_dead_letters().await.is_empty(),
        "superseded is not a dead letter"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn an_update_ahead_of_its_conversion_waits_for_it() {
    let env = Env::new().await;
    let running = env.start(&hoqu_toml(&env, 300)).await;
    env.publish(&hoqu_event("update", "order_status", Some("paid")))
        .await;
    until(&running, "the update parked", |m| m.events_acked.get() == 1).await;
    assert!(
        env.sandbox.requests().await.unwrap().is_empty(),
        "not sent before its conversion"
    );
    env.publish(&hoqu_event("conversion", "lead", None)).await;
    until(&running, "both sent", |m| {
        m.deliveries.with_label_values(&["hoqu", "delivered"]).get() == 2
    })
    .await;
    assert_eq!(
        statuses(&env.sandbox.requests().await.unwrap()),
        ["hold", "approved"]
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_share_the_work_and_each_event_goes_once() {
    const N: usize = 600;
    let env = Env::new().await;
    let toml = env.config_toml("").replace(
        &format!(
            "[store]\n            kind = \"embedded\"\n            path = \"{}\"",
            std::env::temp_dir()
                .join(format!("{}.db", env.prefix))
                .display()
        ),
        &env.redis_store_toml(),
    );
    assert!(toml.contains("kind = \"redis\""), "{toml}");
    let a = env.start(&toml).await;
    let b = env.start(&toml).await;
    for i in 0..N {
        env.publish(&event(&format!("r{i}"), "lead", &format!("rep-{i}"), None))
            .await;
    }
    // Each replica also gets a copy of some events, as after a redelivery.
    for i in (0..N).step_by(10) {
        env.publish(&event(&format!("r{i}"), "lead", &format!("rep-{i}"), None))
            .await;
    }
    let (ma, mb) = (a.metrics.clone(), b.metrics.clone());
    eventually(WAIT, "every event settled", || {
        let (ma, mb) = (ma.clone(), mb.clone());
        async move { ma.events_acked.get() + mb.events_acked.get() == (N + N / 10) as u64 }
    })
    .await;
    let mut per: HashMap<String, usize> = HashMap::new();
    for r in env.sandbox.requests().await.unwrap() {
        *per.entry(r.param("qci").unwrap()).or_default() += 1;
    }
    let delivered = |m: &postback_relay::metrics::Metrics| {
        m.deliveries
            .with_label_values(&["powerspace", "delivered"])
            .get()
    };
    eprintln!(
        "replica a delivered {}, replica b {}",
        delivered(&ma),
        delivered(&mb)
    );
    assert_eq!(per.len(), N, "every event");
    assert!(per.values().all(|c| *c == 1), "none twice");
    assert!(
        delivered(&ma) > 0 && delivered(&mb) > 0,
        "both replicas worked"
    );
    env.cleanup().await;
}

/// A producer's retry: every event published twice with the same `event_id`, while the
/// partner's rate limit makes deliveries wait far longer than a claim's lease. The copy must
/// never go out while the first is still waiting to be sent.
async fn claims_outlive_the_wait_for_the_rate_limit(replicas: usize, redis: bool) {
    const N: usize = 40;
    let env = Env::new().await;
    let extra = "rate_limit_per_sec = 2";
    let mut toml = env.broker_toml()
        + &env
            .destination_toml(
                "powerspace",
                env.sandbox.base_url(),
                "immediate_attempts = 1, initial_delay_ms = 100, max_delay_ms = 400, max_age_secs = 600",
                "enabled = false",
                extra,
            )
            .replace("timeout_ms = 2000", "timeout_ms = 1000");
    if redis {
        toml = common::with_redis_store(&env, &toml);
    }
    let mut relays = Vec::new();
    for _ in 0..replicas {
        relays.push(env.start(&toml).await);
    }
    for i in 0..N {
        let body = event(&format!("c{i}"), "lead", &format!("claim-{i}"), None);
        env.publish(&body).await;
        env.publish(&body).await;
    }
    let metrics: Vec<_> = relays.iter().map(|r| r.metrics.clone()).collect();
    eventually(Duration::from_secs(120), "every copy settled", || {
        let metrics = metrics.clone();
        async move {
            let settled: u64 = metrics
                .iter()
                .map(|m| {
                    m.deliveries
                        .with_label_values(&["powerspace", "delivered"])
                        .get()
                        + m.deliveries
                            .with_label_values(&["powerspace", "duplicate"])
                            .get()
                })
                .sum();
            settled >= 2 * N as u64
        }
    })
    .await;
    let mut per: HashMap<String, usize> = HashMap::new();
    for r in env.sandbox.requests().await.unwrap() {
        if r.status == 200 {
            *per.entry(r.param("qci").unwrap()).or_default() += 1;
        }
    }
    let twice = per.values().filter(|c| **c > 1).count();
    assert_eq!(per.len(), N, "every event accepted");
    assert_eq!(twice, 0, "{twice} of {N} events accepted twice");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_outlives_the_wait_for_the_rate_limit_with_the_embedded_store() {
    claims_outlive_the_wait_for_the_rate_limit(1, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_outlives_the_wait_for_the_rate_limit_with_redis_and_two_replicas() {
    claims_outlive_the_wait_for_the_rate_limit(2, true).await;
}
