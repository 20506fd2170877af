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
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::OptionalExtension as _;
use serde::Deserialize;

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
    /// Checks the store's own keys; the configuration checks `ttl_secs` against the retry
    /// budgets, which it alone knows.
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        let ttl = self.ttl().as_secs();
        if !(1..=MAX_TTL_SECS).contains(&ttl) {
            return Err(crate::config::key_err(
                "store.ttl_secs",
                format!("{ttl} must be between 1 and {MAX_TTL_SECS} (10 years)"),
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

    /// Claims delivery `key` for `lease`, unless it was delivered already or someone else
    /// holds it.
    pub async fn claim(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        match self {
            Store::Embedded(s) => s.claim(key, lease),
            Store::Redis(s) => s.claim(key, lease).await,
        }
    }

    /// Takes a lock (a claim with no delivery record behind it) for `lease`: true if taken.
    pub async fn lock(&self, key: &str, lease: Duration) -> Result<bool, StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.lock(key, lease)),
            Store::Redis(s) => s.lock(key, lease).await,
        }
    }

    /// Gives a claim or a lock back without a record (the attempt did not deliver).
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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// SQLite in WAL mode with `synchronous=NORMAL`: a commit is in the WAL file when it returns,
/// so it survives the process being killed (a power loss may lose the last ones).
///
/// The file is opened in exclusive locking mode: it belongs to one process, which takes no file
/// lock per transaction, and a second process pointed at the same file is refused. Records
/// are written by one task that commits whatever has queued up in one transaction (group
/// commit), so under load a commit carries many records.
#[derive(Clone)]
pub struct Embedded {
    db: Arc<Mutex<rusqlite::Connection>>,
    writes: tokio::sync::mpsc::UnboundedSender<Write>,
    claims: Arc<Mutex<Claims>>,
    ttl: Duration,
}

/// A record waiting for the writer.
struct Write {
    key: String,
    status: Option<(String, u8)>,
    expires: i64,
    done: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// Claims held by this process, with the instant each one lapses. Lapsed ones are swept when
/// the map has doubled since the last sweep, so a claim costs no scan.
#[derive(Default)]
struct Claims {
    held: HashMap<String, Instant>,
    sweep_at: usize,
}

impl Claims {
    fn take(&mut self, key: &str, lease: Duration) -> bool {
        let now = Instant::now();
        if self.held.len() >= self.sweep_at {
            self.held.retain(|_, until| *until > now);
            self.sweep_at = (self.held.len() * 2).max(1024);
        }
        match self.held.get_mut(key) {
            Some(until) if *until > now => false,
            Some(until) => {
                *until = now + lease;
                true
            }
            None => {
                self.held.insert(key.to_owned(), now + lease);
                true
            }
        }
    }
}

/// At most this many records per transaction.
const MAX_BATCH: usize = 512;

impl Embedded {
    async fn open(path: PathBuf, ttl: Duration) -> Result<Embedded, StoreError> {
        let shown = path.display().to_string();
        let db = tokio::task::spawn_blocking(move || -> Result<_, rusqlite::Error> {
            let db = rusqlite::Connection::open(&path)?;
            db.busy_timeout(Duration::from_secs(2))?;
            // Before WAL is first used, so that the WAL index lives in this process's memory.
            db.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
            db.pragma_update(None, "journal_mode", "WAL")?;
            db.pragma_update(None, "synchronous", "NORMAL")?;
            // The first write takes the exclusive lock, held until the connection closes.
            db.execute_batch(
                "CREATE TABLE IF NOT EXISTS delivered (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL) WITHOUT ROWID;
                 CREATE TABLE IF NOT EXISTS status (key TEXT PRIMARY KEY, rank INTEGER NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID;
                 DELETE FROM delivered WHERE expires_at < strftime('%s','now') * 1000;
                 DELETE FROM status WHERE expires_at < strftime('%s','now') * 1000;",
            )?;
            Ok(db)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy) => StoreError::Task(format!(
                "{shown} is in use by another process; the embedded store serves one process \
                 (give each its own path, or use the Redis store for replicas)"
            )),
            _ => StoreError::Sqlite(e),
        })?;
        let db = Arc::new(Mutex::new(db));
        let (writes, queued) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(Self::writer(Arc::clone(&db), queued));
        Ok(Embedded {
            db,
            writes,
            claims: Arc::default(),
            ttl,
        })
    }

