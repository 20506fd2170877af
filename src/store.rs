//! What must survive a crash and be shared by replicas: which deliveries were accepted (the
//! idempotency record), which are being attempted right now (claims), and the latest status
//! sent for each conversion (status order).
//!
//! Two stores behind one interface:
//! - `embedded` (default): a SQLite file in WAL mode, for one process. Records are written
//!   before the event is acknowledged and survive a crash of the process. Claims live in
//!   memory, since only this process makes them.
//! - `redis`: for several replicas. Claims are `SET NX PX` (one replica at a time per
//!   delivery), records are keys with a TTL.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
pub enum StoreConfig {
    /// A SQLite file for one relay process.
    Embedded {
        #[serde(default = "default_path")]
        path: PathBuf,
        #[serde(default = "default_ttl")]
        ttl_secs: u64,
    },
    /// Redis, shared by every replica.
    Redis {
        url: String,
        #[serde(default = "default_prefix")]
        key_prefix: String,
        #[serde(default = "default_ttl")]
        ttl_secs: u64,
    },
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

impl StoreConfig {
    pub fn ttl(&self) -> Duration {
        match self {
            StoreConfig::Embedded { ttl_secs, .. } | StoreConfig::Redis { ttl_secs, .. } => {
                Duration::from_secs(*ttl_secs)
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("embedded store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("redis store: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("embedded store: {0}")]
    Task(String),
}

/// The result of claiming a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Ours to attempt; release or record it afterwards.
    Acquired,
    /// Already accepted by the partner: do not send again.
    Delivered,
    /// Another worker is attempting it right now.
    Busy,
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

    /// Claims `key` for `lease`, unless it was delivered already or someone else holds it.
    pub async fn claim(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        let claim = match self {
            Store::Embedded(s) => s.claim(key, lease).await?,
            Store::Redis(s) => s.claim(key, lease).await?,
        };
        // Another worker may have recorded it and let its claim go between our check and our
        // claim: look once more, now that nobody else can.
        if claim == Claim::Acquired && self.is_delivered(key).await? {
            self.release(key).await?;
            return Ok(Claim::Delivered);
        }
        Ok(claim)
    }

    async fn is_delivered(&self, key: &str) -> Result<bool, StoreError> {
        match self {
            Store::Embedded(s) => s.is_delivered(key).await,
            Store::Redis(s) => s.is_delivered(key).await,
        }
    }

    /// Gives a claim back without a record (the attempt did not deliver).
    pub async fn release(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => {
                s.release(key);
                Ok(())
            }
            Store::Redis(s) => s.release(key).await,
        }
    }

    /// Records that the partner accepted `key`, and raises the conversion's status rank with
    /// it when the request carried one: both or neither. Durable when this returns.
    pub async fn delivered(&self, key: &str, status: Option<(&str, u8)>) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.delivered(key, status).await,
            Store::Redis(s) => s.delivered(key, status).await,
        }
    }

    /// The highest status rank recorded for a conversion.
    pub async fn status(&self, key: &str) -> Result<Option<u8>, StoreError> {
        match self {
            Store::Embedded(s) => s.status(key).await,
            Store::Redis(s) => s.status(key).await,
        }
    }

    /// Raises the recorded status rank of a conversion to `rank` (never lowers it).
    pub async fn record_status(&self, key: &str, rank: u8) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.record_status(key, rank).await,
            Store::Redis(s) => s.record_status(key, rank).await,
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// SQLite in WAL mode with `synchronous=NORMAL`: a commit is in the WAL file when it returns,
/// so it survives the process being killed (a power loss may lose the last ones).
#[derive(Clone)]
pub struct Embedded {
    db: Arc<Mutex<rusqlite::Connection>>,
    claims: Arc<Mutex<HashMap<String, Instant>>>,
    ttl: Duration,
}

impl Embedded {
    async fn open(path: PathBuf, ttl: Duration) -> Result<Embedded, StoreError> {
        let db = tokio::task::spawn_blocking(move || -> Result<_, rusqlite::Error> {
            let db = rusqlite::Connection::open(&path)?;
            db.pragma_update(None, "journal_mode", "WAL")?;
            db.pragma_update(None, "synchronous", "NORMAL")?;
            db.busy_timeout(Duration::from_secs(5))?;
            db.execute_batch(
                "CREATE TABLE IF NOT EXISTS delivered (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
                 CREATE TABLE IF NOT EXISTS status (key TEXT PRIMARY KEY, rank INTEGER NOT NULL, expires_at INTEGER NOT NULL);
                 DELETE FROM delivered WHERE expires_at < strftime('%s','now') * 1000;
                 DELETE FROM status WHERE expires_at < strftime('%s','now') * 1000;",
            )?;
            Ok(db)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
        Ok(Embedded {
            db: Arc::new(Mutex::new(db)),
            claims: Arc::default(),
            ttl,
        })
    }

    /// Runs one statement under the connection's lock, on the calling thread: a WAL-mode
    /// statement takes microseconds (no fsync), less than handing it to a blocking thread.
    async fn with_db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.lock().expect("store lock");
        f(&db).map_err(StoreError::from)
    }

    async fn is_delivered(&self, key: &str) -> Result<bool, StoreError> {
        let k = key.to_owned();
        let now = now_ms();
        self.with_db(move |db| {
            db.prepare_cached("SELECT 1 FROM delivered WHERE key = ?1 AND expires_at > ?2")?
                .query_row(rusqlite::params![k, now], |_| Ok(()))
                .map(|_| true)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(false),
                    e => Err(e),
                })
        })
        .await
    }

