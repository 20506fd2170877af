//! The pipeline's spans, where tracing is on: a message is processed inside its context (its
//! `event` span, or the context a retry carries), each destination's pass inside its
//! `delivery` span; what is published or journaled meanwhile reads the context it runs in.
//! Off, each of these is one `None` tested and the work itself, nothing else.

use std::future::Future;

use lapin::message::Delivery as Message;
use lapin::types::FieldTable;
use opentelemetry::Context;
use opentelemetry::trace::{FutureExt as _, TraceContextExt as _};

use super::Relay;
use super::destination::Destination;
use super::journaled::journal_outcome;
use super::outcome::Attempted;
use super::session::Queue;
use crate::contract::event::ConversionEvent;
use crate::relay::deadletter::Source;
use crate::relay::trace::{self, Pass};

impl Relay {
    /// `work` on a message, inside the message's context: its `event` span (child of the
    /// producer's context, when the headers carry one), or, for a retry, the context its
    /// headers carry.
    pub(super) async fn in_message_context<T>(
        &self,
        queue: Queue,
        msg: &Message,
        source: &Source,
        work: impl Future<Output = T>,
    ) -> T {
        let Some(t) = &self.trace else {
            return work.await;
        };
        let headers = msg.properties.headers().as_ref();
        let mut carried = t.extract(headers);
        if queue == Queue::Deliveries {
            let tiers = format!("{}.retry.", self.config.broker.queue_prefix);
            if let Some(tier) = trace::waited_in(headers, &tiers) {
                carried = carried.with_value(tier);
            }
        }
        let (cx, ours) = t.message_context(
            carried,
            queue == Queue::Deliveries,
            (&source.queue, &source.routing_key),
        );
        let fate = work.with_context(cx.clone()).await;
        if ours {
            cx.span().end();
        }
        fate
    }

    /// Names the event on the message's span, when tracing is on.
    pub(super) fn trace_event(&self, event: &ConversionEvent) {
        if self.trace.is_none() {
            return;
        }
        let cx = Context::current();
        cx.span().set_attributes([
            opentelemetry::KeyValue::new("postback_relay.event_id", event.event_id.clone()),
            opentelemetry::KeyValue::new("postback_relay.event_type", event.kind.as_str()),
        ]);
    }

    /// `attempt` inside a `delivery` span for `dest`, ended with the attempt's outcome.
    pub(super) async fn in_delivery_span(
        &self,
        dest: &Destination,
        pass: Pass,
        attempt: impl Future<Output = Attempted>,
    ) -> Attempted {
        let Some(t) = &self.trace else {
            return attempt.await;
        };
        let cx = t.delivery_span(&Context::current(), &dest.config, pass);
        let attempted = attempt.with_context(cx.clone()).await;
        let tier = |d| crate::config::retry::tier_label(self.topology.tier(d).0);
        let (outcome, attempts) = journal_outcome(&attempted.outcome, &tier);
        trace::delivery_outcome(&cx, outcome.code(), outcome.detail(), attempts);
        attempted
    }

    /// The id of the trace the work in progress is in; `None` when tracing is off.
    pub(super) fn trace_id_now(&self) -> Option<String> {
        self.trace
            .as_ref()
            .and_then(|_| trace::trace_id(&Context::current()))
    }

    /// The headers a message the relay publishes (a retry) carries to go on in the trace of
    /// the work in progress; `None` when tracing is off.
    pub(super) fn trace_headers_now(&self) -> Option<FieldTable> {
        self.trace
            .as_ref()
            .and_then(|_| trace::amqp_headers(&Context::current()))
    }
}
