//! Opening the file: its connection's settings, and the schema brought to the newest version.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use super::blocking;
use crate::journal::JournalError;

/// The schema's versions, in order: version N is the Nth file. A file is never changed once
/// released; a change is a new file.
pub(in crate::journal) const MIGRATIONS: [&str; 10] = [
    include_str!("../migrations/0001_deliveries.sql"),
    include_str!("../migrations/0002_recoveries.sql"),
    include_str!("../migrations/0003_events_by_rowid.sql"),
    include_str!("../migrations/0004_no_events_order_index.sql"),
    include_str!("../migrations/0005_bodies_in_entries.sql"),
    include_str!("../migrations/0006_counts_per_minute.sql"),
    include_str!("../migrations/0007_dead_letters.sql"),
    include_str!("../migrations/0008_retries_by_time.sql"),
    include_str!("../migrations/0009_rare_outcomes_by_time.sql"),
    include_str!("../migrations/0010_trace_ids.sql"),
];

/// How long a statement waits for another process's write lock.
pub(super) const BUSY_WAIT: Duration = Duration::from_secs(5);

/// How long opening the file waits for another process's schema upgrade.
const MIGRATION_WAIT: Duration = Duration::from_secs(300);

/// The writer's page cache, in KiB.
const CACHE_KIB: i64 = 8 * 1024;

pub(in crate::journal) struct Db {
    pub(super) conn: Connection,
}

impl Db {
    pub(in crate::journal) async fn open(path: PathBuf) -> Result<Db, JournalError> {
        blocking(move || Db::open_now(&path)).await?
    }

    pub(in crate::journal) fn into_conn(self) -> Connection {
        self.conn
    }

    pub(in crate::journal) fn open_now(path: &Path) -> Result<Db, JournalError> {
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
