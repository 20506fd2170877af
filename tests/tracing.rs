//! Traces, end to end, with a producer and a decoder the relay's authors did not write: a
//! Python producer (the OpenTelemetry SDK and pika) publishes an event inside its span, the
//! W3C context in the AMQP headers; the relay continues it through a retry in a delay tier to
//! the partner; a Python receiver decodes what the relay exports (OTLP/HTTP, protobuf) with
//! `opentelemetry-proto`. And the relay without a collector: it delivers all the same, counts
//! the spans it could not export, and still names the trace in its dead letters and journal.
//!
//! The Python packages are in the virtualenv `scripts/test` installs; its Python is named by
//! `POSTBACK_RELAY_OTEL_PYTHON`. Without it the end-to-end test is skipped, except in CI
//! (`CI=true`), where it fails.

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use common::{Env, Retry, amqp_url, event, eventually, until};
use postback_relay::interfaces::sandbox::Rule;
use postback_relay::journal::Filter;

/// The virtualenv's Python, when there is one; `None` means skip (outside CI).
fn otel_python() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("POSTBACK_RELAY_OTEL_PYTHON")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            let home = std::env::var_os("HOME")?;
            Some(std::path::Path::new(&home).join(".cache/postback-relay/otel/bin/python"))
        })
        .filter(|p| p.exists());
    if path.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI needs the OpenTelemetry Python virtualenv: scripts/test installs it (ensure_otel_python)"
        );
        eprintln!(
            "SKIPPED: no OpenTelemetry Python virtualenv (run scripts/test, or set POSTBACK_RELAY_OTEL_PYTHON)"
        );
    }
    path
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/otel/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The Python OTLP receiver, and every line it has printed so far.
struct Receiver {
    _child: tokio::process::Child,
    port: u16,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    async fn start(python: &std::path::Path) -> Receiver {
        let mut child = tokio::process::Command::new(python)
            .arg(fixture("receiver.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the receiver starts");
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), out.next_line())
            .await
            .expect("the receiver says where it listens")
            .unwrap()
            .expect("a first line");
        let port = serde_json::from_str::<Value>(&first).unwrap()["listening"]
            .as_u64()
            .expect("{\"listening\": PORT}") as u16;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let into = lines.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                let v: Value = serde_json::from_str(&line).expect("JSON lines");
                into.lock().unwrap().push(v);
            }
        });
        Receiver {
            _child: child,
            port,
            lines,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The spans received in trace `trace_id`.
    fn spans(&self, trace_id: &str) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l["trace_id"] == trace_id)
            .cloned()
            .collect()
    }
}

fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

