//! What must survive a crash and be shared by replicas: which deliveries were accepted (the
//! idempotency record), which are being attempted right now (claims), and the latest status
//! sent for each conversion (status order).
//!
//! Two stores behind one interface:
//! - `embedded` (default): a SQLite file in WAL mode, for one process. Records are written
//!   before the event is acknowledged and survive a crash of the process. Claims live in
//!   memory, since only this process makes them.
//! - `redis`: for several replicas. Claims are `SET NX PX` leases, renewed while held; records
//!   are keys with a TTL.
//!
//! A claim or a lock is a [`Held`] value: it is ours while the value lives, and let go when it is
//! dropped, on every path. While it lives it never lapses: the embedded store's claims do not
//! expire, and Redis leases are renewed in the background. Before each partner call the holder
//! checks it still holds the claim ([`Held::ensure`]), so a delivery is never sent after its
//! claim was lost.

mod embedded;
mod redis;
mod redis_batch;

use std::sync::Arc;
use std::time::Duration;

pub use self::embedded::Embedded;
pub use self::redis::RedisStore;
pub use crate::config::store::StoreConfig;

/// The store's keys, built here and nowhere else.
pub mod keys {
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

#[derive(Clone)]
pub enum Store {
    Embedded(Embedded),
    Redis(RedisStore),
}

impl Store {
    /// The state a fleet of replicas shares besides the store's own: with Redis, the
    /// partners' rate limits and circuits, and which destinations are paused.
    pub fn fleet(&self) -> Option<crate::shared::fleet::Fleet> {
        match self {
            Store::Embedded(_) => None,
            Store::Redis(s) => Some(s.fleet()),
        }
    }

    /// Whether the store answers now (within a second).
    pub async fn ping(&self) -> bool {
        match self {
            Store::Embedded(_) => true,
            Store::Redis(s) => s.ping().await,
        }
    }

    pub async fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        match config {
            StoreConfig::Embedded { path, ttl_secs } => {
                Embedded::open(path.clone(), Duration::from_secs(*ttl_secs))
                    .await
                    .map(Store::Embedded)
            }
            StoreConfig::Redis {
                url,
                key_prefix,
                ttl_secs,
            } => RedisStore::open(url, key_prefix, Duration::from_secs(*ttl_secs))
                .await
                .map(Store::Redis),
        }
    }

    /// Claims delivery `key`, unless it was delivered already or someone else holds it.
    /// `lease` is how long the claim outlives this process if it dies holding it.
    pub async fn claim(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        let hold = match self {
            Store::Embedded(s) => s.claim(key)?,
            Store::Redis(s) => s.claim(key, lease).await?,
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
            Store::Embedded(s) => s.lock(key),
            Store::Redis(s) => s.lock(key, lease).await?,
        };
        Ok(token.map(|t| Held::new(self.clone(), key, t, lease)))
    }

    /// The highest status rank recorded for a conversion.
    pub async fn status(&self, key: &str) -> Result<Option<u8>, StoreError> {
        match self {
            Store::Embedded(s) => s.status(key),
            Store::Redis(s) => s.status(key).await,
        }
    }

    /// Raises the recorded status rank of a conversion to `rank` (never lowers it).
    pub async fn record_status(&self, key: &str, rank: u8) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.record_status(key, rank),
            Store::Redis(s) => s.record_status(key, rank).await,
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
    store: Option<Store>,
    key: String,
    token: Token,
    lease: Duration,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Store::Embedded(_) => "Store::Embedded",
            Store::Redis(_) => "Store::Redis",
        })
    }
}

impl Held {
    fn new(store: Store, key: &str, token: Token, lease: Duration) -> Held {
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
            (Some(Store::Embedded(s)), Token::Embedded(t)) => {
                s.holds(&self.key, *t).then_some(()).ok_or(HoldError::Lost)
            }
            (Some(Store::Redis(s)), Token::Redis(lease)) => s.ensure(lease, need).await,
            _ => Err(HoldError::Lost),
        }
    }

    /// Records that the partner accepted this claim's delivery, and raises the conversion's
    /// status rank with it when the request carried one: both or neither, durable when this
    /// returns. The claim is let go with the record; if the record fails it is still held.
    pub async fn delivered(&mut self, status: Option<(&str, u8)>) -> Result<(), StoreError> {
        let written = match (&self.store, &self.token) {
            (Some(Store::Embedded(s)), Token::Embedded(t)) => {
                s.delivered(&self.key, *t, status).await
            }
            (Some(Store::Redis(s)), Token::Redis(lease)) => {
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
            (Some(Store::Embedded(s)), Token::Embedded(t)) => s.lapse(&self.key, *t, self.lease),
            (_, Token::Redis(lease)) => lease.stop(),
            _ => {}
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        match (self.store.take(), &self.token) {
            (Some(Store::Embedded(s)), Token::Embedded(t)) => s.release(&self.key, *t),
            (Some(Store::Redis(s)), Token::Redis(lease)) => s.release_later(Arc::clone(lease)),
            _ => {}
        }
    }
}

#[cfg(test)]
impl Store {
    /// Lets a hold go if it is still the one `token` proves; another holder's stays.
    pub(crate) async fn release(&self, key: &str, token: &Token) {
        match (self, token) {
            (Store::Embedded(s), Token::Embedded(t)) => s.release(key, *t),
            (Store::Redis(s), Token::Redis(lease)) => s.release_now(lease).await,
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
