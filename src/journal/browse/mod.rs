//! Browsing the journal newest first, a page at a time, as the console does: every delivery
//! entry (by destination, outcome and time), the deliveries waiting for a retry, and the
//! operators' actions. Pages are keyset-paged (a page starts below the last one's
//! [`Cursor`]), so a page deep in 10M entries costs what the first does; each statement is
//! written for the terms given so that an index serves it (`tests` checks each plan).

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::query::{COLUMNS, Dialect, Param, Query};
use super::recovery::Action;
use super::sqlite::from_ms;
use super::{Entry, JournalError, Outcome};

#[cfg(test)]
mod tests;

/// Where a page ends: the time (ms) and id of its last row; the next page starts below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub at: i64,
    pub id: i64,
}

impl Cursor {
    /// A cursor as [`fmt::Display`] writes it (`<at>.<id>`), or `None`.
    pub fn parse(s: &str) -> Option<Cursor> {
        let (at, id) = s.trim().split_once('.')?;
        Some(Cursor {
            at: at.parse().ok()?,
            id: id.parse().ok()?,
        })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.at, self.id)
    }
}

/// Which delivery entries a page shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Browse {
    pub destination: Option<String>,
    /// An outcome's code ([`Outcome::code`]).
    pub outcome: Option<String>,
    /// Only deliveries waiting for a retry: their latest entry schedules one in a delay
    /// tier (not an in-process try), and nothing has happened to them since.
    pub waiting: bool,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Entries below this one only (the previous page's end).
    pub before: Option<Cursor>,
    pub limit: usize,
}

/// One entry of a page, and where it sits.
#[derive(Clone, Debug, PartialEq)]
pub struct Browsed {
    pub cursor: Cursor,
    pub entry: Entry,
}

impl Browsed {
    /// When a delivery waiting in a delay tier is due back: the entry's time and the tier's
    /// delay (the tier's name is its delay, [`crate::config::retry::tier_label`]). `None` for any
    /// other entry.
    pub fn next_attempt(&self) -> Option<DateTime<Utc>> {
        next_attempt(&self.entry)
    }
}

/// When the retry an entry schedules is due (see [`Browsed::next_attempt`]).
pub fn next_attempt(e: &Entry) -> Option<DateTime<Utc>> {
    let Outcome::RetryScheduled(tier) = &e.outcome else {
        return None;
    };
    let delay: Duration = crate::config::retry::tier_delay(tier)?;
    // A tier read back from the journal may name any delay: one past the calendar is none.
    e.at.checked_add_signed(chrono::Duration::from_std(delay).ok()?)
}

/// Outcomes that are few among the entries, each with an index of its own by time (partial,
/// so the outcome is written in the statement as it is, not as a parameter): retries
/// (`entries_retry`), dead letters, duplicates and superseded statuses (`entries_<outcome>`).
const RARE: [&str; 4] = [RETRY, "dead_lettered", "duplicate", "superseded"];

/// The outcome of an entry that schedules a retry.
const RETRY: &str = "retry_scheduled";

/// Adds `p` and returns its placeholder.
fn next(p: Param, params: &mut Vec<Param>, dialect: Dialect) -> String {
    params.push(p);
    match dialect {
        Dialect::Sqlite => format!("?{}", params.len()),
        Dialect::Postgres => format!("${}", params.len()),
    }
}

/// Below `c` in the order `at DESC, id DESC`, written so that the index on `at` bounds it.
fn below(c: Cursor, params: &mut Vec<Param>, dialect: Dialect, prefix: &str) -> String {
    let at = next(Param::Int(c.at), params, dialect);
    let id = next(Param::Int(c.id), params, dialect);
    format!("{prefix}at <= {at} AND ({prefix}at < {at} OR {prefix}id < {id})")
}

