//! The journal in PostgreSQL, one journal shared by several replicas: the same entries,
//! events, recoveries and actions as the SQLite file, with the schema's versions in
//! `migrations/postgres/` applied under an advisory lock (so that replicas starting together
//! apply each once), and batches written with one statement per table. The readers' and
//! recoveries' queries are in `queries`. The writer's commits and pruning steps are in
//! `write`, and the writer's sink in `sink`.

use tokio_postgres::{Client, NoTls};

use super::{CALL_TIMEOUT, JournalError};

mod counts;
mod letters;
mod nul;
mod queries;
mod sink;
#[cfg(test)]
pub(super) mod tests;
mod write;

pub(super) use queries::entry_of;
pub(super) use sink::PgSink;

const MIGRATIONS: [&str; 7] = [
    include_str!("../migrations/postgres/0001_deliveries.sql"),
    include_str!("../migrations/postgres/0002_no_events_order_index.sql"),
    include_str!("../migrations/postgres/0003_counts_per_minute.sql"),
    include_str!("../migrations/postgres/0004_dead_letters.sql"),
    include_str!("../migrations/postgres/0005_retries_by_time.sql"),
    include_str!("../migrations/postgres/0006_rare_outcomes_by_time.sql"),
    include_str!("../migrations/postgres/0007_trace_ids.sql"),
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
}
