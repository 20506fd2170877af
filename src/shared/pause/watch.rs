//! What a running relay knows of the paused destinations ([`Board`]), and the task that reads
//! them again every [`POLL`] ([`Watch`]).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use std::time::Duration;

use super::{FRESH, POLL, PauseError, Paused, Pauses, Read};

/// What a running relay knows of the paused destinations, as last read, and of the fleet's
/// mark in Redis; kept across reloads.
#[derive(Clone, Default)]
pub struct Board(Arc<BoardInner>);

#[derive(Default)]
struct BoardInner {
    known: RwLock<Known>,
    /// Whether any destination is paused: asked before each call, it spares the lock and the
    /// look-up while none is, as is usual.
    any: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Known {
    paused: BTreeMap<String, Paused>,
    mark: Option<String>,
    /// When Redis (or the file) last answered.
    read_at: Option<std::time::Instant>,
}

/// How a read's mark compares with the one known before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Marked {
    /// The same mark: Redis remembers.
    Same,
    /// The first read that found one: taken as it is.
    First,
    /// None yet, and none known: a Redis no relay used, or one that forgot before this relay
    /// started (nothing tells the two apart); the relay marks it.
    Unmarked,
    /// The mark known is gone or changed: Redis forgot the fleet's state.
    Forgotten,
}

pub(super) fn marked(known: Option<&str>, read: Option<&str>) -> Marked {
    match (known, read) {
        (Some(k), Some(r)) if k == r => Marked::Same,
        (Some(_), _) => Marked::Forgotten,
        (None, Some(_)) => Marked::First,
        (None, None) => Marked::Unmarked,
    }
}

impl Board {
    pub fn is_paused(&self, destination: &str) -> bool {
        self.0.any.load(std::sync::atomic::Ordering::Acquire)
            && self.known().paused.contains_key(destination)
    }

    fn known(&self) -> std::sync::RwLockReadGuard<'_, Known> {
        self.0.known.read().expect("pause board lock")
    }

    fn paused(&self) -> BTreeMap<String, Paused> {
        self.known().paused.clone()
    }

    fn mark(&self) -> Option<String> {
        self.known().mark.clone()
    }

    /// Whether the last reading is at most `within` old.
    fn fresh(&self, within: Duration) -> bool {
        self.known().read_at.is_some_and(|t| t.elapsed() <= within)
    }

    /// Takes in what was read; gives the destinations whose state changed, with the new state.
    pub(super) fn update(&self, read: Read) -> Vec<(String, Option<Paused>)> {
        let mut known = self.0.known.write().expect("pause board lock");
        known.read_at = Some(std::time::Instant::now());
        if read.mark.is_some() {
            known.mark = read.mark;
        }
        let now = read.paused;
        let held = &mut known.paused;
        let mut changed: Vec<_> = now
            .iter()
            .filter(|(name, _)| !held.contains_key(*name))
            .map(|(name, who)| (name.clone(), Some(who.clone())))
            .collect();
        changed.extend(
            held.keys()
                .filter(|name| !now.contains_key(*name))
                .map(|name| (name.clone(), None)),
        );
        *held = now;
        let any = !held.is_empty();
        self.0.any.store(any, std::sync::atomic::Ordering::Release);
        changed
    }
}

/// The metrics a [`Watch`] keeps: `postback_relay_destination_paused` per destination, and
/// `postback_relay_store_state_lost_total`.
#[derive(Clone)]
pub struct Gauges {
    pub paused: prometheus::IntGaugeVec,
    pub state_lost: prometheus::IntCounter,
}

/// Reads the paused destinations every [`POLL`] until `stop`, keeping `board` and the
/// `postback_relay_destination_paused` gauge up to date. A read that fails keeps the last
/// state known (a pause is not lifted because Redis is away).
pub struct Watch {
    pauses: Pauses,
    board: Board,
    metrics: Gauges,
    names: Vec<String>,
    stop: tokio_util::sync::CancellationToken,
}

impl Watch {
    pub fn new(
        pauses: Pauses,
        board: Board,
        metrics: Gauges,
        names: Vec<String>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Watch {
        Watch {
            pauses,
            board,
            metrics,
            names,
            stop,
        }
    }

    /// Reads once, now: a relay knows what is paused before it takes its first message.
    pub async fn first_read(self) -> Watch {
        self.read().await;
        self
    }

    pub async fn run(self) {
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(POLL) => self.read().await,
            }
        }
    }

    async fn read(&self) {
        match self.remembered().await {
            Ok(now) => {
                for (name, who) in self.board.update(now) {
                    match who {
                        Some(p) => {
                            tracing::warn!(message = "destination paused: its deliveries wait", destination = %name, by = %p.by, since = %p.at)
                        }
                        None => {
                            tracing::info!(message = "destination resumed", destination = %name)
                        }
                    }
                }
                for name in &self.names {
                    self.metrics
                        .paused
                        .with_label_values(&[name])
                        .set(i64::from(self.board.is_paused(name)));
                }
            }
            Err(e) => {
                tracing::warn!(message = "cannot read the paused destinations; the last state known holds", error = %e)
            }
        }
    }

    /// The paused destinations, after making sure Redis has not forgotten them: when it has,
    /// every pause this relay knew is written back first.
    async fn remembered(&self) -> Result<Read, PauseError> {
        let read = self.pauses.read().await?;
        let Pauses::Redis { .. } = self.pauses else {
            return Ok(read);
        };
        match marked(self.board.mark().as_deref(), read.mark.as_deref()) {
            Marked::Same | Marked::First => Ok(read),
            Marked::Unmarked => {
                tracing::info!(
                    message = "the store's Redis holds no mark of the fleet: a new store, or one that lost its data before this relay started; marking it"
                );
                self.pauses.restore(&BTreeMap::new()).await
            }
            Marked::Forgotten => {
                // What a relay knew is written back only if it is recent: an older reading
                // could undo what operators did since; a relay that read Redis more recently
                // writes back its own.
                let fresh = self.board.fresh(FRESH);
                let known = if fresh {
                    self.board.paused()
                } else {
                    BTreeMap::new()
                };
                let restored = self.pauses.restore(&known).await?;
                self.metrics.state_lost.inc();
                let pauses = match fresh {
                    true => "the pauses this relay knew are written back",
                    false => {
                        "this relay's last reading is too old to write its pauses back: check them with `destination list`"
                    }
                };
                tracing::warn!(
                    message = "the store's Redis forgot the fleet's state (a restart without its data, a flush or an eviction); which deliveries were accepted and which statuses were sent before is lost, so a redelivered event may be sent again and a status after a later one",
                    pauses,
                    paused_restored = known.len(),
                );
                Ok(restored)
            }
        }
    }
}
