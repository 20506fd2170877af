//! The journal in PostgreSQL, one journal shared by several replicas: the same entries,
//! events, recoveries and actions as the SQLite file, with the schema's versions in
//! `migrations/postgres/` applied under an advisory lock (so that replicas starting together
//! apply each once), batches written with one statement per table, and the readers' queries.

use chrono::{DateTime, Utc};
use tokio_postgres::{Client, NoTls};

use super::recovery::{Action, Candidate, Which, Window};
use super::sqlite::{from_ms, ms};
use super::{Entry, Filter, JournalError, Outcome};

const MIGRATIONS: [&str; 1] = [include_str!("migrations/postgres/0001_deliveries.sql")];

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

    async fn client(url: &str) -> Result<Client, JournalError> {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
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

    pub(super) async fn entries(&self, f: &Filter) -> Result<Vec<Entry>, JournalError> {
        let limit = i64::try_from(f.limit).unwrap_or(i64::MAX);
        let outcomes: Option<Vec<String>> = (!f.outcomes.is_empty()).then(|| f.outcomes.clone());
        let rows = self
            .client
            .query(
                "SELECT event_id, order_id, event_type, destination, attempt, at, outcome, detail,
                        http_status, error_class, latency_ms, request, response, recovery
                 FROM entries
                 WHERE ($1::text IS NULL OR event_id = $1)
                   AND ($2::text IS NULL OR order_id = $2)
                   AND ($3::text IS NULL OR destination = $3)
                   AND ($4::bigint IS NULL OR at >= $4)
                   AND ($5::bigint IS NULL OR at < $5)
                   AND ($6::text[] IS NULL OR outcome = ANY($6))
                 ORDER BY at, id LIMIT $7",
                &[
                    &f.event_id,
                    &f.order_id,
                    &f.destination,
                    &f.since.map(ms),
                    &f.until.map(ms),
                    &outcomes,
                    &limit,
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
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
                    event: None,
                })
            })
            .collect()
    }

    pub(super) async fn event(&self, event_id: &str) -> Result<Option<String>, JournalError> {
        Ok(self
            .client
            .query_opt("SELECT body FROM events WHERE event_id = $1", &[&event_id])
            .await?
            .map(|r| r.get(0)))
    }

    pub(super) async fn counts(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, String, u64)>, JournalError> {
        let rows = self
            .client
            .query(
                "SELECT destination, outcome, count(*) FROM entries WHERE at >= $1
                 GROUP BY destination, outcome",
                &[&ms(since)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get::<_, i64>(2) as u64))
            .collect())
    }

    pub(super) async fn pinned_until(
        &self,
        w: &Window,
    ) -> Result<Option<DateTime<Utc>>, JournalError> {
        Ok(self
            .client
            .query_opt(
                "SELECT coalesce(until, asked_at) FROM recoveries WHERE id = $1",
                &[&w.id()],
            )
            .await?
            .map(|r| from_ms(r.get(0))))
    }

    pub(super) async fn candidates(
        &self,
        w: &Window,
        id: &str,
    ) -> Result<Vec<Candidate>, JournalError> {
        let sql = match w.outcome {
            Which::Delivered => {
                "SELECT ev.event_id, ev.first_at FROM events ev
                 WHERE ev.event_id IN (
                     SELECT event_id FROM entries
                     WHERE destination = $1 AND outcome = 'delivered' AND recovery IS NULL
                       AND at >= $2 AND ($3::bigint IS NULL OR at < $3))
                   AND NOT EXISTS (SELECT 1 FROM recovered r
                                   WHERE r.recovery_id = $4 AND r.event_id = ev.event_id)
                 ORDER BY ev.first_at, ev.event_id"
            }
            Which::Any => {
                "SELECT ev.event_id, ev.first_at FROM events ev
                 WHERE $1::text IS NOT NULL AND ev.first_at >= $2
                   AND ($3::bigint IS NULL OR ev.first_at < $3)
                   AND NOT EXISTS (SELECT 1 FROM recovered r
                                   WHERE r.recovery_id = $4 AND r.event_id = ev.event_id)
                 ORDER BY ev.first_at, ev.event_id"
            }
        };
        let rows = self
            .client
            .query(sql, &[&w.destination, &ms(w.since), &w.until.map(ms), &id])
            .await?;
        Ok(rows
            .iter()
            .map(|r| Candidate {
                event_id: r.get(0),
                first_at: from_ms(r.get(1)),
            })
            .collect())
    }

    pub(super) async fn sent(&self, recovery: &str) -> Result<u64, JournalError> {
        let n: i64 = self
            .client
            .query_one(
                "SELECT count(*) FROM recovered WHERE recovery_id = $1",
                &[&recovery],
            )
            .await?
            .get(0);
        Ok(n as u64)
    }

    pub(super) async fn begin(&self, id: &str, w: &Window, who: &str) -> Result<(), JournalError> {
        self.client
            .execute(
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

    pub(super) async fn mark(&self, recovery: &str, event_id: &str) -> Result<(), JournalError> {
        self.client
            .execute(
                "INSERT INTO recovered (recovery_id, event_id, sent_at) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&recovery, &event_id, &ms(Utc::now())],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn act(&self, a: &Action) -> Result<(), JournalError> {
        self.client
            .execute(
                "INSERT INTO actions (at, who, action, filter, count) VALUES ($1, $2, $3, $4, $5)",
                &[&ms(a.at), &a.who, &a.action, &a.filter, &(a.count as i64)],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn actions(&self, limit: usize) -> Result<Vec<Action>, JournalError> {
        let rows = self
            .client
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

impl super::writer::Sink for PgSink {
    async fn commit(&mut self, batch: Vec<Entry>) -> (Vec<Entry>, Result<(), JournalError>) {
        let result = match self.pg().await {
            Ok(pg) => pg.commit(&batch).await,
            Err(e) => Err(e),
        };
        (batch, result)
    }

    async fn prune_step(&mut self, before: DateTime<Utc>) -> Result<usize, JournalError> {
        let step = super::writer::PRUNE_STEP as i64;
        self.pg().await?.prune_step(before, step).await
    }
}
