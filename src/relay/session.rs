//! The broker session: connect, declare the topology (both set up in `open`), consume the
//! events and deliveries queues, and end when a connection is lost, a consumer is cancelled by the broker, or a stop
//! is asked. A lost session is followed by a new one, with backoff; a stop drains within the
//! grace (`drain`). Every wait on the broker has an end, so a broker that closes, cancels or
//! goes silent in any state is noticed, and a stop always finishes.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::{Channel, Connection, Consumer};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::settle::Settler;
use super::{Relay, RelayError};
use crate::relay::broker::{self, Publisher};

/// The longest a session's set-up (connect, declare, consume) may take before it counts as
/// failed and is tried again.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the connections' state is looked at, in case no error event reached us.
const WATCH_EVERY: Duration = Duration::from_millis(500);
/// The first pause before reconnecting; it doubles up to `broker.reconnect_max_delay_secs`.
const FIRST_DELAY: Duration = Duration::from_millis(500);
/// A session that lasted this long was healthy: the next reconnect starts its backoff over.
const HEALTHY_SESSION: Duration = Duration::from_secs(30);

/// How long to let the broker settle the last acknowledgements before closing the channel on
/// shutdown: quorum queues have been seen to requeue messages whose acks arrived just before a
/// close (rabbitmq-server#10327), which here would double a conversion.
pub(super) const ACK_SETTLE: Duration = Duration::from_millis(300);
/// What cancelling the consumers may take at the start of a drain.
pub(super) const CANCEL_TIMEOUT: Duration = Duration::from_secs(1);
/// After the grace, what letting the acks settle and closing may take in all.
pub(super) const CLOSE_BUDGET: Duration = Duration::from_secs(3);
/// What a drain may take beyond the grace.
pub(super) const DRAIN_BOUNDS: Duration = CANCEL_TIMEOUT.saturating_add(CLOSE_BUDGET);

