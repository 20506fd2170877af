//! What the journal is told of a message's attempts, once their outcomes are recorded: one
//! entry per partner call, the last one carrying the attempt's outcome; one entry for an
//! outcome reached without a call (a duplicate, a superseded status, a wait). Built by pure
//! functions before the outcomes are recorded, handed to the journal only after the message
//! is settled, so that the journal never tells of an outcome the broker did not take.

use std::time::Duration;

use chrono::Utc;

use super::Relay;
use super::destination::Destination;
use super::outcome::{Attempted, Outcome};
use super::session::Recorder;
use super::settle::Fate;
use crate::contract::event::ConversionEvent;
use crate::journal::{self, Entry};

/// The event a message's attempts were for, as the journal keeps it.
pub(super) struct About<'a> {
    pub event: &'a ConversionEvent,
    /// The event as published (kept once per event).
    pub raw: &'a str,
    /// The recovery the delivery was sent again by.
    pub recovery: Option<&'a str>,
}

impl Relay {
    /// Records every attempt's outcome (see [`Relay::record_all`]), then tells the journal.
    /// An outcome the store already holds (delivered, duplicate, superseded) is told whatever
    /// becomes of the message; a retry or a dead letter only once the broker confirmed it.
    pub(super) async fn record_attempts(
        &self,
        attempted: Vec<(Option<&Destination>, Attempted)>,
        about: About<'_>,
        recorder: &Recorder,
    ) -> Fate {
        let entries = match &self.journal {
            Some(_) => self.entries(&attempted, &about),
            None => Vec::new(),
        };
        let outcomes = attempted.into_iter().map(|(d, a)| (d, a.outcome)).collect();
        let fate = self.record_all(outcomes, recorder).await;
        if let Some(journal) = &self.journal {
            let settled = matches!(fate, Fate::Ack);
            for (durable, these) in entries {
                if durable || settled {
                    // A full buffer drops an entry and counts it; the delivery is not held.
                    these.into_iter().for_each(|e| {
                        let _ = journal.record(e);
                    });
                }
            }
        }
        fate
    }

    /// Each attempt's entries, with whether its outcome is durable before the message is
    /// settled. The event's body goes with each destination's last entry.
    fn entries(
        &self,
        attempted: &[(Option<&Destination>, Attempted)],
        about: &About<'_>,
    ) -> Vec<(bool, Vec<Entry>)> {
        let tier = |delay: Duration| crate::config::retry::tier_label(self.topology.tier(delay).0);
        let mut all = Vec::new();
        for (dest, a) in attempted {
            let Some(dest) = dest else { continue };
            let mut these = entries(dest.name(), a, about, &tier);
            // Scrubbed whole, then cut, as a dead letter's answer is.
            for e in &mut these {
                if let Some(r) = &mut e.response {
                    *r = self
                        .config
                        .secrets
                        .scrub_and_cut(r, crate::relay::deadletter::SNIPPET_MAX);
                }
            }
            if let Some(last) = these.last_mut() {
                last.event = Some(about.raw.to_owned());
            }
            let trace_id = self.trace_id_now();
            if trace_id.is_some() {
                these
                    .iter_mut()
                    .for_each(|e| e.trace_id.clone_from(&trace_id));
            }
            all.push((stored_before_settling(&a.outcome), these));
        }
        all
    }
}

impl Relay {
    /// Tells the journal of an event no destination took, once its dead letter is confirmed:
    /// one entry without a destination, holding the event, so that a destination added later
    /// can be given it (`recover --outcome any`).
    pub(super) fn journal_unroutable(&self, event: &ConversionEvent, raw: &str) {
        let Some(journal) = &self.journal else {
            return;
        };
        let unroutable = crate::contract::reason::Reason::Unroutable
            .as_str()
            .to_owned();
        let outcome = journal::Outcome::DeadLettered(unroutable);
        let mut only = entry(
            event,
            journal::NO_DESTINATION,
            None,
            (0, Utc::now(), outcome),
        );
        only.event = Some(raw.to_owned());
        only.trace_id = self.trace_id_now();
        let _ = journal.record(only);
    }
}

/// An entry about `event` at `destination`: its attempt number, time and outcome, nothing
/// of a call yet.
fn entry(
    event: &ConversionEvent,
    destination: &str,
    recovery: Option<&str>,
    (attempt, at, outcome): (u32, chrono::DateTime<Utc>, journal::Outcome),
) -> Entry {
    Entry {
        event_id: event.event_id.clone(),
        order_id: event.order.as_ref().and_then(|o| o.id.clone()),
        event_type: event.kind.as_str().to_owned(),
        destination: destination.to_owned(),
        attempt,
        at,
        outcome,
        http_status: None,
        error_class: None,
        latency_ms: None,
        request: None,
        response: None,
        recovery: recovery.map(str::to_owned),
        trace_id: None,
        event: None,
    }
}

/// Whether an outcome is durable before its message is settled: the store recorded it.
pub(super) fn stored_before_settling(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Delivered { .. } | Outcome::Duplicate { .. } | Outcome::Superseded { .. }
    )
}