/// The entries `b` selects, newest first, at most `b.limit`.
pub(super) fn deliveries(b: &Browse, dialect: Dialect) -> Query {
    let mut params = Vec::new();
    let p = &mut params;
    let mut terms = Vec::new();
    // A rare outcome's own index ([`RARE`]) serves it first, also at one destination;
    // SQLite is told not to prefer the destination's index (`+`).
    let rare: Option<&str> = match b.waiting {
        true => Some(RETRY),
        false => b
            .outcome
            .as_deref()
            .and_then(|o| RARE.iter().copied().find(|r| *r == o)),
    };
    if let Some(d) = &b.destination {
        let column = match (rare.is_some(), dialect) {
            (true, Dialect::Sqlite) => "+e.destination",
            _ => "e.destination",
        };
        let v = next(Param::Text(d.clone()), p, dialect);
        terms.push(format!("{column} = {v}"));
    }
    if let Some(since) = b.since {
        let v = next(Param::Int(since.timestamp_millis()), p, dialect);
        terms.push(format!("e.at >= {v}"));
    }
    if let Some(until) = b.until {
        let v = next(Param::Int(until.timestamp_millis()), p, dialect);
        terms.push(format!("e.at < {v}"));
    }
    if let Some(c) = b.before {
        terms.push(below(c, p, dialect, "e."));
    }
    if let Some(code) = rare {
        terms.push(format!("e.outcome = '{code}'"));
    } else if let Some(o) = &b.outcome {
        let v = next(Param::Text(o.clone()), p, dialect);
        terms.push(format!("e.outcome = {v}"));
    }
    if b.waiting {
        let in_process = next(Param::Text(super::IN_PROCESS.into()), p, dialect);
        // Nothing later for the same delivery: searched in the index by event and time
        // (SQLite, without statistics, may otherwise walk the destination's whole index).
        let later = match dialect {
            Dialect::Sqlite => "entries l INDEXED BY entries_event",
            Dialect::Postgres => "entries l",
        };
        terms.push(format!(
            "e.detail <> {in_process} AND NOT EXISTS (SELECT 1 FROM {later} \
             WHERE l.event_id = e.event_id AND l.at >= e.at AND l.destination = e.destination \
             AND (l.at > e.at OR l.id > e.id))"
        ));
    }
    let limit = next(
        Param::Int(i64::try_from(b.limit).unwrap_or(i64::MAX)),
        p,
        dialect,
    );
    let filter = match terms.is_empty() {
        true => String::new(),
        false => format!(" WHERE {}", terms.join(" AND ")),
    };
    let columns: Vec<String> = COLUMNS.split(", ").map(|c| format!("e.{c}")).collect();
    Query {
        sql: format!(
            "SELECT {}, e.id FROM entries e{filter} ORDER BY e.at DESC, e.id DESC LIMIT {limit}",
            columns.join(", ")
        ),
        params,
    }
}

/// The operators' actions below `before`, newest first, at most `limit`.
pub(super) fn actions(before: Option<Cursor>, limit: usize, dialect: Dialect) -> Query {
    let mut params = Vec::new();
    let filter = match before {
        Some(c) => format!(" WHERE {}", below(c, &mut params, dialect, "")),
        None => String::new(),
    };
    let limit = next(
        Param::Int(i64::try_from(limit).unwrap_or(i64::MAX)),
        &mut params,
        dialect,
    );
    Query {
        sql: format!(
            "SELECT id, at, who, action, filter, count FROM actions{filter} \
             ORDER BY at DESC, id DESC LIMIT {limit}"
        ),
        params,
    }
}

/// The id column's place in a row of [`deliveries`].
const ID: usize = 15;

pub(super) fn deliveries_in_file(
    conn: &rusqlite::Connection,
    b: &Browse,
) -> Result<Vec<Browsed>, JournalError> {
    let q = deliveries(b, Dialect::Sqlite);
    let mut stmt = conn.prepare_cached(&q.sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(q.params.iter()), |r| {
        let entry = super::sqlite::entry_of(r)?;
        Ok(Browsed {
            cursor: Cursor {
                at: entry.at.timestamp_millis(),
                id: r.get(ID)?,
            },
            entry,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn actions_in_file(
    conn: &rusqlite::Connection,
    before: Option<Cursor>,
    limit: usize,
) -> Result<Vec<(Cursor, Action)>, JournalError> {
    let q = actions(before, limit, Dialect::Sqlite);
    let mut stmt = conn.prepare_cached(&q.sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(q.params.iter()), |r| {
        let (id, at): (i64, i64) = (r.get(0)?, r.get(1)?);
        Ok((
            Cursor { at, id },
            Action {
                at: from_ms(at),
                who: r.get(2)?,
                action: r.get(3)?,
                filter: r.get(4)?,
                count: u64::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) async fn deliveries_in_pg(
    pg: &super::postgres::Pg,
    b: &Browse,
) -> Result<Vec<Browsed>, JournalError> {
    let q = deliveries(b, Dialect::Postgres);
    let params: Vec<_> = q.params.iter().map(|p| p.pg()).collect();
    let rows = pg.conn().await?.query(&q.sql, &params).await?;
    rows.iter()
        .map(|r| {
            let entry = super::postgres::entry_of(r)?;
            Ok(Browsed {
                cursor: Cursor {
                    at: entry.at.timestamp_millis(),
                    id: r.get(ID),
                },
                entry,
            })
        })
        .collect()
}

pub(super) async fn actions_in_pg(
    pg: &super::postgres::Pg,
    before: Option<Cursor>,
    limit: usize,
) -> Result<Vec<(Cursor, Action)>, JournalError> {
    let q = actions(before, limit, Dialect::Postgres);
    let params: Vec<_> = q.params.iter().map(|p| p.pg()).collect();
    let rows = pg.conn().await?.query(&q.sql, &params).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let (id, at): (i64, i64) = (r.get(0), r.get(1));
            (
                Cursor { at, id },
                Action {
                    at: from_ms(at),
                    who: r.get(2),
                    action: r.get(3),
                    filter: r.get(4),
                    count: u64::try_from(r.get::<_, i64>(5)).unwrap_or(0),
                },
            )
        })
        .collect())
}
