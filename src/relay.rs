//! The worker: consumes events and deliveries, routes each event to its destinations, and
//! owns every outcome. An event is acknowledged only once each destination's outcome is
//! durably recorded: delivered, a retry confirmed into a delay tier, or a dead letter
//! confirmed by the broker. Survives connection loss by reconnecting with backoff.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery as AmqpDelivery;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use serde_json::value::RawValue;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::broker::{self, PublishError, Publisher, Topology};
use crate::circuit::Admit;
use crate::classify::Verdict;
use crate::config::{Config, DestinationConfig};
use crate::deadletter::{Envelope, Reason, Source};
use crate::delivery::{AttemptRecord, Delivery};
use crate::dispatch::Dispatcher;
use crate::event::{self, ConversionEvent};
use crate::metrics::{Metrics, attempt_bucket};
use crate::partner;
use crate::settle::{Fate, Settler};
use crate::store::{Claim, Store};

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
    /// Each destination's hot-path metric series.
    series: std::collections::HashMap<String, crate::metrics::DestinationSeries>,
    topology: Topology,
    dispatcher: Dispatcher,
    /// Claims, the idempotency record and status order.
    store: Store,
    metrics: Metrics,
    health: Arc<Health>,
}

enum SessionEnd {
    Shutdown,
    Lost(String),
}

/// Which queue a message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Queue {
    Events,
    Deliveries,
}

/// Where a message came from, and when it was taken off its queue.
struct Taken<'a> {
    source: &'a Source,
    at: std::time::Instant,
}

/// What became of one event at one destination.
enum Outcome {
    Delivered,
    Retry { delivery: Delivery, delay: Duration },
    Dead(Box<Envelope>),
}

/// Per session: where outcomes are published, and the signal that publishing broke.
#[derive(Clone)]
struct Recorder {
    publisher: Publisher,
    broken: CancellationToken,
}

