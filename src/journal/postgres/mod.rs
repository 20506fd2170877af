//! The journal in PostgreSQL, one journal shared by several replicas: the same entries,
//! events, recoveries and actions as the SQLite file, with the schema's versions in
//! `migrations/postgres/` applied under an advisory lock (so that replicas starting together
//! apply each once), and batches written with one statement per table. The readers' and
//! recoveries' queries are in `queries`.

use chrono::{DateTime, Utc};
use tokio_postgres::{Client, NoTls};

use super::sqlite::ms;
use super::{CALL_TIMEOUT, Entry, JournalError};

mod counts;
mod letters;
mod nul;
mod queries;

pub(super) use queries::entry_of;

const MIGRATIONS: [&str; 6] = [
    include_str!("../migrations/postgres/0001_deliveries.sql"),
    include_str!("../migrations/postgres/0002_no_events_order_index.sql"),
    include_str!("../migrations/postgres/0003_counts_per_minute.sql"),
    include_str!("../migrations/postgres/0004_dead_letters.sql"),
    include_str!("../migrations/postgres/0005_retries_by_time.sql"),
    include_str!("../migrations/postgres/0006_rare_outcomes_by_time.sql"),
];

/// The advisory lock that one process at a time takes to migrate.
const MIGRATION_LOCK: i64 = 0x706f_7374_6261_636b; // "postback"

/// A connection to the journal's database.
pub(super) struct Pg {
    client: Client,
    /// To connect again when the database went away (a restart, a failover).
    url: String,
}

impl Pg {
    pub(in crate::journal) fn conn(&self) -> &Client {
        &self.client
    }

    /// Connects and brings the schema up to date.
    pub(super) async fn connect(url: &str) -> Result<Pg, JournalError> {
        let mut pg = Pg {
            client: Pg::client(url).await?,
            url: url.to_owned(),
        };
        pg.migrate().await?;
        Ok(pg)
    }

