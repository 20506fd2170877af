//! What replicas share, behind one interface ([`Shared`]) with two backends, chosen once at
//! start-up from `[store]`:
//! - `embedded` (default), for one process: a SQLite file in WAL mode keeps which deliveries
//!   were accepted (the idempotency record) and the latest status sent for each conversion
//!   (status order), written before the event is acknowledged and surviving a crash of the
//!   process; claims live in memory, since only this process makes them; the rate limits and
//!   circuits are this process's own (`circuit`); paused destinations are a file beside the
//!   store's ([`pause`]).
//! - `redis`, for a fleet of replicas: claims are `SET NX PX` leases, renewed while held;
//!   records are keys with a TTL; the rate limits, the circuits (`fleet`) and the paused
//!   destinations are the whole fleet's.
//!
//! A claim or a lock is a [`Held`] value: it is ours while the value lives, and let go when it is
//! dropped, on every path. While it lives it never lapses: the embedded store's claims do not
//! expire, and Redis leases are renewed in the background. Before each partner call the holder
//! checks it still holds the claim ([`Held::ensure`]), so a delivery is never sent after its
//! claim was lost.

mod breaker;
pub(crate) mod circuit;
pub mod client;
mod embedded;
mod fleet;
mod fleet_circuit;
mod limit;
pub mod pause;
mod redis;
mod redis_batch;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

pub use self::breaker::Breaker;
pub use self::embedded::Embedded;
use self::fleet::Fleet;
pub use self::limit::Rate;
use self::pause::Pauses;
pub use self::redis::RedisStore;
pub use crate::config::circuit::CircuitConfig;
pub use crate::config::store::StoreConfig;

/// The store's keys, built here and nowhere else.
pub(crate) mod keys {
    /// One delivery: an event for a destination.
    pub fn delivery(destination: &str, event_id: &str) -> String {
        format!("{destination}\u{1f}{event_id}")
    }

    /// One delivery sent again by a recovery: accepted once per recovery, whatever the
    /// delivery's own record says.
    pub fn recovered(destination: &str, event_id: &str, recovery: &str) -> String {
        format!("{destination}\u{1f}{event_id}\u{1f}recovery\u{1f}{recovery}")
    }

    /// One conversion at a destination, whose statuses go out in order.
    pub fn conversion(destination: &str, order_id: &str) -> String {
        format!("{destination}\u{1f}order\u{1f}{order_id}")
    }

    /// The lock that sends one conversion's statuses one at a time.
    pub fn conversion_lock(conversion: &str) -> String {
        format!("lock\u{1f}{conversion}")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("embedded store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("redis store: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("embedded store: {0}")]
    Task(String),
}

/// The result of claiming a delivery.
#[derive(Debug)]
pub enum Claim {
    /// Ours to attempt, for as long as the value lives.
    Acquired(Held),
    /// Already accepted by the partner: do not send again.
    Delivered,
    /// Another worker is attempting it right now.
    Busy,
}

/// Why a held claim may no longer be used.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    /// Its lease ran out and it may be someone else's now.
    #[error("the claim was lost")]
    Lost,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What replicas share, on the backend `[store]` chose when the relay started: the relay
/// asks it for claims, records and status order, and for each destination's rate limit,
/// circuit breaker and pauses.
#[derive(Clone)]
pub enum Shared {
    /// One process: a SQLite file, and this process's own limits and circuits.
    Embedded(Embedded),
    /// A fleet: everything in Redis, under the store's key prefix.
    Redis(RedisStore),
}

impl Shared {
    /// The fleet's connection and key prefix, with Redis.
    fn fleet(&self) -> Option<Fleet> {
        match self {
            Shared::Embedded(_) => None,
            Shared::Redis(s) => Some(s.fleet()),
        }
    }

    /// A destination's rate limit: this process's own, or the fleet's.
    pub fn rate(&self, per_sec: NonZeroU32, destination: &str) -> Rate {
        Rate::new(per_sec, destination, self.fleet().as_ref())
    }

    /// A destination's circuit breaker (`timeout`: the longest its probe call takes): this
    /// process's own, or the fleet's.
    pub fn breaker(&self, config: &CircuitConfig, timeout: Duration, destination: &str) -> Breaker {
        Breaker::new(config, timeout, destination, self.fleet().as_ref())
    }

    /// Where the paused destinations are kept: the file beside the embedded store's, or the
    /// fleet's hash in Redis, on this store's connection.
    pub fn pauses(&self) -> Pauses {
        match self {
            Shared::Embedded(s) => Pauses::beside(s.path()),
            Shared::Redis(s) => Pauses::of_fleet(&s.fleet()),
        }
    }

    /// Whether the store answers now (within a second).
    pub async fn ping(&self) -> bool {
        match self {
            Shared::Embedded(_) => true,
            Shared::Redis(s) => s.ping().await,
        }
    }

    pub async fn open(config: &StoreConfig) -> Result<Shared, StoreError> {
        match config {
            StoreConfig::Embedded { path, ttl_secs } => {
                Embedded::open(path.clone(), Duration::from_secs(*ttl_secs))
                    .await
                    .map(Shared::Embedded)
            }
            StoreConfig::Redis {
                url,
                key_prefix,
                ttl_secs,
                tls,
            } => RedisStore::open(
                (url, tls.as_ref()),
                key_prefix,
                Duration::from_secs(*ttl_secs),
            )
            .await
            .map(Shared::Redis),
        }
    }

