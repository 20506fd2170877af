//! Destinations an operator paused (`postback-relay destination pause NAME`): their deliveries
//! wait in the retry tiers, spending neither attempts nor age budget, until `resume`.
//!
//! Where the state lives follows the store: with Redis, one hash (`{prefix}:paused`, a field
//! per paused destination) that every replica reads; with the embedded store, a JSON file
//! beside the store's file (`{store path}.paused.json`), written whole and renamed into place.
//! A running relay reads it again every [`POLL`], so a pause or a resume takes effect within
//! that time (plus the first retry delay for a delivery already waiting).
//!
//! Redis can forget (a restart without its data, a flush, an eviction), and an empty hash
//! reads like a fleet where nothing is paused. So the relay keeps a mark beside the hash
//! (`{prefix}:mark`, a value the first relay sets) and reads both at once: a mark gone or
//! changed means Redis forgot, and the relay writes back every pause it knew before taking it
//! in, warns, and counts it (`postback_relay_store_state_lost_total`). What it cannot write
//! back (which deliveries were accepted, which statuses were sent) is lost: the warning says
//! so.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::shared::fleet::{mark_key, paused_key};
use crate::shared::store::StoreConfig;

/// How often a running relay reads the paused destinations again.
pub const POLL: Duration = Duration::from_secs(1);

/// How recent a relay's last reading must be for it to write back what it knew when Redis
/// forgot: an older one may undo what operators changed since (a destination resumed).
const FRESH: Duration = Duration::from_secs(5);

/// Who paused a destination, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paused {
    pub by: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    #[error("paused destinations in redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("paused destinations in {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("paused destinations in {path}: not what the relay writes ({source})")]
    Malformed {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Where the paused destinations are kept.
#[derive(Clone)]
pub enum Pauses {
    File(PathBuf),
    Redis {
        conn: redis::aio::ConnectionManager,
        key: String,
        /// The fleet's mark: gone or changed when Redis forgot.
        mark: String,
    },
}

/// The paused destinations as read, with the fleet's mark when they are in Redis.
struct Read {
    paused: BTreeMap<String, Paused>,
    /// `None` for the file, or a Redis without a mark.
    mark: Option<String>,
}

/// Reads the mark and the paused destinations at once.
static READ: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new("return {redis.call('GET', KEYS[1]), redis.call('HGETALL', KEYS[2])}")
});

/// Writes back the pauses a relay knew (each unless set since), sets the mark unless one is
/// set, and reads both at once.
static RESTORE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "for i = 2, #ARGV, 2 do redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1]) end
         redis.call('SET', KEYS[1], ARGV[1], 'NX')
         return {redis.call('GET', KEYS[1]), redis.call('HGETALL', KEYS[2])}",
    )
});

/// A field another program wrote wrongly still pauses its destination.
fn who_of(v: &[u8]) -> Paused {
    serde_json::from_slice(v).unwrap_or(Paused {
        by: "unknown".into(),
        at: DateTime::<Utc>::UNIX_EPOCH,
    })
}

impl Pauses {
    /// The place that goes with the store: for a command, which has no store open.
    pub async fn for_store(store: &StoreConfig) -> Result<Pauses, PauseError> {
        match store {
            StoreConfig::Embedded { path, .. } => Ok(Pauses::File(beside(path))),
            StoreConfig::Redis {
                url, key_prefix, ..
            } => {
                let client = redis::Client::open(url.as_str())?;
                let conn = redis::aio::ConnectionManager::new(client).await?;
                Ok(Pauses::Redis {
                    conn,
                    key: paused_key(key_prefix),
                    mark: mark_key(key_prefix),
                })
            }
        }
    }

    /// For a running relay: with `fleet` (the Redis store), its own connection; otherwise
    /// the file beside the embedded store's.
    pub fn for_running(store: &StoreConfig, fleet: Option<&crate::shared::fleet::Fleet>) -> Pauses {
        match (fleet, store) {
            (Some(fleet), _) => Pauses::Redis {
                conn: fleet.conn(),
                key: fleet.paused_key(),
                mark: fleet.mark_key(),
            },
            (None, StoreConfig::Embedded { path, .. }) => Pauses::File(beside(path)),
            (None, StoreConfig::Redis { key_prefix, .. }) => {
                // Not reached (a Redis store has its fleet); the file keeps a pause somewhere.
                Pauses::File(beside(std::path::Path::new(key_prefix)))
            }
        }
    }