#[tokio::test]
async fn a_producers_trace_goes_through_a_delay_tier_to_the_partner() {
    let Some(python) = otel_python() else {
        return;
    };
    let receiver = Receiver::start(&python).await;
    let env = Env::new().await;
    // The first call fails, the retry from the first delay tier is accepted.
    env.sandbox
        .add_rule(&Rule::answer(503).on_path("/ld").times(1))
        .await
        .unwrap();
    let dest = env
        .powerspace()
        .retry(Retry::durable(100, 400).jitter(0.0).max_attempts(5))
        .send_traceparent();
    let config = env.config().destination(dest).tracing(&receiver.endpoint());
    let running = env.start(&config).await;

    let body = String::from_utf8(event("e-traced", "lead", "click-traced", None)).unwrap();
    let produced = tokio::process::Command::new(&python)
        .arg(fixture("producer.py"))
        .args([
            &amqp_url(),
            &env.topology().exchange,
            "lead",
            &body,
            &format!("{}/v1/traces", receiver.endpoint()),
        ])
        .output()
        .await
        .unwrap();
    assert!(
        produced.status.success(),
        "the producer: {}",
        String::from_utf8_lossy(&produced.stderr)
    );
    let ids: Value = serde_json::from_slice(&produced.stdout).unwrap();
    let trace_id = ids["trace_id"].as_str().unwrap().to_owned();
    let producer_span = ids["span_id"].as_str().unwrap().to_owned();

    until(&running, "delivered", |m| {
        common::deliveries(m, "powerspace", "delivered") == 1
    })
    .await;
    // The producer's span, the event, two passes, two calls.
    eventually(Duration::from_secs(30), "six spans in the trace", || {
        let n = receiver.spans(&trace_id).len();
        async move { n >= 6 }
    })
    .await;
    let spans = receiver.spans(&trace_id);
    let posts: Vec<Value> = receiver
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.get("path").is_some())
        .cloned()
        .collect();
    assert!(
        posts
            .iter()
            .all(|p| p["path"] == "/v1/traces" && p["content_type"] == "application/x-protobuf"),
        "OTLP/HTTP protobuf to /v1/traces: {posts:?}"
    );
    let producer = named(&spans, "publish");
    assert_eq!(producer.len(), 1, "{spans:#?}");
    assert_eq!(producer[0]["service"], "test-producer");
    assert_eq!(producer[0]["span_id"], producer_span.as_str());

    let events = named(&spans, "event");
    assert_eq!(events.len(), 1, "one event span: {spans:#?}");
    let ev = events[0];
    assert_eq!(ev["service"], "postback-relay");
    assert_eq!(
        ev["parent_span_id"],
        producer_span.as_str(),
        "the producer's child"
    );
    assert_eq!(attr(ev, "postback_relay.event_id"), "e-traced");
    assert_eq!(attr(ev, "messaging.system"), "rabbitmq");

    let passes = named(&spans, "delivery");
    assert_eq!(
        passes.len(),
        2,
        "the event's pass and the retry's: {spans:#?}"
    );
    for p in &passes {
        assert_eq!(
            p["parent_span_id"], ev["span_id"],
            "passes are the event's children"
        );
        assert_eq!(attr(p, "postback_relay.destination"), "powerspace");
    }
    let first = passes
        .iter()
        .find(|p| attr(p, "postback_relay.pass") == "event")
        .expect("the event's pass");
    let retried = passes
        .iter()
        .find(|p| attr(p, "postback_relay.pass") == "retry")
        .expect("the retry's pass, after the delay tier");
    assert_eq!(attr(first, "postback_relay.outcome"), "retry_scheduled");
    assert_eq!(attr(first, "postback_relay.retry_tier"), "100ms");
    assert_eq!(attr(retried, "postback_relay.outcome"), "delivered");

    let calls = named(&spans, "attempt");
    assert_eq!(calls.len(), 2, "{spans:#?}");
    let call_of = |pass: &Value| {
        *calls
            .iter()
            .find(|c| c["parent_span_id"] == pass["span_id"])
            .expect("a call in each pass")
    };
    let (c1, c2) = (call_of(first), call_of(retried));
    assert_eq!(attr(c1, "http.response.status_code"), 503);
    assert_eq!(attr(c1, "postback_relay.status_class"), "5xx");
    assert_eq!(attr(c1, "postback_relay.outcome"), "retry");
    assert_eq!(attr(c1, "postback_relay.attempt"), 1);
    assert_eq!(attr(c2, "http.response.status_code"), 200);
    assert_eq!(attr(c2, "postback_relay.outcome"), "delivered");
    assert_eq!(attr(c2, "postback_relay.attempt"), 2);
    assert_eq!(
        attr(c2, "postback_relay.retry_tier"),
        "100ms",
        "the call came through the first delay tier"
    );
    assert_eq!(attr(retried, "postback_relay.waited_in"), "100ms");
    assert!(
        attr(c1, "postback_relay.retry_tier").is_null(),
        "the first call"
    );
    assert!(attr(c2, "postback_relay.latency_ms").as_f64().unwrap() > 0.0);
    assert_eq!(attr(c2, "server.address"), "127.0.0.1");
    // No span says more of the partner than its host: no URL, no query.
    for s in &spans {
        let text = s["attributes"].to_string();
        assert!(
            !text.contains("http://") && !text.contains("click-traced"),
            "{text}"
        );
    }

    // The partner heard each call in the same trace, as a child of that call's span.
    let requests = env.sandbox.requests().await.unwrap();
    let heard: Vec<String> = requests
        .iter()
        .map(|r| r.headers.get("traceparent").cloned().unwrap_or_default())
        .collect();
    assert_eq!(
        heard,
        [c1, c2].map(|c| format!("00-{trace_id}-{}-01", c["span_id"].as_str().unwrap())),
        "the partner's traceparent is its call's span"
    );

    // The journal names the trace on the delivery's entries.
    let filter = Filter {
        event_id: Some("e-traced".into()),
        limit: 100,
        ..Filter::default()
    };
    let entries = env.until_journaled(&filter, 2).await;
    assert!(
        entries
            .iter()
            .all(|e| e.trace_id.as_deref() == Some(trace_id.as_str())),
        "{entries:#?}"
    );
    let dropped = &running.metrics.trace_spans_dropped;
    for reason in ["queue_full", "export_failed", "stopped"] {
        assert_eq!(dropped.with_label_values(&[reason]).get(), 0, "{reason}");
    }
}

