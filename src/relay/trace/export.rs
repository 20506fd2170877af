//! Spans out of the process: an ended span goes into a bounded queue and the call that ended
//! it returns at once; one task on the relay's runtime takes them in batches and posts each
//! batch to the collector (OTLP over HTTP, protobuf). A full queue drops the span; a batch the
//! collector does not take within the export timeout is dropped: both counted in
//! `postback_relay_trace_spans_dropped_total`, neither ever waited for by a delivery. The
//! relay does not need a collector to run, start or stop.

use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter as _, SpanProcessor};
use prometheus::IntCounter;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::TracingError;
use crate::relay::metrics::Metrics;

/// Spans in one export, at most.
const BATCH: usize = 512;
/// How long a batch waits to fill once its first span came.
const LINGER: Duration = Duration::from_secs(1);
/// How long one export may take, the collector's answer included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The processor the tracer provider hands ended spans to.
#[derive(Debug)]
pub(super) struct Queue {
    spans: mpsc::Sender<SpanData>,
    full: IntCounter,
    stopped: IntCounter,
}

impl SpanProcessor for Queue {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        match self.spans.try_send(span) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.full.inc(),
            Err(mpsc::error::TrySendError::Closed(_)) => self.stopped.inc(),
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// The batching task, to stop.
#[derive(Clone)]
pub(super) struct Exporting {
    stop: CancellationToken,
    task: std::sync::Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Exporting {
    /// Asks the task to export what is queued and end; waits for it until `deadline`.
    pub async fn stop(&self, deadline: Duration) {
        self.stop.cancel();
        if let Some(task) = self.task.lock().await.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(deadline, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

/// The exporter to `url`, its queue of `capacity` spans, and the task between them.
pub(super) fn start(
    url: &str,
    capacity: usize,
    resource: &opentelemetry_sdk::Resource,
    metrics: &Metrics,
    secrets: &crate::contract::redact::Secrets,
) -> Result<(Queue, Exporting), TracingError> {
    // Its own client: no proxy (a collector is the operator's own service, where partners'
    // calls may go through `worker.partner_proxy`), no redirect.
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TracingError(e.without_url().to_string()))?;
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(url)
        .with_timeout(EXPORT_TIMEOUT)
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()
        .map_err(|e| TracingError(secrets.scrub(&e.to_string()).into_owned()))?;
    exporter.set_resource(resource);
    let dropped = |reason: &str| metrics.trace_spans_dropped.with_label_values(&[reason]);
    let (tx, rx) = mpsc::channel(capacity);
    let stop = CancellationToken::new();
    let failed = dropped("export_failed");
    let task = tokio::spawn(run(rx, exporter, failed, stop.clone(), secrets.clone()));
    let queue = Queue {
        spans: tx,
        full: dropped("queue_full"),
        stopped: dropped("stopped"),
    };
    let exporting = Exporting {
        stop,
        task: std::sync::Arc::new(tokio::sync::Mutex::new(Some(task))),
    };
    Ok((queue, exporting))
}

/// Takes spans off the queue in batches and exports each, until stopped; then exports what
/// is left.
async fn run(
    mut spans: mpsc::Receiver<SpanData>,
    exporter: opentelemetry_otlp::SpanExporter,
    failed: IntCounter,
    stop: CancellationToken,
    secrets: crate::contract::redact::Secrets,
) {
    let mut sink = Sink {
        exporter,
        failed,
        failing: false,
        secrets,
    };
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            n = spans.recv_many(&mut batch, BATCH) => if n == 0 { break },
        }
        let linger = tokio::time::sleep(LINGER);
        tokio::pin!(linger);
        while batch.len() < BATCH {
            let room = BATCH - batch.len();
            tokio::select! {
                _ = &mut linger => break,
                _ = stop.cancelled() => break,
                n = spans.recv_many(&mut batch, room) => if n == 0 { break },
            }
        }
        sink.export(std::mem::take(&mut batch)).await;
    }
    // What is queued when the relay stops.
    while let Ok(span) = spans.try_recv() {
        batch.push(span);
        if batch.len() == BATCH {
            sink.export(std::mem::take(&mut batch)).await;
        }
    }
    if !batch.is_empty() {
        sink.export(batch).await;
    }
}

struct Sink {
    exporter: opentelemetry_otlp::SpanExporter,
    failed: IntCounter,
    /// Whether the last export failed: a collector away is said once, and its return once.
    failing: bool,
    secrets: crate::contract::redact::Secrets,
}

impl Sink {
    async fn export(&mut self, batch: Vec<SpanData>) {
        let n = batch.len() as u64;
        let result = tokio::time::timeout(EXPORT_TIMEOUT, self.exporter.export(batch)).await;
        let error = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(self.secrets.scrub(&e.to_string()).into_owned()),
            Err(_) => Some(format!("no answer within {EXPORT_TIMEOUT:?}")),
        };
        match (error, self.failing) {
            (None, true) => {
                tracing::info!(message = "the trace collector takes spans again");
                self.failing = false;
            }
            (None, false) => {}
            (Some(error), failing) => {
                self.failed.inc_by(n);
                if !failing {
                    tracing::warn!(message = "the trace collector did not take a batch of spans; they are dropped and counted (postback_relay_trace_spans_dropped_total)", spans = n, error = %error);
                }
                self.failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};

    use super::*;

    #[test]
    fn a_full_queue_drops_spans_and_counts_them_without_waiting() {
        let metrics = Metrics::new();
        let (tx, mut rx) = mpsc::channel(2);
        let counter = |r: &str| metrics.trace_spans_dropped.with_label_values(&[r]);
        let queue = Queue {
            spans: tx,
            full: counter("queue_full"),
            stopped: counter("stopped"),
        };
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_span_processor(queue)
            .build();
        let tracer = provider.tracer("test");
        for _ in 0..5 {
            tracer.start("s").end();
        }
        assert_eq!(counter("queue_full").get(), 3, "two fit, three are dropped");
        assert!(rx.try_recv().is_ok() && rx.try_recv().is_ok());
        rx.close();
        tracer.start("late").end();
        assert_eq!(counter("stopped").get(), 1, "after the exporter stopped");
    }
}