    /// Commits queued records, as many as have queued up (up to `MAX_BATCH`) per transaction.
    /// Ends when every handle on the store is gone.
    async fn writer(
        db: Arc<Mutex<rusqlite::Connection>>,
        mut queued: tokio::sync::mpsc::UnboundedReceiver<Write>,
    ) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while queued.recv_many(&mut batch, MAX_BATCH).await > 0 {
            // Let every task that is ready run first: under load they queue more records for
            // this commit; when idle this returns at once.
            tokio::task::yield_now().await;
            while batch.len() < MAX_BATCH
                && let Ok(w) = queued.try_recv()
            {
                batch.push(w);
            }
            let result = {
                let db = db.lock().expect("store lock");
                Self::commit(&db, &batch).map_err(|e| e.to_string())
            };
            for w in batch.drain(..) {
                let _ = w.done.send(result.clone());
            }
        }
    }

    fn commit(db: &rusqlite::Connection, batch: &[Write]) -> Result<(), rusqlite::Error> {
        db.prepare_cached("BEGIN")?.execute([])?;
        let written = (|| {
            let mut record = db.prepare_cached(
                "INSERT INTO delivered (key, expires_at) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET expires_at = excluded.expires_at",
            )?;
            for w in batch {
                record.execute(rusqlite::params![w.key, w.expires])?;
                if let Some((sk, rank)) = &w.status {
                    Self::raise(db, sk, *rank, w.expires)?;
                }
            }
            db.prepare_cached("COMMIT")?.execute([])
        })();
        if written.is_err() && !db.is_autocommit() {
            let _ = db.execute_batch("ROLLBACK");
        }
        written.map(|_| ())
    }

    fn raise(db: &rusqlite::Connection, key: &str, rank: u8, expires: i64) -> rusqlite::Result<()> {
        db.prepare_cached(
            "INSERT INTO status (key, rank, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(key) DO UPDATE SET rank = max(rank, excluded.rank), expires_at = excluded.expires_at",
        )?
        .execute(rusqlite::params![key, rank, expires])
        .map(|_| ())
    }

    /// Runs one read under the connection's lock, on the calling thread: an indexed lookup
    /// takes microseconds, less than handing it to another thread.
    fn read<T>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, StoreError> {
        let db = self.db.lock().expect("store lock");
        f(&db).map_err(StoreError::from)
    }

    fn is_delivered(&self, key: &str) -> Result<bool, StoreError> {
        self.read(|db| {
            db.prepare_cached("SELECT 1 FROM delivered WHERE key = ?1 AND expires_at > ?2")?
                .query_row(rusqlite::params![key, now_ms()], |_| Ok(()))
                .optional()
                .map(|row| row.is_some())
        })
    }

    fn claim(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        // Claim first, then look: a worker that recorded the delivery did so before letting
        // its claim go, so with the claim in hand the record is there if it ever will be.
        if !self.lock(key, lease) {
            return Ok(Claim::Busy);
        }
        match self.is_delivered(key) {
            Ok(false) => Ok(Claim::Acquired),
            Ok(true) => {
                self.release(key);
                Ok(Claim::Delivered)
            }
            Err(e) => {
                self.release(key);
                Err(e)
            }
        }
    }

    fn lock(&self, key: &str, lease: Duration) -> bool {
        self.claims.lock().expect("claims lock").take(key, lease)
    }

    fn release(&self, key: &str) {
        self.claims.lock().expect("claims lock").held.remove(key);
    }

    async fn delivered(&self, key: &str, status: Option<(&str, u8)>) -> Result<(), StoreError> {
        let (done, committed) = tokio::sync::oneshot::channel();
        let write = Write {
            key: key.to_owned(),
            status: status.map(|(sk, rank)| (sk.to_owned(), rank)),
            expires: now_ms() + self.ttl.as_millis() as i64,
            done,
        };
        if self.writes.send(write).is_err() {
            return Err(StoreError::Task("the writer has stopped".into()));
        }
        committed
            .await
            .map_err(|_| StoreError::Task("the writer has stopped".into()))?
            .map_err(StoreError::Task)?;
        self.release(key);
        Ok(())
    }

    fn status(&self, key: &str) -> Result<Option<u8>, StoreError> {
        self.read(|db| {
            db.prepare_cached("SELECT rank FROM status WHERE key = ?1 AND expires_at > ?2")?
                .query_row(rusqlite::params![key, now_ms()], |r| r.get::<_, u8>(0))
                .optional()
        })
    }

