//! The embedded store: SQLite in WAL mode with `synchronous=NORMAL` for records (a commit is in
//! the WAL file when it returns, so it survives the process being killed; a power loss may lose
//! the last ones), and claims in this process's memory.
//!
//! The file is opened in exclusive locking mode: it belongs to one process, which takes no file
//! lock per transaction, and a second process pointed at the same file is refused. Records are
//! written by one task that commits whatever has queued up in one transaction (group commit),
//! so under load a commit carries many records.
//!
//! Claims belong to this process only, so a held claim never lapses: it is let go when its
//! holder is done, and disappears with the process if it dies. Only a hold that was told to
//! keep out others until its lease ends ([`super::Held::keep_until_lease_ends`]) expires.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::OptionalExtension as _;

use super::{StoreError, Taken, Token, now_ms};

#[derive(Clone)]
pub struct Embedded {
    db: Arc<Mutex<rusqlite::Connection>>,
    writes: tokio::sync::mpsc::UnboundedSender<Write>,
    claims: Arc<Mutex<Claims>>,
    ttl: Duration,
    path: Arc<PathBuf>,
}

/// A record waiting for the writer.
struct Write {
    key: String,
    status: Option<(String, u8)>,
    expires: i64,
    done: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// One claim or lock: whose it is, and when it lapses (`None` while its holder lives).
struct Entry {
    token: u64,
    until: Option<Instant>,
}

/// Claims held by this process. Lapsed ones are swept when the map has doubled since the last
/// sweep, so a claim costs no scan.
#[derive(Default)]
struct Claims {
    held: HashMap<String, Entry>,
    sweep_at: usize,
    next_token: u64,
}

impl Claims {
    /// Takes `key` for a new holder: its token, or `None` when someone holds it.
    fn take(&mut self, key: &str, now: Instant) -> Option<u64> {
        if self.held.len() >= self.sweep_at {
            self.held
                .retain(|_, e| e.until.is_none_or(|until| until > now));
            self.sweep_at = (self.held.len() * 2).max(1024);
        }
        if let Some(e) = self.held.get(key)
            && e.until.is_none_or(|until| until > now)
        {
            return None;
        }
        self.next_token += 1;
        let token = self.next_token;
        self.held
            .insert(key.to_owned(), Entry { token, until: None });
        Some(token)
    }

    fn is_held_by(&self, key: &str, token: u64) -> bool {
        self.held
            .get(key)
            .is_some_and(|e| e.token == token && e.until.is_none())
    }

    /// Lets `key` go, if `token` still holds it.
    fn release(&mut self, key: &str, token: u64) {
        if self.held.get(key).is_some_and(|e| e.token == token) {
            self.held.remove(key);
        }
    }

    /// Keeps `key` taken until `at`, then lets it lapse, if `token` still holds it.
    fn lapse_at(&mut self, key: &str, token: u64, at: Instant) {
        if let Some(e) = self.held.get_mut(key).filter(|e| e.token == token) {
            e.until = Some(at);
        }
    }
}

/// At most this many records per transaction.
const MAX_BATCH: usize = 512;

impl Embedded {
    pub(super) async fn open(path: PathBuf, ttl: Duration) -> Result<Embedded, StoreError> {
        let shown = path.display().to_string();
        let kept = Arc::new(path.clone());
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
            path: kept,
        })
    }

    /// The store's file.
    pub(super) fn path(&self) -> &std::path::Path {
        &self.path
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

    fn claims(&self) -> std::sync::MutexGuard<'_, Claims> {
        self.claims.lock().expect("claims lock")
    }

    pub(super) fn claim(&self, key: &str) -> Result<Taken<super::Token>, StoreError> {
        // Claim first, then look: a worker that recorded the delivery did so before letting
        // its claim go, so with the claim in hand the record is there if it ever will be.
        let Some(token) = self.lock_token(key) else {
            return Ok(Taken::Busy);
        };
        match self.is_delivered(key) {
            Ok(false) => Ok(Taken::Held(Token::Embedded(token))),
            Ok(true) => {
                self.release(key, token);
                Ok(Taken::Delivered)
            }
            Err(e) => {
                self.release(key, token);
                Err(e)
            }
        }
    }

    fn lock_token(&self, key: &str) -> Option<u64> {
        self.claims().take(key, Instant::now())
    }

    pub(super) fn lock(&self, key: &str) -> Option<super::Token> {
        self.lock_token(key).map(Token::Embedded)
    }

    pub(super) fn holds(&self, key: &str, token: u64) -> bool {
        self.claims().is_held_by(key, token)
    }

    pub(super) fn release(&self, key: &str, token: u64) {
        self.claims().release(key, token);
    }

    pub(super) fn lapse(&self, key: &str, token: u64, lease: Duration) {
        self.claims().lapse_at(key, token, Instant::now() + lease);
    }

    /// Queues the record for the writer and waits until it is committed; then lets the claim
    /// go.
    pub(super) async fn delivered(
        &self,
        key: &str,
        token: u64,
        status: Option<(&str, u8)>,
    ) -> Result<(), StoreError> {
        let (done, committed) = tokio::sync::oneshot::channel();
        let write = Write {
            key: key.to_owned(),
            status: status.map(|(sk, rank)| (sk.to_owned(), rank)),
            expires: now_ms()
                .saturating_add(i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)),
            done,
        };
        if self.writes.send(write).is_err() {
            return Err(StoreError::Task("the writer has stopped".into()));
        }
        committed
            .await
            .map_err(|_| StoreError::Task("the writer has stopped".into()))?
            .map_err(StoreError::Task)?;
        self.release(key, token);
        Ok(())
    }

    pub(super) fn status(&self, key: &str) -> Result<Option<u8>, StoreError> {
        self.read(|db| {
            db.prepare_cached("SELECT rank FROM status WHERE key = ?1 AND expires_at > ?2")?
                .query_row(rusqlite::params![key, now_ms()], |r| r.get::<_, u8>(0))
                .optional()
        })
    }

    pub(super) fn record_status(&self, key: &str, rank: u8) -> Result<(), StoreError> {
        let expires =
            now_ms().saturating_add(i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX));
        self.read(|db| Self::raise(db, key, rank, expires))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_claim_never_lapses_and_only_its_holder_lets_it_go() {
        let mut c = Claims::default();
        let t0 = Instant::now();
        let a = c.take("k", t0).expect("free");
        assert_eq!(
            c.take("k", t0 + Duration::from_secs(86_400)),
            None,
            "no lapse while held"
        );
        c.release("k", a + 1);
        assert!(c.is_held_by("k", a), "a stranger cannot let it go");
        c.lapse_at("k", a, t0 + Duration::from_secs(1));
        assert!(!c.is_held_by("k", a), "a lapsing hold is not held");
        assert_eq!(c.take("k", t0), None, "kept out until the lapse");
        let b = c.take("k", t0 + Duration::from_secs(2)).expect("lapsed");
        c.release("k", a);
        assert!(
            c.is_held_by("k", b),
            "the old holder cannot free its successor"
        );
        c.release("k", b);
        assert!(c.take("k", t0).is_some());
    }
}
