//! The journal in PostgreSQL, one journal shared by several replicas: the same entries,
//! events, recoveries and actions as the SQLite file, with the schema's versions in
//! `migrations/postgres/` applied under an advisory lock (so that replicas starting together
//! apply each once), and batches written with one statement per table. The readers' and
//! recoveries' queries are in `queries`.

use chrono::{DateTime, Utc};
use tokio_postgres::{Client, NoTls};

use super::sqlite::ms;
use super::{CALL_TIMEOUT, Entry, JournalError};

mod queries;

const MIGRATIONS: [&str; 2] = [
    include_str!("../migrations/postgres/0001_deliveries.sql"),
    include_str!("../migrations/postgres/0002_no_events_order_index.sql"),
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

    /// Commits `batch` in one transaction, one statement per table.
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
        tx.commit().await?;
        Ok(())
    }

    /// Removes up to `step` entries older than `before`, then the events no entry refers to.
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
        Ok(gone as usize)
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
    async fn commit(&mut self, batch: Vec<Entry>) -> (Vec<Entry>, Result<(), JournalError>) {
        let result = self
            .within("committing", async |pg: &mut Pg| pg.commit(&batch).await)
            .await;
        (batch, result)
    }

    async fn prune_step(&mut self, before: DateTime<Utc>) -> Result<usize, JournalError> {
        let step = super::writer::PRUNE_STEP as i64;
        self.within("pruning", async |pg: &mut Pg| {
            pg.prune_step(before, step).await
        })
        .await
    }
}