    /// Every paused destination.
    pub async fn list(&self) -> Result<BTreeMap<String, Paused>, PauseError> {
        match self {
            Pauses::File(path) => read_file(path),
            Pauses::Redis { .. } => Ok(self.read().await?.paused),
        }
    }

    /// Every paused destination, and the fleet's mark with them (for Redis).
    async fn read(&self) -> Result<Read, PauseError> {
        match self {
            Pauses::File(path) => Ok(Read {
                paused: read_file(path)?,
                mark: None,
            }),
            Pauses::Redis { conn, key, mark } => {
                let mut read = READ.key(mark);
                read.key(key);
                Ok(of_redis(read.invoke_async(&mut conn.clone()).await?))
            }
        }
    }

    /// Writes back `known` (each destination unless Redis has it since), marks Redis as the
    /// fleet's unless it is marked, and reads it all again. Redis only.
    async fn restore(&self, known: &BTreeMap<String, Paused>) -> Result<Read, PauseError> {
        let Pauses::Redis { conn, key, mark } = self else {
            return self.read().await;
        };
        let mut restore = RESTORE.key(mark);
        restore.key(key).arg(uuid::Uuid::new_v4().to_string());
        for (name, who) in known {
            let who = serde_json::to_string(who).expect("a Paused serializes");
            restore.arg(name).arg(who);
        }
        Ok(of_redis(restore.invoke_async(&mut conn.clone()).await?))
    }

    /// Pauses `destination`; false when it already was.
    pub async fn pause(&self, destination: &str, who: Paused) -> Result<bool, PauseError> {
        match self {
            Pauses::File(path) => {
                let _locked = lock_file(path)?;
                let mut all = read_file(path)?;
                let new = !all.contains_key(destination);
                all.entry(destination.to_owned()).or_insert(who);
                write_file(path, &all)?;
                Ok(new)
            }
            Pauses::Redis { conn, key, .. } => {
                let value = serde_json::to_string(&who).expect("a Paused serializes");
                let set: i64 = redis::cmd("HSETNX")
                    .arg(key)
                    .arg(destination)
                    .arg(value)
                    .query_async(&mut conn.clone())
                    .await?;
                Ok(set == 1)
            }
        }
    }

    /// Resumes `destination`; false when it was not paused.
    pub async fn resume(&self, destination: &str) -> Result<bool, PauseError> {
        match self {
            Pauses::File(path) => {
                let _locked = lock_file(path)?;
                let mut all = read_file(path)?;
                let was = all.remove(destination).is_some();
                if was {
                    write_file(path, &all)?;
                }
                Ok(was)
            }
            Pauses::Redis { conn, key, .. } => {
                let removed: i64 = redis::cmd("HDEL")
                    .arg(key)
                    .arg(destination)
                    .query_async(&mut conn.clone())
                    .await?;
                Ok(removed == 1)
            }
        }
    }
}

/// An exclusive lock on `{path}.lock`, held by the file it returns until it is dropped: two
/// writers (two commands, the console and a command) read, change and write one after the
/// other, and neither undoes the other's change.
fn lock_file(path: &std::path::Path) -> Result<std::fs::File, PauseError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(PathBuf::from(name))
        .map_err(|source| PauseError::File {
            path: path.to_owned(),
            source,
        })?;
    f.lock().map_err(|source| PauseError::File {
        path: path.to_owned(),
        source,
    })?;
    Ok(f)
}

/// What [`READ`] and [`RESTORE`] answer: the mark, and the hash's fields.
fn of_redis((mark, all): (Option<String>, BTreeMap<String, Vec<u8>>)) -> Read {
    Read {
        paused: all.into_iter().map(|(n, v)| (n, who_of(&v))).collect(),
        mark,
    }
}