    /// Claims delivery `key`, unless it was delivered already or someone else holds it.
    /// `lease` is how long the claim outlives this process if it dies holding it.
    pub async fn claim(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        let hold = match self {
            Shared::Embedded(s) => s.claim(key)?,
            Shared::Redis(s) => s.claim(key, lease).await?,
        };
        Ok(match hold {
            Taken::Held(token) => Claim::Acquired(Held::new(self.clone(), key, token, lease)),
            Taken::Delivered => Claim::Delivered,
            Taken::Busy => Claim::Busy,
        })
    }

    /// Takes a lock (a claim with no delivery record behind it), or `None` when someone else
    /// holds it.
    pub async fn lock(&self, key: &str, lease: Duration) -> Result<Option<Held>, StoreError> {
        let token = match self {
            Shared::Embedded(s) => s.lock(key),
            Shared::Redis(s) => s.lock(key, lease).await?,
        };
        Ok(token.map(|t| Held::new(self.clone(), key, t, lease)))
    }

    /// The highest status rank recorded for a conversion.
    pub async fn status(&self, key: &str) -> Result<Option<u8>, StoreError> {
        match self {
            Shared::Embedded(s) => s.status(key),
            Shared::Redis(s) => s.status(key).await,
        }
    }

    /// Raises the recorded status rank of a conversion to `rank` (never lowers it).
    pub async fn record_status(&self, key: &str, rank: u8) -> Result<(), StoreError> {
        match self {
            Shared::Embedded(s) => s.record_status(key, rank),
            Shared::Redis(s) => s.record_status(key, rank).await,
        }
    }
}

/// What a store's claim or lock call found.
pub(crate) enum Taken<T> {
    Held(T),
    Delivered,
    Busy,
}

/// The store's own proof of a hold: a token that only this holder has.
#[derive(Clone, Debug)]
pub(crate) enum Token {
    Embedded(u64),
    Redis(Arc<redis::Lease>),
}

/// A claim or a lock this worker holds. It is let go when dropped, whatever path the work
/// took; [`Held::delivered`] turns a claim into the delivery's record instead.
#[derive(Debug)]
pub struct Held {
    store: Option<Shared>,
    key: String,
    token: Token,
    lease: Duration,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Shared::Embedded(_) => "Shared::Embedded",
            Shared::Redis(_) => "Shared::Redis",
        })
    }
}

impl Held {
    fn new(store: Shared, key: &str, token: Token, lease: Duration) -> Held {
        Held {
            store: Some(store),
            key: key.to_owned(),
            token,
            lease,
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Checks that the hold is still ours and will stay so for at least `need` (the time a
    /// partner call may take), renewing it first if it must. Call it right before sending.
    pub async fn ensure(&self, need: Duration) -> Result<(), HoldError> {
        match (&self.store, &self.token) {
            (Some(Shared::Embedded(s)), Token::Embedded(t)) => {
                s.holds(&self.key, *t).then_some(()).ok_or(HoldError::Lost)
            }
            (Some(Shared::Redis(s)), Token::Redis(lease)) => s.ensure(lease, need).await,
            _ => Err(HoldError::Lost),
        }
    }

    /// Records that the partner accepted this claim's delivery, and raises the conversion's
    /// status rank with it when the request carried one: both or neither, durable when this
    /// returns. The claim is let go with the record; if the record fails it is still held.
    pub async fn delivered(&mut self, status: Option<(&str, u8)>) -> Result<(), StoreError> {
        let written = match (&self.store, &self.token) {
            (Some(Shared::Embedded(s)), Token::Embedded(t)) => {
                s.delivered(&self.key, *t, status).await
            }
            (Some(Shared::Redis(s)), Token::Redis(lease)) => {
                s.delivered(&self.key, lease, status).await
            }
            _ => Ok(()),
        };
        if written.is_ok() {
            // Let go by the record itself: nothing left to release.
            self.store = None;
            if let Token::Redis(lease) = &self.token {
                lease.stop();
            }
        }
        written
    }

    /// Stops holding without letting go: the hold lapses at the end of its lease. For a lock
    /// that must keep others out while a record it guards may be missing.
    pub fn keep_until_lease_ends(mut self) {
        match (self.store.take(), &self.token) {
            (Some(Shared::Embedded(s)), Token::Embedded(t)) => s.lapse(&self.key, *t, self.lease),
            (_, Token::Redis(lease)) => lease.stop(),
            _ => {}
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        match (self.store.take(), &self.token) {
            (Some(Shared::Embedded(s)), Token::Embedded(t)) => s.release(&self.key, *t),
            (Some(Shared::Redis(s)), Token::Redis(lease)) => s.release_later(Arc::clone(lease)),
            _ => {}
        }
    }
}

#[cfg(test)]
impl Shared {
    /// Lets a hold go if it is still the one `token` proves; another holder's stays.
    pub(crate) async fn release(&self, key: &str, token: &Token) {
        match (self, token) {
            (Shared::Embedded(s), Token::Embedded(t)) => s.release(key, *t),
            (Shared::Redis(s), Token::Redis(lease)) => s.release_now(lease).await,
            _ => {}
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
