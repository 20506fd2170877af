//! The broker session: connect, declare the topology, consume the events and deliveries
//! queues, and end when a connection is lost, a consumer is cancelled by the broker, or a stop
//! is asked. A lost session is followed by a new one, with backoff; a stop drains within the
//! grace. Every wait on the broker has an end, so a broker that closes, cancels or goes silent
//! in any state is noticed, and a stop always finishes.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Relay;
use super::settle::Settler;
use crate::broker::{self, Publisher};

/// How long to let the broker settle the last acknowledgements before closing the channel on
/// shutdown: quorum queues have been seen to requeue messages whose acks arrived just before a
/// close (rabbitmq-server#10327), which here would double a conversion.
const ACK_SETTLE: Duration = Duration::from_millis(300);
/// The longest a session's set-up (connect, declare, consume) may take before it counts as
/// failed and is tried again.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// What cancelling the consumers may take at the start of a drain.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(1);
/// After the grace, what letting the acks settle and closing may take in all.
const CLOSE_BUDGET: Duration = Duration::from_secs(3);
/// How often the connections' state is looked at, in case no error event reached us.
const WATCH_EVERY: Duration = Duration::from_millis(500);
/// A session that lasted this long was healthy: the next reconnect starts its backoff over.
const HEALTHY_SESSION: Duration = Duration::from_secs(30);

/// Why a session ended without an error to report.
enum SessionEnd {
    Shutdown,
    Lost(String),
}

/// Why a session could not start.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Broker(#[from] lapin::Error),
    #[error("the broker did not answer within {0:?}")]
    Timeout(Duration),
}

/// Which queue a message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Queue {
    Events,
    Deliveries,
}

/// Per session: where outcomes are published, and the signal that publishing broke.
#[derive(Clone)]
pub(super) struct Recorder {
    pub publisher: Publisher,
    pub broken: CancellationToken,
}

/// What a session holds on the broker.
struct Open {
    conn: Arc<Connection>,
    pub_conn: Connection,
    ch: Channel,
    setup: Channel,
    recorder: Recorder,
    consumers: [(Queue, String, Consumer); 2],
    /// Cancelled when either connection reports an error.
    failed: CancellationToken,
    watchers: Vec<tokio::task::JoinHandle<()>>,
}

