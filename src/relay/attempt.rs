//! One attempt at one delivery (an event for one destination): the click's lifetime, the
//! delivery's claim, the conversion's status order, the partner's circuit, the calls, and the
//! outcome. The claim and the conversion's lock are guards: held as long as the attempt can
//! still send, and let go when it ends, whichever way it ends.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Relay;
use super::call::End;
use super::destination::Destination;
use crate::circuit::Admit;
use crate::classify::Verdict;
use crate::deadletter::{Envelope, LastAnswer, Source};
use crate::delivery::{AttemptRecord, Delivery};
use crate::event::ConversionEvent;
use crate::partner::{RenderError, Request, StatusOf};
use crate::reason::Reason;
use crate::retry::{Cause, Step, next_step};
use crate::store::{Claim, Held, keys};

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

/// Why a delivery waits without calling the partner; kept in its history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
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

impl Wait {
    fn as_str(self) -> &'static str {
        match self {
            Wait::ClaimedElsewhere => "claimed_elsewhere",
            Wait::ClaimLost => "claim_lost",
            Wait::StoreUnavailable => "store_unavailable",
            Wait::ConversionBusy => "conversion_busy",
            Wait::WaitingForConversion => "waiting_for_conversion",
        }
    }
}

/// What the status order says about sending a status now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StatusStep {
    Send,
    /// A later (or the same) status went first: sending this one would undo it.
    Superseded,
    /// An update ahead of its conversion waits for it, within a bound.
    Wait,
}

/// The status order's decision, given the rank already sent for the conversion and how long
/// this delivery has been trying.
pub(super) fn status_step(
    sent: Option<u8>,
    status: &StatusOf,
    trying_for: chrono::Duration,
) -> StatusStep {
    match sent {
        Some(rank) if rank >= status.rank => StatusStep::Superseded,
        None if status.update && trying_for < status.wait_for_conversion => StatusStep::Wait,
        _ => StatusStep::Send,
    }
}

