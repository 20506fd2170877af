//! The index of dead letters in the SQLite file.

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension as _};

use super::{Group, Indexed, Letter, LetterFilter, Mark, State};
use crate::journal::JournalError;
use crate::journal::letter_query::{self as query, LISTED};
use crate::journal::query::Dialect;
use crate::journal::sqlite::{from_ms, ms};

fn listed(r: &rusqlite::Row<'_>) -> rusqlite::Result<Letter> {
    Ok(Letter {
        id: r.get(0)?,
        at: from_ms(r.get(1)?),
        destination: r.get(2)?,
        reason: r.get(3)?,
        event_id: r.get(4)?,
        attempts: r.get(5)?,
        detail: r.get(6)?,
        letter: String::new(),
    })
}

/// The journal's file, opened for the index (read and write, beside a running relay).
pub struct FileLetters {
    conn: Connection,
}

impl FileLetters {
    pub fn open(path: &Path) -> Result<FileLetters, JournalError> {
        Ok(FileLetters {
            conn: crate::journal::sqlite::Db::open_now(path)?.into_conn(),
        })
    }

    pub fn groups(&self, f: &LetterFilter) -> Result<Vec<Group>, JournalError> {
        if query::narrow(f) {
            let q = query::grouped(f, Dialect::Sqlite);
            let mut stmt = self.conn.prepare_cached(&q.sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(q.params.iter()), |r| {
                Ok(Group {
                    destination: r.get(0)?,
                    reason: r.get(1)?,
                    count: r.get::<_, i64>(2)?.max(0) as u64,
                    oldest: r.get::<_, Option<i64>>(3)?.map(from_ms),
                })
            })?;
            return Ok(rows.collect::<Result<_, _>>()?);
        }
        let q = query::groups(f, Dialect::Sqlite);
        let mut stmt = self.conn.prepare_cached(&q.sql)?;
        let kept: Vec<(String, String, i64)> = stmt
            .query_map(rusqlite::params_from_iter(q.params.iter()), |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        for (destination, reason, waiting) in kept {
            // The kept count when it answers (the same, without counting), and the oldest.
            let (count, oldest) = if query::counted(f) {
                let q = query::oldest(&destination, &reason, Dialect::Sqlite);
                let oldest = self
                    .conn
                    .prepare_cached(&q.sql)?
                    .query_row(rusqlite::params_from_iter(q.params.iter()), |r| {
                        r.get::<_, Option<i64>>(0)
                    })?;
                (waiting, oldest)
            } else {
                let q = query::in_group(f, &destination, &reason, Dialect::Sqlite);
                self.conn
                    .prepare_cached(&q.sql)?
                    .query_row(rusqlite::params_from_iter(q.params.iter()), |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?))
                    })?
            };
            if count > 0 {
                out.push(Group {
                    destination,
                    reason,
                    count: count as u64,
                    oldest: oldest.map(from_ms),
                });
            }
        }
        Ok(out)
    }

    pub fn waiting(&self) -> Result<u64, JournalError> {
        let n: i64 = self.conn.query_row(
            "SELECT coalesce(sum(waiting), 0) FROM dead_letter_counts",
            [],
            |r| r.get(0),
        )?;
        Ok(n.max(0) as u64)
    }

    pub fn page(
        &self,
        f: &LetterFilter,
        skip: u64,
        limit: u64,
    ) -> Result<Vec<Letter>, JournalError> {
        let q = query::page(f, skip, limit, Dialect::Sqlite);
        let mut stmt = self.conn.prepare_cached(&q.sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(q.params.iter()), listed)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn get(&self, id: &str) -> Result<Option<Indexed>, JournalError> {
        let sql = format!(
            "SELECT {LISTED}, letter, state, changed_at, changed_by, result FROM dead_letters \
             WHERE id = ?1"
        );
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([id], |r| {
                let mut letter = listed(r)?;
                letter.letter = r.get(7)?;
                let state: String = r.get(8)?;
                Ok(Indexed {
                    letter,
                    state: State::parse(&state).unwrap_or(State::Gone),
                    changed_at: r.get::<_, Option<i64>>(9)?.map(from_ms),
                    changed_by: r.get(10)?,
                    result: r.get(11)?,
                })
            })
            .optional()?)
    }

    pub fn mark(&self, marks: &[Mark], by: &str, at: DateTime<Utc>) -> Result<u64, JournalError> {
        let tx = self.conn.unchecked_transaction()?;
        let mut n = 0;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE dead_letters SET state = ?2, changed_at = ?3, changed_by = ?4, result = ?5
                 WHERE id = ?1",
            )?;
            for m in marks {
                n += stmt.execute(rusqlite::params![
                    m.id,
                    m.state.as_str(),
                    ms(at),
                    by,
                    m.result
                ])? as u64;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    pub fn seen(&self, letters: &[Letter], run: i64) -> Result<(), JournalError> {
        let tx = self.conn.unchecked_transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO dead_letters
                   (id, at, destination, reason, event_id, attempts, detail, letter, seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (id) DO UPDATE SET state = 'waiting', seen = excluded.seen",
            )?;
            for l in letters {
                stmt.execute(rusqlite::params![
                    l.id,
                    ms(l.at),
                    l.destination,
                    l.reason,
                    l.event_id,
                    l.attempts,
                    l.detail,
                    l.letter,
                    run
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn reindexed(
        &self,
        run: i64,
        began: DateTime<Utc>,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<u64, JournalError> {
        let n = self.conn.execute(
            "UPDATE dead_letters SET state = 'gone', changed_at = ?3, changed_by = ?4,
               result = 'not in the queue when it was read for a reindex'
             WHERE state = 'waiting' AND at < ?2 AND (seen IS NULL OR seen <> ?1)",
            rusqlite::params![run, ms(began), ms(at), by],
        )?;
        Ok(n as u64)
    }
}

#[cfg(test)]
impl FileLetters {
    pub(super) fn conn_for_test(&self) -> &Connection {
        &self.conn
    }
}
