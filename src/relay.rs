//! The worker: consumes events, routes each to its destinations, delivers, and acknowledges an
//! event only once every destination's outcome is durably recorded (delivered, or its dead
//! letter confirmed by the broker). Survives connection loss by reconnecting with backoff.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::FieldTable;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::broker::{self, Publisher, Topology};
use crate::classify::Verdict;
use crate::config::{Config, DestinationConfig};
use crate::deadletter::{Envelope, Reason, Source};
use crate::dispatch::Dispatcher;
use crate::event::{self, ConversionEvent};
use crate::metrics::Metrics;
use crate::partner;

/// How long to let the broker settle the last acknowledgements before closing the channel on
/// shutdown: quorum queues have been seen to requeue messages whose acks arrived just before a
/// close (rabbitmq-server#10327), which here would double a conversion.
const ACK_SETTLE: Duration = Duration::from_millis(300);

/// Liveness and readiness, shared with the HTTP listener.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    /// Ready: connected to the broker and consuming.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    fn set_ready(&self, v: bool) {
        self.ready.store(v, Ordering::Relaxed);
    }
}

pub struct Relay {
    config: Arc<Config>,
    topology: Topology,
    dispatcher: Dispatcher,
    metrics: Metrics,
    health: Arc<Health>,
}

enum SessionEnd {
    Shutdown,
    Lost(String),
}

impl Relay {
    pub fn new(
        config: Arc<Config>,
        metrics: Metrics,
        health: Arc<Health>,
    ) -> anyhow::Result<Relay> {
        metrics.init_destinations(config.destinations.iter().map(|d| d.name.as_str()));
        Ok(Relay {
            topology: Topology::from_config(&config),
            dispatcher: Dispatcher::new(&config, metrics.clone())?,
            config,
            metrics,
            health,
        })
    }

    /// Consumes until `shutdown` is cancelled, reconnecting whenever the broker goes away.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> anyhow::Result<()> {
        let max_delay = Duration::from_secs(self.config.broker.reconnect_max_delay_secs);
        let mut delay = Duration::from_millis(500);
        let mut sessions = 0u64;
        loop {
            let end = self.session(&shutdown, &mut sessions).await;
            self.health.set_ready(false);
            self.metrics.broker_connected.set(0);
            match end {
                Ok(SessionEnd::Shutdown) => return Ok(()),
                Ok(SessionEnd::Lost(why)) => {
                    // It had been consuming: start the backoff over.
                    delay = Duration::from_millis(500);
                    tracing::warn!(message = "broker connection lost; reconnecting", error = %why);
                }
                Err(e) => tracing::warn!(
                    message = "cannot consume from the broker; retrying",
                    error = %e,
                    retry_in_ms = delay.as_millis() as u64
                ),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(max_delay);
        }
    }

