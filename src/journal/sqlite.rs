//! The journal in a SQLite file: the schema's migrations, the writer's batches and pruning,
//! and the reader the commands use. The file is in WAL mode with normal locking, so that
//! `deliveries` (another process) reads while the relay writes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension as _};

use super::{Entry, JournalError, Outcome};

/// The schema's versions, in order: version N is the Nth file. A file is never changed once
/// released; a change is a new file.
pub(super) const MIGRATIONS: [&str; 9] = [
    include_str!("migrations/0001_deliveries.sql"),
    include_str!("migrations/0002_recoveries.sql"),
    include_str!("migrations/0003_events_by_rowid.sql"),
    include_str!("migrations/0004_no_events_order_index.sql"),
    include_str!("migrations/0005_bodies_in_entries.sql"),
    include_str!("migrations/0006_counts_per_minute.sql"),
    include_str!("migrations/0007_dead_letters.sql"),
    include_str!("migrations/0008_retries_by_time.sql"),
    include_str!("migrations/0009_rare_outcomes_by_time.sql"),
];

use super::writer::PRUNE_STEP;

/// How long a statement waits for another process's write lock.
const BUSY_WAIT: Duration = Duration::from_secs(5);

/// How long opening the file waits for another process's schema upgrade.
const MIGRATION_WAIT: Duration = Duration::from_secs(300);

/// The writer's page cache, in KiB.
const CACHE_KIB: i64 = 8 * 1024;

pub(super) struct Db {
    conn: Connection,
}

/// An entry from a row of [`super::query::COLUMNS`].
pub(super) fn entry_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    let code: String = r.get(6)?;
    let detail: Option<String> = r.get(7)?;
    Ok(Entry {
        event_id: r.get(0)?,
        order_id: r.get(1)?,
        event_type: r.get(2)?,
        destination: r.get(3)?,
        attempt: r.get(4)?,
        at: from_ms(r.get(5)?),
        outcome: Outcome::from_parts(&code, detail).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                6,
                rusqlite::types::Type::Text,
                format!("unknown outcome {code:?}").into(),
            )
        })?,
        http_status: r.get(8)?,
        error_class: r.get(9)?,
        latency_ms: r.get(10)?,
        request: r.get(11)?,
        response: r.get(12)?,
        recovery: r.get(13)?,
        event: None,
    })
}

pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(super) fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, JournalError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| JournalError::Task(e.to_string()))
}

impl Db {
    pub(super) async fn open(path: PathBuf) -> Result<Db, JournalError> {
        blocking(move || Db::open_now(&path)).await?
    }

    pub(super) fn into_conn(self) -> Connection {
        self.conn
    }