impl Relay {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        metrics: Metrics,
        health: Arc<Health>,
    ) -> anyhow::Result<Relay> {
        metrics.init_destinations(config.destinations.iter().map(|d| d.name.as_str()));
        let topology = Topology::from_config(&config);
        for d in &config.destinations {
            for (tier, _) in &topology.tiers {
                metrics
                    .retries_scheduled
                    .with_label_values(&[&d.name, &crate::retry::tier_label(*tier)]);
            }
        }
        Ok(Relay {
            series: config
                .destinations
                .iter()
                .map(|d| (d.name.clone(), metrics.series(&d.name)))
                .collect(),
            topology,
            dispatcher: Dispatcher::new(&config, &metrics)?,
            store,
            config,
            metrics,
            health,
        })
    }

    /// Consumes until `shutdown` is cancelled, reconnecting whenever the broker goes away.
    /// Returns an error only for what retrying cannot fix (the broker refuses the topology).
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
                Err(e) if broker::is_precondition_failed(&e) => {
                    anyhow::bail!(
                        "the broker refuses the relay's topology: {e}. A queue or exchange already \
                         exists with other arguments (for example another broker.delivery_limit or \
                         retry tiers); delete it or choose another broker.queue_prefix"
                    );
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
        let prefix = &self.config.broker.queue_prefix;
        let conn =
            Arc::new(broker::connect(&self.config.broker.url, &format!("worker {prefix}")).await?);
        // Publishing gets its own connection: a broker that blocks publishers (memory or disk
        // alarm) must not also stall the acks of the consuming connection.
        let pub_conn = broker::connect(
            &self.config.broker.url,
            &format!("worker {prefix} publisher"),
        )
        .await?;
        let setup = conn.create_channel().await?;
        self.topology.declare(&setup).await?;
        let recorder = Recorder {
            publisher: Publisher::new(&pub_conn).await?,
            broken: CancellationToken::new(),
        };
        let ch = conn.create_channel().await?;
        ch.basic_qos(self.config.broker.prefetch, BasicQosOptions::default())
            .await?;
        let tag = |q: &str| {
            format!(
                "postback-relay-{q}-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4()
            )
        };
        let (events_tag, deliveries_tag) = (tag("events"), tag("deliveries"));
        let consume = |queue: &str, tag: &str| {
            ch.basic_consume(
                queue.into(),
                tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
        };
        let events = consume(&self.topology.events, &events_tag).await?;
        let deliveries = consume(&self.topology.deliveries, &deliveries_tag).await?;
        let mut incoming = futures_util::stream::select(
            events.map(|d| (Queue::Events, d)),
            deliveries.map(|d| (Queue::Deliveries, d)),
        );
        *sessions += 1;
        if *sessions > 1 {
            self.metrics.broker_reconnects.inc();
        }
        self.metrics.broker_connected.set(1);
        self.health.set_ready(true);
        tracing::info!(message = "consuming", queue = %self.topology.events, prefetch = self.config.broker.prefetch);
        let sampler = tokio::spawn(Arc::clone(self).sample_queues(Arc::clone(&conn), setup));
        let acked = self.metrics.events_acked.clone();
        let (settler, settling) =
            Settler::start(ch.clone(), self.config.broker.prefetch, move |n| {
                acked.inc_by(n)
            });

        // At most `prefetch` deliveries per consumer are unacknowledged, so the task count is
        // bounded.
        let mut tasks = JoinSet::new();
        let end = loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break SessionEnd::Shutdown,
                _ = recorder.broken.cancelled() => break SessionEnd::Lost("publishing to the broker failed".into()),
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(e) = done {
                        tracing::error!(message = "delivery task failed", error = %e);
                    }
                }
                next = incoming.next() => match next {
                    Some((queue, Ok(delivery))) => {
                        let tag = delivery.delivery_tag;
                        settler.taken(tag, queue == Queue::Events);
                        let (me, recorder, settler) = (Arc::clone(self), recorder.clone(), settler.clone());
                        tasks.spawn(async move {
                            let fate = me.handle(queue, delivery, &recorder).await;
                            settler.done(tag, fate);
                        });
                    }
                    Some((_, Err(e))) => break SessionEnd::Lost(e.to_string()),
                    None => break SessionEnd::Lost("the broker cancelled the consumers".into()),
                },
            }
        };
        self.health.set_ready(false);
        sampler.abort();
        match &end {
            SessionEnd::Shutdown => {
                // Take no more; deliveries buffered but not started stay unacked and return to
                // the queue when the channel closes.
                for t in [&events_tag, &deliveries_tag] {
                    let _ = ch
                        .basic_cancel(t.as_str().into(), BasicCancelOptions::default())
                        .await;
                }
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
                    while tasks.join_next().await.is_some() {}
                }
                // Every task has reported (or was dropped, leaving its message unsettled):
                // let the settler send what is left.
                drop(settler);
                let _ = settling.await;
                // A synchronous round trip: the broker has read every ack sent before it.
                let _ = ch
                    .basic_qos(self.config.broker.prefetch, BasicQosOptions::default())
                    .await;
                tokio::time::sleep(ACK_SETTLE).await;
                let _ = ch.close(200, "shutdown".into()).await;
                let _ = conn.close(200, "shutdown".into()).await;
                let _ = pub_conn.close(200, "shutdown".into()).await;
                tracing::info!(message = "stopped consuming");
            }
            SessionEnd::Lost(_) => {
                // Let them finish: a partner call cut off midway would be sent again after
                // the redelivery, while a finished one is recorded in the store (which does
                // not depend on the broker) and its redelivery suppressed. Their acks fail.
                tasks.detach_all();
                drop((settler, settling));
                let _ = conn.close(200, "reconnecting".into()).await;
                let _ = pub_conn.close(200, "reconnecting".into()).await;
            }
        }
        Ok(end)
    }

    /// Samples the depth of every relay queue into `postback_relay_queue_messages`, and the
    /// age of the oldest dead letter.
    async fn sample_queues(self: Arc<Self>, conn: Arc<lapin::Connection>, ch: lapin::Channel) {
        let every = Duration::from_secs(self.config.worker.queue_sample_secs);
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        loop {
            for q in self.topology.queues() {
                if let Ok(info) = ch
                    .queue_declare(q.as_str().into(), passive, FieldTable::default())
                    .await
                {
                    self.metrics
                        .queue_messages
                        .with_label_values(&[q])
                        .set(i64::from(info.message_count()));
                }
            }
            if let Ok(age) = self.oldest_dead_letter_age(&conn).await {
                self.metrics.oldest_dead_letter_age.set(age);
            }
            tokio::time::sleep(every).await;
        }
    }

    /// The age of the oldest dead letter, measured without moving any (see
    /// [`crate::dlq::oldest_dead_letter_age`]).
    async fn oldest_dead_letter_age(&self, conn: &lapin::Connection) -> Result<i64, lapin::Error> {
        crate::dlq::oldest_dead_letter_age(
            conn,
            &self.config.broker.url,
            &self.topology.dead,
            self.config.worker.max_event_bytes,
        )
        .await
    }

    /// Processes one message and decides how to settle it. A panic while processing is
    /// settled too: the broker dead-letters it instead of redelivering a message that crashes
    /// the worker.
    async fn handle(&self, queue: Queue, msg: AmqpDelivery, recorder: &Recorder) -> Fate {
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
        let work = async {
            match queue {
                Queue::Events => self.process_event(&msg.data, &taken, recorder).await,
                Queue::Deliveries => self.process_delivery(&msg.data, &taken, recorder).await,
            }
        };
        std::panic::AssertUnwindSafe(work).catch_unwind().await.unwrap_or_else(|_| {
            tracing::error!(message = "processing panicked; the broker dead-letters the message", queue = %source.queue);
            Fate::Reject
        })
    }

    /// An event from the events queue: parse, route, attempt every destination at once.
    async fn process_event(&self, body: &[u8], taken: &Taken<'_>, recorder: &Recorder) -> Fate {
        let source = taken.source;
        if body.len() > self.config.worker.max_event_bytes {
            // Too large to wrap in an envelope safely: the broker moves the original message
            // to the dead-letter queue whole (x-death reason "rejected"), nothing lost.
            self.metrics
                .events_consumed
                .with_label_values(&["invalid"])
                .inc();
            self.metrics
                .dead_letters
                .with_label_values(&["none", Reason::EventTooLarge.as_str()])
                .inc();
            tracing::warn!(
                message = "dead-lettered",
                reason = %Reason::EventTooLarge,
                size = body.len(),
                limit = self.config.worker.max_event_bytes
            );
            return Fate::Reject;
        }
        let event = match event::parse(body, self.config.worker.max_event_bytes) {
            Ok(e) => e,
            Err(err) => {
                self.metrics
                    .events_consumed
                    .with_label_values(&["invalid"])
                    .inc();
                return self
                    .dead_message(err.reason(), err.to_string(), body, None, source, recorder)
                    .await;
            }
        };
        self.metrics
            .events_consumed
            .with_label_values(&[event.kind.as_str()])
            .inc();
        let Some(attribution) = &event.attribution else {
            self.metrics.events_skipped.inc();
            tracing::debug!(message = "no attribution; skipped", event_id = %event.event_id);
            return Fate::Ack;
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
            let id = Some(event.event_id.clone());
            return self
                .dead_message(Reason::Unroutable, detail, body, id, source, recorder)
                .await;
        }
        let raw: Box<RawValue> = serde_json::from_slice(body).expect("a parsed event is JSON");
        let now = Utc::now();
        let outcomes = futures_util::future::join_all(destinations.iter().map(|d| {
            let delivery = Delivery::new(event.event_id.clone(), d.name.clone(), raw.clone(), now);
            self.attempt(d, &event, delivery, true, taken)
        }))
        .await;
        self.record_all(outcomes, recorder).await
    }

    /// A retry from the deliveries queue: one event, one destination.
    async fn process_delivery(&self, body: &[u8], taken: &Taken<'_>, recorder: &Recorder) -> Fate {
        let source = taken.source;
        let delivery: Delivery = match serde_json::from_slice(body) {
            Ok(d) => d,
            Err(e) => {
                let detail = format!("not a delivery message: {e}");
                return self
                    .dead_message(Reason::InvalidEvent, detail, body, None, source, recorder)
                    .await;
            }
        };
        let dead =
            |reason, detail: String| dead_outcome(reason, detail, &delivery, None, None, source);
        let Some(dest) = self
            .config
            .destinations
            .iter()
            .find(|d| d.name == delivery.destination)
        else {
            let detail = format!(
                "destination {:?} is not in the configuration any more",
                delivery.destination
            );
            return self
                .record_all(vec![dead(Reason::Unroutable, detail)], recorder)
                .await;
        };
        let event = match event::parse(delivery.event.get().as_bytes(), usize::MAX) {
            Ok(e) => e,
            Err(e) => {
                return self
                    .record_all(vec![dead(e.reason(), e.to_string())], recorder)
                    .await;
            }
        };
        let outcome = self.attempt(dest, &event, delivery, false, taken).await;
        self.record_all(vec![outcome], recorder).await
    }

    /// One attempt at one destination: checks the click's lifetime, renders, asks the
    /// circuit, calls the partner (`first` pass: with the in-process tries), and decides.
    async fn attempt(
        &self,
        dest: &DestinationConfig,
        event: &ConversionEvent,
        delivery: Delivery,
        first: bool,
        msg: &Taken<'_>,
    ) -> Outcome {
        let source = msg.source;
        let now = Utc::now();
        let dead = |reason, detail: String, delivery: &Delivery, request, report| {
            dead_outcome(reason, detail, delivery, request, report, source)
        };
        let lifetime = chrono::Duration::days(i64::from(dest.click_lifetime_days));
        if let Some(clicked) = event.attribution.as_ref().and_then(|a| a.clicked_at)
            && now - clicked > lifetime
        {
            let detail = format!(
                "the click of {} is older than {}'s click lifetime of {} days: the partner would refuse it",
                clicked.to_rfc3339(),
                dest.name,
                dest.click_lifetime_days
            );
            return dead(Reason::ClickExpired, detail, &delivery, None, None);
        }
        let request = match partner::render(dest, event) {
            Ok(r) => r,
            Err(e) => return dead(Reason::RenderError, e.to_string(), &delivery, None, None),
        };
        // One attempt at a time per delivery, across replicas; none after it was accepted.
        let policy = &dest.retry;
        let key = format!("{}\u{1f}{}", dest.name, event.event_id);
        // Long enough for every in-process try and the pauses between them; a replica that
        // dies holding a claim delays the delivery by this much, no more.
        let pause = Duration::from_millis(policy.immediate_delay_ms.saturating_mul(16));
        let lease =
            (dest.timeout() + pause) * (policy.immediate_attempts + 1) + Duration::from_secs(5);
        let wait = |mut delivery: Delivery, why: &str| {
            delivery.record([AttemptRecord {
                at: now,
                result: why.into(),
                status: None,
                error: None,
            }]);
            Outcome::Retry {
                delivery,
                delay: policy.initial_delay(),
            }
        };
        match self.store.claim(&key, lease).await {
            Ok(Claim::Acquired) => {}
            Ok(Claim::Delivered) => {
                // Accepted before: this is a redelivery or a replay of the same event.
                self.metrics
                    .deliveries
                    .with_label_values(&[&dest.name, "duplicate"])
                    .inc();
                tracing::info!(message = "duplicate suppressed", destination = %dest.name, event_id = %event.event_id);
                return Outcome::Delivered;
            }
            // Another worker is on it: look again later, when it has finished.
            Ok(Claim::Busy) => return wait(delivery, "claimed_elsewhere"),
            Err(e) => {
                tracing::error!(message = "store unavailable; the delivery waits", destination = %dest.name, error = %e);
                return wait(delivery, "store_unavailable");
            }
        }
        let order = partner::status_of(dest, event);
        let order_lock = order.as_ref().map(|s| format!("lock\u{1f}{}", s.key));
        if let Some(status) = &order {
            // Statuses of one conversion go out one at a time, in order.
            let lock = order_lock.as_deref().expect("set with order");
            if !self.store.lock(lock, lease).await.unwrap_or(false) {
                let _ = self.store.release(&key).await;
                return wait(delivery, "conversion_busy");
            }
            let release_both = async || {
                let _ = self.store.release(&key).await;
                let _ = self.store.release(lock).await;
            };
            match self.store.status(&status.key).await {
                Ok(Some(sent)) if sent >= status.rank => {
                    // A later (or the same) status went first: sending this one would undo it.
                    release_both().await;
                    self.metrics
                        .deliveries
                        .with_label_values(&[&dest.name, "superseded"])
                        .inc();
                    tracing::info!(
                        message = "superseded status not sent",
                        destination = %dest.name,
                        event_id = %event.event_id,
                        status = status.name
                    );
                    return Outcome::Delivered;
                }
                Ok(None)
                    if status.update
                        && now - delivery.first_attempt_at < status.wait_for_conversion =>
                {
                    // An update ahead of its conversion waits for it, within a bound.
                    release_both().await;
                    return wait(delivery, "waiting_for_conversion");
                }
                Ok(_) => {}
                Err(e) => {
                    release_both().await;
                    tracing::error!(message = "store unavailable; the delivery waits", destination = %dest.name, error = %e);
                    return wait(delivery, "store_unavailable");
                }
            }
        }
        let outcome = self
            .call_partner(dest, event, delivery, first, request, msg)
            .await;
        let result = match &outcome {
            Outcome::Delivered => {
                let status = order.as_ref().map(|s| (s.key.as_str(), s.rank));
                // Accepted: record it (and the status it carried), trying a few times over a
                // store blip; the record is what keeps a redelivery from sending it again.
                let mut recorded = self.store.delivered(&key, status).await;
                for _ in 0..3 {
                    if recorded.is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    recorded = self.store.delivered(&key, status).await;
                }
                recorded
            }
            _ => self.store.release(&key).await,
        };
        if let Err(e) = &result {
            // The conversion's lock is kept until its lease ends, so that a lower status
            // cannot slip out while its record is missing.
            tracing::error!(message = "cannot record in the store", destination = %dest.name, event_id = %event.event_id, error = %e);
        } else if let Some(lock) = &order_lock {
            let _ = self.store.release(lock).await;
        }
        outcome
    }

    /// Calls the partner (through its circuit) and decides: delivered, retry, or dead letter.
    async fn call_partner(
        &self,
        dest: &DestinationConfig,
        event: &ConversionEvent,
        mut delivery: Delivery,
        first: bool,
        request: partner::Request,
        msg: &Taken<'_>,
    ) -> Outcome {
        let (source, taken) = (msg.source, msg.at);
        let now = Utc::now();
        let dead = |reason, detail: String, delivery: &Delivery, request, report| {
            dead_outcome(reason, detail, delivery, request, report, source)
        };
        let policy = &dest.retry;
        let tries = match self.dispatcher.admit(dest) {
            Admit::Wait(wait) => {
                // The partner keeps failing: hold the delivery in the retry tiers, no call made.
                delivery.record([AttemptRecord {
                    at: now,
                    result: "circuit_open".into(),
                    status: None,
                    error: None,
                }]);
                let delay = wait.max(policy.initial_delay());
                if policy.exhausted(delivery.attempts, delivery.first_attempt_at, now, delay) {
                    let detail = format!(
                        "{}'s circuit stayed open until the retry budget ran out",
                        dest.name
                    );
                    return dead(
                        Reason::RetriesExhausted,
                        detail,
                        &delivery,
                        Some(&request),
                        None,
                    );
                }
                return Outcome::Retry { delivery, delay };
            }
            Admit::Probe => 1,
            Admit::Call if first => policy.immediate_attempts,
            Admit::Call => 1,
        };
        let report = self
            .dispatcher
            .deliver(dest, &request, &event.event_id, tries, taken)
            .await;
        delivery.attempts += report.tries;
        delivery.record(report.history.clone());
        match &report.verdict {
            Verdict::Delivered => {
                let series = &self.series[&dest.name];
                series.delivered.inc();
                let since = (Utc::now() - event.occurred_at)
                    .to_std()
                    .unwrap_or_default();
                series.end_to_end.observe(since.as_secs_f64());
                if let Some(c) = series.on_attempt.get(attempt_bucket(delivery.attempts)) {
                    c.inc();
                }
                Outcome::Delivered
            }
            Verdict::Reject { why } => dead(
                Reason::PartnerRejected,
                why.clone(),
                &delivery,
                Some(&request),
                Some(&report),
            ),
            Verdict::Retry { retry_after, why } => {
                let delay = policy.delay(delivery.retries + 1, rand::random::<f64>(), *retry_after);
                if policy.exhausted(
                    delivery.attempts,
                    delivery.first_attempt_at,
                    Utc::now(),
                    delay,
                ) {
                    let age = (Utc::now() - delivery.first_attempt_at).num_seconds();
                    let detail = format!(
                        "{why}; gave up after {} attempts over {age} s",
                        delivery.attempts
                    );
                    return dead(
                        Reason::RetriesExhausted,
                        detail,
                        &delivery,
                        Some(&request),
                        Some(&report),
                    );
                }
                delivery.retries += 1;
                Outcome::Retry { delivery, delay }
            }
        }
    }

    /// Dead-letters a whole message that failed before any destination was attempted.
    async fn dead_message(
        &self,
        reason: Reason,
        detail: String,
        body: &[u8],
        event_id: Option<String>,
        source: &Source,
        recorder: &Recorder,
    ) -> Fate {
        let env = Envelope::for_message(reason, detail, body, event_id, source.clone());
        self.record_all(vec![Outcome::Dead(Box::new(env))], recorder)
            .await
    }

    /// Records every outcome (retries into their delay tier, dead letters into the dead-letter
    /// queue, each confirmed). If one cannot be recorded the session is ending: the message is
    /// abandoned for redelivery rather than acknowledged.
    async fn record_all(&self, outcomes: Vec<Outcome>, recorder: &Recorder) -> Fate {
        for outcome in outcomes {
            if let Err(e) = self.record(outcome, &recorder.publisher).await {
                tracing::error!(message = "cannot record an outcome; reconnecting", error = %e);
                recorder.broken.cancel();
                return Fate::Abandon;
            }
        }
        Fate::Ack
    }

    async fn record(&self, outcome: Outcome, publisher: &Publisher) -> Result<(), PublishError> {
        match outcome {
            Outcome::Delivered => Ok(()),
            Outcome::Retry { delivery, delay } => {
                let (tier, queue) = self.topology.tier(delay);
                let body = serde_json::to_vec(&delivery).expect("deliveries serialize");
                publisher.publish_json("", queue, &body, None, None).await?;
                let label = crate::retry::tier_label(*tier);
                self.metrics
                    .retries_scheduled
                    .with_label_values(&[&delivery.destination, &label])
                    .inc();
                tracing::info!(
                    message = "retry scheduled",
                    destination = %delivery.destination,
                    event_id = %delivery.event_id,
                    attempts = delivery.attempts,
                    tier = %label
                );
                Ok(())
            }
            Outcome::Dead(env) => {
                let body = serde_json::to_vec(&env).expect("envelopes serialize");
                let id = env.dead_letter_id.to_string();
                publisher
                    .publish_json("", &self.topology.dead, &body, Some(&id), None)
                    .await?;
                let destination = env.destination.as_deref().unwrap_or("none");
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
                Ok(())
            }
        }
    }
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
    let store = Store::open(&config.store)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the store ([store] in the config): {e}"))?;
    let relay = Arc::new(Relay::new(config, store, metrics.clone(), health.clone())?);
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

/// A dead letter for one delivery.
fn dead_outcome(
    reason: Reason,
    detail: String,
    delivery: &Delivery,
    request: Option<&partner::Request>,
    report: Option<&crate::dispatch::Report>,
    source: &Source,
) -> Outcome {
    Outcome::Dead(Box::new(Envelope::for_delivery(
        reason,
        detail,
        delivery,
        request,
        report,
        source.clone(),
    )))
}
