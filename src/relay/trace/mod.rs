//! OpenTelemetry traces (`[tracing]`): the W3C trace context a producer put in a message's
//! AMQP headers (`traceparent`, `tracestate`) is continued, or a trace is started; each message
//! gets an `event` span, each destination's pass a `delivery` span, each partner call an
//! `attempt` span. A retry published to a delay tier carries the context in its headers, so
//! the next pass, minutes or hours later, is in the same trace. Spans are exported by
//! `export`, in batches, off the delivery path.
//!
//! Off (no `tracing.otlp_endpoint`), the relay holds no [`Tracing`]: every use is behind an
//! `Option` that is `None`, no header is read, no span or context is made.

mod export;
mod span;

use std::time::Duration;

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use crate::config::tracing::TracingConfig;
use crate::relay::metrics::Metrics;

pub use span::{Pass, delivery_outcome, end_attempt};

/// The delivery's partner calls before the pass in progress, in its context: an `attempt`
/// span tells the delivery's call number, as the journal does.
#[derive(Clone, Copy, Debug)]
pub struct Before(pub u32);

/// `req` with the W3C trace context of `cx`'s span in its headers, for a partner that traces.
pub fn carrying(
    req: &crate::contract::partner::Request,
    cx: &Context,
) -> crate::contract::partner::Request {
    let mut req = req.clone();
    req.headers.extend(http_headers(cx));
    req
}

/// The headers of the W3C trace context, as AMQP headers and HTTP headers alike.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start tracing ([tracing] in the config): {0}")]
pub struct TracingError(String);

/// The relay's tracer and exporter, shared by every generation.
#[derive(Clone)]
pub struct Tracing {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
    exporting: export::Exporting,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tracing")
    }
}

impl Tracing {
    /// Starts the exporter when `config` names an endpoint; `None` when tracing is off.
    /// Needs a tokio runtime: the batching task runs on it.
    pub fn start(
        config: &TracingConfig,
        metrics: &Metrics,
        secrets: &crate::contract::redact::Secrets,
    ) -> Result<Option<Tracing>, TracingError> {
        let Some(url) = config.traces_url() else {
            return Ok(None);
        };
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(config.service_name.clone())
            .build();
        let (processor, exporting) =
            export::start(&url, config.queue_size, &resource, metrics, secrets)?;
        let provider = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_span_processor(processor)
            .build();
        let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "postback-relay");
        Ok(Some(Tracing {
            tracer,
            provider,
            exporting,
        }))
    }

    /// Exports what is queued, within `deadline`, and stops the exporter.
    pub async fn shutdown(&self, deadline: Duration) {
        let _ = self.provider.force_flush();
        self.exporting.stop(deadline).await;
    }

    /// The context a message carries in its headers; an empty one when it carries none (or
    /// one that does not parse).
    pub fn extract(&self, headers: Option<&FieldTable>) -> Context {
        match headers {
            Some(h) => TraceContextPropagator::new().extract(&AmqpHeaders(h)),
            None => Context::new(),
        }
    }
}

/// The trace context of `cx` as AMQP headers, for a message that continues it; `None` when
/// `cx` has no valid span.
pub fn amqp_headers(cx: &Context) -> Option<FieldTable> {
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut table = FieldTable::default();
    TraceContextPropagator::new().inject_context(cx, &mut AmqpInjector(&mut table));
    Some(table)
}

/// The trace context of `cx` as HTTP headers (`traceparent`, and `tracestate` when not empty).
pub fn http_headers(cx: &Context) -> Vec<(String, String)> {
    let mut headers = Vec::with_capacity(2);
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(cx, &mut HttpInjector(&mut headers));
    }
    headers
}

/// The id of the trace `cx` is in (32 lowercase hex digits), when it is in one.
pub fn trace_id(cx: &Context) -> Option<String> {
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// A fresh W3C trace context for a message a producer starts (`postback-relay publish`):
/// a new trace id and span id, sampled.
pub fn new_traceparent() -> String {
    let trace: u128 = rand::random::<u128>().max(1);
    let span: u64 = rand::random::<u64>().max(1);
    format!("00-{trace:032x}-{span:016x}-01")
}

/// The delay tier a retry came through, in a retry's context: its pass's `delivery` span and
/// first `attempt` span name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitedIn(pub String);

/// The delay tier a retry came through: the queue the broker last dead-lettered it from (the
/// first of its `x-death` records), less `tier_prefix` (`{queue_prefix}.retry.`).
pub fn waited_in(headers: Option<&FieldTable>, tier_prefix: &str) -> Option<WaitedIn> {
    let AMQPValue::FieldArray(deaths) = headers?.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(last) = deaths.as_slice().first()? else {
        return None;
    };
    let last = AmqpHeaders(last);
    let queue = last.get("queue")?;
    queue
        .strip_prefix(tier_prefix)
        .map(|tier| WaitedIn(tier.to_owned()))
}

/// The AMQP headers with only a `traceparent`: what a producer without a tracer publishes.
pub fn traceparent_headers(traceparent: &str) -> FieldTable {
    let mut table = FieldTable::default();
    table.insert(
        ShortString::from(TRACEPARENT),
        AMQPValue::LongString(LongString::from(traceparent)),
    );
    table
}

/// A message's headers, read for the propagator: text values only.
struct AmqpHeaders<'a>(&'a FieldTable);

