//! The index of dead letters in PostgreSQL: the same questions as the file's.

use chrono::{DateTime, Utc};

use super::Pg;
use crate::journal::JournalError;
use crate::journal::letter::{Group, Indexed, Letter, LetterFilter, Mark, State};
use crate::journal::letter_query::{self as query, LISTED};
use crate::journal::query::Dialect;
use crate::journal::sqlite::{from_ms, ms};

fn listed(r: &tokio_postgres::Row) -> Letter {
    Letter {
        id: r.get(0),
        at: from_ms(r.get(1)),
        destination: r.get(2),
        reason: r.get(3),
        event_id: r.get(4),
        attempts: u32::try_from(r.get::<_, i32>(5)).unwrap_or(0),
        detail: r.get(6),
        letter: String::new(),
    }
}

/// The columns of letters, one array each, as `UNNEST` takes them.
struct Columns {
    id: Vec<String>,
    at: Vec<i64>,
    destination: Vec<String>,
    reason: Vec<String>,
    event_id: Vec<Option<String>>,
    attempts: Vec<i32>,
    detail: Vec<String>,
    letter: Vec<String>,
}

impl Columns {
    fn of(letters: &[Letter]) -> Columns {
        Columns {
            id: letters.iter().map(|l| l.id.clone()).collect(),
            at: letters.iter().map(|l| ms(l.at)).collect(),
            destination: letters.iter().map(|l| l.destination.clone()).collect(),
            reason: letters.iter().map(|l| l.reason.clone()).collect(),
            event_id: letters.iter().map(|l| l.event_id.clone()).collect(),
            attempts: letters
                .iter()
                .map(|l| i32::try_from(l.attempts).unwrap_or(i32::MAX))
                .collect(),
            detail: letters.iter().map(|l| l.detail.clone()).collect(),
            letter: letters.iter().map(|l| l.letter.clone()).collect(),
        }
    }
}

const UNNESTED: &str = "SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[],
    $5::text[], $6::int[], $7::text[], $8::text[])";

