//! What became of one delivery, and the pure decisions that say so: after the partner calls of
//! an attempt, delivered, another try later (and when), or a dead letter with its reason; and
//! the waits that make no call at all.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::DestinationConfig;
use crate::contract::classify::Verdict;
use crate::contract::partner::Request;
use crate::contract::reason::Reason;
use crate::relay::deadletter::{Envelope, LastAnswer, Source};
use crate::relay::delivery::{AttemptRecord, AttemptResult, Delivery};
use crate::relay::retry::{Cause, Step, next_step};

/// Where a message came from, and when it was taken off its queue.
pub(super) struct Taken<'a> {
    pub source: &'a Source,
    pub at: std::time::Instant,
}

/// What became of one event at one destination.
pub(super) enum Outcome {
    /// Accepted by the partner, after this many calls in all.
    Delivered {
        attempts: u32,
        occurred_at: DateTime<Utc>,
    },
    /// Accepted before (a redelivery, a producer's retry, a replay): not sent again.
    Duplicate {
        event_id: String,
    },
    /// A status not higher than one already sent for its conversion: not sent.
    Superseded {
        event_id: String,
        status: &'static str,
    },
    /// To be tried again from a delay tier.
    Retry {
        delivery: Delivery,
        delay: Duration,
    },
    Dead(Box<Envelope>),
}

impl Outcome {
    /// A dead letter for a delivery.
    pub fn dead(
        reason: Reason,
        detail: String,
        delivery: &Delivery,
        request: Option<&Request>,
        last: Option<&LastAnswer>,
        taken: &Taken<'_>,
    ) -> Outcome {
        Outcome::Dead(Box::new(Envelope::for_delivery(
            reason,
            detail,
            delivery,
            request,
            last,
            taken.source.clone(),
        )))
    }
}

/// One partner call, as the journal keeps it.
#[derive(Clone, Debug)]
pub(super) struct Call {
    pub at: DateTime<Utc>,
    /// The delivery's partner calls up to and including this one.
    pub attempt: u32,
    pub status: Option<u16>,
    /// For a call without an HTTP answer: `timeout`, `connect_error`.
    pub error_class: Option<&'static str>,
    pub latency_ms: f64,
    /// The start of the partner's answer, as the relay keeps it (scrubbed before it is cut).
    pub snippet: Option<String>,
}

/// An attempt's outcome with what the journal is told besides: the request as sent (secrets
/// redacted, JSON) and every partner call, in order.
pub(super) struct Attempted {
    pub outcome: Outcome,
    pub request: Option<String>,
    pub calls: Vec<Call>,
}

impl From<Outcome> for Attempted {
    fn from(outcome: Outcome) -> Attempted {
        Attempted {
            outcome,
            request: None,
            calls: Vec::new(),
        }
    }
}

/// Why a delivery waits without calling the partner; kept in its history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wait {
    /// Another worker holds its claim.
    ClaimedElsewhere,
    /// Its claim was lost before the call went out.
    ClaimLost,
    /// The store did not answer.
    StoreUnavailable,
    /// Another status of the same conversion is being sent.
    ConversionBusy,
    /// An update whose conversion has not been sent yet.
    WaitingForConversion,
}

/// The destination is paused: the delivery waits a first delay, no call made (no attempt is
/// spent), and looks again.
pub(super) fn paused(
    mut delivery: Delivery,
    config: &DestinationConfig,
    now: DateTime<Utc>,
) -> Outcome {
    delivery.record([noted(now, AttemptResult::Paused)]);
    Outcome::Retry {
        delivery,
        delay: config.retry.initial_delay(),
    }
}

/// Gives back to the age budget the time the delivery has waited since a pause last held it
/// (whether the destination is still paused or not): the whole of a pause is given back, as
/// the clock measured it. Called once per pass of a delivery, before the pass adds its own
/// entries to the history (a pass always adds one: a pause, a call or a wait).
pub(super) fn credit_pause(delivery: &mut Delivery, now: DateTime<Utc>) {
    if let Some(last) = delivery.history.last()
        && last.result == AttemptResult::Paused
    {
        let waited = (now - last.at).num_milliseconds().max(0).unsigned_abs();
        delivery.paused_ms = delivery.paused_ms.saturating_add(waited);
    }
}