    /// A connection, within [`CALL_TIMEOUT`]: a server that does not answer is given up on,
    /// and tried again by the next call.
    async fn client(url: &str) -> Result<Client, JournalError> {
        let config: tokio_postgres::Config = url.parse()?;
        let connecting = config.connect(NoTls);
        let (client, connection) = tokio::time::timeout(CALL_TIMEOUT, connecting)
            .await
            .map_err(|_| JournalError::Timeout("connecting", CALL_TIMEOUT))??;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(message = "journal: the PostgreSQL connection ended", error = %e);
            }
        });
        Ok(client)
    }

    /// A new connection when the last one has closed.
    async fn reconnect_if_closed(&mut self) -> Result<(), JournalError> {
        if self.client.is_closed() {
            self.client = Pg::client(&self.url).await?;
        }
        Ok(())
    }

    async fn migrate(&mut self) -> Result<(), JournalError> {
        let tx = self.client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS journal_schema (version INTEGER NOT NULL);
             INSERT INTO journal_schema (version)
               SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM journal_schema);",
        )
        .await?;
        let found: i32 = tx
            .query_one("SELECT version FROM journal_schema", &[])
            .await?
            .get(0);
        let known = MIGRATIONS.len() as i32;
        if found > known {
            return Err(JournalError::Schema {
                path: "the PostgreSQL journal".into(),
                found: i64::from(found),
                known: i64::from(known),
            });
        }
        for sql in MIGRATIONS.iter().skip(found.max(0) as usize) {
            tx.batch_execute(sql).await?;
        }
        tx.execute("UPDATE journal_schema SET version = $1", &[&known])
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Commits `batch` in one transaction, one statement per table (the per-minute counts
    /// included).
    pub(super) async fn commit(&mut self, batch: &[Entry]) -> Result<(), JournalError> {
        self.reconnect_if_closed().await?;
        let mut ev = (vec![], vec![], vec![], vec![], vec![]);
        for e in batch.iter().filter(|e| e.event.is_some()) {
            ev.0.push(e.event_id.as_str());
            ev.1.push(e.order_id.as_deref());
            ev.2.push(e.event_type.as_str());
            ev.3.push(e.event.as_deref().unwrap_or_default());
            ev.4.push(ms(e.at));
        }
        let tx = self.client.transaction().await?;
        if !ev.0.is_empty() {
            tx.execute(
                "INSERT INTO events (event_id, order_id, event_type, body, first_at)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])
                 ON CONFLICT (event_id) DO NOTHING",
                &[&ev.0, &ev.1, &ev.2, &ev.3, &ev.4],
            )
            .await?;
        }
        let col = |f: fn(&Entry) -> Option<String>| batch.iter().map(f).collect::<Vec<_>>();
        let event_id = col(|e| Some(e.event_id.clone()));
        let order_id = col(|e| e.order_id.clone());
        let event_type = col(|e| Some(e.event_type.clone()));
        let destination = col(|e| Some(e.destination.clone()));
        let outcome = col(|e| Some(e.outcome.code().to_owned()));
        let detail = col(|e| e.outcome.detail().map(str::to_owned));
        let error_class = col(|e| e.error_class.clone());
        let request = col(|e| e.request.clone());
        let response = col(|e| e.response.clone());
        let recovery = col(|e| e.recovery.clone());
        let attempt: Vec<i32> = batch
            .iter()
            .map(|e| i32::try_from(e.attempt).unwrap_or(i32::MAX))
            .collect();
        let at: Vec<i64> = batch.iter().map(|e| ms(e.at)).collect();
        let status: Vec<Option<i32>> = batch.iter().map(|e| e.http_status.map(i32::from)).collect();
        let latency: Vec<Option<f64>> = batch.iter().map(|e| e.latency_ms).collect();
        tx.execute(
            "INSERT INTO entries (event_id, order_id, event_type, destination, attempt, at,
               outcome, detail, http_status, error_class, latency_ms, request, response, recovery)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int[],
               $6::bigint[], $7::text[], $8::text[], $9::int[], $10::text[], $11::float8[],
               $12::text[], $13::text[], $14::text[])",
            &[
                &event_id,
                &order_id,
                &event_type,
                &destination,
                &attempt,
                &at,
                &outcome,
                &detail,
                &status,
                &error_class,
                &latency,
                &request,
                &response,
                &recovery,
            ],
        )
        .await?;
        counts::add(&tx, batch).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes up to `step` entries older than `before`, then the events no entry refers to;
    /// with what the step has left, operator actions and recoveries asked before, with the
    /// events each recovery sent, and the per-minute counts of whole minutes before. How many
    /// entries, actions, recovered events and counts went.
    pub(super) async fn prune_step(
        &mut self,
        before: DateTime<Utc>,
        step: i64,
    ) -> Result<usize, JournalError> {
        self.reconnect_if_closed().await?;
        let gone = self
            .client
            .execute(
                "DELETE FROM entries WHERE id IN
                   (SELECT id FROM entries WHERE at < $1 ORDER BY at LIMIT $2)",
                &[&ms(before), &step],
            )
            .await?;
        self.client
            .execute(
                "DELETE FROM events WHERE event_id IN
                   (SELECT e.event_id FROM events e WHERE first_at < $1
                      AND NOT EXISTS (SELECT 1 FROM entries x WHERE x.event_id = e.event_id)
                    LIMIT $2)",
                &[&ms(before), &step],
            )
            .await?;
        let room = step - gone as i64;
        if room <= 0 {
            return Ok(gone as usize);
        }
        let actions = self
            .client
            .execute(
                "DELETE FROM actions WHERE id IN
                   (SELECT id FROM actions WHERE at < $1 ORDER BY at LIMIT $2)",
                &[&ms(before), &room],
            )
            .await?;
        let room = room - actions as i64;
        if room <= 0 {
            return Ok((gone + actions) as usize);
        }
        let recovered = self
            .client
            .execute(
                "DELETE FROM recovered WHERE (recovery_id, event_id) IN
                   (SELECT r.recovery_id, r.event_id FROM recovered r
                      JOIN recoveries c ON c.id = r.recovery_id
                    WHERE c.asked_at < $1 LIMIT $2)",
                &[&ms(before), &room],
            )
            .await?;
        self.client
            .execute(
                "DELETE FROM recoveries c WHERE asked_at < $1
                   AND NOT EXISTS (SELECT 1 FROM recovered r WHERE r.recovery_id = c.id)",
                &[&ms(before)],
            )
            .await?;
        let room = room - recovered as i64;
        let counts = counts::prune(&self.client, before, room).await?;
        let room = room - counts as i64;
        if room <= 0 {
            return Ok((gone + actions + recovered + counts) as usize);
        }
        // The dead letters' index: those that left the queue before the cut-off; a letter
        // still waiting stays whatever its age, as it stays in the queue.
        let letters = self
            .client
            .execute(
                "DELETE FROM dead_letters WHERE seq IN
                   (SELECT seq FROM dead_letters WHERE state <> 'waiting' AND changed_at < $1
                    ORDER BY changed_at LIMIT $2)",
                &[&ms(before), &room],
            )
            .await?;
        Ok((gone + actions + recovered + counts + letters) as usize)
    }
}