/// The file beside the embedded store's.
fn beside(store: &std::path::Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".paused.json");
    PathBuf::from(name)
}

/// The most the file may hold: a name and who paused it, for every destination, is far less.
const MAX_FILE_BYTES: u64 = 1 << 20;

fn read_file(path: &std::path::Path) -> Result<BTreeMap<String, Paused>, PauseError> {
    use std::io::Read as _;
    let read = std::fs::File::open(path).and_then(|f| {
        let mut bytes = Vec::new();
        f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            let why = format!("larger than {MAX_FILE_BYTES} bytes");
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, why));
        }
        Ok(bytes)
    });
    match read {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| PauseError::Malformed {
            path: path.to_owned(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(source) => Err(PauseError::File {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Written to a file of its own and renamed over the old one: a reader sees the old state or
/// the new, never half of one.
fn write_file(path: &std::path::Path, all: &BTreeMap<String, Paused>) -> Result<(), PauseError> {
    let err = |source| PauseError::File {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    // Its own name for each writer (a process may write from several requests at once).
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let text = serde_json::to_vec_pretty(all).expect("the paused destinations serialize");
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        std::io::Write::write_all(&mut f, &text)?;
        f.sync_all()
    });
    let moved = written.and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = moved {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    // The rename itself survives a crash once the directory is on disk.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

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
enum Marked {
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

fn marked(known: Option<&str>, read: Option<&str>) -> Marked {
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
    fn update(&self, read: Read) -> Vec<(String, Option<Paused>)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> Paused {
        Paused {
            by: "ops".into(),
            at: Utc::now(),
        }
    }

    #[test]
    fn the_board_says_what_changed() {
        let read = |paused: BTreeMap<String, Paused>| Read { paused, mark: None };
        let board = Board::default();
        let changed = board.update(read(BTreeMap::from([("a".into(), who())])));
        assert_eq!(changed.len(), 1);
        assert!(board.is_paused("a") && !board.is_paused("b"));
        assert!(
            board
                .update(read(BTreeMap::from([("a".into(), who())])))
                .is_empty()
        );
        let changed = board.update(read(BTreeMap::new()));
        assert_eq!(changed, vec![("a".to_owned(), None)]);
        assert!(!board.is_paused("a"));
    }

    #[test]
    fn a_mark_gone_or_changed_says_redis_forgot() {
        assert_eq!(marked(Some("a"), Some("a")), Marked::Same);
        assert_eq!(marked(Some("a"), None), Marked::Forgotten);
        assert_eq!(marked(Some("a"), Some("b")), Marked::Forgotten);
        assert_eq!(marked(None, Some("b")), Marked::First);
        assert_eq!(marked(None, None), Marked::Unmarked);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn writers_at_once_never_undo_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let pauses = Pauses::File(beside(&dir.path().join("relay.db")));
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let p = pauses.clone();
                tokio::spawn(async move { p.pause(&format!("d{i}"), who()).await.unwrap() })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert_eq!(pauses.list().await.unwrap().len(), 40, "every pause kept");
    }

    #[tokio::test]
    async fn the_file_beside_the_embedded_store_pauses_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("relay.db");
        let pauses = Pauses::File(beside(&store));
        assert!(
            pauses.list().await.unwrap().is_empty(),
            "no file, none paused"
        );
        assert!(pauses.pause("hoqu", who()).await.unwrap());
        assert!(
            !pauses.pause("hoqu", who()).await.unwrap(),
            "already paused"
        );
        assert!(dir.path().join("relay.db.paused.json").exists());
        assert_eq!(
            pauses.list().await.unwrap().keys().collect::<Vec<_>>(),
            ["hoqu"]
        );
        assert!(pauses.resume("hoqu").await.unwrap());
        assert!(!pauses.resume("hoqu").await.unwrap());
        assert!(pauses.list().await.unwrap().is_empty());

        std::fs::write(beside(&store), "{not json").unwrap();
        let err = pauses.list().await.unwrap_err().to_string();
        assert!(err.contains("relay.db.paused.json"), "{err}");
    }
}