impl Pg {
    /// Writes letters the relay confirmed into the queue; one already there stays as it is.
    pub(in crate::journal) async fn insert_letters(
        tx: &tokio_postgres::Transaction<'_>,
        letters: &[Letter],
    ) -> Result<(), JournalError> {
        if letters.is_empty() {
            return Ok(());
        }
        let c = Columns::of(letters);
        tx.execute(
            &format!(
                "INSERT INTO dead_letters (id, at, destination, reason, event_id, attempts,
                   detail, letter) {UNNESTED} ON CONFLICT (id) DO NOTHING"
            ),
            &[
                &c.id,
                &c.at,
                &c.destination,
                &c.reason,
                &c.event_id,
                &c.attempts,
                &c.detail,
                &c.letter,
            ],
        )
        .await?;
        Ok(())
    }

    pub(in crate::journal) async fn letter_groups(
        &self,
        f: &LetterFilter,
    ) -> Result<Vec<Group>, JournalError> {
        if query::narrow(f) {
            let q = query::grouped(f, Dialect::Postgres);
            let params: Vec<_> = q.params.iter().map(|p| p.pg()).collect();
            let rows = self.conn().await?.query(&q.sql, &params).await?;
            return Ok(rows
                .iter()
                .map(|r| Group {
                    destination: r.get(0),
                    reason: r.get(1),
                    count: r.get::<_, i64>(2).max(0) as u64,
                    oldest: r.get::<_, Option<i64>>(3).map(from_ms),
                })
                .collect());
        }
        let q = query::groups(f, Dialect::Postgres);
        let params: Vec<_> = q.params.iter().map(|p| p.pg()).collect();
        let rows = self.conn().await?.query(&q.sql, &params).await?;
        let mut out = Vec::new();
        for r in &rows {
            let (destination, reason): (String, String) = (r.get(0), r.get(1));
            let counted = query::counted(f);
            let q = match counted {
                true => query::oldest(&destination, &reason, Dialect::Postgres),
                false => query::in_group(f, &destination, &reason, Dialect::Postgres),
            };
            let params: Vec<_> = q.params.iter().map(|p| p.pg()).collect();
            let found = self.conn().await?.query_one(&q.sql, &params).await?;
            let (count, oldest) = match counted {
                true => (r.get::<_, i64>(2), found.get::<_, Option<i64>>(0)),
                false => (found.get::<_, i64>(0), found.get::<_, Option<i64>>(1)),
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

    pub(in crate::journal) async fn letters_waiting(&self) -> Result<u64, JournalError> {
        let n: i64 = self
            .conn()
            .await?
            .query_one(
                "SELECT coalesce(sum(waiting), 0)::bigint FROM dead_letter_counts",
                &[],
            )
            .await?
            .get(0);
        Ok(n.max(0) as u64)
    }

    pub(in crate::journal) async fn letter_page(
        &self,
        f: &LetterFilter,
        skip: u64,
        limit: u64,
    ) -> Result<Vec<Letter>, JournalError> {
        let q = query::page(f, skip, limit, Dialect::Postgres);
        let params: Vec<_> = q.params.iter().map(|p| p.pg()).collect();
        let rows = self.conn().await?.query(&q.sql, &params).await?;
        Ok(rows.iter().map(listed).collect())
    }

    pub(in crate::journal) async fn letter(
        &self,
        id: &str,
    ) -> Result<Option<Indexed>, JournalError> {
        let sql = format!(
            "SELECT {LISTED}, letter, state, changed_at, changed_by, result FROM dead_letters \
             WHERE id = $1"
        );
        Ok(self.conn().await?.query_opt(&sql, &[&id]).await?.map(|r| {
            let mut letter = listed(&r);
            letter.letter = r.get(7);
            let state: String = r.get(8);
            Indexed {
                letter,
                state: State::parse(&state).unwrap_or(State::Gone),
                changed_at: r.get::<_, Option<i64>>(9).map(from_ms),
                changed_by: r.get(10),
                result: r.get(11),
            }
        }))
    }

    pub(in crate::journal) async fn mark_letters(
        &self,
        marks: &[Mark],
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<u64, JournalError> {
        let ids: Vec<&str> = marks.iter().map(|m| m.id.as_str()).collect();
        let states: Vec<&str> = marks.iter().map(|m| m.state.as_str()).collect();
        let results: Vec<&str> = marks.iter().map(|m| m.result.as_str()).collect();
        let n = self
            .conn()
            .await?
            .execute(
                "UPDATE dead_letters d SET state = m.state, changed_at = $4, changed_by = $5,
                   result = m.result
                 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS m (id, state, result)
                 WHERE d.id = m.id",
                &[&ids, &states, &results, &ms(at), &by],
            )
            .await?;
        Ok(n)
    }

    pub(in crate::journal) async fn letters_seen(
        &self,
        letters: &[Letter],
        run: i64,
    ) -> Result<(), JournalError> {
        if letters.is_empty() {
            return Ok(());
        }
        let c = Columns::of(letters);
        self.conn()
            .await?
            .execute(
                &format!(
                    "INSERT INTO dead_letters (id, at, destination, reason, event_id, attempts,
                       detail, letter, seen)
                     SELECT *, $9::bigint FROM ({UNNESTED}) AS l
                     ON CONFLICT (id) DO UPDATE SET state = 'waiting', seen = excluded.seen"
                ),
                &[
                    &c.id,
                    &c.at,
                    &c.destination,
                    &c.reason,
                    &c.event_id,
                    &c.attempts,
                    &c.detail,
                    &c.letter,
                    &run,
                ],
            )
            .await?;
        Ok(())
    }

    pub(in crate::journal) async fn letters_reindexed(
        &self,
        run: i64,
        began: DateTime<Utc>,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<u64, JournalError> {
        self.conn()
            .await?
            .execute(
                "UPDATE dead_letters SET state = 'gone', changed_at = $3, changed_by = $4,
                   result = 'not in the queue when it was read for a reindex'
                 WHERE state = 'waiting' AND at < $2 AND (seen IS NULL OR seen <> $1)",
                &[&run, &ms(began), &ms(at), &by],
            )
            .await
    }
}