impl Relay {
    /// One attempt at one destination. `first`: the event's own pass, with the in-process
    /// tries; a retry from a tier calls once.
    pub(super) async fn attempt(
        &self,
        dest: &Destination,
        event: &ConversionEvent,
        delivery: Delivery,
        request: Result<Request, RenderError>,
        first: bool,
        taken: &Taken<'_>,
    ) -> Outcome {
        let config = &dest.config;
        let now = Utc::now();
        let lifetime = chrono::Duration::days(i64::from(config.click_lifetime_days));
        if let Some(clicked) = event.attribution.as_ref().and_then(|a| a.clicked_at)
            && now - clicked > lifetime
        {
            let detail = format!(
                "the click of {} is older than {}'s click lifetime of {} days: the partner would refuse it",
                clicked.to_rfc3339(),
                config.name,
                config.click_lifetime_days
            );
            return Outcome::dead(Reason::ClickExpired, detail, &delivery, None, None, taken);
        }
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                return Outcome::dead(
                    Reason::RenderError,
                    e.to_string(),
                    &delivery,
                    None,
                    None,
                    taken,
                );
            }
        };
        // One attempt at a time per delivery, across replicas; none after it was accepted.
        let lease = config.retry.claim_lease(config.timeout());
        let key = keys::delivery(&config.name, &event.event_id);
        let mut claim = match self.store.claim(&key, lease).await {
            Ok(Claim::Acquired(held)) => held,
            Ok(Claim::Delivered) => {
                return Outcome::Duplicate {
                    event_id: event.event_id.clone(),
                };
            }
            Ok(Claim::Busy) => return wait(delivery, Wait::ClaimedElsewhere, config, now),
            Err(e) => {
                tracing::error!(message = "store unavailable; the delivery waits", destination = %config.name, error = %self.shown(&e));
                return wait(delivery, Wait::StoreUnavailable, config, now);
            }
        };
        let status = config
            .partner
            .status_of(event)
            .map(|s| (keys::conversion(&config.name, &s.order), s));
        let lock = match &status {
            None => None,
            Some((conversion, status)) => match self
                .status_order(conversion, status, &delivery, lease, now)
                .await
            {
                Ok(lock) => Some(lock),
                Err(Stop::Superseded) => {
                    return Outcome::Superseded {
                        event_id: event.event_id.clone(),
                        status: status.name,
                    };
                }
                Err(Stop::Wait(why)) => return wait(delivery, why, config, now),
            },
        };
        let holds: Vec<&Held> = std::iter::once(&claim).chain(&lock).collect();
        let outcome = self
            .calls(dest, event, delivery, first, &request, &holds, taken)
            .await;
        drop(holds);
        if let Outcome::Delivered { .. } = outcome {
            let rank = status.as_ref().map(|(key, s)| (key.as_str(), s.rank));
            // Accepted: record it (and the status it carried), trying a few times over a
            // store blip; the record is what keeps a redelivery from sending it again.
            let mut recorded = claim.delivered(rank).await;
            for _ in 0..3 {
                if recorded.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                recorded = claim.delivered(rank).await;
            }
            if let Err(e) = recorded {
                // The claim and the conversion's lock are kept until their leases end, so
                // that nothing goes out again while the record is missing.
                tracing::error!(message = "cannot record in the store", destination = %config.name, event_id = %event.event_id, error = %self.shown(&e));
                claim.keep_until_lease_ends();
                if let Some(lock) = lock {
                    lock.keep_until_lease_ends();
                }
            }
        }
        outcome
    }

    /// Takes the conversion's lock (its statuses go out one at a time) and decides whether this
    /// status may go now.
    async fn status_order(
        &self,
        conversion: &str,
        status: &StatusOf,
        delivery: &Delivery,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Held, Stop> {
        let lock = match self
            .store
            .lock(&keys::conversion_lock(conversion), lease)
            .await
        {
            Ok(Some(lock)) => lock,
            Ok(None) => return Err(Stop::Wait(Wait::ConversionBusy)),
            Err(e) => {
                tracing::error!(message = "store unavailable; the delivery waits", error = %self.shown(&e));
                return Err(Stop::Wait(Wait::StoreUnavailable));
            }
        };
        let sent = match self.store.status(conversion).await {
            Ok(sent) => sent,
            Err(e) => {
                tracing::error!(message = "store unavailable; the delivery waits", error = %self.shown(&e));
                return Err(Stop::Wait(Wait::StoreUnavailable));
            }
        };
        match status_step(sent, status, now - delivery.first_attempt_at) {
            StatusStep::Send => Ok(lock),
            StatusStep::Superseded => Err(Stop::Superseded),
            StatusStep::Wait => Err(Stop::Wait(Wait::WaitingForConversion)),
        }
    }

    /// Asks the circuit, calls the partner, and decides: delivered, retry, or dead letter.
    #[allow(clippy::too_many_arguments)]
    async fn calls(
        &self,
        dest: &Destination,
        event: &ConversionEvent,
        mut delivery: Delivery,
        first: bool,
        request: &Request,
        holds: &[&Held],
        taken: &Taken<'_>,
    ) -> Outcome {
        let policy = &dest.config.retry;
        let tries = match dest.admit() {
            Admit::Wait(open_for) => {
                // The partner keeps failing: hold the delivery in the retry tiers, no call made.
                delivery.record([record(Utc::now(), "circuit_open")]);
                return match next_step(
                    policy,
                    &delivery,
                    Cause::CircuitOpen(open_for),
                    Utc::now(),
                    rand::random(),
                ) {
                    Step::Retry(delay) => Outcome::Retry { delivery, delay },
                    Step::GiveUp => {
                        let detail = format!(
                            "{}'s circuit stayed open until the retry budget ran out",
                            dest.name()
                        );
                        Outcome::dead(
                            Reason::RetriesExhausted,
                            detail,
                            &delivery,
                            Some(request),
                            None,
                            taken,
                        )
                    }
                };
            }
            Admit::Probe => 1,
            Admit::Call if first => policy.immediate_attempts,
            Admit::Call => 1,
        };
        let report = self
            .call(dest, request, &event.event_id, tries, holds, taken.at)
            .await;
        delivery.attempts += report.tries;
        delivery.record(report.history);
        let verdict = match report.end {
            End::Answered(v) => v,
            End::ClaimLost => return wait(delivery, Wait::ClaimLost, &dest.config, Utc::now()),
            End::StoreUnavailable => {
                return wait(delivery, Wait::StoreUnavailable, &dest.config, Utc::now());
            }
            End::Unsendable(why) => {
                let detail = format!("the HTTP client cannot send this request: {why}");
                return Outcome::dead(
                    Reason::RenderError,
                    detail,
                    &delivery,
                    Some(request),
                    None,
                    taken,
                );
            }
        };
        match verdict {
            Verdict::Delivered => Outcome::Delivered {
                attempts: delivery.attempts,
                occurred_at: event.occurred_at,
            },
            Verdict::Reject { why } => Outcome::dead(
                Reason::PartnerRejected,
                why,
                &delivery,
                Some(request),
                Some(&report.last),
                taken,
            ),
            Verdict::Retry { retry_after, why } => {
                let now = Utc::now();
                match next_step(
                    policy,
                    &delivery,
                    Cause::Failed { retry_after },
                    now,
                    rand::random(),
                ) {
                    Step::Retry(delay) => {
                        delivery.retries += 1;
                        Outcome::Retry { delivery, delay }
                    }
                    Step::GiveUp => {
                        let age = (now - delivery.first_attempt_at).num_seconds();
                        let detail = format!(
                            "{why}; gave up after {} attempts over {age} s",
                            delivery.attempts
                        );
                        Outcome::dead(
                            Reason::RetriesExhausted,
                            detail,
                            &delivery,
                            Some(request),
                            Some(&report.last),
                            taken,
                        )
                    }
                }
            }
        }
    }
}

