//! Tests of `dlq`.

use std::time::{Duration, Instant};

use super::*;
use crate::relay::deadletter::age::{Measured, measure_due};
use crate::relay::delivery::Delivery;

#[test]
fn nesting_is_measured_outside_strings() {
    assert!(!nested_deeper_than(br#"{"a":[1,{"b":2}]}"#, 3));
    assert!(nested_deeper_than(br#"{"a":[1,{"b":2}]}"#, 2));
    assert!(!nested_deeper_than(br#"{"a":"[[[[[[\"[[["}"#, 1));
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert!(nested_deeper_than(deep.as_bytes(), SHOWN_DEPTH));
    assert!(!nested_deeper_than(b"not json at all", 0));
}

fn delivery(attempts: u32) -> Delivery {
    let event = serde_json::value::RawValue::from_string(r#"{"event_id":"e"}"#.into()).unwrap();
    let old = Utc::now() - chrono::Duration::days(2);
    let mut d = Delivery::new("e".into(), "d".into(), event, old);
    d.attempts = attempts;
    d.retries = 4;
    d.record([crate::relay::delivery::AttemptRecord {
        at: old,
        result: "5xx".into(),
        status: Some(500),
        error: None,
    }]);
    d
}

#[test]
fn a_replayed_delivery_starts_a_fresh_budget() {
    let now = Utc::now();
    let body = serde_json::to_vec(&delivery(9)).unwrap();
    let fresh: Delivery =
        serde_json::from_slice(&fresh_delivery(&body, None, now).unwrap()).unwrap();
    assert_eq!((fresh.attempts, fresh.retries), (0, 0));
    assert_eq!(fresh.first_attempt_at, now);
    assert!(fresh.history.is_empty());
    assert_eq!(fresh.replay_of, None);
    assert_eq!(fresh.event.get(), r#"{"event_id":"e"}"#);

    let id = uuid::Uuid::now_v7();
    let fresh: Delivery =
        serde_json::from_slice(&fresh_delivery(&body, Some(&id.to_string()), now).unwrap())
            .unwrap();
    assert_eq!(fresh.replay_of, Some(id));
    // A message id that is not a dead letter's leaves replay_of as it was.
    let mut again = delivery(3);
    again.replay_of = Some(id);
    let body = serde_json::to_vec(&again).unwrap();
    let fresh: Delivery =
        serde_json::from_slice(&fresh_delivery(&body, Some("x-1"), now).unwrap()).unwrap();
    assert_eq!(fresh.replay_of, Some(id));
}

#[test]
fn what_is_not_a_delivery_is_not_rewritten() {
    let now = Utc::now();
    assert_eq!(fresh_delivery(b"{\"schema\":\"other\"}", None, now), None);
    assert_eq!(fresh_delivery(b"\xff", None, now), None);
    let mut d = serde_json::to_value(delivery(1)).unwrap();
    d["schema"] = "postback-relay.delivery.v0".into();
    assert_eq!(
        fresh_delivery(&serde_json::to_vec(&d).unwrap(), None, now),
        None
    );
}

#[test]
fn the_queue_is_read_again_when_due() {
    let now = Instant::now();
    assert!(measure_due(None, 0, now));
    let m = Measured {
        oldest: None,
        at: now,
        took: Duration::from_secs(3),
        seen: 100,
    };
    assert!(!measure_due(Some(&m), 100, now + Duration::from_secs(59)));
    assert!(!measure_due(Some(&m), 150, now + Duration::from_secs(1)));
    assert!(measure_due(Some(&m), 99, now + Duration::from_secs(1)));
    assert!(measure_due(Some(&m), 100, now + Duration::from_secs(60)));
}
