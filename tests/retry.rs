//! Durable retries through the broker's delay tiers, per-destination isolation, the circuit
//! breaker and the click lifetime, against the real RabbitMQ and the sandbox.

mod common;

use std::time::Duration;

use common::{Circuit, Dest, Env, Event, Retry, deliveries, event, until};

use postback_relay::interfaces::sandbox::Rule;
use postback_relay::relay::deadletter::Reason;

/// This test's relay with the one Powerspace destination retrying by `retry`.
async fn start(env: &Env, retry: Retry) -> postback_relay::relay::Running {
    env.start(&env.config().destination(env.powerspace().retry(retry)))
        .await
}

#[tokio::test]
async fn three_503s_then_200_is_one_delivery_after_three_durable_retries() {
    let env = Env::new().await;
    env.sandbox
        .add_rule(&Rule::answer(503).on_path("/ld").times(3))
        .await
        .unwrap();
    // No in-process tries and no jitter: each failure waits in a delay tier, 200, 400, 800 ms.
    let retry = Retry::durable(200, 1600)
        .factor(2.0)
        .jitter(0.0)
        .max_attempts(10);
    let running = start(&env, retry).await;
    env.publish(&event("e1", "lead", "flaky", None)).await;
    until(&running, "delivered", |m| {
        deliveries(m, "powerspace", "delivered") == 1
    })
    .await;

    let requests = env.sandbox.requests().await.unwrap();
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [503, 503, 503, 200],
        "exactly one delivered request, after three retries"
    );
    let gaps: Vec<Duration> = requests
        .windows(2)
        .map(|w| (w[1].received_at - w[0].received_at).to_std().unwrap())
        .collect();
    eprintln!("gaps between attempts: {gaps:?} (policy: 200 ms, 400 ms, 800 ms)");
    for (gap, policy) in gaps.iter().zip([200u64, 400, 800]) {
        let policy = Duration::from_millis(policy);
        // Never earlier than the policy; the tier TTL plus the broker's dead-lettering and
        // the consumer add a little.
        assert!(*gap >= policy, "{gap:?} < {policy:?}");
        assert!(
            *gap < policy + Duration::from_millis(700),
            "{gap:?} is far past {policy:?}"
        );
    }
    let m = &running.metrics;
    assert_eq!(
        m.delivered_on_attempt
            .with_label_values(&["powerspace", "4-5"])
            .get(),
        1
    );
    let scheduled: u64 = ["200ms", "400ms", "800ms"]
        .iter()
        .map(|t| {
            m.retries_scheduled
                .with_label_values(&["powerspace", t])
                .get()
        })
        .sum();
    assert_eq!(scheduled, 3);
    assert!(env.take_dead_letters().await.is_empty());
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let env = Env::new().await;
    env.sandbox
        .add_rule(&Rule::answer(429).on_path("/ld").times(1).retry_after("1"))
        .await
        .unwrap();
    let running = start(&env, Retry::durable(100, 1600).jitter(0.0)).await;
    env.publish(&event("e1", "lead", "busy", None)).await;
    until(&running, "delivered", |m| {
        deliveries(m, "powerspace", "delivered") == 1
    })
    .await;
    let r = env.sandbox.requests().await.unwrap();
    assert_eq!(r.len(), 2);
    let gap = (r[1].received_at - r[0].received_at).to_std().unwrap();
    assert!(
        gap >= Duration::from_secs(1),
        "Retry-After: 1 waited only {gap:?}"
    );
}

#[tokio::test]
async fn a_partner_down_for_the_whole_test_ends_in_the_dead_letter_queue() {
    let env = Env::new().await;
    env.sandbox
        .add_rule(&Rule::answer(503).on_path("/ld"))
        .await
        .unwrap();
    let retry = Retry::new()
        .immediate(2, 10)
        .delays(100, 200)
        .max_attempts(5);
    let running = start(&env, retry).await;
    env.publish(&event("down-1", "lead", "down", None)).await;
    until(&running, "dead-lettered", |m| {
        deliveries(m, "powerspace", "dead_lettered") == 1
    })
    .await;
    let dead = env.take_dead_letters().await;
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d.reason, Reason::RetriesExhausted);
    assert_eq!(d.attempts, 5);
    assert_eq!(d.history.len(), 5, "the attempt history");
    assert!(d.history.iter().all(|h| h.status == Some(503)));
    assert!(d.history.windows(2).all(|w| w[0].at <= w[1].at));
    assert!(
        d.detail.contains("gave up after 5 attempts"),
        "{}",
        d.detail
    );
    assert_eq!(env.sandbox.requests().await.unwrap().len(), 5);
}

