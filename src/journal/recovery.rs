//! Recoveries: a destination's deliveries of a time window sent again from the journal
//! (`postback-relay recover`), on purpose past the record of their acceptance. Each one has
//! an id made from what it asks (destination, window, outcome), and the journal keeps which
//! events it has sent, so that running the same recovery again sends nothing twice. The
//! operators' actions (replays, recoveries) are kept here too, with their filter and count.

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension as _};
use serde::Serialize;

use super::JournalError;
use super::sqlite::{from_ms, ms};

/// Which of the window's deliveries a recovery sends again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Which {
    /// Those the destination accepted in the window.
    Delivered,
    /// Every event the journal received in the window that the destination takes, whatever
    /// became of it there (also for a destination added since: a backfill).
    Any,
}

impl Which {
    pub fn as_str(self) -> &'static str {
        match self {
            Which::Delivered => "delivered",
            Which::Any => "any",
        }
    }
}

/// What a recovery asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Window {
    pub destination: String,
    pub since: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
    pub outcome: Which,
}

/// Why a window cannot be recovered.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("--until ({until}) is before --since ({since})")]
    Backwards {
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    },
}

/// Whether a window's end, when it has both ends, is not before its start.
pub fn in_order(
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Result<(), WindowError> {
    match (since, until) {
        (Some(since), Some(until)) if until < since => Err(WindowError::Backwards { since, until }),
        _ => Ok(()),
    }
}

impl Window {
    pub fn new(
        destination: String,
        since: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
        outcome: Which,
    ) -> Result<Window, WindowError> {
        in_order(Some(since), until)?;
        Ok(Window {
            destination,
            since,
            until,
            outcome,
        })
    }

    /// The recovery's id: the same for the same destination, window and outcome, so that a
    /// second run is the same recovery.
    pub fn id(&self) -> String {
        let until = self.until.map(|t| ms(t).to_string()).unwrap_or_default();
        let name = format!(
            "{}\u{1f}{}\u{1f}{until}\u{1f}{}",
            self.destination,
            ms(self.since),
            self.outcome.as_str()
        );
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
    }
}

/// One event a recovery may send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub event_id: String,
    pub first_at: DateTime<Utc>,
}

/// An operator's action, as the journal keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Action {
    pub at: DateTime<Utc>,
    pub who: String,
    /// `replay` or `recover`.
    pub action: String,
    /// What it applied to, as JSON.
    pub filter: String,
    pub count: u64,
}

/// Where `w` ends, in milliseconds: a window without an end reaches past any entry. Always a
/// bound, never `NULL`, so that the window is one range of the index by destination and time
/// (a term such as `(?3 IS NULL OR at < ?3)` bounds nothing, and the search would read every
/// later entry of the destination).
pub(super) fn window_end(w: &Window) -> i64 {
    w.until.map(ms).unwrap_or(i64::MAX)
}

/// The file's statement for a recovery's candidates: `?1` the destination, `?2` and `?3` the
/// window (both bounds, [`window_end`]), `?4` the recovery's id.
fn candidates_sql(which: Which) -> &'static str {
    match which {
        Which::Delivered => {
            // An event is first seen where its body is kept (`first_at` is set on that
            // entry only); one without a body is no longer in the journal, and cannot be
            // sent again. Most often the body is on an entry the window has read already
            // (the delivery's own first entry): only for the others is the event's entry
            // with the body looked up by its id.
            "SELECT event_id, first_at FROM (
                 SELECT e.event_id AS event_id,
                        coalesce(max(e.first_at),
                                 (SELECT b.first_at FROM entries b
                                  WHERE b.event_id = e.event_id AND b.first_at IS NOT NULL))
                          AS first_at
                 FROM entries e
                 WHERE e.destination = ?1 AND e.outcome = 'delivered' AND e.recovery IS NULL
                   AND e.at >= ?2 AND e.at < ?3
                 GROUP BY e.event_id) d
             WHERE first_at IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM recovered r
                               WHERE r.recovery_id = ?4 AND r.event_id = d.event_id)
             ORDER BY first_at, event_id"
        }
        Which::Any => {
            "SELECT e.event_id, e.first_at FROM entries e
             WHERE ?1 IS NOT NULL AND e.first_at >= ?2 AND e.first_at < ?3
               AND NOT EXISTS (SELECT 1 FROM recovered r
                               WHERE r.recovery_id = ?4 AND r.event_id = e.event_id)
             ORDER BY e.first_at, e.event_id"
        }
    }
}

/// The journal, opened for recoveries and actions (read and write, beside a running relay).
pub struct FileRecoveries {
    conn: Connection,
}

impl FileRecoveries {
    /// Opens an existing journal, its schema brought up to date.
    pub fn open(path: &Path) -> Result<FileRecoveries, JournalError> {
        Ok(FileRecoveries {
            conn: super::sqlite::Db::open_now(path)?.into_conn(),
        })
    }

