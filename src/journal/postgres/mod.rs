//! The journal in PostgreSQL, one journal shared by several replicas: the same entries,
//! events, recoveries and actions as the SQLite file, with the schema's versions in
//! `migrations/postgres/` applied under an advisory lock (so that replicas starting together
//! apply each once), and batches written with one statement per table. The readers' and
//! recoveries' queries are in `queries`. The writer's commits and pruning steps are in
//! `write`, and the writer's sink in `sink`. Connections come from a pool, made over TLS as
//! the URL says (`tls`), each statement on them bounded (`conn`).

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};

use super::{CALL_TIMEOUT, JournalError};
use crate::config::journal::pg_tls::PgUrl;

mod conn;
mod counts;
mod letters;
mod nul;
mod queries;
mod sink;
#[cfg(test)]
pub(super) mod tests;
mod tls;
mod write;

pub(super) use conn::Conn;
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

/// A tokio-postgres error with what it carries: its own text is only the kind ("db error"),
/// the server's message and the cause are its sources.
pub(in crate::journal) fn said(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Longest a migration may take, waiting for another process's included.
const MIGRATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// The advisory lock that one process at a time takes to migrate.
const MIGRATION_LOCK: i64 = 0x706f_7374_6261_636b; // "postback"

/// Connections the journal's database keeps open at most, per process: the writer uses one,
/// the console's pages and the commands a few.
const POOL_SIZE: usize = 4;

/// The journal's database: a pool of connections, each made over TLS as the URL says, within
/// [`CALL_TIMEOUT`], and each statement on them within it too ([`Conn`]). A connection that
/// failed or did not answer in time is closed rather than given back, so that a database that
/// restarted or froze is connected to again at the next call.
pub(super) struct Pg {
    pool: Pool,
    /// The servers, `host:port`, for messages.
    server: String,
}

impl Pg {
    /// A connection from the pool, made if none is free.
    pub(in crate::journal) async fn conn(&self) -> Result<Conn, JournalError> {
        match self.pool.get().await {
            Ok(obj) => Ok(Conn::new(obj)),
            Err(PoolError::Timeout(_)) => Err(JournalError::Timeout("connecting", CALL_TIMEOUT)),
            Err(PoolError::Backend(e)) => Err(JournalError::Connect {
                server: self.server.clone(),
                reason: conn::reason(&e),
            }),
            Err(e) => Err(JournalError::Task(format!("the PostgreSQL pool: {e}"))),
        }
    }

    /// The pool for `url`, its TLS files read; connects, and brings the schema up to date.
    pub(super) async fn connect(url: &str) -> Result<Pg, JournalError> {
        let pg = Pg::pool(url)?;
        pg.migrate().await?;
        Ok(pg)
    }

    /// The pool, not connected yet.
    fn pool(url: &str) -> Result<Pg, JournalError> {
        let bad = |e: String| JournalError::Url(e);
        let url = PgUrl::parse(url).map_err(|e| bad(e.to_string()))?;
        let server = url.servers();
        let recycling = ManagerConfig {
            // A connection the server closed is seen as closed; one that froze is found by
            // the statement's timeout, and closed then.
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match url.tls.client_config().map_err(|e| bad(e.to_string()))? {
            Some(tls) => Manager::from_config(url.config, tls::Rustls(tls), recycling),
            None => Manager::from_config(url.config, tokio_postgres::NoTls, recycling),
        };
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CALL_TIMEOUT))
            .create_timeout(Some(CALL_TIMEOUT))
            .recycle_timeout(Some(CALL_TIMEOUT))
            .build()
            .map_err(|e| JournalError::Task(format!("the PostgreSQL pool: {e}")))?;
        Ok(Pg { pool, server })
    }

    async fn migrate(&self) -> Result<(), JournalError> {
        let mut conn = self.conn().await?;
        // Unbounded but for a long bound: a migration rewrites what it must, which on a large
        // journal takes a while, and waits for another process's.
        conn.transaction("migrating", MIGRATION_TIMEOUT, async |tx| {
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
            Ok(())
        })
        .await
    }
}
