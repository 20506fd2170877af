//! The journal in a SQLite file: the schema's migrations, the writer's batches and pruning,
//! and the reader the commands use. The file is in WAL mode with normal locking, so that
//! `deliveries` (another process) reads while the relay writes.
//!
//! Opening the file and its schema are in `open`, the writer's commits and pruning steps in
//! `write`, the writer's sink in `sink`, and the reader in `read`.

mod open;
mod read;
mod sink;
mod write;

use chrono::{DateTime, TimeZone, Utc};

use super::JournalError;

pub(super) use open::Db;
#[cfg(test)]
pub(super) use open::MIGRATIONS;
pub use read::{FileReader, Filter};
pub(super) use read::{entry_of, event_body};
pub(super) use sink::FileSink;

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