    fn record_status(&self, key: &str, rank: u8) -> Result<(), StoreError> {
        let expires = now_ms() + self.ttl.as_millis() as i64;
        self.read(|db| Self::raise(db, key, rank, expires))
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

/// The scripts, hashed once.
static CLAIM: LazyLock<redis::Script> = LazyLock::new(|| {
    // Atomic: the record is looked for and the claim taken with no gap in which another
    // replica could record the delivery and let its claim go.
    redis::Script::new(
        "if redis.call('EXISTS', KEYS[1]) == 1 then return 2 end
         if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
         return 0",
    )
});
/// Only our own claim: one that lapsed and was taken by another replica stays.
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
    )
});
/// The record and the status rank together (both or neither), then the claim let go.
static DELIVERED: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "redis.call('SET', KEYS[1], 1, 'PX', ARGV[1])
         if ARGV[2] ~= '' then
           local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
           if tonumber(ARGV[2]) > cur then cur = tonumber(ARGV[2]) end
           redis.call('SET', KEYS[2], cur, 'PX', ARGV[1])
         end
         if redis.call('GET', KEYS[3]) == ARGV[3] then redis.call('DEL', KEYS[3]) end
         return 1",
    )
});
/// Raises a status rank, never lowers it.
static RAISE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
         if tonumber(ARGV[1]) > cur then cur = tonumber(ARGV[1]) end
         redis.call('SET', KEYS[1], cur, 'PX', ARGV[2])
         return cur",
    )
});

impl RedisStore {
    async fn open(url: &str, prefix: &str, ttl: Duration) -> Result<RedisStore, StoreError> {
        use redis::IntoConnectionInfo as _;
        // Small commands on one multiplexed connection: without TCP_NODELAY, Nagle's
        // algorithm holds a command back until the previous one is acknowledged.
        let info = url
            .into_connection_info()?
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info)?;
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

    async fn claim(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        let mut c = self.conn.clone();
        let got: i64 = CLAIM
            .key(self.k("done", key))
            .key(self.k("claim", key))
            .arg(&self.owner)
            .arg(lease.as_millis() as u64)
            .invoke_async(&mut c)
            .await?;
        Ok(match got {
            2 => Claim::Delivered,
            1 => Claim::Acquired,
            _ => Claim::Busy,
        })
    }

    async fn lock(&self, key: &str, lease: Duration) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.k("claim", key))
            .arg(&self.owner)
            .arg("NX")
            .arg("PX")
            .arg(lease.as_millis() as u64)
            .query_async(&mut c)
            .await?;
        Ok(set.is_some())
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: i64 = RELEASE
            .key(self.k("claim", key))
            .arg(&self.owner)
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }

    async fn delivered(&self, key: &str, status: Option<(&str, u8)>) -> Result<(), StoreError> {
        let (status_key, rank) = match status {
            Some((k, r)) => (self.k("status", k), r.to_string()),
            None => (self.k("status", ""), String::new()),
        };
        let mut c = self.conn.clone();
        let _: i64 = DELIVERED
            .key(self.k("done", key))
            .key(status_key)
            .key(self.k("claim", key))
            .arg(self.ttl.as_millis() as u64)
            .arg(rank)
            .arg(&self.owner)
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }

    async fn status(&self, key: &str) -> Result<Option<u8>, StoreError> {
        let mut c = self.conn.clone();
        Ok(redis::cmd("GET")
            .arg(self.k("status", key))
            .query_async(&mut c)
            .await?)
    }

    async fn record_status(&self, key: &str, rank: u8) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: i64 = RAISE
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
    async fn an_embedded_store_serves_one_process() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig::Embedded {
            path: dir.path().join("s.db"),
            ttl_secs: 60,
        };
        let first = Store::open(&cfg).await.unwrap();
        let second = Store::open(&cfg).await.err().expect("the file is taken");
        assert!(
            second.to_string().contains("in use by another process"),
            "{second}"
        );
        // Records written together in one commit are each found.
        let keys: Vec<String> = (0..100).map(|i| format!("d\u{1f}{i}")).collect();
        futures_util::future::try_join_all(keys.iter().map(|k| first.delivered(k, None)))
            .await
            .unwrap();
        for k in &keys {
            assert_eq!(
                first.claim(k, Duration::from_secs(1)).await.unwrap(),
                Claim::Delivered
            );
        }
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