    async fn session(
        self: &Arc<Self>,
        shutdown: &CancellationToken,
        sessions: &mut u64,
    ) -> Result<SessionEnd, lapin::Error> {
        let role = format!("worker {}", self.config.broker.queue_prefix);
        let conn = broker::connect(&self.config.broker.url, &role).await?;
        let setup = conn.create_channel().await?;
        self.topology.declare(&setup).await?;
        let _ = setup.close(200, "topology declared".into()).await;
        let publisher = Publisher::new(&conn).await?;
        let ch = conn.create_channel().await?;
        ch.basic_qos(self.config.broker.prefetch, BasicQosOptions::default())
            .await?;
        let tag = format!(
            "postback-relay-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        );
        let mut consumer = ch
            .basic_consume(
                self.topology.events.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        *sessions += 1;
        if *sessions > 1 {
            self.metrics.broker_reconnects.inc();
        }
        self.metrics.broker_connected.set(1);
        self.health.set_ready(true);
        tracing::info!(message = "consuming", queue = %self.topology.events, prefetch = self.config.broker.prefetch);

        // At most `prefetch` deliveries are unacknowledged, so at most that many tasks run.
        let mut tasks = JoinSet::new();
        let end = loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break SessionEnd::Shutdown,
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(e) = done {
                        tracing::error!(message = "delivery task failed", error = %e);
                    }
                }
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => {
                        let me = Arc::clone(self);
                        let publisher = publisher.clone();
                        tasks.spawn(async move { me.handle(delivery, &publisher).await });
                    }
                    Some(Err(e)) => break SessionEnd::Lost(e.to_string()),
                    None => break SessionEnd::Lost("the broker cancelled the consumer".into()),
                },
            }
        };
        self.health.set_ready(false);
        match &end {
            SessionEnd::Shutdown => {
                // Take no more; deliveries buffered but not started stay unacked and return to
                // the queue when the channel closes.
                let _ = ch
                    .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                    .await;
                let grace = Duration::from_secs(self.config.worker.shutdown_grace_secs);
                let finished = tokio::time::timeout(grace, async {
                    while tasks.join_next().await.is_some() {}
                })
                .await;
                if finished.is_err() {
                    tracing::warn!(
                        message =
                            "shutdown grace period over; unfinished deliveries return to the queue",
                        unfinished = tasks.len()
                    );
                    tasks.abort_all();
                }
                // A synchronous round trip: the broker has read every ack sent before it.
                let _ = ch
                    .basic_qos(self.config.broker.prefetch, BasicQosOptions::default())
                    .await;
                tokio::time::sleep(ACK_SETTLE).await;
                let _ = ch.close(200, "shutdown".into()).await;
                let _ = conn.close(200, "shutdown".into()).await;
                tracing::info!(message = "stopped consuming");
            }
            SessionEnd::Lost(_) => {
                // Their acks can no longer reach the broker, which redelivers those events.
                tasks.abort_all();
                let _ = conn.close(200, "reconnecting".into()).await;
            }
        }
        Ok(end)
    }

    /// Processes one delivery and settles it: ack once every outcome is recorded; requeue when
    /// a dead letter could not be recorded (the broker's delivery limit bounds the loop).
    async fn handle(&self, delivery: Delivery, publisher: &Publisher) {
        let source = Source {
            queue: self.topology.events.clone(),
            routing_key: delivery.routing_key.to_string(),
            message_id: delivery
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.to_string()),
            redelivered: delivery.redelivered,
        };
        let dead_letters = self.process(&delivery.data, &source).await;
        for env in dead_letters {
            let body = serde_json::to_vec(&env).expect("envelopes serialize");
            let id = env.dead_letter_id.to_string();
            let destination = env.destination.as_deref().unwrap_or("none");
            match publisher
                .publish_json("", &self.topology.dead, &body, Some(&id), None)
                .await
            {
                Ok(()) => {
                    self.metrics
                        .dead_letters
                        .with_label_values(&[destination, env.reason.as_str()])
                        .inc();
                    if env.destination.is_some() {
                        self.metrics
                            .deliveries
                            .with_label_values(&[destination, "dead_lettered"])
                            .inc();
                    }
                    tracing::warn!(
                        message = "dead-lettered",
                        event_id = env.event_id.as_deref().unwrap_or(""),
                        destination,
                        reason = %env.reason,
                        detail = %env.detail
                    );
                }
                Err(e) => {
                    tracing::error!(
                        message = "cannot record a dead letter; the event goes back to the queue",
                        event_id = env.event_id.as_deref().unwrap_or(""),
                        error = %e
                    );
                    let requeue = BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    };
                    let _ = delivery.acker.nack(requeue).await;
                    return;
                }
            }
        }
        match delivery.acker.ack(BasicAckOptions::default()).await {
            Ok(_) => self.metrics.events_acked.inc(),
            Err(e) => tracing::warn!(
                message = "ack failed; the broker will redeliver the event",
                error = %e
            ),
        }
    }

    /// Parses, routes and delivers one event; returns the dead letters to record.
    pub async fn process(&self, body: &[u8], source: &Source) -> Vec<Envelope> {
        let event = match event::parse(body, self.config.worker.max_event_bytes) {
            Ok(e) => e,
            Err(err) => {
                self.metrics
                    .events_consumed
                    .with_label_values(&["invalid"])
                    .inc();
                return vec![Envelope::for_message(
                    err.reason(),
                    err.to_string(),
                    body,
                    None,
                    source.clone(),
                )];
            }
        };
        self.metrics
            .events_consumed
            .with_label_values(&[event.kind.as_str()])
            .inc();
        let Some(attribution) = &event.attribution else {
            self.metrics.events_skipped.inc();
            tracing::debug!(message = "no attribution; skipped", event_id = %event.event_id);
            return Vec::new();
        };
        let destinations: Vec<&DestinationConfig> = self
            .config
            .destinations
            .iter()
            .filter(|d| d.matches(&event))
            .collect();
        if destinations.is_empty() {
            let detail = format!(
                "no destination matches network {:?}, type {}, publisher {:?}",
                attribution.network,
                event.kind,
                attribution.publisher_id.as_deref().unwrap_or("")
            );
            return vec![Envelope::for_message(
                Reason::Unroutable,
                detail,
                body,
                Some(event.event_id.clone()),
                source.clone(),
            )];
        }
        let outcomes =
            futures_util::future::join_all(destinations.iter().map(|d| self.deliver(d, &event)))
                .await;
        outcomes
            .into_iter()
            .flatten()
            .map(|failure| {
                let mut env = Envelope::for_message(
                    failure.reason,
                    failure.detail,
                    body,
                    Some(event.event_id.clone()),
                    source.clone(),
                );
                env.destination = Some(failure.destination);
                // API keys sit in some partners' URLs: envelopes keep the request redacted.
                env.request = failure.request.map(|r| r.redacted());
                if let Some(r) = failure.report {
                    env.attempts = r.attempts;
                    env.first_attempt_at = Some(r.first_attempt_at);
                    env.last_attempt_at = Some(r.last_attempt_at);
                    env.last_status = r.last_status;
                    env.last_error = r.last_error;
                    env.response_snippet = r.response_snippet;
                }
                env
            })
            .collect()
    }

    /// Delivers to one destination; `None` when delivered, else what to dead-letter.
    async fn deliver(&self, dest: &DestinationConfig, event: &ConversionEvent) -> Option<Failure> {
        let request = match partner::render(dest, event) {
            Ok(r) => r,
            Err(e) => {
                return Some(Failure {
                    destination: dest.name.clone(),
                    reason: Reason::RenderError,
                    detail: e.to_string(),
                    request: None,
                    report: None,
                });
            }
        };
        let report = self
            .dispatcher
            .deliver(dest, &request, &event.event_id)
            .await;
        let (reason, detail) = match &report.verdict {
            Verdict::Delivered => {
                self.metrics
                    .deliveries
                    .with_label_values(&[&dest.name, "delivered"])
                    .inc();
                return None;
            }
            Verdict::Reject { why } => (Reason::PartnerRejected, why.clone()),
            Verdict::Retry { why, .. } => (
                Reason::RetriesExhausted,
                format!("{why} (after {} attempts)", report.attempts),
            ),
        };
        Some(Failure {
            destination: dest.name.clone(),
            reason,
            detail,
            request: Some(request),
            report: Some(report),
        })
    }
}

struct Failure {
    destination: String,
    reason: Reason,
    detail: String,
    request: Option<partner::Request>,
    report: Option<crate::dispatch::Report>,
}

/// A relay started in the background with its operations listener.
pub struct Running {
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub http_addr: std::net::SocketAddr,
    pub metrics: Metrics,
    pub health: Arc<Health>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Waits for the relay to stop (after its shutdown token is cancelled).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await?
    }
}

/// Binds the operations listener and starts consuming; both stop when `shutdown` is cancelled.
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    let config = Arc::new(config);
    let metrics = Metrics::new();
    let health = Arc::new(Health::default());
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot listen on {} (http.listen): {e}", config.http.listen)
        })?;
    let http_addr = listener.local_addr()?;
    let relay = Arc::new(Relay::new(config, metrics.clone(), health.clone())?);
    let http = tokio::spawn(crate::observe::serve(
        listener,
        metrics.clone(),
        health.clone(),
        shutdown.clone(),
    ));
    let task = tokio::spawn(async move {
        let result = relay.run(shutdown).await;
        let _ = http.await;
        result
    });
    Ok(Running {
        http_addr,
        metrics,
        health,
        task,
    })
}
