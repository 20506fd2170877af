//! The per-minute counts in PostgreSQL (`crate::journal::counts`): each batch added in its
//! transaction with one statement, read by the overview and the charts, pruned by whole
//! minutes.

use chrono::{DateTime, Utc};
use tokio_postgres::Transaction;

use super::Pg;
use crate::journal::counts::{HourCount, minute_of, tally};
use crate::journal::sqlite::{from_ms, ms};
use crate::journal::{Entry, JournalError};

/// Per destination and outcome, the entries from the minute holding `since` on.
pub(super) const COUNTS_SQL: &str = "SELECT destination, outcome, sum(n)::bigint FROM per_minute \
    WHERE minute >= $1 GROUP BY destination, outcome";

/// One destination's counts per hour (and outcome), from the minute holding `since` on.
pub(super) const PER_HOUR_SQL: &str = "SELECT minute - minute % 3600000, outcome, \
    sum(n)::bigint, sum(latency_ms_sum)::float8, sum(latency_n)::bigint FROM per_minute \
    WHERE minute >= $2 AND destination = $1 GROUP BY 1, 2 ORDER BY 1, 2";

/// Adds `batch` to the counts, one row per minute, destination and outcome it touches.
pub(super) async fn add(tx: &Transaction<'_>, batch: &[Entry]) -> Result<(), JournalError> {
    let rows = tally(batch);
    if rows.is_empty() {
        return Ok(());
    }
    let minute: Vec<i64> = rows.iter().map(|t| t.minute).collect();
    let destination: Vec<&str> = rows.iter().map(|t| t.destination).collect();
    let outcome: Vec<&str> = rows.iter().map(|t| t.outcome).collect();
    let n: Vec<i64> = rows.iter().map(|t| t.n).collect();
    let sum: Vec<f64> = rows.iter().map(|t| t.latency_ms_sum).collect();
    let latency_n: Vec<i64> = rows.iter().map(|t| t.latency_n).collect();
    tx.execute(
        "INSERT INTO per_minute AS p (minute, destination, outcome, n, latency_ms_sum, latency_n)
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[],
           $5::float8[], $6::bigint[])
         ON CONFLICT (minute, destination, outcome) DO UPDATE SET
           n = p.n + excluded.n,
           latency_ms_sum = p.latency_ms_sum + excluded.latency_ms_sum,
           latency_n = p.latency_n + excluded.latency_n",
        &[&minute, &destination, &outcome, &n, &sum, &latency_n],
    )
    .await?;
    Ok(())
}

/// Removes up to `room` rows of whole minutes before `before`; how many went.
pub(super) async fn prune(
    client: &super::Conn,
    before: DateTime<Utc>,
    room: i64,
) -> Result<u64, JournalError> {
    if room <= 0 {
        return Ok(0);
    }
    client
        .execute(
            "DELETE FROM per_minute WHERE (minute, destination, outcome) IN
               (SELECT minute, destination, outcome FROM per_minute WHERE minute < $1
                ORDER BY minute LIMIT $2)",
            &[&minute_of(ms(before)), &room],
        )
        .await
}