/// The database as the writer's sink. It connects when it first writes and again after a
/// connection is lost, so that a database that is down when the relay starts, or restarts
/// under it, holds up no delivery: the writer tries again, and counts what it must drop.
pub(super) struct PgSink {
    url: String,
    pg: Option<Pg>,
}

impl PgSink {
    pub(super) fn new(url: &str) -> PgSink {
        PgSink {
            url: url.to_owned(),
            pg: None,
        }
    }

    async fn pg(&mut self) -> Result<&mut Pg, JournalError> {
        if self.pg.is_none() {
            self.pg = Some(Pg::connect(&self.url).await?);
        }
        Ok(self.pg.as_mut().expect("just connected"))
    }
}

impl PgSink {
    /// `call` on the connection within [`CALL_TIMEOUT`]; after a failure or a timeout the
    /// connection is let go (a server that froze never answers on it), and the next call
    /// connects again.
    async fn within<T>(
        &mut self,
        what: &'static str,
        call: impl AsyncFnOnce(&mut Pg) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        let result = match self.pg().await {
            Ok(pg) => tokio::time::timeout(CALL_TIMEOUT, call(pg))
                .await
                .unwrap_or(Err(JournalError::Timeout(what, CALL_TIMEOUT))),
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.pg = None;
        }
        result
    }
}

impl super::writer::Sink for PgSink {
    async fn commit(&mut self, mut batch: Vec<Entry>) -> (Vec<Entry>, Result<(), JournalError>) {
        batch.iter_mut().for_each(nul::entry);
        let result = self
            .within("committing", async |pg: &mut Pg| pg.commit(&batch).await)
            .await;
        (batch, result)
    }

    async fn commit_letters(
        &mut self,
        mut letters: Vec<super::letter::Letter>,
    ) -> (Vec<super::letter::Letter>, Result<(), JournalError>) {
        letters.iter_mut().for_each(nul::letter);
        let result = self
            .within("committing", async |pg: &mut Pg| {
                pg.reconnect_if_closed().await?;
                let tx = pg.client.transaction().await?;
                Pg::insert_letters(&tx, &letters).await?;
                tx.commit().await?;
                Ok(())
            })
            .await;
        (letters, result)
    }