impl Extractor for AmqpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self.0.inner().get(key)? {
            AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
            AMQPValue::ShortString(s) => Some(s.as_str()),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.inner().keys().map(ShortString::as_str).collect()
    }
}

struct AmqpInjector<'a>(&'a mut FieldTable);

impl Injector for AmqpInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(
            ShortString::from(key),
            AMQPValue::LongString(LongString::from(value)),
        );
    }
}

struct HttpInjector<'a>(&'a mut Vec<(String, String)>);

impl Injector for HttpInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if !value.is_empty() {
            self.0.push((key.to_owned(), value));
        }
    }
}

/// An attribute whose value is text.
fn text(key: &'static str, value: impl Into<String>) -> KeyValue {
    KeyValue::new(key, value.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn carried(tp: &str, ts: Option<&str>) -> FieldTable {
        let mut h = traceparent_headers(tp);
        if let Some(ts) = ts {
            h.insert(
                ShortString::from(TRACESTATE),
                AMQPValue::LongString(LongString::from(ts)),
            );
        }
        h
    }

    #[test]
    fn a_context_in_amqp_headers_goes_on_as_it_came() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let h = carried(tp, Some("vendor=x"));
        let cx = TraceContextPropagator::new().extract(&AmqpHeaders(&h));
        assert_eq!(
            trace_id(&cx).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        let out = amqp_headers(&cx).expect("a valid context");
        assert_eq!(AmqpHeaders(&out).get(TRACEPARENT), Some(tp));
        assert_eq!(AmqpHeaders(&out).get(TRACESTATE), Some("vendor=x"));
        let http = http_headers(&cx);
        assert!(http.contains(&(TRACEPARENT.to_owned(), tp.to_owned())));
    }

    #[test]
    fn no_or_a_broken_context_is_no_context() {
        for h in [
            carried("not a traceparent", None),
            carried(
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                None,
            ),
            FieldTable::default(),
        ] {
            let cx = TraceContextPropagator::new().extract(&AmqpHeaders(&h));
            assert_eq!(trace_id(&cx), None);
            assert!(amqp_headers(&cx).is_none());
            assert!(http_headers(&cx).is_empty());
        }
        // A header that is not text is not read.
        let mut h = FieldTable::default();
        h.insert(ShortString::from(TRACEPARENT), AMQPValue::LongLongInt(1));
        assert_eq!(AmqpHeaders(&h).get(TRACEPARENT), None);
    }

    #[test]
    fn a_retry_names_the_tier_it_came_through() {
        let death = |queue: &str| {
            let mut t = FieldTable::default();
            t.insert(
                ShortString::from("queue"),
                AMQPValue::LongString(LongString::from(queue)),
            );
            AMQPValue::FieldTable(t)
        };
        let mut h = FieldTable::default();
        let deaths = vec![death("p.retry.400ms"), death("p.retry.100ms")];
        h.insert(
            ShortString::from("x-death"),
            AMQPValue::FieldArray(deaths.into()),
        );
        assert_eq!(
            waited_in(Some(&h), "p.retry."),
            Some(WaitedIn("400ms".into()))
        );
        assert_eq!(waited_in(Some(&h), "other.retry."), None);
        assert_eq!(waited_in(Some(&FieldTable::default()), "p.retry."), None);
        assert_eq!(waited_in(None, "p.retry."), None);
    }

    #[test]
    fn a_producers_fresh_context_is_valid_and_sampled() {
        let tp = new_traceparent();
        let h = traceparent_headers(&tp);
        let cx = TraceContextPropagator::new().extract(&AmqpHeaders(&h));
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid() && sc.is_sampled() && sc.is_remote());
        assert_ne!(new_traceparent(), tp);
    }
}