    /// When an open-ended recovery (no `until`) was first asked for: its window ends there on
    /// every run, so that a re-run sends nothing that arrived since. `None`: not asked yet.
    pub fn pinned_until(&self, w: &Window) -> Result<Option<DateTime<Utc>>, JournalError> {
        let at: Option<i64> = self
            .conn
            .query_row(
                "SELECT coalesce(until, asked_at) FROM recoveries WHERE id = ?1",
                [w.id()],
                |r| r.get(0),
            )
            .optional()?;
        Ok(at.map(from_ms))
    }

    /// The events of `w` that the recovery `id` has not sent yet, oldest first (ids only; the
    /// bodies are read one at a time).
    pub fn candidates(&self, w: &Window, id: &str) -> Result<Vec<Candidate>, JournalError> {
        let mut stmt = self.conn.prepare(candidates_sql(w.outcome))?;
        let rows = stmt.query_map(
            rusqlite::params![w.destination, ms(w.since), window_end(w), id],
            |r| {
                Ok(Candidate {
                    event_id: r.get(0)?,
                    first_at: from_ms(r.get(1)?),
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many events this recovery has sent so far.
    pub fn sent(&self, recovery: &str) -> Result<u64, JournalError> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM recovered WHERE recovery_id = ?1",
            [recovery],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// The event as published.
    pub fn event(&self, event_id: &str) -> Result<Option<String>, JournalError> {
        super::sqlite::event_body(&self.conn, event_id)
    }

    /// Records that `who` asked for the recovery `id` of `w` (once: a re-run keeps the
    /// first); `w.until` is where its window ends on every run.
    pub fn begin(&self, id: &str, w: &Window, who: &str) -> Result<(), JournalError> {
        self.conn.execute(
            "INSERT INTO recoveries (id, destination, since, until, outcome, asked_by, asked_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(id) DO NOTHING",
            rusqlite::params![
                id,
                w.destination,
                ms(w.since),
                w.until.map(ms),
                w.outcome.as_str(),
                who,
                ms(Utc::now())
            ],
        )?;
        Ok(())
    }

    /// Records that the recovery sent `event_id` (its delivery is confirmed by the broker).
    pub fn mark(&self, recovery: &str, event_id: &str) -> Result<(), JournalError> {
        self.conn
            .prepare_cached(
                "INSERT INTO recovered (recovery_id, event_id, sent_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
            )?
            .execute(rusqlite::params![recovery, event_id, ms(Utc::now())])?;
        Ok(())
    }

    /// Writes an operator's action.
    pub fn act(&self, a: &Action) -> Result<(), JournalError> {
        self.conn.execute(
            "INSERT INTO actions (at, who, action, filter, count) VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![ms(a.at), a.who, a.action, a.filter, a.count as i64],
        )?;
        Ok(())
    }

    /// The latest actions, newest first.
    pub fn actions(&self, limit: usize) -> Result<Vec<Action>, JournalError> {
        let mut stmt = self.conn.prepare(
            "SELECT at, who, action, filter, count FROM actions ORDER BY at DESC, id DESC
             LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(Action {
                at: from_ms(r.get(0)?),
                who: r.get(1)?,
                action: r.get(2)?,
                filter: r.get(3)?,
                count: r.get::<_, i64>(4)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_window_is_ordered_and_its_id_is_what_it_asks() {
        let w = |since, until, outcome| Window::new("hoqu".into(), t(since), until, outcome);
        let a = w("2026-11-20T14:00:00Z", None, Which::Delivered).unwrap();
        let b = w("2026-11-20T14:00:00Z", None, Which::Delivered).unwrap();
        assert_eq!(a.id(), b.id());
        let any = w("2026-11-20T14:00:00Z", None, Which::Any).unwrap();
        assert_ne!(a.id(), any.id());
        let bounded = w(
            "2026-11-20T14:00:00Z",
            Some(t("2026-11-20T16:00:00Z")),
            Which::Delivered,
        )
        .unwrap();
        assert_ne!(a.id(), bounded.id());
        assert!(matches!(
            w(
                "2026-11-20T16:00:00Z",
                Some(t("2026-11-20T14:00:00Z")),
                Which::Any
            ),
            Err(WindowError::Backwards { .. })
        ));
    }

    /// A recovery's window is one range of an index, bounded at both ends even when the
    /// window has no end: never every later entry of the destination.
    #[test]
    fn a_recovery_window_searches_a_bounded_range() {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::sqlite::Db::open_now(&dir.path().join("journal.db"))
            .unwrap()
            .into_conn();
        for (which, range) in [
            (Which::Delivered, "(destination=? AND at>? AND at<?)"),
            (Which::Any, "(first_at>? AND first_at<?)"),
        ] {
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {}", candidates_sql(which)))
                .unwrap()
                .query_map(rusqlite::params!["hoqu", 0i64, i64::MAX, "r"], |r| r.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                plan.iter()
                    .any(|l| l.starts_with("SEARCH") && l.ends_with(range))
                    && !plan
                        .iter()
                        .any(|l| l.starts_with("SCAN entries") || l.starts_with("SCAN e ")),
                "{which:?}: {plan:?}"
            );
        }
    }
}
