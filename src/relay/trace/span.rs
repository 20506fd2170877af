//! The relay's spans and their attributes. None holds a secret or a URL: a destination's
//! name and kind, the partner's host, codes (status class, outcome, reason, tier), numbers.
//!
//! - `event` (consumer): one message off the events queue, child of the producer's span;
//!   also a message off the deliveries queue that carries no context.
//! - `delivery`: one destination's pass: the event's own, or a retry's from a delay tier
//!   (then a child of the span the retry's headers name: the event's).
//! - `attempt` (client): one partner call, child of its delivery.

use std::time::Duration;

use opentelemetry::trace::{SpanBuilder, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};

use super::{Tracing, WaitedIn, text};
use crate::config::DestinationConfig;
use crate::contract::classify::{CallResult, Verdict};
use crate::contract::partner::Request;

/// Which pass of a delivery a `delivery` span is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// The event's own pass, with its in-process tries.
    Event,
    /// A retry, from the deliveries queue.
    Retry,
}

impl Pass {
    fn as_str(self) -> &'static str {
        match self {
            Pass::Event => "event",
            Pass::Retry => "retry",
        }
    }
}

impl Tracing {
    /// The context a message is processed in: its `event` span, child of the producer's
    /// context; for a retry that carries a context, that context as it is (the event's span,
    /// whose pass ended before).
    pub fn message_context(
        &self,
        carried: Context,
        retry: bool,
        (queue, routing_key): (&str, &str),
    ) -> (Context, bool) {
        if retry && carried.has_active_span() {
            return (carried, false);
        }
        let span = SpanBuilder::from_name("event")
            .with_kind(SpanKind::Consumer)
            .with_attributes([
                text("messaging.system", "rabbitmq"),
                text("messaging.operation.type", "process"),
                text("messaging.destination.name", queue),
                text("messaging.rabbitmq.destination.routing_key", routing_key),
            ]);
        let span = self.tracer.build_with_context(span, &carried);
        (carried.with_span(span), true)
    }

    /// A `delivery` span for `dest`, child of `parent`.
    pub fn delivery_span(&self, parent: &Context, dest: &DestinationConfig, pass: Pass) -> Context {
        let mut attributes = vec![
            text("postback_relay.destination", dest.name.clone()),
            text("postback_relay.partner", dest.kind.to_string()),
            text("postback_relay.pass", pass.as_str()),
        ];
        if let Some(WaitedIn(tier)) = parent.get::<WaitedIn>() {
            attributes.push(text("postback_relay.waited_in", tier.clone()));
        }
        let span = SpanBuilder::from_name("delivery")
            .with_kind(SpanKind::Internal)
            .with_attributes(attributes);
        parent.with_span(self.tracer.build_with_context(span, parent))
    }

    /// An `attempt` span for a call of `req` to `dest`, child of `parent`. `in_process`: a
    /// try made again at once, in this pass.
    pub fn attempt_span(
        &self,
        parent: &Context,
        dest: &DestinationConfig,
        req: &Request,
        (attempt, in_process): (u32, bool),
    ) -> Context {
        let mut attributes = vec![
            text("postback_relay.destination", dest.name.clone()),
            text("postback_relay.partner", dest.kind.to_string()),
            KeyValue::new("postback_relay.attempt", i64::from(attempt)),
            text("http.request.method", req.method.to_string()),
        ];
        // The host only: a path or a query can hold a key.
        if let Some(host) = req
            .parsed_url
            .as_ref()
            .and_then(|u| u.host_str().map(str::to_owned))
            .or_else(|| {
                url::Url::parse(&req.url)
                    .ok()?
                    .host_str()
                    .map(str::to_owned)
            })
        {
            attributes.push(text("server.address", host));
        }
        // The tier this call came through: again at once, or (a retry's first call) the
        // delay tier it waited in.
        let tier = match (in_process, parent.get::<WaitedIn>()) {
            (true, _) => Some(crate::journal::IN_PROCESS.to_owned()),
            (false, Some(WaitedIn(tier))) => Some(tier.clone()),
            (false, None) => None,
        };
        if let Some(tier) = tier {
            attributes.push(text("postback_relay.retry_tier", tier));
        }
        let span = SpanBuilder::from_name("attempt")
            .with_kind(SpanKind::Client)
            .with_attributes(attributes);
        parent.with_span(self.tracer.build_with_context(span, parent))
    }
}

/// Ends an `attempt` span with what the call came to.
pub fn end_attempt(cx: &Context, result: &CallResult, latency: Duration, verdict: &Verdict) {
    let span = cx.span();
    let mut attributes = vec![
        text("postback_relay.status_class", result.status_class()),
        KeyValue::new("postback_relay.latency_ms", latency.as_secs_f64() * 1000.0),
        text("postback_relay.outcome", call_outcome(verdict)),
    ];
    if let CallResult::Response { status, .. } = result {
        attributes.push(KeyValue::new(
            "http.response.status_code",
            i64::from(*status),
        ));
    }
    span.set_attributes(attributes);
    if !matches!(verdict, Verdict::Delivered) {
        span.set_status(Status::error(result.status_class()));
    }
    span.end();
}

/// What a call's answer means for its delivery: `delivered`, `retry` or `rejected`.
pub fn call_outcome(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Delivered => "delivered",
        Verdict::Retry { .. } => "retry",
        Verdict::Reject { .. } => "rejected",
    }
}

/// Ends a `delivery` span with its outcome: the code (`delivered`, `retry_scheduled`,
/// `dead_lettered`...), the delay tier of a retry or the reason of a dead letter, the
/// partner calls made so far.
pub fn delivery_outcome(cx: &Context, code: &str, detail: Option<&str>, attempts: Option<u32>) {
    let span = cx.span();
    let mut attributes = vec![text("postback_relay.outcome", code.to_owned())];
    match (code, detail) {
        ("retry_scheduled", Some(tier)) => {
            attributes.push(text("postback_relay.retry_tier", tier.to_owned()))
        }
        ("dead_lettered", Some(reason)) => {
            attributes.push(text("postback_relay.reason", reason.to_owned()))
        }
        _ => {}
    }
    if let Some(n) = attempts {
        attributes.push(KeyValue::new("postback_relay.attempts", i64::from(n)));
    }
    span.set_attributes(attributes);
    if code == "dead_lettered" {
        span.set_status(Status::error(detail.unwrap_or("dead-lettered").to_owned()));
    }
    span.end();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_calls_outcome_is_its_verdicts() {
        assert_eq!(call_outcome(&Verdict::Delivered), "delivered");
        let retry = Verdict::Retry {
            retry_after: None,
            why: "HTTP 503".into(),
        };
        assert_eq!(call_outcome(&retry), "retry");
        let reject = Verdict::Reject { why: "404".into() };
        assert_eq!(call_outcome(&reject), "rejected");
    }
}