/// The outcome as the journal writes it, and the delivery's partner calls so far when the
/// outcome says.
pub(super) fn journal_outcome(
    outcome: &Outcome,
    tier: &dyn Fn(Duration) -> String,
) -> (journal::Outcome, Option<u32>) {
    match outcome {
        Outcome::Delivered { attempts, .. } => (journal::Outcome::Delivered, Some(*attempts)),
        Outcome::Duplicate { .. } => (journal::Outcome::Duplicate, None),
        Outcome::Superseded { .. } => (journal::Outcome::Superseded, None),
        Outcome::Retry { delivery, delay } => (
            journal::Outcome::RetryScheduled(tier(*delay)),
            Some(delivery.attempts),
        ),
        Outcome::Dead(env) => (
            journal::Outcome::DeadLettered(env.reason.as_str().to_owned()),
            Some(env.attempts),
        ),
    }
}

/// The tier an in-process try waits in, as the journal names it.
pub(super) const IN_PROCESS: &str = journal::IN_PROCESS;

/// One destination's entries: a call followed by another call of the same attempt was
/// retried in-process; the last call (or the attempt itself, when it made none) carries the
/// attempt's outcome.
pub(super) fn entries(
    destination: &str,
    attempted: &Attempted,
    about: &About<'_>,
    tier: &dyn Fn(Duration) -> String,
) -> Vec<Entry> {
    let (last, attempts) = journal_outcome(&attempted.outcome, tier);
    let base = |attempt: u32, at, outcome| {
        entry(
            about.event,
            destination,
            about.recovery,
            (attempt, at, outcome),
        )
    };
    if attempted.calls.is_empty() {
        let mut only = base(attempts.unwrap_or(0), Utc::now(), last);
        only.request.clone_from(&attempted.request);
        return vec![only];
    }
    let n = attempted.calls.len();
    attempted
        .calls
        .iter()
        .enumerate()
        .map(|(i, call)| {
            let outcome = if i + 1 == n {
                last.clone()
            } else {
                journal::Outcome::RetryScheduled(IN_PROCESS.to_owned())
            };
            Entry {
                http_status: call.status,
                error_class: call.error_class.map(str::to_owned),
                latency_ms: Some(call.latency_ms),
                request: attempted.request.clone(),
                response: call.snippet.clone(),
                ..base(call.attempt, call.at, outcome)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::outcome::Call;

    fn event() -> ConversionEvent {
        let raw = serde_json::value::RawValue::from_string(
            r#"{"event_id":"e1","type":"order","occurred_at":"2026-11-20T10:00:00Z",
                "order":{"id":"o1","amount":"10.00","currency":"EUR"}}"#
                .into(),
        )
        .unwrap();
        crate::contract::event::from_raw(&raw).unwrap()
    }

    fn call(attempt: u32, status: u16) -> Call {
        Call {
            at: Utc::now(),
            attempt,
            status: Some(status),
            error_class: None,
            latency_ms: 3.0,
            snippet: Some(format!("answered {status}")),
        }
    }

    #[test]
    fn each_call_is_an_entry_and_the_last_carries_the_outcome() {
        let e = event();
        let about = About {
            event: &e,
            raw: "{}",
            recovery: Some("r1"),
        };
        let attempted = Attempted {
            outcome: Outcome::Delivered {
                attempts: 2,
                occurred_at: e.occurred_at,
            },
            request: Some("GET /x".into()),
            calls: vec![call(1, 503), call(2, 200)],
        };
        let tier = |_: Duration| "30s".to_owned();
        let got = entries("hoqu", &attempted, &about, &tier);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].outcome,
            journal::Outcome::RetryScheduled(IN_PROCESS.into())
        );
        assert_eq!((got[0].attempt, got[0].http_status), (1, Some(503)));
        assert_eq!(got[1].outcome, journal::Outcome::Delivered);
        assert_eq!(got[1].order_id.as_deref(), Some("o1"));
        assert!(got.iter().all(|x| x.recovery.as_deref() == Some("r1")));
        assert!(got.iter().all(|x| x.request.as_deref() == Some("GET /x")));

        let no_call: Attempted = Outcome::Duplicate {
            event_id: "e1".into(),
        }
        .into();
        let got = entries("hoqu", &no_call, &about, &tier);
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].outcome.clone(), got[0].http_status),
            (journal::Outcome::Duplicate, None)
        );
    }

    #[test]
    fn only_what_the_store_holds_is_told_before_the_message_is_settled() {
        let e = event();
        assert!(stored_before_settling(&Outcome::Delivered {
            attempts: 1,
            occurred_at: e.occurred_at
        }));
        assert!(stored_before_settling(&Outcome::Superseded {
            event_id: "e1".into(),
            status: "approved"
        }));
        let raw = serde_json::value::RawValue::from_string("{}".into()).unwrap();
        let retry = Outcome::Retry {
            delivery: crate::relay::delivery::Delivery::new(
                "e1".into(),
                "d".into(),
                raw,
                Utc::now(),
            ),
            delay: Duration::from_secs(30),
        };
        assert!(!stored_before_settling(&retry));
        let (o, n) = journal_outcome(&retry, &|d| format!("{}s", d.as_secs()));
        assert_eq!(
            (o, n),
            (journal::Outcome::RetryScheduled("30s".into()), Some(0))
        );
    }
}
