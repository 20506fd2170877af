//! One message, from its bytes to its fate. An event is decoded once and planned: which
//! destinations take it, and the request each would send. A delivery message brings one event
//! for one destination. Each delivery is attempted, every outcome recorded, and the message's
//! fate decided. A panic while processing is settled too: the broker dead-letters the message
//! instead of redelivering it into the same crash.

use chrono::Utc;
use futures_util::FutureExt;
use lapin::message::Delivery as Message;

use super::Relay;
use super::destination::Destination;
use super::journaled::About;
use super::outcome::{Attempted, Outcome, Taken};
use super::session::{Queue, Recorder};
use super::settle::Fate;
use crate::config::DestinationConfig;
use crate::contract::event::{self, ConversionEvent, Decoded, Encoding};
use crate::contract::partner::{RenderError, Request};
use crate::contract::reason::Reason;
use crate::relay::deadletter::{Envelope, Source};
use crate::relay::delivery::Delivery;
use crate::relay::trace::Pass;

/// Why a message's body is not an event.
enum Refused {
    /// Refused whole: the broker moves it to the dead-letter queue as it is.
    Whole,
    /// A dead letter for the whole message.
    Dead(Box<Envelope>),
}

/// What an event asks of the relay.
pub enum Plan<'d, D> {
    /// No attribution: not the relay's to send; acknowledged without a request.
    Skip,
    /// No destination takes it: a dead letter `unroutable` with this detail.
    Unroutable(String),
    /// The destinations that take it, in the config's order, each with the request it would
    /// send or why it cannot build one.
    Send(Vec<(&'d D, Result<Request, RenderError>)>),
}

impl AsRef<DestinationConfig> for DestinationConfig {
    fn as_ref(&self) -> &DestinationConfig {
        self
    }
}

impl AsRef<DestinationConfig> for Destination {
    fn as_ref(&self) -> &DestinationConfig {
        &self.config
    }
}

/// Routes and renders `event` over `destinations`: the one place that decides where an event
/// goes and what it says there, for the relay, the `render` command and the tests.
pub fn plan<'d, D: AsRef<DestinationConfig>>(
    destinations: &'d [D],
    event: &ConversionEvent,
) -> Plan<'d, D> {
    let Some(attribution) = &event.attribution else {
        return Plan::Skip;
    };
    let chosen: Vec<_> = destinations
        .iter()
        .filter(|d| d.as_ref().matches(event))
        .map(|d| (d, d.as_ref().render(event)))
        .collect();
    if chosen.is_empty() {
        return Plan::Unroutable(format!(
            "no destination matches network {:?}, type {}, publisher {:?}",
            attribution.network,
            event.kind,
            attribution.publisher_id.as_deref().unwrap_or("")
        ));
    }
    Plan::Send(chosen)
}

impl Relay {
    /// Processes one message and decides how to settle it.
    pub(super) async fn handle(&self, queue: Queue, msg: Message, recorder: &Recorder) -> Fate {
        let at = std::time::Instant::now();
        let source = Source {
            queue: match queue {
                Queue::Events => self.topology.events.clone(),
                Queue::Deliveries => self.topology.deliveries.clone(),
            },
            routing_key: msg.routing_key.to_string(),
            message_id: msg.properties.message_id().as_ref().map(|s| s.to_string()),
            redelivered: msg.redelivered,
        };
        let taken = Taken {
            source: &source,
            at,
        };
        // Each way is boxed: the task that carries a message stays small (it is moved as it
        // is spawned), whichever way is the larger.
        let work = async {
            match queue {
                Queue::Events => Box::pin(self.process_event(&msg, &taken, recorder)).await,
                Queue::Deliveries => {
                    Box::pin(self.process_delivery(&msg.data, &taken, recorder)).await
                }
            }
        };
        let work = std::panic::AssertUnwindSafe(work).catch_unwind();
        let done = self.in_message_context(queue, &msg, &source, work).await;
        done.unwrap_or_else(|_| {
            tracing::error!(message = "processing panicked; the broker dead-letters the message", queue = %source.queue);
            Fate::Refuse
        })
    }

    /// An event from the events queue: decode, plan, attempt every destination at once.
    async fn process_event(&self, msg: &Message, taken: &Taken<'_>, recorder: &Recorder) -> Fate {
        let decoded = match self.decode(msg, taken) {
            Ok(d) => d,
            Err(Refused::Whole) => return Fate::Refuse,
            Err(Refused::Dead(env)) => {
                return self
                    .record_all(vec![(None, Outcome::Dead(env))], recorder)
                    .await;
            }
        };
        let event = &decoded.event;
        self.trace_event(event);
        self.metrics
            .events_consumed
            .with_label_values(&[event.kind.as_str()])
            .inc();
        let planned = match plan(self.destinations.as_slice(), event) {
            Plan::Skip => {
                self.metrics.events_skipped.inc();
                tracing::debug!(message = "no attribution; skipped", event_id = %event.event_id);
                return Fate::Ack;
            }
            Plan::Unroutable(detail) => {
                let env = Envelope::for_message(
                    Reason::Unroutable,
                    detail,
                    decoded.raw.get().as_bytes(),
                    Some(event.event_id.clone()),
                    taken.source.clone(),
                );
                let fate = self
                    .record_all(vec![(None, Outcome::Dead(Box::new(env)))], recorder)
                    .await;
                if matches!(fate, Fate::Ack) {
                    self.journal_unroutable(event, decoded.raw.get());
                }
                return fate;
            }
            Plan::Send(planned) => planned,
        };
        let now = Utc::now();
        let attempts = planned
            .into_iter()
            .map(|(dest, request)| self.attempt_alone(dest, request, &decoded, now, taken));
        let attempted = futures_util::future::join_all(attempts).await;
        let raw = decoded.raw.get();
        let about = About {
            event,
            raw,
            recovery: None,
        };
        self.record_attempts(attempted, about, recorder).await
    }

