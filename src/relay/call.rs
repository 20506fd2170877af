//! The partner calls of one attempt, and what they came to: delivered, another try later
//! (and when), a wait that made no call, or a dead letter. The calls themselves are in
//! `tries` (the in-process tries, in a row) and `send` (one call, behind its last checks).

use chrono::Utc;

use super::Relay;
use super::destination::Destination;
use super::outcome::{Attempted, Call, NotNow, Outcome, Taken, Wait, after, paused, wait};
use super::send::End;
use crate::contract::event::ConversionEvent;
use crate::contract::partner::Request;
use crate::relay::deadletter::LastAnswer;
use crate::relay::delivery::Delivery;
use crate::relay::trace;
use crate::shared::Held;

impl Relay {
    /// Calls the partner (with the in-process tries on the event's `first` pass), each call
    /// behind its waits and checks, and decides: delivered, another try later, or a dead
    /// letter. Gives the last request sent too, when it was made again for its try.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn call_partner(
        &self,
        dest: &Destination,
        event: &ConversionEvent,
        delivery: Delivery,
        first: bool,
        request: &Request,
        holds: &[&Held],
        taken: &Taken<'_>,
    ) -> (Attempted, Option<Request>) {
        let before = delivery.attempts;
        let (outcome, mut calls, sent) = self
            .calls(dest, event, delivery, first, request, holds, taken)
            .await;
        for c in &mut calls {
            c.attempt += before;
        }
        let attempted = Attempted {
            outcome,
            request: None,
            calls,
        };
        (attempted, sent)
    }

    /// [`Relay::call_partner`]'s calls and decision, with the calls made.
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
    ) -> (Outcome, Vec<Call>, Option<Request>) {
        let config = &dest.config;
        let tries = if first {
            config.retry.immediate_attempts
        } else {
            1
        };
        let report = match &self.trace {
            // The calls' spans count the delivery's calls before this pass.
            Some(_) => {
                let report = self.tries(dest, request, event, tries, holds, taken.at);
                let before = trace::Before(delivery.attempts);
                let cx = opentelemetry::Context::current_with_value(before);
                opentelemetry::trace::FutureExt::with_context(Box::pin(report), cx).await
            }
            // Awaited where it is made: a future handed on by value is copied whole.
            None => {
                self.tries(dest, request, event, tries, holds, taken.at)
                    .await
            }
        };
        delivery.attempts += report.tries;
        delivery.record(report.history);
        let (calls, sent) = (report.calls, report.sent);
        let request = sent.as_ref().unwrap_or(request);
        let decide = |not_now, delivery, last: Option<&LastAnswer>| {
            after(
                not_now,
                delivery,
                config,
                request,
                last,
                taken,
                (Utc::now(), rand::random()),
            )
        };
        let dead = |detail: String, delivery: &Delivery| {
            let reason = crate::contract::reason::Reason::RenderError;
            Outcome::dead(reason, detail, delivery, Some(request), None, taken)
        };
        let outcome = match report.end {
            End::Answered(verdict) => match Option::<NotNow>::from(verdict) {
                None => Outcome::Delivered {
                    attempts: delivery.attempts,
                    occurred_at: event.occurred_at,
                },
                Some(not_now) => decide(not_now, delivery, Some(&report.last)),
            },
            End::CircuitOpen(open_for) => decide(NotNow::CircuitOpen(open_for), delivery, None),
            End::ClaimLost => wait(delivery, Wait::ClaimLost, config, Utc::now()),
            End::StoreUnavailable => wait(delivery, Wait::StoreUnavailable, config, Utc::now()),
            End::Paused => paused(delivery, config, Utc::now()),
            End::Unsendable(why) => dead(
                format!("the HTTP client cannot send this request: {why}"),
                &delivery,
            ),
            End::Unrenderable(why) => dead(why, &delivery),
        };
        (outcome, calls, sent)
    }
}