    async fn prune_step(&mut self, before: DateTime<Utc>) -> Result<usize, JournalError> {
        let step = super::writer::PRUNE_STEP as i64;
        self.within("pruning", async |pg: &mut Pg| {
            pg.prune_step(before, step).await
        })
        .await
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A database of the test's own on the PostgreSQL the tests use, and its URL; `None`
    /// outside CI when no server answers.
    pub(in crate::journal) async fn database() -> Option<(Client, String, String)> {
        let admin = std::env::var("POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into());
        let Ok(client) = Pg::client(&admin).await else {
            assert!(std::env::var("CI").is_err(), "PostgreSQL is required in CI");
            return None;
        };
        let name = format!("j_unit_{}", uuid::Uuid::new_v4().simple());
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
        let mut url = url::Url::parse(&admin).unwrap();
        url.set_path(&name);
        Some((client, name, url.to_string()))
    }

    #[tokio::test]
    async fn pruning_removes_old_actions_and_recoveries_with_what_they_sent() {
        let Some((admin, name, url)) = database().await else {
            return;
        };
        let mut pg = Pg::connect(&url).await.unwrap();
        let old = ms("2026-01-01T00:00:00Z".parse().unwrap());
        let new = ms("2026-11-20T00:00:00Z".parse().unwrap());
        for (id, at) in [("r-old", old), ("r-new", new)] {
            pg.client
                .execute(
                    "INSERT INTO recoveries (id, destination, since, until, outcome, asked_by, asked_at)
                     VALUES ($1, 'd', 0, NULL, 'delivered', 'ops', $2)",
                    &[&id, &at],
                )
                .await
                .unwrap();
            pg.client
                .execute(
                    "INSERT INTO recovered (recovery_id, event_id, sent_at)
                     SELECT $1, 'e' || i, $2 FROM generate_series(1, 30) i",
                    &[&id, &at],
                )
                .await
                .unwrap();
        }
        for at in [old, old, new] {
            pg.client
                .execute(
                    "INSERT INTO actions (at, who, action, filter, count)
                     VALUES ($1, 'ops', 'replay', '{}', 1)",
                    &[&at],
                )
                .await
                .unwrap();
        }
        let before = "2026-06-01T00:00:00Z".parse().unwrap();
        assert_eq!(pg.prune_step(before, 20).await.unwrap(), 20, "a full step");
        assert!(pg.prune_step(before, 20).await.unwrap() < 20, "the rest");
        let count =
            async |sql: &str| -> i64 { pg.client.query_one(sql, &[]).await.unwrap().get(0) };
        assert_eq!(count("SELECT count(*) FROM actions").await, 1);
        assert_eq!(count("SELECT count(*) FROM recoveries").await, 1);
        assert_eq!(
            count("SELECT count(*) FROM recovered WHERE recovery_id = 'r-new'").await,
            30
        );
        drop(pg);
        admin
            .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
            .await
            .unwrap();
    }

    /// Each filter is served by an index in PostgreSQL too: with sequential scans priced out,
    /// every plan searches an index by a condition of the filter, and none reads the whole
    /// entries table.
    #[tokio::test]
    async fn every_filter_has_an_index_plan() {
        let Some((admin, name, url)) = database().await else {
            return;
        };
        let pg = Pg::connect(&url).await.unwrap();
        pg.client
            .batch_execute("SET enable_seqscan = off")
            .await
            .unwrap();
        for (what, f) in crate::journal::query::tests::every_filter() {
            let q = crate::journal::query::entries(&f, crate::journal::query::Dialect::Postgres);
            let params: Vec<_> = q.params.iter().map(|p| p.pg()).collect();
            let plan: Vec<String> = pg
                .client
                .query(&format!("EXPLAIN {}", q.sql), &params)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            // Searched by a condition on an index, not read whole, in any order.
            assert!(
                !plan.iter().any(|l| l.contains("Seq Scan"))
                    && plan.iter().any(|l| l.contains("Index Cond")),
                "{what}: {plan:#?}"
            );
        }
        drop(pg);
        admin
            .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
            .await
            .unwrap();
    }
}
