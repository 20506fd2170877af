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

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

pub use self::embedded::Embedded;
pub use self::redis::RedisStore;

#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "StoreTable")]
pub enum StoreConfig {
    /// A SQLite file for one relay process.
    Embedded { path: PathBuf, ttl_secs: u64 },
    /// Redis, shared by every replica.
    Redis {
        url: String,
        key_prefix: String,
        ttl_secs: u64,
    },
}

/// `[store]` as written. Read as one table (rather than as an enum tagged by `kind`) so that
/// an error in a key is reported under the key's own name (`store.ttl_secs`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreTable {
    kind: StoreKind,
    path: Option<PathBuf>,
    url: Option<String>,
    key_prefix: Option<String>,
    #[serde(default = "default_ttl")]
    ttl_secs: u64,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StoreKind {
    Embedded,
    Redis,
}

impl TryFrom<StoreTable> for StoreConfig {
    type Error = String;

    fn try_from(t: StoreTable) -> Result<StoreConfig, String> {
        match t.kind {
            StoreKind::Embedded => {
                if t.url.is_some() || t.key_prefix.is_some() {
                    return Err("url and key_prefix are for kind = \"redis\"".into());
                }
                Ok(StoreConfig::Embedded {
                    path: t.path.unwrap_or_else(default_path),
                    ttl_secs: t.ttl_secs,
                })
            }
            StoreKind::Redis => {
                if t.path.is_some() {
                    return Err("path is for kind = \"embedded\"".into());
                }
                Ok(StoreConfig::Redis {
                    url: t
                        .url
                        .ok_or("missing field `url` (required for kind = \"redis\")")?,
                    key_prefix: t.key_prefix.unwrap_or_else(default_prefix),
                    ttl_secs: t.ttl_secs,
                })
            }
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::Embedded {
            path: default_path(),
            ttl_secs: default_ttl(),
        }
    }
}

fn default_path() -> PathBuf {
    PathBuf::from("postback-relay.db")
}

/// 72 hours: above the default retry budget (48 h), so a delivery retried to the end is still
/// known when a late redelivery comes.
fn default_ttl() -> u64 {
    72 * 3600
}

fn default_prefix() -> String {
    "postback-relay".into()
}

/// The longest `ttl_secs`: ten years. Expiry times are milliseconds since 1970 in a signed
/// 64-bit integer (SQLite, Redis `PX`), which a far larger TTL would overflow.
pub const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 3600;

impl StoreConfig {
    /// The store's own check of its keys; the configuration checks `ttl_secs` against the
    /// retry budgets, which it alone knows.
    /// What is wrong with `ttl_secs`, if anything.
    pub fn check_ttl(&self) -> Result<(), String> {
        let ttl = self.ttl().as_secs();
        if !(1..=MAX_TTL_SECS).contains(&ttl) {
            return Err(format!(
                "{ttl} must be between 1 and {MAX_TTL_SECS} (10 years)"
            ));
        }
        Ok(())
    }

