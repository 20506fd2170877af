//! Effectively once: a redelivered event reaches its partner once (with the embedded store and
//! with Redis), statuses never go backwards, and replicas share the work.

mod common;

use std::time::Duration;

use common::partner::per_click;
use common::{Dest, Env, Event, Hoqu, Retry, deliveries, event, eventually, until};

const WAIT: Duration = Duration::from_secs(30);

async fn redelivered_event_reaches_the_partner_once(redis: bool) {
    let env = Env::new().await;
    let mut config = env.default_config();
    if redis {
        config = config.redis();
    }
    let running = env.start(&config).await;
    let body = event("same-event", "order", "once", Some("10.00"));
    env.publish(&body).await;
    until(&running, "delivered", |m| {
        deliveries(m, "powerspace", "delivered") == 1
    })
    .await;
    // The same event again, as a redelivery or a producer retry would bring it.
    env.publish(&body).await;
    until(&running, "the second copy suppressed", |m| {
        deliveries(m, "powerspace", "duplicate") == 1
    })
    .await;
    assert_eq!(env.sandbox.requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_redelivered_event_reaches_the_partner_once_with_the_embedded_store() {
    redelivered_event_reaches_the_partner_once(false).await;
}

#[tokio::test]
async fn a_redelivered_event_reaches_the_partner_once_with_redis() {
    redelivered_event_reaches_the_partner_once(true).await;
}

/// One HOQU destination at the sandbox.
async fn start_hoqu(env: &Env, status_wait_secs: u64) -> postback_relay::relay::Running {
    let hoqu = Hoqu::new("k", "percentage")
        .action("lead")
        .status_wait_secs(status_wait_secs);
    let config = env.config().destination(
        Dest::hoqu("hoqu", env.sandbox.base_url(), hoqu).retry(Retry::durable(100, 400)),
    );
    env.start(&config).await
}

/// Conversion 12345 of the same click, with `status`.
fn hoqu_event(id: &str, kind: &str, status: Option<&str>) -> Vec<u8> {
    Event::attributed(id, kind, "hoqu", "c7e2206f")
        .order("12345", "30")
        .status(status)
        .body()
}

fn statuses(requests: &[postback_relay::interfaces::sandbox::Recorded]) -> Vec<String> {
    requests.iter().filter_map(|r| r.param("status")).collect()
}

#[tokio::test]
async fn approved_then_a_late_hold_sends_only_approved() {
    let env = Env::new().await;
    let running = start_hoqu(&env, 300).await;
    env.publish(&hoqu_event("paid", "order", Some("paid")))
        .await;
    until(&running, "approved sent", |m| {
        deliveries(m, "hoqu", "delivered") == 1
    })
    .await;
    // A late "pending" for the same order: sending it would put an approved order on hold.
    env.publish(&hoqu_event("late", "order_status", Some("pending")))
        .await;
    until(&running, "the late hold superseded", |m| {
        deliveries(m, "hoqu", "superseded") == 1
    })
    .await;
    // A refund may still reject it.
    env.publish(&hoqu_event("refund", "order_status", Some("refunded")))
        .await;
    until(&running, "rejected sent", |m| {
        deliveries(m, "hoqu", "delivered") == 2
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
}

#[tokio::test]
async fn an_update_ahead_of_its_conversion_waits_for_it() {
    let env = Env::new().await;
    let running = start_hoqu(&env, 300).await;
    env.publish(&hoqu_event("update", "order_status", Some("paid")))
        .await;
    until(&running, "the update parked", |m| m.events_acked.get() == 1).await;
    assert!(
        env.sandbox.requests().await.unwrap().is_empty(),
        "not sent before its conversion"
    );
    env.publish(&hoqu_event("conversion", "lead", None)).await;
    until(&running, "both sent", |m| {
        deliveries(m, "hoqu", "delivered") == 2
    })
    .await;
    assert_eq!(
        statuses(&env.sandbox.requests().await.unwrap()),
        ["hold", "approved"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_share_the_work_and_each_event_goes_once() {
    const N: usize = 600;
    let env = Env::new().await;
    let config = env.default_config().redis();
    let a = env.start(&config).await;
    let b = env.start(&config).await;
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
    let per = per_click(&env.sandbox.requests().await.unwrap(), false);
    let delivered =
        |m: &postback_relay::relay::metrics::Metrics| deliveries(m, "powerspace", "delivered");
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
}

/// A producer's retry: every event published twice with the same `event_id`, while the
/// partner's rate limit makes deliveries wait far longer than a claim's lease. The copy must
/// never go out while the first is still waiting to be sent.
async fn claims_outlive_the_wait_for_the_rate_limit(replicas: usize, redis: bool) {
    const N: usize = 40;
    let env = Env::new().await;
    let mut config = env.config().destination(
        env.powerspace()
            .timeout_ms(1000)
            .retry(Retry::durable(100, 400).max_age_secs(600))
            .rate_limit(2),
    );
    if redis {
        config = config.redis();
    }
    let mut relays = Vec::new();
    for _ in 0..replicas {
        relays.push(env.start(&config).await);
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
                    deliveries(m, "powerspace", "delivered")
                        + deliveries(m, "powerspace", "duplicate")
                })
                .sum();
            settled >= 2 * N as u64
        }
    })
    .await;
    let per = per_click(&env.sandbox.requests().await.unwrap(), true);
    let twice = per.values().filter(|c| **c > 1).count();
    assert_eq!(per.len(), N, "every event accepted");
    assert_eq!(twice, 0, "{twice} of {N} events accepted twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_outlives_the_wait_for_the_rate_limit_with_the_embedded_store() {
    claims_outlive_the_wait_for_the_rate_limit(1, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_outlives_the_wait_for_the_rate_limit_with_redis_and_two_replicas() {
    claims_outlive_the_wait_for_the_rate_limit(2, true).await;
}
