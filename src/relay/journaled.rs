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
use crate::event::ConversionEvent;
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
        if let (Fate::Ack, Some(journal)) = (&fate, &self.journal) {
            for entry in entries {
                // A full buffer drops the entry and counts it; the delivery is not held.
                let _ = journal.record(entry);
            }
        }
        fate
    }

    fn entries(
        &self,
        attempted: &[(Option<&Destination>, Attempted)],
        about: &About<'_>,
    ) -> Vec<Entry> {
        let tier = |delay: Duration| crate::retry::tier_label(self.topology.tier(delay).0);
        let mut all = Vec::new();
        for (dest, a) in attempted {
            let Some(dest) = dest else { continue };
            let mut these = entries(dest.name(), a, about, &tier);
            for e in &mut these {
                if let Some(r) = &mut e.response {
                    self.config.secrets.scrub_in_place(r);
                }
            }
            all.append(&mut these);
        }
        if let Some(first) = all.first_mut() {
            first.event = Some(about.raw.to_owned());
        }
        all
    }
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
pub(super) const IN_PROCESS: &str = "in_process";

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
    let event = about.event;
    let base = |attempt: u32, at, outcome| Entry {
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
        recovery: about.recovery.map(str::to_owned),
        event: None,
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