    pub fn ttl(&self) -> Duration {
        match self {
            StoreConfig::Embedded { ttl_secs, .. } | StoreConfig::Redis { ttl_secs, .. } => {
                Duration::from_secs(*ttl_secs)
            }
        }
    }
}

/// The store's keys, built here and nowhere else.
pub mod keys {
    /// One delivery: an event for a destination.
    pub fn delivery(destination: &str, event_id: &str) -> String {
        format!("{destination}\u{1f}{event_id}")
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
mod tests {
    use super::*;

    fn held(c: Claim) -> Held {
        match c {
            Claim::Acquired(h) => h,
            other => panic!("expected a claim, got {other:?}"),
        }
    }

    /// A Redis hold is let go by a task of its own once dropped: wait for it.
    async fn claim_when_free(store: &Store, key: &str, lease: Duration) -> Held {
        for _ in 0..100 {
            if let Claim::Acquired(h) = store.claim(key, lease).await.unwrap() {
                return h;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{key} was never let go");
    }

    async fn lock_when_free(store: &Store, key: &str, lease: Duration) -> Held {
        for _ in 0..100 {
            if let Some(h) = store.lock(key, lease).await.unwrap() {
                return h;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{key} was never let go");
    }

    async fn exercise(store: Store, unique: &str) {
        let key = keys::delivery("dest", unique);
        let lease = Duration::from_secs(30);
        let first = held(store.claim(&key, lease).await.unwrap());
        assert!(matches!(
            store.claim(&key, lease).await.unwrap(),
            Claim::Busy
        ));
        first.ensure(lease / 2).await.unwrap();
        drop(first);
        let mut again = claim_when_free(&store, &key, lease).await;
        again.delivered(None).await.unwrap();
        assert!(matches!(
            store.claim(&key, lease).await.unwrap(),
            Claim::Delivered
        ));

        let order = keys::conversion("dest", unique);
        assert_eq!(store.status(&order).await.unwrap(), None);
        store.record_status(&order, 2).await.unwrap();
        store.record_status(&order, 1).await.unwrap();
        assert_eq!(
            store.status(&order).await.unwrap(),
            Some(2),
            "never lowered"
        );
        store.record_status(&order, 3).await.unwrap();
        assert_eq!(store.status(&order).await.unwrap(), Some(3));
        // A delivery record can raise a status with it, atomically.
        let other = keys::conversion("dest2", unique);
        let second = format!("{key}-2");
        let mut claim = held(store.claim(&second, lease).await.unwrap());
        claim.delivered(Some((&other, 2))).await.unwrap();
        assert_eq!(store.status(&other).await.unwrap(), Some(2));
        assert!(matches!(
            store.claim(&second, lease).await.unwrap(),
            Claim::Delivered
        ));

        // A lock is let go when its guard is dropped, and kept when told to.
        let lock = keys::conversion_lock(&order);
        let l = store.lock(&lock, lease).await.unwrap().expect("free");
        assert!(store.lock(&lock, lease).await.unwrap().is_none());
        drop(l);
        let l = lock_when_free(&store, &lock, lease).await;
        l.keep_until_lease_ends();
        assert!(
            store.lock(&lock, lease).await.unwrap().is_none(),
            "kept until its lease ends"
        );
        let short = keys::conversion_lock(&format!("{order}-short"));
        store
            .lock(&short, Duration::from_millis(50))
            .await
            .unwrap()
            .expect("free")
            .keep_until_lease_ends();
        tokio::time::sleep(Duration::from_millis(60)).await;
        lock_when_free(&store, &short, lease).await;
    }

    #[tokio::test]
    async fn embedded_store_and_its_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let cfg = StoreConfig::Embedded {
            path: path.clone(),
            ttl_secs: 60,
        };
        exercise(Store::open(&cfg).await.unwrap(), "e1").await;
        // A new process sees what the last one recorded.
        let again = Store::open(&cfg).await.unwrap();
        assert!(matches!(
            again
                .claim(&keys::delivery("dest", "e1"), Duration::from_secs(1))
                .await
                .unwrap(),
            Claim::Delivered
        ));
    }

    #[tokio::test]
    async fn an_embedded_store_serves_one_process() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig::Embedded {
            path: dir.path().join("s.db"),
            ttl_secs: 60,
        };
        let first = Store::open(&cfg).await.unwrap();
        let second = Store::open(&cfg).await.expect_err("the file is taken");
        assert!(
            second.to_string().contains("in use by another process"),
            "{second}"
        );
        // Records written together in one commit are each found.
        let keys: Vec<String> = (0..100)
            .map(|i| keys::delivery("d", &i.to_string()))
            .collect();
        let mut claims = Vec::new();
        for k in &keys {
            claims.push(held(first.claim(k, Duration::from_secs(1)).await.unwrap()));
        }
        futures_util::future::try_join_all(claims.iter_mut().map(|h| h.delivered(None)))
            .await
            .unwrap();
        for k in &keys {
            assert!(matches!(
                first.claim(k, Duration::from_secs(1)).await.unwrap(),
                Claim::Delivered
            ));
        }
    }

    #[tokio::test]
    async fn a_hold_whose_lease_ran_out_cannot_free_its_successor() {
        let dir = tempfile::tempdir().unwrap();
        let embedded = Store::open(&StoreConfig::Embedded {
            path: dir.path().join("s.db"),
            ttl_secs: 60,
        })
        .await
        .unwrap();
        for store in [embedded, redis_store().await] {
            let key = keys::conversion_lock(&uuid::Uuid::new_v4().to_string());
            let short = Duration::from_millis(50);
            let old = store.lock(&key, short).await.unwrap().expect("free");
            let old_token = old.token.clone();
            // The old holder's lease runs out (it stopped renewing)...
            old.keep_until_lease_ends();
            tokio::time::sleep(Duration::from_millis(120)).await;
            // ...a successor takes it...
            let successor = store
                .lock(&key, Duration::from_secs(30))
                .await
                .unwrap()
                .expect("free after the lease");
            // ...and the old holder letting go late leaves the successor's hold alone.
            store.release(&key, &old_token).await;
            assert!(store.lock(&key, short).await.unwrap().is_none());
            successor.ensure(Duration::from_secs(1)).await.unwrap();
        }
    }

    async fn redis_store() -> Store {
        let cfg = StoreConfig::Redis {
            url: std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into()),
            key_prefix: format!("test-{}", uuid::Uuid::new_v4().simple()),
            ttl_secs: 60,
        };
        Store::open(&cfg)
            .await
            .expect("Redis must be running on 127.0.0.1:6379 (see README)")
    }

    #[tokio::test]
    async fn the_redis_store() {
        let store = redis_store().await;
        exercise(store.clone(), "r1").await;
    }

    #[tokio::test]
    async fn redis_claims_are_renewed_while_held_and_are_per_holder() {
        let store = redis_store().await;
        let other = store.clone();
        let key = keys::delivery("dest", "r2");
        let lease = Duration::from_millis(600);
        let mine = held(store.claim(&key, lease).await.unwrap());
        // Held for several leases: the renewals keep the other replica out.
        for _ in 0..4 {
            tokio::time::sleep(lease / 2).await;
            assert!(matches!(
                other.claim(&key, lease).await.unwrap(),
                Claim::Busy
            ));
        }
        mine.ensure(lease / 2).await.unwrap();
        drop(mine);
        claim_when_free(&other, &key, lease).await;
    }

    /// Redis can lose a key (a failover to a replica that had not received it, an eviction):
    /// the old holder must not be cleared to send once another replica took the claim.
    #[tokio::test]
    async fn a_claim_redis_lost_is_not_ensured_for_its_old_holder() {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
        let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
        let cfg = StoreConfig::Redis {
            url: url.clone(),
            key_prefix: prefix.clone(),
            ttl_secs: 60,
        };
        let (a, b) = (
            Store::open(&cfg).await.unwrap(),
            Store::open(&cfg).await.unwrap(),
        );
        let key = keys::delivery("hoqu", "e1");
        let lease = Duration::from_secs(30);
        let first = held(a.claim(&key, lease).await.unwrap());
        let mut conn = ::redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let gone: i64 = ::redis::cmd("DEL")
            .arg(format!("{prefix}:claim:{key}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(gone, 1, "the claim's key as the store writes it");
        let second = held(b.claim(&key, lease).await.unwrap());
        let need = Duration::from_secs(7);
        second.ensure(need).await.unwrap();
        assert!(
            first.ensure(need).await.is_err(),
            "two replicas both hold the claim and are both cleared to send"
        );
    }
}