    async fn claim(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        if self.is_delivered(key).await? {
            return Ok(Claim::Delivered);
        }
        let mut claims = self.claims.lock().expect("claims lock");
        let t = Instant::now();
        claims.retain(|_, until| *until > t);
        if claims.contains_key(key) {
            return Ok(Claim::Busy);
        }
        claims.insert(key.to_owned(), t + lease);
        Ok(Claim::Acquired)
    }

    fn release(&self, key: &str) {
        self.claims.lock().expect("claims lock").remove(key);
    }

    async fn delivered(&self, key: &str, status: Option<(&str, u8)>) -> Result<(), StoreError> {
        let (k, expires) = (key.to_owned(), now_ms() + self.ttl.as_millis() as i64);
        let status = status.map(|(sk, rank)| (sk.to_owned(), rank));
        self.with_db(move |db| {
            let tx = db.unchecked_transaction()?;
            tx.prepare_cached(
                "INSERT INTO delivered (key, expires_at) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET expires_at = excluded.expires_at",
            )?
            .execute(rusqlite::params![k, expires])?;
            if let Some((sk, rank)) = status {
                tx.prepare_cached(
                    "INSERT INTO status (key, rank, expires_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT(key) DO UPDATE SET rank = max(rank, excluded.rank), expires_at = excluded.expires_at",
                )?
                .execute(rusqlite::params![sk, rank, expires])?;
            }
            tx.commit()
        })
        .await?;
        self.release(key);
        Ok(())
    }

    async fn status(&self, key: &str) -> Result<Option<u8>, StoreError> {
        let (k, now) = (key.to_owned(), now_ms());
        self.with_db(move |db| {
            db.prepare_cached("SELECT rank FROM status WHERE key = ?1 AND expires_at > ?2")?
                .query_row(rusqlite::params![k, now], |r| r.get::<_, u8>(0))
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })
        })
        .await
    }

    async fn record_status(&self, key: &str, rank: u8) -> Result<(), StoreError> {
        let (k, expires) = (key.to_owned(), now_ms() + self.ttl.as_millis() as i64);
        self.with_db(move |db| {
            db.prepare_cached(
                "INSERT INTO status (key, rank, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(key) DO UPDATE SET rank = max(rank, excluded.rank), expires_at = excluded.expires_at",
            )?
            .execute(rusqlite::params![k, rank, expires])
            .map(|_| ())
        })
        .await
    }
}

/// Redis: `{prefix}:claim:{key}` (SET NX PX, owned by this process), `{prefix}:done:{key}`
/// and `{prefix}:status:{key}`, each with a TTL.
#[derive(Clone)]
pub struct RedisStore {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    owner: String,
    ttl: Duration,
}