/// Why the status order stops an attempt.
enum Stop {
    Superseded,
    Wait(Wait),
}

fn record(at: DateTime<Utc>, result: &str) -> AttemptRecord {
    AttemptRecord {
        at,
        result: result.into(),
        status: None,
        error: None,
    }
}

/// The delivery waits in the first delay tier and looks again, no call made.
fn wait(
    mut delivery: Delivery,
    why: Wait,
    config: &crate::config::DestinationConfig,
    now: DateTime<Utc>,
) -> Outcome {
    delivery.record([record(now, why.as_str())]);
    Outcome::Retry {
        delivery,
        delay: config.retry.initial_delay(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(rank: u8, update: bool) -> StatusOf {
        StatusOf {
            order: "o".into(),
            rank,
            name: "approved",
            update,
            wait_for_conversion: chrono::Duration::seconds(300),
        }
    }

    #[test]
    fn statuses_never_go_backwards_and_updates_wait_for_their_conversion() {
        let soon = chrono::Duration::seconds(10);
        let late = chrono::Duration::seconds(301);
        assert_eq!(status_step(None, &status(1, false), soon), StatusStep::Send);
        assert_eq!(
            status_step(Some(1), &status(2, false), soon),
            StatusStep::Send
        );
        assert_eq!(
            status_step(Some(2), &status(2, true), soon),
            StatusStep::Superseded
        );
        assert_eq!(
            status_step(Some(3), &status(1, true), late),
            StatusStep::Superseded
        );
        assert_eq!(status_step(None, &status(2, true), soon), StatusStep::Wait);
        assert_eq!(
            status_step(None, &status(2, true), late),
            StatusStep::Send,
            "a final status may be sent directly after the wait"
        );
    }
}