#[tokio::test]
async fn without_a_collector_the_relay_delivers_counts_its_drops_and_names_the_trace() {
    let env = Env::new().await;
    // Nothing listens there.
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    env.sandbox
        .add_rule(&Rule::answer(404).on_path("/ld"))
        .await
        .unwrap();
    let config = env.default_config().tracing(&closed);
    let running = env.start(&config).await;
    // No context in the headers: the relay starts a trace.
    env.publish(&event("e-untraced", "lead", "c1", None)).await;
    until(&running, "dead-lettered", |m| {
        common::deliveries(m, "powerspace", "dead_lettered") == 1
    })
    .await;
    let letters = env.take_dead_letters().await;
    assert_eq!(letters.len(), 1);
    let trace_id = letters[0]
        .trace_id
        .clone()
        .expect("the letter names its trace");
    assert!(
        trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{trace_id}"
    );
    let filter = Filter {
        event_id: Some("e-untraced".into()),
        limit: 100,
        ..Filter::default()
    };
    let entries = env.until_journaled(&filter, 1).await;
    assert_eq!(entries[0].trace_id.as_deref(), Some(trace_id.as_str()));
    let dir = tempfile::tempdir().unwrap();
    let path = config.write(&dir);
    let out = common::Cli::new(&["deliveries", "--config", &path, "--event-id", "e-untraced"]).ok();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .next()
            .unwrap_or("")
            .ends_with(&format!("  trace {trace_id}")),
        "deliveries names the trace: {text}"
    );
    // The export failed; the spans are counted, never waited for.
    until(&running, "spans counted as dropped", |m| {
        m.trace_spans_dropped
            .with_label_values(&["export_failed"])
            .get()
            >= 3
    })
    .await;
}

#[tokio::test]
async fn publish_starts_a_trace_per_message() {
    let env = Env::new().await;
    env.declare().await;
    let messages = ["p1", "p2"]
        .map(|id| postback_relay::interfaces::publish::Outgoing::new(event(id, "lead", "c", None)));
    let sent = postback_relay::interfaces::publish::publish_all(
        &env.publisher,
        &env.topology().exchange,
        messages,
        || {},
    )
    .await
    .unwrap();
    assert_eq!(sent, 2);
    let taken = env.drain(&env.topology().events).await;
    let parents: Vec<String> = taken
        .iter()
        .map(|m| {
            let headers = m.properties.headers().as_ref().expect("headers");
            match headers.inner().get("traceparent") {
                Some(lapin::types::AMQPValue::LongString(s)) => {
                    String::from_utf8(s.as_bytes().to_vec()).unwrap()
                }
                other => panic!("no traceparent: {other:?}"),
            }
        })
        .collect();
    assert_eq!(parents.len(), 2);
    for p in &parents {
        let parts: Vec<&str> = p.split('-').collect();
        assert_eq!(parts.len(), 4, "{p}");
        assert_eq!(
            (parts[0], parts[3]),
            ("00", "01"),
            "version 00, sampled: {p}"
        );
        assert!(parts[1].len() == 32 && parts[2].len() == 16, "{p}");
        assert!(parts[1].bytes().all(|b| b.is_ascii_hexdigit()), "{p}");
    }
    assert_ne!(parents[0][3..35], parents[1][3..35], "a trace each");
}
