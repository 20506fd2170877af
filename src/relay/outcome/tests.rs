//! The outcome's decisions tested: a pause given back, what follows a call that did not
//! deliver, a click past its lifetime.

use super::*;

fn config() -> DestinationConfig {
    let toml = r#"[[destinations]]
        name = "ps"
        kind = "powerspace"
        base_url = "https://a.pwspace.com"
        match = { networks = ["powerspace"] }"#;
    crate::config::Config::from_toml(toml, &|_| None)
        .unwrap()
        .destinations
        .remove(0)
}

fn parts() -> (Delivery, Request, Source) {
    let event = serde_json::value::RawValue::from_string("{}".into()).unwrap();
    let request = Request {
        destination: "ps".into(),
        method: crate::contract::partner::Method::Get,
        url: "https://a.pwspace.com/ld?qci=c".into(),
        headers: Default::default(),
        body: None,
        secrets: Vec::new(),
        parsed_url: None,
    };
    let source = Source {
        queue: "q".into(),
        routing_key: "lead".into(),
        message_id: None,
        redelivered: false,
    };
    (
        Delivery::new("e".into(), "ps".into(), event, Utc::now()),
        request,
        source,
    )
}

#[test]
fn a_pause_is_given_back_to_the_age_budget_and_spends_no_attempt() {
    let (c, (delivery, _, _)) = (config(), parts());
    let start = delivery.first_attempt_at;
    let Outcome::Retry {
        mut delivery,
        delay,
    } = paused(delivery, &c, start)
    else {
        panic!("a paused delivery waits");
    };
    assert_eq!(delay, c.retry.initial_delay());
    assert_eq!(delivery.attempts, 0);
    // Back an hour later, paused again, then back after another hour and resumed.
    credit_pause(&mut delivery, start + chrono::Duration::hours(1));
    let Outcome::Retry { mut delivery, .. } =
        paused(delivery, &c, start + chrono::Duration::hours(1))
    else {
        panic!("still paused");
    };
    credit_pause(&mut delivery, start + chrono::Duration::hours(2));
    assert_eq!(delivery.paused_ms, 2 * 3_600_000);
    assert_eq!(delivery.budget_start(), start + chrono::Duration::hours(2));
    // The pass that found it resumed calls the partner: its call is the last entry now,
    // and a later pass has nothing more to give back.
    delivery.record([noted(
        start + chrono::Duration::hours(2),
        AttemptResult::ServerError,
    )]);
    credit_pause(&mut delivery, start + chrono::Duration::hours(3));
    assert_eq!(delivery.paused_ms, 2 * 3_600_000);
}

#[test]
fn what_follows_a_call_that_did_not_deliver() {
    let (c, (delivery, request, source)) = (config(), parts());
    let taken = Taken {
        source: &source,
        at: std::time::Instant::now(),
    };
    let now = delivery.first_attempt_at;
    let failed = || NotNow::Failed {
        retry_after: None,
        why: "HTTP 503".into(),
    };
    match after(
        failed(),
        delivery.clone(),
        &c,
        &request,
        None,
        &taken,
        (now, 0.0),
    ) {
        Outcome::Retry { delivery, delay } => {
            assert_eq!(delay, c.retry.initial_delay());
            assert_eq!(delivery.retries, 1, "a failure takes a backoff step");
        }
        _ => panic!("a retry"),
    }
    match after(
        NotNow::CircuitOpen(Duration::from_secs(600)),
        delivery.clone(),
        &c,
        &request,
        None,
        &taken,
        (now, 0.0),
    ) {
        Outcome::Retry { delivery, delay } => {
            assert_eq!(delay, Duration::from_secs(600));
            assert_eq!(delivery.retries, 0, "waiting for the circuit takes none");
            assert_eq!(delivery.history[0].result, "circuit_open");
        }
        _ => panic!("a retry"),
    }
    let rejected = after(
        NotNow::Rejected("HTTP 404".into()),
        delivery.clone(),
        &c,
        &request,
        None,
        &taken,
        (now, 0.0),
    );
    assert!(matches!(rejected, Outcome::Dead(e) if e.reason == Reason::PartnerRejected));
    let late = now + chrono::Duration::hours(48);
    let spent = after(failed(), delivery, &c, &request, None, &taken, (late, 0.0));
    assert!(
        matches!(spent, Outcome::Dead(e) if e.reason == Reason::RetriesExhausted && e.detail.starts_with("HTTP 503; gave up"))
    );
}

#[test]
fn a_click_older_than_its_lifetime_is_not_sent() {
    let c = config();
    let now = Utc::now();
    assert_eq!(click_expired(&c, None, now), None);
    assert_eq!(
        click_expired(&c, Some(now - chrono::Duration::days(29)), now),
        None
    );
    let old = click_expired(&c, Some(now - chrono::Duration::days(31)), now).unwrap();
    assert!(old.contains("click lifetime of 30 days"), "{old}");
}
