//! One attempt at one delivery (an event for one destination): the click's lifetime, the
//! delivery's claim, the conversion's status order, then the partner calls (`call`), and the
//! record of an accepted delivery. The claim and the conversion's lock are guards: held as
//! long as the attempt can still send, and let go when it ends, whichever way it ends.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Relay;
use super::destination::Destination;
use super::outcome::{Attempted, Outcome, Taken, Wait, click_expired, credit_pause, paused, wait};
use crate::contract::event::ConversionEvent;
use crate::contract::partner::{RenderError, Request, StatusOf};
use crate::contract::reason::Reason;
use crate::relay::delivery::Delivery;
use crate::shared::{Claim, Held, keys};

/// What the status order says about sending a status now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StatusStep {
    Send,
    /// A later (or the same) status went first: sending this one would undo it.
    Superseded,
    /// An update ahead of its conversion waits for it, within a bound.
    Wait,
}

/// Whose status it is: the relay's own delivery, or a recovery sending again what was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sender {
    Relay,
    Recovery,
}

/// The status order's decision, given the rank already sent for the conversion and how long
/// this delivery has been trying. A recovery may send again the status last sent (the
/// partner lost it), never an earlier one, and an update it sends waits for nothing.
pub(super) fn status_step(
    sent: Option<u8>,
    status: &StatusOf,
    trying_for: chrono::Duration,
    sender: Sender,
) -> StatusStep {
    let again = sender == Sender::Recovery;
    match sent {
        Some(rank) if rank > status.rank || (rank == status.rank && !again) => {
            StatusStep::Superseded
        }
        None if !again && status.update && trying_for < status.wait_for_conversion => {
            StatusStep::Wait
        }
        _ => StatusStep::Send,
    }
}

/// Why an attempt stops before calling the partner.
enum Stop {
    /// With this outcome.
    Now(Outcome),
    /// Waiting in the first delay tier.
    Wait(Wait),
}