impl From<Wait> for AttemptResult {
    fn from(w: Wait) -> Self {
        match w {
            Wait::ClaimedElsewhere => AttemptResult::ClaimedElsewhere,
            Wait::ClaimLost => AttemptResult::ClaimLost,
            Wait::StoreUnavailable => AttemptResult::StoreUnavailable,
            Wait::ConversionBusy => AttemptResult::ConversionBusy,
            Wait::WaitingForConversion => AttemptResult::WaitingForConversion,
        }
    }
}

/// A history entry for a try that made no call.
pub(super) fn noted(at: DateTime<Utc>, result: AttemptResult) -> AttemptRecord {
    AttemptRecord {
        at,
        result,
        status: None,
        error: None,
    }
}

/// The delivery waits in the first delay tier and looks again, no call made.
pub(super) fn wait(
    mut delivery: Delivery,
    why: Wait,
    config: &DestinationConfig,
    now: DateTime<Utc>,
) -> Outcome {
    delivery.record([noted(now, why.into())]);
    Outcome::Retry {
        delivery,
        delay: config.retry.initial_delay(),
    }
}

/// Why a delivery was not delivered now, as the partner calls left it.
pub(super) enum NotNow {
    /// The partner's circuit is open for this much longer; no call was made.
    CircuitOpen(Duration),
    /// The partner refused it for good.
    Rejected(String),
    /// The partner failed in a way worth retrying.
    Failed {
        retry_after: Option<Duration>,
        why: String,
    },
}

impl From<Verdict> for Option<NotNow> {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Delivered => None,
            Verdict::Reject { why } => Some(NotNow::Rejected(why)),
            Verdict::Retry { retry_after, why } => Some(NotNow::Failed { retry_after, why }),
        }
    }
}

/// What follows a delivery that was not delivered now: a retry after a delay, or a dead letter
/// (`partner_rejected`, or `retries_exhausted` once the budget is spent). `unit` in [0, 1) is
/// the jitter's draw.
pub(super) fn after(
    not_now: NotNow,
    mut delivery: Delivery,
    config: &DestinationConfig,
    request: &Request,
    last: Option<&LastAnswer>,
    taken: &Taken<'_>,
    (now, unit): (DateTime<Utc>, f64),
) -> Outcome {
    let policy = &config.retry;
    let (cause, why) = match not_now {
        NotNow::Rejected(why) => {
            let dead = Outcome::dead(
                Reason::PartnerRejected,
                why,
                &delivery,
                Some(request),
                last,
                taken,
            );
            return dead;
        }
        NotNow::CircuitOpen(open_for) => {
            delivery.record([noted(now, AttemptResult::CircuitOpen)]);
            let why = format!(
                "{}'s circuit stayed open until the retry budget ran out",
                config.name
            );
            (Cause::CircuitOpen(open_for), why)
        }
        NotNow::Failed { retry_after, why } => {
            let age = (now - delivery.first_attempt_at).num_seconds();
            let why = format!(
                "{why}; gave up after {} attempts over {age} s",
                delivery.attempts
            );
            (Cause::Failed { retry_after }, why)
        }
    };
    match next_step(policy, &delivery, cause, now, unit) {
        Step::Retry(delay) => {
            if let Cause::Failed { .. } = cause {
                delivery.retries += 1;
            }
            Outcome::Retry { delivery, delay }
        }
        Step::GiveUp => Outcome::dead(
            Reason::RetriesExhausted,
            why,
            &delivery,
            Some(request),
            last,
            taken,
        ),
    }
}

/// Why a delivery goes no further than its checks: the click is older than the destination's
/// click lifetime, so the partner would refuse it.
pub(super) fn click_expired(
    config: &DestinationConfig,
    clicked_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<String> {
    let clicked = clicked_at?;
    let lifetime = chrono::Duration::days(i64::from(config.click_lifetime_days));
    (now - clicked > lifetime).then(|| {
        format!(
            "the click of {} is older than {}'s click lifetime of {} days: the partner would refuse it",
            clicked.to_rfc3339(),
            config.name,
            config.click_lifetime_days
        )
    })
}

#[cfg(test)]
mod tests;