impl Relay {
    /// Consumes until `shutdown` is cancelled, reconnecting whenever the broker goes away.
    /// Returns an error only for what retrying cannot fix (the broker refuses the topology).
    /// Once `shutdown` is cancelled it returns within the grace and a few seconds more,
    /// whatever the broker does.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> anyhow::Result<()> {
        let max_delay = Duration::from_secs(self.config.broker.reconnect_max_delay_secs);
        let grace = Duration::from_secs(self.config.worker.shutdown_grace_secs);
        let mut delay = Duration::from_millis(500);
        let mut sessions = 0u64;
        loop {
            let started = Instant::now();
            let session = self.session(&shutdown, &mut sessions);
            // The last resort: a stop ends here even if the session hangs.
            let overrun = async {
                shutdown.cancelled().await;
                tokio::time::sleep(grace + CANCEL_TIMEOUT + CLOSE_BUDGET + Duration::from_secs(1))
                    .await;
            };
            let end = tokio::select! {
                end = session => end,
                () = overrun => {
                    tracing::warn!(message = "the stop overran its grace; unfinished messages return to the queue");
                    return Ok(());
                }
            };
            self.health.set_ready(false);
            self.metrics.broker_connected.set(0);
            match end {
                Ok(SessionEnd::Shutdown) => {
                    // The stop may have come while a new session was being set up: the work
                    // of the one lost before still finishes within the grace.
                    self.finish_orphans(Instant::now() + grace).await;
                    return Ok(());
                }
                Ok(SessionEnd::Lost(why)) => {
                    if started.elapsed() >= HEALTHY_SESSION {
                        delay = Duration::from_millis(500);
                    }
                    tracing::warn!(message = "broker connection lost; reconnecting", error = %self.shown(&why), retry_in_ms = delay.as_millis() as u64);
                }
                Err(SessionError::Broker(e)) if broker::is_precondition_failed(&e) => {
                    self.finish_orphans(Instant::now() + grace).await;
                    anyhow::bail!(
                        "the broker refuses the relay's topology: {e}. A queue or exchange already \
                         exists with other arguments (for example another broker.delivery_limit or \
                         retry tiers); delete it or choose another broker.queue_prefix"
                    );
                }
                Err(e) => tracing::warn!(
                    message = "cannot consume from the broker; retrying",
                    error = %self.shown(&e),
                    retry_in_ms = delay.as_millis() as u64
                ),
            }
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.finish_orphans(Instant::now() + grace).await;
                    return Ok(());
                }
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(max_delay);
        }
    }

    /// Connects, declares and consumes (each with an end), or gives up on a stop.
    async fn open(&self) -> Result<Open, lapin::Error> {
        let url = &self.config.broker.url;
        let prefix = &self.config.broker.queue_prefix;
        let conn = Arc::new(broker::connect(url, &format!("worker {prefix}")).await?);
        // Publishing gets its own connection: a broker that blocks publishers (memory or disk
        // alarm) must not also stall the acks of the consuming connection.
        let pub_conn = broker::connect(url, &format!("worker {prefix} publisher")).await?;
        let failed = CancellationToken::new();
        let watchers = [&*conn, &pub_conn]
            .into_iter()
            .map(|c| {
                let (mut events, failed) = (c.events_listener(), failed.clone());
                let secrets = self.config.secrets.clone();
                tokio::spawn(async move {
                    while let Some(event) = events.next().await {
                        if let lapin::Event::Error(e) = event {
                            tracing::debug!(message = "broker connection error", error = %secrets.scrub(&e.to_string()));
                            failed.cancel();
                            return;
                        }
                    }
                })
            })
            .collect();
        let setup = conn.create_channel().await?;
        self.topology.declare(&setup).await?;
        let recorder = Recorder {
            publisher: Publisher::new(&pub_conn).await?,
            broken: CancellationToken::new(),
        };
        let ch = conn.create_channel().await?;
        ch.basic_qos(self.config.broker.prefetch, BasicQosOptions::default())
            .await?;
        let consume = async |queue: Queue, name: &str, label: &str| {
            let tag = format!(
                "postback-relay-{label}-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4()
            );
            let consumer = ch
                .basic_consume(
                    name.into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            Ok::<_, lapin::Error>((queue, tag, consumer))
        };
        let consumers = [
            consume(Queue::Events, &self.topology.events, "events").await?,
            consume(Queue::Deliveries, &self.topology.deliveries, "deliveries").await?,
        ];
        Ok(Open {
            conn,
            pub_conn,
            ch,
            setup,
            recorder,
            consumers,
            failed,
            watchers,
        })
    }

    async fn session(
        self: &Arc<Self>,
        shutdown: &CancellationToken,
        sessions: &mut u64,
    ) -> Result<SessionEnd, SessionError> {
        let open = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(SessionEnd::Shutdown),
            open = tokio::time::timeout(SETUP_TIMEOUT, self.open()) => {
                open.map_err(|_| SessionError::Timeout(SETUP_TIMEOUT))??
            }
        };
        let Open {
            conn,
            pub_conn,
            ch,
            setup,
            recorder,
            consumers,
            failed,
            watchers,
        } = open;
        let [
            (_, events_tag, mut events),
            (_, deliveries_tag, mut deliveries),
        ] = consumers;
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
        let mut watch = tokio::time::interval(WATCH_EVERY);
        let take = |queue: Queue, delivery: lapin::message::Delivery, tasks: &mut JoinSet<()>| {
            let tag = delivery.delivery_tag;
            settler.taken(tag, queue == Queue::Events);
            let (me, recorder, settler) = (Arc::clone(self), recorder.clone(), settler.clone());
            tasks.spawn(async move {
                let fate = me.handle(queue, delivery, &recorder).await;
                settler.done(tag, fate);
            });
        };
        let cancelled = |q: &str| format!("the broker cancelled the consumer of {q}");
        let end = loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break SessionEnd::Shutdown,
                _ = recorder.broken.cancelled() => break SessionEnd::Lost("publishing to the broker failed".into()),
                _ = failed.cancelled() => break SessionEnd::Lost("a broker connection failed".into()),
                _ = watch.tick() => {
                    if !conn.status().connected() || !pub_conn.status().connected() {
                        break SessionEnd::Lost("a broker connection is closed".into());
                    }
                }
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(e) = done {
                        tracing::error!(message = "delivery task failed", error = %self.shown(&e));
                    }
                }
                next = events.next() => match next {
                    Some(Ok(d)) => take(Queue::Events, d, &mut tasks),
                    Some(Err(e)) => break SessionEnd::Lost(e.to_string()),
                    None => break SessionEnd::Lost(cancelled(&self.topology.events)),
                },
                next = deliveries.next() => match next {
                    Some(Ok(d)) => take(Queue::Deliveries, d, &mut tasks),
                    Some(Err(e)) => break SessionEnd::Lost(e.to_string()),
                    None => break SessionEnd::Lost(cancelled(&self.topology.deliveries)),
                },
            }
        };
        self.health.set_ready(false);
        sampler.abort();
        for w in &watchers {
            w.abort();
        }
        let alive = conn.status().connected() && !failed.is_cancelled();
        match &end {
            SessionEnd::Shutdown => {
                let grace = Duration::from_secs(self.config.worker.shutdown_grace_secs);
                let grace_end = Instant::now() + grace;
                // Take no more; deliveries buffered but not started stay unacked and return to
                // the queue when the channel closes.
                if alive {
                    for t in [&events_tag, &deliveries_tag] {
                        let cancel =
                            ch.basic_cancel(t.as_str().into(), BasicCancelOptions::default());
                        let _ = tokio::time::timeout(CANCEL_TIMEOUT, cancel).await;
                    }
                }
                drop((events, deliveries));
                finish(&mut tasks, grace_end).await;
                self.finish_orphans(grace_end).await;
                // Every task has reported (or was dropped, leaving its message unsettled): let
                // the settler send what is left, let the broker take the acks in, and close.
                drop(settler);
                let closing = async {
                    let _ = settling.await;
                    if alive {
                        // A synchronous round trip: the broker has read every ack sent before it.
                        let _ = ch
                            .basic_qos(self.config.broker.prefetch, BasicQosOptions::default())
                            .await;
                        tokio::time::sleep(ACK_SETTLE).await;
                        let _ = ch.close(200, "shutdown".into()).await;
                        let _ = conn.close(200, "shutdown".into()).await;
                        let _ = pub_conn.close(200, "shutdown".into()).await;
                    }
                };
                if tokio::time::timeout(CLOSE_BUDGET, closing).await.is_err() {
                    tracing::warn!(
                        message = "the broker did not take the last acks in time; they return to the queue"
                    );
                }
                tracing::info!(message = "stopped consuming");
            }
            SessionEnd::Lost(_) => {
                // Let them finish: a partner call cut off midway would be sent again after
                // the redelivery, while a finished one is recorded in the store (which does
                // not depend on the broker) and its redelivery suppressed. Their acks fail.
                self.adopt(tasks);
                drop((settler, settling));
                let closing = async {
                    let _ = conn.close(200, "reconnecting".into()).await;
                    let _ = pub_conn.close(200, "reconnecting".into()).await;
                };
                let _ = tokio::time::timeout(CLOSE_BUDGET, closing).await;
            }
        }
        Ok(end)
    }

    /// Keeps a lost session's work running, and forgets the finished work of earlier ones.
    fn adopt(&self, tasks: JoinSet<()>) {
        let mut orphans = self.orphans.lock().expect("orphans lock");
        for o in orphans.iter_mut() {
            while o.try_join_next().is_some() {}
        }
        orphans.retain(|o| !o.is_empty());
        orphans.push(tasks);
    }

    /// Lets the work of lost sessions finish until `deadline`, then stops what is left.
    async fn finish_orphans(&self, deadline: Instant) {
        let orphans = std::mem::take(&mut *self.orphans.lock().expect("orphans lock"));
        for mut tasks in orphans {
            finish(&mut tasks, deadline).await;
        }
    }
}

/// Waits for `tasks` until `deadline`, then aborts what is left (its messages stay unacked and
/// return to the queue).
async fn finish(tasks: &mut JoinSet<()>, deadline: Instant) {
    let done = tokio::time::timeout_at(deadline, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if done.is_err() {
        tracing::warn!(
            message = "shutdown grace period over; unfinished deliveries return to the queue",
            unfinished = tasks.len()
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}