impl RedisStore {
    async fn open(url: &str, prefix: &str, ttl: Duration) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url)?;
        let conn = redis::aio::ConnectionManager::new(client).await?;
        Ok(RedisStore {
            conn,
            prefix: prefix.to_owned(),
            owner: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4()),
            ttl,
        })
    }

    fn k(&self, kind: &str, key: &str) -> String {
        format!("{}:{kind}:{key}", self.prefix)
    }

    async fn is_delivered(&self, key: &str) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        Ok(redis::cmd("EXISTS")
            .arg(self.k("done", key))
            .query_async(&mut c)
            .await?)
    }

    async fn claim(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        if self.is_delivered(key).await? {
            return Ok(Claim::Delivered);
        }
        let mut c = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.k("claim", key))
            .arg(&self.owner)
            .arg("NX")
            .arg("PX")
            .arg(lease.as_millis() as u64)
            .query_async(&mut c)
            .await?;
        Ok(if set.is_some() {
            Claim::Acquired
        } else {
            Claim::Busy
        })
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        // Only our own claim: one that expired and was taken by another replica stays.
        let script = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
        );
        let mut c = self.conn.clone();
        let _: i64 = script
            .key(self.k("claim", key))
            .arg(&self.owner)
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }

    async fn delivered(&self, key: &str, status: Option<(&str, u8)>) -> Result<(), StoreError> {
        // The record and the status rank in one script: both or neither.
        let script = redis::Script::new(
            "redis.call('SET', KEYS[1], 1, 'PX', ARGV[1])
             if ARGV[2] ~= '' then
               local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
               if tonumber(ARGV[2]) > cur then cur = tonumber(ARGV[2]) end
               redis.call('SET', KEYS[2], cur, 'PX', ARGV[1])
             end
             return 1",
        );
        let (status_key, rank) = match status {
            Some((k, r)) => (self.k("status", k), r.to_string()),
            None => (self.k("status", ""), String::new()),
        };
        let mut c = self.conn.clone();
        let _: i64 = script
            .key(self.k("done", key))
            .key(status_key)
            .arg(self.ttl.as_millis() as u64)
            .arg(rank)
            .invoke_async(&mut c)
            .await?;
        self.release(key).await
    }

    async fn status(&self, key: &str) -> Result<Option<u8>, StoreError> {
        let mut c = self.conn.clone();
        Ok(redis::cmd("GET")
            .arg(self.k("status", key))
            .query_async(&mut c)
            .await?)
    }

    async fn record_status(&self, key: &str, rank: u8) -> Result<(), StoreError> {
        // Raise, never lower, atomically.
        let script = redis::Script::new(
            "local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
             if tonumber(ARGV[1]) > cur then cur = tonumber(ARGV[1]) end
             redis.call('SET', KEYS[1], cur, 'PX', ARGV[2])
             return cur",
        );
        let mut c = self.conn.clone();
        let _: i64 = script
            .key(self.k("status", key))
            .arg(rank)
            .arg(self.ttl.as_millis() as u64)
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exercise(store: Store, unique: &str) {
        let key = format!("dest\u{1f}{unique}");
        let lease = Duration::from_secs(30);
        assert_eq!(store.claim(&key, lease).await.unwrap(), Claim::Acquired);
        assert_eq!(store.claim(&key, lease).await.unwrap(), Claim::Busy);
        store.release(&key).await.unwrap();
        assert_eq!(store.claim(&key, lease).await.unwrap(), Claim::Acquired);
        store.delivered(&key, None).await.unwrap();
        assert_eq!(store.claim(&key, lease).await.unwrap(), Claim::Delivered);

        let order = format!("order\u{1f}{unique}");
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
        let other = format!("order2\u{1f}{unique}");
        store
            .delivered(&format!("{key}-2"), Some((&other, 2)))
            .await
            .unwrap();
        assert_eq!(store.status(&other).await.unwrap(), Some(2));
        assert_eq!(
            store.claim(&format!("{key}-2"), lease).await.unwrap(),
            Claim::Delivered
        );
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
        assert_eq!(
            again
                .claim("dest\u{1f}e1", Duration::from_secs(1))
                .await
                .unwrap(),
            Claim::Delivered
        );
    }

    #[tokio::test]
    async fn redis_store() {
        let cfg = StoreConfig::Redis {
            url: std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into()),
            key_prefix: format!("test-{}", uuid::Uuid::new_v4().simple()),
            ttl_secs: 60,
        };
        let store = Store::open(&cfg)
            .await
            .expect("Redis must be running on 127.0.0.1:6379 (see README)");
        exercise(store.clone(), "r1").await;
        // Another replica cannot take a claim this one holds.
        let other = Store::open(&cfg).await.unwrap();
        assert_eq!(
            store
                .claim("dest\u{1f}r2", Duration::from_secs(30))
                .await
                .unwrap(),
            Claim::Acquired
        );
        assert_eq!(
            other
                .claim("dest\u{1f}r2", Duration::from_secs(30))
                .await
                .unwrap(),
            Claim::Busy
        );
        other.release("dest\u{1f}r2").await.unwrap();
        assert_eq!(
            other
                .claim("dest\u{1f}r2", Duration::from_secs(30))
                .await
                .unwrap(),
            Claim::Busy,
            "not its claim to release"
        );
    }
}