/// Why a session ended without an error to report.
pub(super) enum SessionEnd {
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

/// One consumer: its queue, its tag, and the messages it brings.
pub(super) struct Taking {
    pub queue: Queue,
    pub tag: String,
    pub consumer: Consumer,
}

/// What a consuming session holds.
pub(super) struct Session {
    pub conn: Arc<Connection>,
    pub pub_conn: Connection,
    pub ch: Channel,
    pub recorder: Recorder,
    pub consumers: [Taking; 2],
    /// Cancelled when either connection reports an error.
    pub failed: CancellationToken,
    /// Tasks that watch the connections, the queues (the sampler), and settle the acks.
    pub watchers: Vec<JoinHandle<()>>,
    pub settler: Settler,
    pub settling: JoinHandle<()>,
    /// One task per message being processed: at most `prefetch` per consumer.
    pub tasks: JoinSet<()>,
}

impl Session {
    /// Whether both connections still look alive.
    pub fn alive(&self) -> bool {
        self.conn.status().connected()
            && self.pub_conn.status().connected()
            && !self.failed.is_cancelled()
    }
}

/// The pause before the next session: doubled each time, back to the first after a healthy
/// session, never over `max`.
fn next_delay(delay: Duration, session_lasted: Duration, max: Duration) -> Duration {
    let delay = if session_lasted >= HEALTHY_SESSION {
        FIRST_DELAY
    } else {
        delay
    };
    delay.min(max)
}

impl Relay {
    /// Consumes until `shutdown` is cancelled, reconnecting whenever the broker goes away.
    /// Returns an error only for what retrying cannot fix (the broker refuses the topology).
    /// Once `shutdown` is cancelled it returns within the grace and a few seconds more,
    /// whatever the broker does.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), RelayError> {
        let max_delay = Duration::from_secs(self.config.broker.reconnect_max_delay_secs);
        let mut delay = FIRST_DELAY;
        let mut sessions = 0u64;
        loop {
            let started = Instant::now();
            let Some(end) = self.bounded_session(&shutdown, &mut sessions).await else {
                return Ok(());
            };
            self.health.set_ready(false);
            self.release_ready_hold();
            self.metrics.broker_connected.set(0);
            delay = next_delay(delay, started.elapsed(), max_delay);
            match end {
                Ok(SessionEnd::Shutdown) => {
                    // The stop may have come while a new session was being set up: the work
                    // of the one lost before still finishes within the grace.
                    self.finish_orphans(Instant::now() + self.grace()).await;
                    return Ok(());
                }
                Ok(SessionEnd::Lost(why)) => {
                    tracing::warn!(message = "broker connection lost; reconnecting", error = %self.shown(&why), retry_in_ms = delay.as_millis() as u64);
                }
                Err(SessionError::Broker(e)) if broker::is_precondition_failed(&e) => {
                    self.finish_orphans(Instant::now() + self.grace()).await;
                    return Err(RelayError::TopologyRefused(self.shown(&e)));
                }
                Err(e) => tracing::warn!(
                    message = "cannot consume from the broker; retrying",
                    error = %self.shown(&e),
                    retry_in_ms = delay.as_millis() as u64
                ),
            }
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.finish_orphans(Instant::now() + self.grace()).await;
                    return Ok(());
                }
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(max_delay);
        }
    }

    /// One session, raced against the last resort: once a stop is asked, the session has the
    /// grace and the drain's own bounds, and a second more; past that it is dropped (`None`)
    /// and its unfinished messages return to the queue.
    async fn bounded_session(
        self: &Arc<Self>,
        shutdown: &CancellationToken,
        sessions: &mut u64,
    ) -> Option<Result<SessionEnd, SessionError>> {
        let overrun = async {
            shutdown.cancelled().await;
            tokio::time::sleep(self.grace() + DRAIN_BOUNDS + Duration::from_secs(1)).await;
        };
        tokio::select! {
            end = self.session(shutdown, sessions) => Some(end),
            () = overrun => {
                tracing::warn!(message = "the stop overran its grace; unfinished messages return to the queue");
                None
            }
        }
    }

    async fn session(
        self: &Arc<Self>,
        shutdown: &CancellationToken,
        sessions: &mut u64,
    ) -> Result<SessionEnd, SessionError> {
        let mut session = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(SessionEnd::Shutdown),
            open = tokio::time::timeout(SETUP_TIMEOUT, self.open()) => {
                let opened = open.map_err(|_| SessionError::Timeout(SETUP_TIMEOUT)).and_then(|o| o.map_err(SessionError::from));
                if opened.is_err() {
                    // A node that accepts connections but fails the set-up (or is cut off by
                    // the set-up's bound) is not the first one tried next time.
                    let n = self.config.broker.addresses().len().max(1);
                    let next = (self.broker_node.load(std::sync::atomic::Ordering::Relaxed) + 1) % n;
                    self.broker_node.store(next, std::sync::atomic::Ordering::Relaxed);
                }
                opened?
            }
        };
        *sessions += 1;
        if *sessions > 1 {
            self.metrics.broker_reconnects.inc();
        }
        self.metrics.broker_connected.set(1);
        self.health.set_ready(true);
        self.release_ready_hold();
        tracing::info!(message = "consuming", queue = %self.topology.events, prefetch = self.config.broker.prefetch);
        let end = self.consume(&mut session, shutdown).await;
        self.health.set_ready(false);
        match &end {
            SessionEnd::Shutdown => self.drain(session).await,
            SessionEnd::Lost(_) => self.abandon(session).await,
        }
        Ok(end)
    }

    /// Takes messages and hands each to a task of its own, until the session ends. While the
    /// store does not answer, it takes none: nothing could be sent without a claim, and the
    /// messages wait in their queues, in order, their retry budget unspent, rather than being
    /// moved to the retry tiers and back until the store returns.
    async fn consume(
        self: &Arc<Self>,
        session: &mut Session,
        shutdown: &CancellationToken,
    ) -> SessionEnd {
        let mut watch = tokio::time::interval(WATCH_EVERY);
        let Session {
            consumers: [events, deliveries],
            tasks,
            ..
        } = session;
        let (recorder, settler, failed) = (&session.recorder, &session.settler, &session.failed);
        let (conn, pub_conn) = (&session.conn, &session.pub_conn);
        let mut store = self.health.store_watch();
        loop {
            let taking = *store.borrow_and_update();
            let next = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return SessionEnd::Shutdown,
                _ = recorder.broken.cancelled() => return SessionEnd::Lost("publishing to the broker failed".into()),
                _ = failed.cancelled() => return SessionEnd::Lost("a broker connection failed".into()),
                _ = watch.tick() => {
                    if !conn.status().connected() || !pub_conn.status().connected() {
                        return SessionEnd::Lost("a broker connection is closed".into());
                    }
                    continue;
                }
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(e) = done {
                        tracing::error!(message = "message task failed", error = %self.shown(&e));
                    }
                    continue;
                }
                // Waited on only while taking nothing: while taking, the next message or tick
                // reads the store's state at the top of the loop.
                Ok(()) = store.changed(), if !taking => continue,
                next = events.consumer.next(), if taking => (events.queue, next),
                next = deliveries.consumer.next(), if taking => (deliveries.queue, next),
            };
            if let Some(end) = self.took(next, (recorder, settler), tasks) {
                return end;
            }
        }
    }

    /// What a consumer brought: a message, handed to a task of its own (`None`: the session
    /// goes on), or the consumer's error or end, which ends the session.
    fn took(
        self: &Arc<Self>,
        next: (Queue, Option<Result<Delivery, lapin::Error>>),
        (recorder, settler): (&Recorder, &Settler),
        tasks: &mut JoinSet<()>,
    ) -> Option<SessionEnd> {
        match next {
            (queue, Some(Ok(message))) => {
                let tag = message.delivery_tag;
                settler.taken(tag, queue == Queue::Events);
                let (me, recorder, settler) = (Arc::clone(self), recorder.clone(), settler.clone());
                tasks.spawn(async move {
                    let fate = me.handle(queue, message, &recorder).await;
                    settler.done(tag, fate);
                });
                None
            }
            (_, Some(Err(e))) => Some(SessionEnd::Lost(e.to_string())),
            (queue, None) => {
                let name = match queue {
                    Queue::Events => &self.topology.events,
                    Queue::Deliveries => &self.topology.deliveries,
                };
                Some(SessionEnd::Lost(format!(
                    "the broker cancelled the consumer of {name}"
                )))
            }
        }
    }

    pub(super) fn grace(&self) -> Duration {
        Duration::from_secs(self.config.worker.shutdown_grace_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_starts_over_after_a_healthy_session() {
        let max = Duration::from_secs(30);
        let short = Duration::from_secs(1);
        assert_eq!(
            next_delay(Duration::from_secs(8), short, max),
            Duration::from_secs(8)
        );
        assert_eq!(
            next_delay(Duration::from_secs(8), HEALTHY_SESSION, max),
            FIRST_DELAY
        );
        assert_eq!(next_delay(Duration::from_secs(60), short, max), max);
    }
}
