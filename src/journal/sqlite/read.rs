//! Reading the file, from any process: entries by filter, counts, events.

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension as _};

use super::from_ms;
use super::open::{BUSY_WAIT, MIGRATIONS};
use crate::journal::{Entry, JournalError, Outcome};

/// An entry from a row of [`crate::journal::query::COLUMNS`].
pub(in crate::journal) fn entry_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
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
        trace_id: r.get(14)?,
        event: None,
    })
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
    pub(in crate::journal) fn conn(&self) -> &Connection {
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
    /// ([`crate::journal::query`]).
    pub fn entries(&self, filter: &Filter) -> Result<Vec<Entry>, JournalError> {
        let q = crate::journal::query::entries(filter, crate::journal::query::Dialect::Sqlite);
        let mut stmt = self.conn.prepare_cached(&q.sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(q.params.iter()), entry_of)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Per destination, how many entries of each outcome there are from the minute holding
    /// `since` on (from the per-minute counts).
    pub fn counts(&self, since: DateTime<Utc>) -> Result<Vec<(String, String, u64)>, JournalError> {
        crate::journal::counts::in_file(&self.conn, since)
    }

    /// `destination`'s counts per hour and outcome, from the minute holding `since` on.
    pub fn per_hour(
        &self,
        destination: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<crate::journal::counts::HourCount>, JournalError> {
        crate::journal::counts::per_hour_in_file(&self.conn, destination, since)
    }

    /// The event as published, if the journal still holds it.
    pub fn event(&self, event_id: &str) -> Result<Option<String>, JournalError> {
        event_body(&self.conn, event_id)
    }
}

/// The event as published, if the file still holds it.
pub(in crate::journal) fn event_body(
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