    pub(super) fn open_now(path: &Path) -> Result<Db, JournalError> {
        let shown = path.display().to_string();
        let open = |e| JournalError::Open {
            path: shown.clone(),
            source: e,
        };
        let mut conn = Connection::open(path).map_err(open)?;
        conn.busy_timeout(BUSY_WAIT).map_err(open)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open)?;
        // Pages of the indexes by event and order id, which take inserts anywhere, stay in
        // memory between batches rather than being read again (SQLite's default is 2 MiB).
        conn.pragma_update(None, "cache_size", -CACHE_KIB)
            .map_err(open)?;
        // A process opening the file while another upgrades it waits for the upgrade, which
        // on a large journal takes longer than a commit ever should (about 10 s for a million
        // entries, version 4 to 5).
        conn.busy_timeout(MIGRATION_WAIT).map_err(open)?;
        migrate(&mut conn, &shown)?;
        conn.busy_timeout(BUSY_WAIT).map_err(open)?;
        Ok(Db { conn })
    }

    /// Commits `batch` in one transaction: every entry, each event's body once, on the
    /// first entry that brings it, and the batch added to the per-minute counts.
    fn commit(&mut self, batch: &[Entry]) -> rusqlite::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            // Two statements, not one `INSERT ... SELECT`: SQLite copies a select that reads
            // the table it inserts into to a temporary table first.
            let mut has_body = tx.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM entries WHERE event_id = ?1 AND body IS NOT NULL)",
            )?;
            let mut entry = tx.prepare_cached(
                "INSERT INTO entries (event_id, order_id, event_type, destination, attempt, at,
                   outcome, detail, http_status, error_class, latency_ms, request, response,
                   recovery, body, first_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                         CASE WHEN ?15 IS NOT NULL THEN ?6 END)",
            )?;
            for e in batch {
                let body = match &e.event {
                    Some(body)
                        if !has_body.query_row([&e.event_id], |r| r.get::<_, bool>(0))? =>
                    {
                        Some(body)
                    }
                    _ => None,
                };
                entry.execute(rusqlite::params![
                    e.event_id,
                    e.order_id,
                    e.event_type,
                    e.destination,
                    e.attempt,
                    ms(e.at),
                    e.outcome.code(),
                    e.outcome.detail(),
                    e.http_status,
                    e.error_class,
                    e.latency_ms,
                    e.request,
                    e.response,
                    e.recovery,
                    body,
                ])?;
            }
        }
        super::counts::add_in_file(&tx, batch)?;
        tx.commit()
    }

    /// Removes up to [`PRUNE_STEP`] rows older than `before`, in one transaction; returns
    /// how many went. Entries first: a body on one of them moves, with its time, to the newest
    /// other entry of its event, so that an event is kept as long as any entry tells of it.
    /// Then, with what the step has left, operator actions and recoveries asked before, with
    /// the events each recovery sent, and the per-minute counts of whole minutes before.
    pub(super) fn prune_step(&mut self, before: DateTime<Utc>) -> rusqlite::Result<usize> {
        let before = ms(before);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let entries = Db::prune_entries(&tx, before)?;
        let others = Db::prune_records(&tx, before, PRUNE_STEP - entries)?;
        let counts = super::counts::prune_in_file(&tx, before, PRUNE_STEP - entries - others)?;
        let room = PRUNE_STEP - entries - others - counts;
        let letters = Db::prune_letters(&tx, before, room)?;
        tx.commit()?;
        Ok(entries + others + counts + letters)
    }

    /// Up to [`PRUNE_STEP`] entries before `before`, their bodies handed over.
    fn prune_entries(tx: &rusqlite::Transaction<'_>, before: i64) -> rusqlite::Result<usize> {
        let step: Vec<(i64, String)> = tx
            .prepare_cached("SELECT id, event_id FROM entries WHERE at < ?1 ORDER BY at LIMIT ?2")?
            .query_map(rusqlite::params![before, PRUNE_STEP], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?;
        {
            // The body is read as the entry goes: an earlier entry of this step may have
            // handed it one.
            let mut hand_over = tx.prepare_cached(
                "UPDATE entries SET (body, first_at) = (SELECT body, first_at FROM entries WHERE id = ?1)
                 WHERE id = (SELECT max(id) FROM entries WHERE event_id = ?2 AND id <> ?1)
                   AND (SELECT body FROM entries WHERE id = ?1) IS NOT NULL",
            )?;
            let mut remove = tx.prepare_cached("DELETE FROM entries WHERE id = ?1")?;
            for (id, event_id) in &step {
                hand_over.execute(rusqlite::params![id, event_id])?;
                remove.execute([id])?;
            }
        }
        Ok(step.len())
    }

    /// Up to `room` operator actions, and events sent by recoveries, from before `before`
    /// (how many: what counts against the step); a recovery goes with the last event it
    /// sent.
    /// Up to `room` rows of the dead letters' index that left the queue (replayed, discarded,
    /// gone) before `before`; a letter still waiting stays whatever its age, as it stays in
    /// the queue.
    fn prune_letters(
        tx: &rusqlite::Transaction<'_>,
        before: i64,
        room: usize,
    ) -> rusqlite::Result<usize> {
        if room == 0 {
            return Ok(0);
        }
        tx.prepare_cached(
            "DELETE FROM dead_letters WHERE seq IN
               (SELECT seq FROM dead_letters WHERE state <> 'waiting' AND changed_at < ?1
                ORDER BY changed_at LIMIT ?2)",
        )?
        .execute(rusqlite::params![before, room])
    }

    fn prune_records(
        tx: &rusqlite::Transaction<'_>,
        before: i64,
        room: usize,
    ) -> rusqlite::Result<usize> {
        if room == 0 {
            return Ok(0);
        }
        let actions = tx
            .prepare_cached(
                "DELETE FROM actions WHERE id IN
                   (SELECT id FROM actions WHERE at < ?1 ORDER BY at LIMIT ?2)",
            )?
            .execute(rusqlite::params![before, room])?;
        let room = room - actions;
        if room == 0 {
            return Ok(actions);
        }
        let recovered = tx
            .prepare_cached(
                "DELETE FROM recovered WHERE (recovery_id, event_id) IN
                   (SELECT r.recovery_id, r.event_id FROM recovered r
                      JOIN recoveries c ON c.id = r.recovery_id
                    WHERE c.asked_at < ?1 LIMIT ?2)",
            )?
            .execute(rusqlite::params![before, room])?;
        tx.prepare_cached(
            "DELETE FROM recoveries WHERE asked_at < ?1
               AND NOT EXISTS (SELECT 1 FROM recovered WHERE recovery_id = recoveries.id)",
        )?
        .execute([before])?;
        Ok(actions + recovered)
    }
}