    /// A message's body, its content encoding undone, read into an event; or why not.
    fn decode(&self, msg: &Message, taken: &Taken<'_>) -> Result<Decoded, Refused> {
        let max = self.config.worker.max_event_bytes;
        let invalid = || {
            self.metrics
                .events_consumed
                .with_label_values(&["invalid"])
                .inc()
        };
        if msg.data.len() > max {
            // Too large to wrap in an envelope safely: the broker moves the original message
            // to the dead-letter queue whole (x-death reason "rejected"), nothing lost.
            invalid();
            self.metrics
                .dead_letters
                .with_label_values(&["none", Reason::EventTooLarge.as_str()])
                .inc();
            tracing::warn!(message = "dead-lettered", reason = %Reason::EventTooLarge, size = msg.data.len(), limit = max);
            return Err(Refused::Whole);
        }
        let dead = |e: event::ParseError, body: &[u8]| {
            invalid();
            let env =
                Envelope::for_message(e.reason(), e.to_string(), body, None, taken.source.clone());
            Refused::Dead(Box::new(env))
        };
        let encoding = msg
            .properties
            .content_encoding()
            .as_ref()
            .map(|e| e.as_str());
        let body = Encoding::named(encoding)
            .and_then(|e| event::inflate(&msg.data, e, max))
            .map_err(|e| dead(e, &msg.data))?;
        event::decode(&body, max).map_err(|e| dead(e, &body))
    }

    /// One destination's attempt, on its own: a crash there is that destination's dead letter,
    /// and the other destinations' calls (maybe already accepted by their partners) go on and
    /// are recorded.
    async fn attempt_alone<'d>(
        &self,
        dest: &'d Destination,
        request: Result<Request, RenderError>,
        decoded: &Decoded,
        now: chrono::DateTime<Utc>,
        taken: &Taken<'_>,
    ) -> (Option<&'d Destination>, Attempted) {
        let event = &decoded.event;
        let delivery = || {
            Delivery::new(
                event.event_id.clone(),
                dest.name().to_owned(),
                decoded.raw.clone(),
                now,
            )
        };
        let attempt = self.attempt(dest, event, delivery(), request, true, taken);
        // Awaited where it is made when tracing is off: a future handed on by value is copied
        // whole at each hand, and an attempt's is large. With tracing on, the span takes it
        // boxed.
        let attempted = match &self.trace {
            None => std::panic::AssertUnwindSafe(attempt).catch_unwind().await,
            Some(_) => {
                let traced = self.in_delivery_span(dest, Pass::Event, Box::pin(attempt));
                std::panic::AssertUnwindSafe(traced).catch_unwind().await
            }
        };
        let outcome = attempted.unwrap_or_else(|_| {
                tracing::error!(message = "processing a delivery panicked; it is dead-lettered", destination = dest.name(), event_id = %event.event_id);
                let detail = "processing this delivery crashed the relay".to_owned();
                Outcome::dead(Reason::Poison, detail, &delivery(), None, None, taken).into()
            });
        (Some(dest), outcome)
    }

    /// A retry from the deliveries queue: one event, one destination.
    async fn process_delivery(&self, body: &[u8], taken: &Taken<'_>, recorder: &Recorder) -> Fate {
        let delivery: Delivery = match serde_json::from_slice(body) {
            Ok(d) => d,
            Err(e) => {
                let detail = format!("not a delivery message: {e}");
                return self
                    .dead_message(Reason::InvalidEvent, detail, body, taken, recorder)
                    .await;
            }
        };
        let Some(dest) = self.destinations.find(&delivery.destination) else {
            let detail = format!(
                "destination {:?} is not in the configuration any more",
                delivery.destination
            );
            let dead = Outcome::dead(Reason::Unroutable, detail, &delivery, None, None, taken);
            return self.record_all(vec![(None, dead)], recorder).await;
        };
        let event = match event::from_raw(&delivery.event) {
            Ok(e) => e,
            Err(e) => {
                let dead = Outcome::dead(e.reason(), e.to_string(), &delivery, None, None, taken);
                return self.record_all(vec![(Some(dest), dead)], recorder).await;
            }
        };
        self.trace_event(&event);
        let request = dest.config.render(&event);
        let raw = self.journal.is_some().then(|| delivery.event.clone());
        let recovery = delivery.recovery.clone();
        let attempt = self.attempt(dest, &event, delivery, request, false, taken);
        let attempted = match &self.trace {
            None => attempt.await,
            Some(_) => {
                self.in_delivery_span(dest, Pass::Retry, Box::pin(attempt))
                    .await
            }
        };
        let raw = raw.as_deref().map_or("", |r| r.get());
        let about = About {
            event: &event,
            raw,
            recovery: recovery.as_deref(),
        };
        self.record_attempts(vec![(Some(dest), attempted)], about, recorder)
            .await
    }

    /// Dead-letters a whole message that failed before any destination was attempted.
    async fn dead_message(
        &self,
        reason: Reason,
        detail: String,
        body: &[u8],
        taken: &Taken<'_>,
        recorder: &Recorder,
    ) -> Fate {
        let env = Envelope::for_message(reason, detail, body, None, taken.source.clone());
        self.record_all(vec![(None, Outcome::Dead(Box::new(env)))], recorder)
            .await
    }
}