#[tokio::test]
async fn one_failing_destination_of_three_is_retried_alone() {
    let env = Env::new().await;
    env.sandbox
        .add_rule(&Rule::answer(503).on_path("/c/").times(4))
        .await
        .unwrap();
    let base = env.sandbox.base_url().to_owned();
    let mut config = env.config();
    for name in ["a", "b", "c"] {
        config = config.destination(
            Dest::powerspace(name, &format!("{base}/{name}"))
                .timeout_ms(2000)
                .retry(Retry::durable(100, 400))
                .circuit(Circuit::disabled()),
        );
    }
    let running = env.start(&config).await;
    env.publish(&event("e1", "order", "three", Some("10.00")))
        .await;
    until(&running, "c delivered after its retries", |m| {
        deliveries(m, "c", "delivered") == 1
    })
    .await;
    let requests = env.sandbox.requests().await.unwrap();
    let to = |p: &str| requests.iter().filter(|r| r.path.starts_with(p)).count();
    assert_eq!(
        (to("/a/"), to("/b/"), to("/c/")),
        (1, 1, 5),
        "a and b once, c retried alone"
    );
    // a and b were answered at once, not held back by c's retries.
    let first = requests
        .iter()
        .filter(|r| !r.path.starts_with("/c/"))
        .map(|r| r.received_at)
        .max()
        .unwrap();
    let c_done = requests
        .iter()
        .filter(|r| r.path.starts_with("/c/"))
        .map(|r| r.received_at)
        .max()
        .unwrap();
    assert!(first < c_done);
    let m = &running.metrics;
    assert_eq!(
        m.events_acked.get(),
        1,
        "the event is acked once, when c's retry was recorded"
    );
    assert_eq!(
        m.retries_scheduled.with_label_values(&["a", "100ms"]).get(),
        0
    );
}

#[tokio::test]
async fn an_open_circuit_stops_requests_and_deliveries_resume_after_it_closes() {
    let env = Env::new().await;
    env.sandbox
        .add_rule(&Rule::answer(503).on_path("/ld"))
        .await
        .unwrap();
    let retry = Retry::new()
        .immediate(2, 10)
        .delays(100, 400)
        .max_attempts(20);
    let config = env.config().destination(
        env.powerspace()
            .retry(retry)
            .circuit(Circuit::opens_after(2, 1500)),
    );
    let running = env.start(&config).await;
    // Two failures in a row open the circuit.
    env.publish(&event("first", "lead", "c0", None)).await;
    until(&running, "the circuit opens", |m| {
        m.circuit_state.with_label_values(&["powerspace"]).get() == 2
    })
    .await;
    let calls_when_opened = env.sandbox.requests().await.unwrap().len();
    assert_eq!(calls_when_opened, 2);
    // While it is open, new events are parked in the retry tiers without calling.
    for i in 1..5 {
        env.publish(&event(&format!("e{i}"), "lead", &format!("c{i}"), None))
            .await;
    }
    until(&running, "all five events recorded", |m| {
        m.events_acked.get() == 5
    })
    .await;
    assert_eq!(
        env.sandbox.requests().await.unwrap().len(),
        calls_when_opened,
        "no call while open"
    );
    assert_eq!(
        running
            .metrics
            .circuit_state
            .with_label_values(&["powerspace"])
            .get(),
        2
    );

    // The partner recovers; after the pause a probe succeeds and everything is delivered.
    env.sandbox.clear_rules().await.unwrap();
    until(&running, "all five delivered", |m| {
        deliveries(m, "powerspace", "delivered") == 5
    })
    .await;
    assert_eq!(
        running
            .metrics
            .circuit_state
            .with_label_values(&["powerspace"])
            .get(),
        0
    );
    let ok: Vec<String> = env
        .sandbox
        .requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.status == 200)
        .filter_map(|r| r.param("qci"))
        .collect();
    let mut sorted = ok.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 5, "each event delivered once: {ok:?}");
    assert_eq!(ok.len(), 5);
    assert!(env.take_dead_letters().await.is_empty());
}

#[tokio::test]
async fn a_click_past_its_lifetime_is_dead_lettered_without_a_call() {
    let env = Env::new().await;
    let config = env
        .config()
        .destination(env.powerspace().click_lifetime_days(30));
    let running = env.start(&config).await;
    let clicked = (chrono::Utc::now() - chrono::Duration::days(31)).to_rfc3339();
    let body = Event::powerspace("old", "lead", "old", None)
        .clicked_at(&clicked)
        .body();
    env.publish(&body).await;
    until(&running, "acked", |m| m.events_acked.get() == 1).await;
    assert!(env.sandbox.requests().await.unwrap().is_empty());
    let dead = env.take_dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, Reason::ClickExpired);
    assert!(dead[0].detail.contains("30 days"), "{}", dead[0].detail);
}