/// Brings the schema to the newest version, one transaction per file. Each upgrade takes
/// the write lock first and reads the version inside it, so that two processes upgrading the same
/// file at once (the relay and the console) apply each file once.
fn migrate(conn: &mut Connection, shown: &str) -> Result<(), JournalError> {
    let known = MIGRATIONS.len() as i64;
    // Up to date (the common case): no write lock taken, so that a reader opening the file
    // never waits behind the relay's writer, nor holds it up.
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found == known {
        return Ok(());
    }
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let found: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if found > known {
            return Err(JournalError::Schema {
                path: shown.to_owned(),
                found,
                known,
            });
        }
        let Some(sql) = MIGRATIONS.get(found as usize) else {
            return Ok(());
        };
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", found + 1)?;
        tx.commit()?;
    }
}

/// The file as the writer's sink: each commit and pruning step on a blocking thread. It opens
/// the file when it can (a directory that cannot be written, a full disk, a file of a newer
/// relay: the writer tries again), and before each step makes sure the file is still the one
/// it opened: one removed or replaced under the relay is noticed, counted, and made again,
/// rather than written to where nobody can read it.
pub(super) struct FileSink {
    path: PathBuf,
    db: Option<Db>,
    /// The opened file's device and inode.
    identity: Option<(u64, u64)>,
    replaced: prometheus::IntCounter,
}

/// A file's device and inode, if it exists.
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl FileSink {
    /// The sink on `path`, opened now if it can be; if not, the error is logged, and each
    /// commit tries again.
    pub(super) async fn open(path: PathBuf, replaced: prometheus::IntCounter) -> FileSink {
        let mut sink = FileSink {
            path,
            db: None,
            identity: None,
            replaced,
        };
        if let Err(e) = sink.ensure_open().await {
            tracing::error!(message = "journal: cannot open its file; deliveries go on without it, its entries wait in its buffer, and it is tried again", error = %e);
        }
        sink
    }

    /// The file open, and still the one at its path.
    async fn ensure_open(&mut self) -> Result<(), JournalError> {
        if self.db.is_some() {
            if identity(&self.path) == self.identity {
                return Ok(());
            }
            tracing::error!(message = "journal: its file was removed or replaced under the relay (what it held went with it); making a new one", path = %self.path.display());
            self.replaced.inc();
            self.db = None;
        }
        let db = Db::open(self.path.clone()).await?;
        self.identity = identity(&self.path);
        self.db = Some(db);
        Ok(())
    }

    async fn with<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Db) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, JournalError> {
        self.ensure_open().await?;
        let mut db = self.db.take().ok_or_else(|| {
            JournalError::Task("the journal's connection was lost with a crashed task".into())
        })?;
        let (db, result) = blocking(move || {
            let r = f(&mut db);
            (db, r)
        })
        .await?;
        self.db = Some(db);
        Ok(result?)
    }
}