impl Pg {
    pub(in crate::journal) async fn counts(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, String, u64)>, JournalError> {
        let rows = self
            .conn()
            .await?
            .query(COUNTS_SQL, &[&minute_of(ms(since))])
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get::<_, i64>(2).max(0) as u64))
            .collect())
    }

    pub(in crate::journal) async fn per_hour(
        &self,
        destination: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<HourCount>, JournalError> {
        let rows = self
            .conn()
            .await?
            .query(PER_HOUR_SQL, &[&destination, &minute_of(ms(since))])
            .await?;
        Ok(rows
            .iter()
            .map(|r| HourCount {
                hour: from_ms(r.get(0)),
                outcome: r.get(1),
                n: r.get::<_, i64>(2).max(0) as u64,
                latency_ms_sum: r.get(3),
                latency_n: r.get::<_, i64>(4).max(0) as u64,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Outcome;

    fn entry(id: &str, destination: &str, at: &str, outcome: Outcome) -> Entry {
        Entry {
            event_id: id.into(),
            order_id: None,
            event_type: "order".into(),
            destination: destination.into(),
            attempt: 1,
            at: at.parse().unwrap(),
            outcome,
            http_status: Some(200),
            error_class: None,
            latency_ms: Some(10.0),
            request: None,
            response: None,
            recovery: None,
            trace_id: None,
            event: None,
        }
    }

    /// Batches add to the counts (a key twice in two batches, once in one); the version
    /// before them is filled from the entries it had; old minutes are pruned; and the
    /// overview's and the chart's queries search the key, never read the table whole.
    #[tokio::test]
    async fn counts_are_kept_filled_pruned_and_read_through_the_key() {
        let Some((admin, name, url)) = super::super::tests::database().await else {
            return;
        };
        // Version 2, with an entry, then brought up to date: the entry is counted.
        {
            let raw = Pg::client(&url).await.unwrap();
            raw.batch_execute(super::super::MIGRATIONS[0])
                .await
                .unwrap();
            raw.batch_execute(super::super::MIGRATIONS[1])
                .await
                .unwrap();
            raw.batch_execute(
                "CREATE TABLE journal_schema (version INTEGER NOT NULL);
                 INSERT INTO journal_schema VALUES (2);
                 INSERT INTO entries (event_id, event_type, destination, attempt, at, outcome,
                   latency_ms)
                 VALUES ('old', 'order', 'hoqu', 1, 1795082430000, 'delivered', 30);",
            )
            .await
            .unwrap();
        }
        let pg = Pg::connect(&url).await.unwrap();
        let ok = Outcome::Delivered;
        let dead = Outcome::DeadLettered("rejected".into());
        pg.commit(&[
            entry("a", "hoqu", "2026-11-20T14:00:10Z", ok.clone()),
            entry("b", "hoqu", "2026-11-20T14:00:50Z", ok.clone()),
            entry("c", "hoqu", "2026-11-20T14:00:55Z", dead.clone()),
            entry("d", "ps", "2026-11-20T14:59:00Z", ok.clone()),
        ])
        .await
        .unwrap();
        pg.commit(&[entry("e", "hoqu", "2026-11-20T14:00:20Z", ok.clone())])
            .await
            .unwrap();
        let since = "2026-11-20T14:00:30Z".parse().unwrap();
        let mut c = pg.counts(since).await.unwrap();
        c.sort();
        assert_eq!(
            c,
            vec![
                ("hoqu".into(), "dead_lettered".into(), 1),
                ("hoqu".into(), "delivered".into(), 3),
                ("ps".into(), "delivered".into(), 1),
            ],
            "from the minute holding `since`"
        );
        let hours = pg.per_hour("hoqu", from_ms(0)).await.unwrap();
        assert_eq!(hours.len(), 3, "{hours:?}");
        let old = &hours[0];
        assert_eq!(
            old.hour,
            "2026-11-19T10:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            (old.n, old.latency_ms_sum),
            (1, 30.0),
            "filled from the entries"
        );
        assert_eq!(
            (hours[1].outcome.as_str(), hours[1].n),
            ("dead_lettered", 1)
        );
        let delivered = &hours[2];
        assert_eq!(
            delivered.hour,
            "2026-11-20T14:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!((delivered.n, delivered.latency_n), (3, 3));
        assert_eq!(delivered.latency_ms_sum, 30.0);

        let conn = pg.conn().await.unwrap();
        conn.batch_execute("SET enable_seqscan = off")
            .await
            .unwrap();
        for (sql, params) in [
            (
                COUNTS_SQL,
                vec![&0i64 as &(dyn tokio_postgres::types::ToSql + Sync)],
            ),
            (PER_HOUR_SQL, vec![&"hoqu", &0i64]),
        ] {
            let plan: Vec<String> = conn
                .query(&format!("EXPLAIN {sql}"), &params)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert!(
                !plan.iter().any(|l| l.contains("Seq Scan"))
                    && plan.iter().any(|l| l.contains("Index Cond")),
                "{sql}: {plan:#?}"
            );
        }

        // Whole minutes before the cut-off go; the minute holding it stays.
        let gone = prune(
            &pg.conn().await.unwrap(),
            "2026-11-20T14:00:40Z".parse().unwrap(),
            1_000,
        )
        .await
        .unwrap();
        assert_eq!(gone, 1, "the old one; the cut-off's own minute stays");
        let gone = prune(
            &pg.conn().await.unwrap(),
            "2026-11-20T14:01:00Z".parse().unwrap(),
            1_000,
        )
        .await
        .unwrap();
        assert_eq!(gone, 2, "hoqu's two at 14:00");
        assert_eq!(
            pg.counts(from_ms(0)).await.unwrap().len(),
            1,
            "ps at 14:59 stays"
        );
        drop(pg);
        admin
            .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
            .await
            .unwrap();
    }
}
