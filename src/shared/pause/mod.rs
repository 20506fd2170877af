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

mod file;
mod watch;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use self::file::{lock_file, read_file, write_file};
pub use self::watch::{Board, Gauges, Watch};
use super::StoreConfig;
use super::fleet::Fleet;

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
                url,
                key_prefix,
                tls,
                ..
            } => {
                let conn = crate::shared::client::manager(url, tls.as_ref()).await?;
                Ok(Pauses::of_fleet(&Fleet::new(conn, key_prefix)))
            }
        }
    }

    /// The file beside the embedded store's file at `store`.
    pub(super) fn beside(store: &std::path::Path) -> Pauses {
        Pauses::File(beside(store))
    }

    /// The fleet's hash, on the Redis store's own connection.
    pub(super) fn of_fleet(fleet: &Fleet) -> Pauses {
        Pauses::Redis {
            conn: fleet.conn(),
            key: fleet.paused_key(),
            mark: fleet.mark_key(),
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

#[cfg(test)]
mod tests;