impl super::writer::Sink for FileSink {
    async fn commit(&mut self, batch: Vec<Entry>) -> (Vec<Entry>, Result<(), JournalError>) {
        // Shared with the blocking task, so that the batch comes back for another try even
        // if that task crashes.
        let shared = std::sync::Arc::new(batch);
        let for_task = shared.clone();
        let result = self.with(move |db| db.commit(&for_task)).await;
        let batch = std::sync::Arc::try_unwrap(shared).unwrap_or_else(|a| (*a).clone());
        (batch, result)
    }

    async fn prune_step(&mut self, before: DateTime<Utc>) -> Result<usize, JournalError> {
        self.with(move |db| db.prune_step(before)).await
    }

    async fn commit_letters(
        &mut self,
        letters: Vec<super::letter::Letter>,
    ) -> (Vec<super::letter::Letter>, Result<(), JournalError>) {
        let shared = std::sync::Arc::new(letters);
        let for_task = shared.clone();
        let result = self
            .with(move |db| {
                let tx = db
                    .conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                super::letter::insert(&tx, &for_task)?;
                tx.commit()
            })
            .await;
        let letters = std::sync::Arc::try_unwrap(shared).unwrap_or_else(|a| (*a).clone());
        (letters, result)
    }
}

/// What to read from the journal. Every field narrows; none set reads everything.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub event_id: Option<String>,
    pub order_id: Option<String>,
    pub destination: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only these outcomes (their codes); empty: any.
    pub outcomes: Vec<String>,
    /// At most this many entries (the oldest first).
    pub limit: usize,
}

/// Reads the journal, from any process.
pub struct FileReader {
    conn: Connection,
}

impl FileReader {
    pub(super) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Opens an existing journal read-only.
    pub fn open(path: &Path) -> Result<FileReader, JournalError> {
        let shown = path.display().to_string();
        let open = |e| JournalError::Open {
            path: shown.clone(),
            source: e,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(open)?;
        conn.busy_timeout(BUSY_WAIT).map_err(open)?;
        let found: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(open)?;
        if found != MIGRATIONS.len() as i64 {
            return Err(JournalError::Schema {
                path: shown,
                found,
                known: MIGRATIONS.len() as i64,
            });
        }
        Ok(FileReader { conn })
    }

    /// The entries `filter` selects, oldest first, each filter through its index
    /// ([`super::query`]).
    pub fn entries(&self, filter: &Filter) -> Result<Vec<Entry>, JournalError> {
        let q = super::query::entries(filter, super::query::Dialect::Sqlite);
        let mut stmt = self.conn.prepare_cached(&q.sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(q.params.iter()), entry_of)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Per destination, how many entries of each outcome there are from the minute holding
    /// `since` on (from the per-minute counts).
    pub fn counts(&self, since: DateTime<Utc>) -> Result<Vec<(String, String, u64)>, JournalError> {
        super::counts::in_file(&self.conn, since)
    }

    /// `destination`'s counts per hour and outcome, from the minute holding `since` on.
    pub fn per_hour(
        &self,
        destination: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<super::counts::HourCount>, JournalError> {
        super::counts::per_hour_in_file(&self.conn, destination, since)
    }

    /// The event as published, if the journal still holds it.
    pub fn event(&self, event_id: &str) -> Result<Option<String>, JournalError> {
        event_body(&self.conn, event_id)
    }
}

/// The event as published, if the file still holds it.
pub(super) fn event_body(
    conn: &Connection,
    event_id: &str,
) -> Result<Option<String>, JournalError> {
    Ok(conn
        .prepare_cached(
            "SELECT body FROM entries WHERE event_id = ?1 AND body IS NOT NULL LIMIT 1",
        )?
        .query_row([event_id], |r| r.get(0))
        .optional()?)
}

#[cfg(test)]
impl Db {
    pub(super) fn commit_for_test(&mut self, batch: &[Entry]) {
        self.commit(batch).expect("commit");
    }

    pub(super) fn try_commit_for_test(&mut self, batch: &[Entry]) -> rusqlite::Result<()> {
        self.commit(batch)
    }
}
