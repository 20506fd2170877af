use super::*;
use crate::journal::Outcome;

/// An entry for the counts: its destination, time, outcome and latency.
pub(in crate::journal) fn entry(
    destination: &str,
    at: &str,
    outcome: Outcome,
    latency_ms: Option<f64>,
) -> Entry {
    Entry {
        event_id: format!("e-{at}"),
        order_id: None,
        event_type: "order".into(),
        destination: destination.into(),
        attempt: 1,
        at: at.parse().unwrap(),
        outcome,
        http_status: None,
        error_class: None,
        latency_ms,
        request: None,
        response: None,
        recovery: None,
        trace_id: None,
        event: None,
    }
}

#[test]
fn a_batch_is_one_tally_per_minute_destination_and_outcome() {
    let ok = Outcome::Delivered;
    let batch = [
        entry("ps", "2026-11-20T14:00:59.999Z", ok.clone(), Some(10.0)),
        entry("ps", "2026-11-20T14:00:00Z", ok.clone(), Some(20.0)),
        entry("ps", "2026-11-20T14:00:30Z", ok.clone(), None),
        entry("ps", "2026-11-20T14:00:31Z", ok.clone(), Some(f64::NAN)),
        entry("ps", "2026-11-20T14:01:00Z", ok.clone(), Some(5.0)),
        entry("ps", "2026-11-20T14:00:01Z", Outcome::Duplicate, None),
        entry("hoqu", "2026-11-20T14:00:02Z", ok.clone(), Some(1.0)),
    ];
    let t = tally(&batch);
    let minute = ms("2026-11-20T14:00:00Z".parse().unwrap());
    let shown: Vec<_> = t
        .iter()
        .map(|t| {
            (
                t.minute - minute,
                t.destination,
                t.outcome,
                t.n,
                t.latency_n,
            )
        })
        .collect();
    assert_eq!(
        shown,
        vec![
            (0, "hoqu", "delivered", 1, 1),
            (0, "ps", "delivered", 4, 2),
            (0, "ps", "duplicate", 1, 0),
            (60_000, "ps", "delivered", 1, 1),
        ]
    );
    assert_eq!(
        t[1].latency_ms_sum, 30.0,
        "a latency that is not a number is left out"
    );
    assert!(tally(&[]).is_empty());
    assert_eq!(
        minute_of(-1),
        -60_000,
        "before the epoch, still the minute's start"
    );
    assert_eq!(
        hour_of("2026-11-20T14:59:59Z".parse().unwrap()),
        "2026-11-20T14:00:00Z".parse::<DateTime<Utc>>().unwrap()
    );
}
