//! The journal's readers and recoveries, in PostgreSQL: the same questions as the file's.

use chrono::{DateTime, Utc};

use super::Pg;
use crate::journal::recovery::{Action, Candidate, Which, Window, window_end};
use crate::journal::sqlite::{from_ms, ms};
use crate::journal::{Entry, Filter, JournalError, Outcome};

impl Pg {
    pub(in crate::journal) async fn entries(&self, f: &Filter) -> Result<Vec<Entry>, JournalError> {
        let q = crate::journal::query::entries(f, crate::journal::query::Dialect::Postgres);
        let params: Vec<_> = q.params.iter().map(|p| p.pg()).collect();
        let rows = self.conn().await?.query(&q.sql, &params).await?;
        rows.iter().map(entry_of).collect()
    }

    pub(in crate::journal) async fn event(
        &self,
        event_id: &str,
    ) -> Result<Option<String>, JournalError> {
        Ok(self
            .conn()
            .await?
            .query_opt("SELECT body FROM events WHERE event_id = $1", &[&event_id])
            .await?
            .map(|r| r.get(0)))
    }

    pub(in crate::journal) async fn pinned_until(
        &self,
        w: &Window,
    ) -> Result<Option<DateTime<Utc>>, JournalError> {
        Ok(self
            .conn()
            .await?
            .query_opt(
                "SELECT coalesce(until, asked_at) FROM recoveries WHERE id = $1",
                &[&w.id()],
            )
            .await?
            .map(|r| from_ms(r.get(0))))
    }

    pub(in crate::journal) async fn candidates(
        &self,
        w: &Window,
        id: &str,
    ) -> Result<Vec<Candidate>, JournalError> {
        let sql = candidates_sql(w.outcome);
        let rows = self
            .conn()
            .await?
            .query(sql, &[&w.destination, &ms(w.since), &window_end(w), &id])
            .await?;
        Ok(rows
            .iter()
            .map(|r| Candidate {
                event_id: r.get(0),
                first_at: from_ms(r.get(1)),
            })
            .collect())
    }

    pub(in crate::journal) async fn sent(&self, recovery: &str) -> Result<u64, JournalError> {
        let n: i64 = self
            .conn()
            .await?
            .query_one(
                "SELECT count(*) FROM recovered WHERE recovery_id = $1",
                &[&recovery],
            )
            .await?
            .get(0);
        Ok(n as u64)
    }

    pub(in crate::journal) async fn begin(
        &self,
        id: &str,
        w: &Window,
        who: &str,
    ) -> Result<(), JournalError> {
        self.conn().await?.execute(
                "INSERT INTO recoveries (id, destination, since, until, outcome, asked_by, asked_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
                &[
                    &id,
                    &w.destination,
                    &ms(w.since),
                    &w.until.map(ms),
                    &w.outcome.as_str(),
                    &who,
                    &ms(Utc::now()),
                ],
            )
            .await?;
        Ok(())
    }

    pub(in crate::journal) async fn mark(
        &self,
        recovery: &str,
        event_id: &str,
    ) -> Result<(), JournalError> {
        self.conn()
            .await?
            .execute(
                "INSERT INTO recovered (recovery_id, event_id, sent_at) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&recovery, &event_id, &ms(Utc::now())],
            )
            .await?;
        Ok(())
    }

    pub(in crate::journal) async fn act(&self, a: &Action) -> Result<(), JournalError> {
        self.conn()
            .await?
            .execute(
                "INSERT INTO actions (at, who, action, filter, count) VALUES ($1, $2, $3, $4, $5)",
                &[&ms(a.at), &a.who, &a.action, &a.filter, &(a.count as i64)],
            )
            .await?;
        Ok(())
    }

    pub(in crate::journal) async fn actions(
        &self,
        limit: usize,
    ) -> Result<Vec<Action>, JournalError> {
        let rows = self
            .conn()
            .await?
            .query(
                "SELECT at, who, action, filter, count FROM actions ORDER BY at DESC, id DESC
                 LIMIT $1",
                &[&(limit as i64)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Action {
                at: from_ms(r.get(0)),
                who: r.get(1),
                action: r.get(2),
                filter: r.get(3),
                count: r.get::<_, i64>(4) as u64,
            })
            .collect())
    }
}

/// An entry from a row of [`crate::journal::query::COLUMNS`].
pub(in crate::journal) fn entry_of(r: &tokio_postgres::Row) -> Result<Entry, JournalError> {
    let code: String = r.get(6);
    let detail: Option<String> = r.get(7);
    let outcome = Outcome::from_parts(&code, detail)
        .ok_or_else(|| JournalError::Task(format!("unknown outcome {code:?}")))?;
    Ok(Entry {
        event_id: r.get(0),
        order_id: r.get(1),
        event_type: r.get(2),
        destination: r.get(3),
        attempt: u32::try_from(r.get::<_, i32>(4)).unwrap_or(0),
        at: from_ms(r.get(5)),
        outcome,
        http_status: r
            .get::<_, Option<i32>>(8)
            .and_then(|s| u16::try_from(s).ok()),
        error_class: r.get(9),
        latency_ms: r.get(10),
        request: r.get(11),
        response: r.get(12),
        recovery: r.get(13),
        trace_id: r.get(14),
        event: None,
    })
}

/// The statement for a recovery's candidates: `$1` the destination, `$2` and `$3` the window
/// (both bounds), `$4` the recovery's id.
fn candidates_sql(which: Which) -> &'static str {
    match which {
        Which::Delivered => {
            "SELECT ev.event_id, ev.first_at FROM events ev
             WHERE ev.event_id IN (
                 SELECT event_id FROM entries
                 WHERE destination = $1 AND outcome = 'delivered' AND recovery IS NULL
                   AND at >= $2 AND at < $3)
               AND NOT EXISTS (SELECT 1 FROM recovered r
                               WHERE r.recovery_id = $4 AND r.event_id = ev.event_id)
             ORDER BY ev.first_at, ev.event_id"
        }
        Which::Any => {
            "SELECT ev.event_id, ev.first_at FROM events ev
             WHERE $1::text IS NOT NULL AND ev.first_at >= $2 AND ev.first_at < $3
               AND NOT EXISTS (SELECT 1 FROM recovered r
                               WHERE r.recovery_id = $4 AND r.event_id = ev.event_id)
             ORDER BY ev.first_at, ev.event_id"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recovery's window is searched through an index in PostgreSQL too, bounded at both
    /// ends: with sequential scans priced out, no plan reads a table whole.
    #[tokio::test]
    async fn a_recovery_window_has_an_index_plan() {
        let Some((admin, name, url)) = super::super::tests::database().await else {
            return;
        };
        let pg = Pg::connect(&url).await.unwrap();
        let conn = pg.conn().await.unwrap();
        conn.batch_execute("SET enable_seqscan = off")
            .await
            .unwrap();
        for which in [Which::Delivered, Which::Any] {
            let plan: Vec<String> = conn
                .query(
                    &format!("EXPLAIN {}", candidates_sql(which)),
                    &[&"hoqu", &0i64, &i64::MAX, &"r"],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            // Bounded at both ends (PostgreSQL plans with the values given).
            assert!(
                !plan.iter().any(|l| l.contains("Seq Scan"))
                    && plan.iter().any(|l| {
                        l.contains("Index Cond") && l.contains("at >= ") && l.contains("at < ")
                    }),
                "{which:?}: {plan:#?}"
            );
        }
        drop(pg);
        admin
            .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
            .await
            .unwrap();
    }
}