/// A status a delivery carries, with its conversion's store key.
type Status = (String, StatusOf);

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
    ) -> Attempted {
        let config = &dest.config;
        let now = Utc::now();
        let mut delivery = delivery;
        credit_pause(&mut delivery, now);
        if self.paused.is_paused(dest.name()) {
            // An operator paused it: the delivery waits, spending no attempt and no age,
            // before anything else is asked (its claim, its conversion's order).
            return paused(delivery, config, now).into();
        }
        let clicked_at = event.attribution.as_ref().and_then(|a| a.clicked_at);
        if let Some(detail) = click_expired(config, clicked_at, now) {
            return Outcome::dead(Reason::ClickExpired, detail, &delivery, None, None, taken)
                .into();
        }
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                let detail = e.to_string();
                let dead = Outcome::dead(Reason::RenderError, detail, &delivery, None, None, taken);
                return dead.into();
            }
        };
        let lease = config.retry.claim_lease(config.timeout());
        // A recovery goes through the status order too: it sends again the status last sent,
        // never one that a later status replaced.
        let status = config
            .partner
            .status_of(event)
            .map(|s| (keys::conversion(&config.name, &s.order), s));
        let (claim, lock) = match self.hold(dest, event, &delivery, &status, lease, now).await {
            Ok(holds) => holds,
            Err(Stop::Now(outcome)) => return outcome.into(),
            Err(Stop::Wait(why)) => return wait(delivery, why, config, now).into(),
        };
        let holds: Vec<&Held> = std::iter::once(&claim).chain(&lock).collect();
        let (mut attempted, sent) = self
            .call_partner(dest, event, delivery, first, &request, &holds, taken)
            .await;
        drop(holds);
        // The request as it was last sent, when it was made again for its try.
        let sent = sent.as_ref().unwrap_or(&request);
        let shown = self.journal.is_some().then(|| self.shown_request(sent));
        if let Outcome::Delivered { .. } = attempted.outcome {
            let rank = status.as_ref().map(|(key, s)| (key.as_str(), s.rank));
            self.record_accepted(claim, lock, rank, dest, event).await;
        }
        attempted.request = shown;
        attempted
    }

    /// A request as the journal keeps it: JSON, every secret redacted.
    fn shown_request(&self, request: &Request) -> String {
        let json = serde_json::to_string(&request.redacted()).unwrap_or_default();
        self.config.secrets.scrub(&json).into_owned()
    }

    /// Takes what the attempt must hold before it calls: the delivery's claim (one attempt
    /// at a time, across replicas; none after it was accepted), and, for a status, its
    /// conversion's lock, with the status order's leave.
    async fn hold(
        &self,
        dest: &Destination,
        event: &ConversionEvent,
        delivery: &Delivery,
        status: &Option<Status>,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<(Held, Option<Held>), Stop> {
        let key = match &delivery.recovery {
            Some(recovery) => keys::recovered(dest.name(), &event.event_id, recovery),
            None => keys::delivery(dest.name(), &event.event_id),
        };
        if !self.health.store_reachable() {
            // Known to be away: no need to wait for it to say so.
            return Err(Stop::Wait(Wait::StoreUnavailable));
        }
        let claim = match self.store.claim(&key, lease).await {
            Ok(Claim::Acquired(held)) => held,
            Ok(Claim::Delivered) => {
                let event_id = event.event_id.clone();
                return Err(Stop::Now(Outcome::Duplicate { event_id }));
            }
            Ok(Claim::Busy) => return Err(Stop::Wait(Wait::ClaimedElsewhere)),
            Err(e) => {
                tracing::error!(message = "store unavailable; the delivery waits", destination = dest.name(), error = %self.shown(&e));
                return Err(Stop::Wait(Wait::StoreUnavailable));
            }
        };
        let Some((conversion, status)) = status else {
            return Ok((claim, None));
        };
        let lock = self
            .status_order(conversion, status, &event.event_id, delivery, lease, now)
            .await?;
        Ok((claim, Some(lock)))
    }

    /// Takes the conversion's lock (its statuses go out one at a time) and decides whether this
    /// status may go now.
    async fn status_order(
        &self,
        conversion: &str,
        status: &StatusOf,
        event_id: &str,
        delivery: &Delivery,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Held, Stop> {
        let unavailable = |e: &dyn std::fmt::Display| {
            tracing::error!(message = "store unavailable; the delivery waits", error = %self.shown(e));
            Stop::Wait(Wait::StoreUnavailable)
        };
        let lock = match self
            .store
            .lock(&keys::conversion_lock(conversion), lease)
            .await
        {
            Ok(Some(lock)) => lock,
            Ok(None) => return Err(Stop::Wait(Wait::ConversionBusy)),
            Err(e) => return Err(unavailable(&e)),
        };
        let sent = self
            .store
            .status(conversion)
            .await
            .map_err(|e| unavailable(&e))?;
        let sender = match delivery.recovery {
            Some(_) => Sender::Recovery,
            None => Sender::Relay,
        };
        match status_step(sent, status, now - delivery.budget_start(), sender) {
            StatusStep::Send => Ok(lock),
            StatusStep::Superseded => Err(Stop::Now(Outcome::Superseded {
                event_id: event_id.to_owned(),
                status: status.name,
            })),
            StatusStep::Wait => Err(Stop::Wait(Wait::WaitingForConversion)),
        }
    }

    /// Records an accepted delivery (and the status it carried), trying a few times over a
    /// store blip: the record is what keeps a redelivery from sending it again. If it cannot
    /// be written, the claim and the conversion's lock are kept until their leases end, so
    /// that nothing goes out again while the record is missing.
    async fn record_accepted(
        &self,
        mut claim: Held,
        lock: Option<Held>,
        rank: Option<(&str, u8)>,
        dest: &Destination,
        event: &ConversionEvent,
    ) {
        let mut recorded = claim.delivered(rank).await;
        for _ in 0..3 {
            if recorded.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            recorded = claim.delivered(rank).await;
        }
        if let Err(e) = recorded {
            tracing::error!(message = "cannot record in the store", destination = dest.name(), event_id = %event.event_id, error = %self.shown(&e));
            claim.keep_until_lease_ends();
            if let Some(lock) = lock {
                lock.keep_until_lease_ends();
            }
        }
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
        let step = |sent, s, t| status_step(sent, &s, t, Sender::Relay);
        assert_eq!(step(None, status(1, false), soon), StatusStep::Send);
        assert_eq!(step(Some(1), status(2, false), soon), StatusStep::Send);
        assert_eq!(step(Some(2), status(2, true), soon), StatusStep::Superseded);
        assert_eq!(step(Some(3), status(1, true), late), StatusStep::Superseded);
        assert_eq!(step(None, status(2, true), soon), StatusStep::Wait);
        assert_eq!(
            step(None, status(2, true), late),
            StatusStep::Send,
            "a final status may be sent directly after the wait"
        );
    }

    #[test]
    fn a_recovery_sends_the_last_status_again_never_an_earlier_one() {
        let soon = chrono::Duration::seconds(10);
        let step = |sent, s| status_step(sent, &s, soon, Sender::Recovery);
        assert_eq!(step(Some(2), status(2, true)), StatusStep::Send, "the same");
        assert_eq!(
            step(Some(2), status(1, false)),
            StatusStep::Superseded,
            "a hold after an approval"
        );
        assert_eq!(step(Some(1), status(2, true)), StatusStep::Send);
        assert_eq!(
            step(None, status(2, true)),
            StatusStep::Send,
            "waits for nothing"
        );
    }
}
