//! The PostgreSQL journal on a database of each test's own: pruning, and the filters' plans.

use tokio_postgres::{Client, NoTls};

use super::*;
use crate::journal::sqlite::ms;

impl Pg {
    /// One connection of its own, outside the pool: to create a test's database, or write
    /// what the journal would not.
    pub(in crate::journal) async fn client(url: &str) -> Result<Client, JournalError> {
        let connecting = tokio_postgres::connect(url, NoTls);
        let (client, connection) = tokio::time::timeout(CALL_TIMEOUT, connecting)
            .await
            .map_err(|_| JournalError::Timeout("connecting", CALL_TIMEOUT))??;
        tokio::spawn(connection);
        Ok(client)
    }

    /// The one number `sql` selects, through the pool.
    pub(in crate::journal) async fn count(&self, sql: &str) -> i64 {
        self.conn()
            .await
            .unwrap()
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }
}

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
    let pg = Pg::connect(&url).await.unwrap();
    let old = ms("2026-01-01T00:00:00Z".parse().unwrap());
    let new = ms("2026-11-20T00:00:00Z".parse().unwrap());
    for (id, at) in [("r-old", old), ("r-new", new)] {
        pg.conn().await.unwrap().execute(
                "INSERT INTO recoveries (id, destination, since, until, outcome, asked_by, asked_at)
                 VALUES ($1, 'd', 0, NULL, 'delivered', 'ops', $2)",
                &[&id, &at],
            )
            .await
            .unwrap();
        pg.conn()
            .await
            .unwrap()
            .execute(
                "INSERT INTO recovered (recovery_id, event_id, sent_at)
                 SELECT $1, 'e' || i, $2 FROM generate_series(1, 30) i",
                &[&id, &at],
            )
            .await
            .unwrap();
    }
    for at in [old, old, new] {
        pg.conn()
            .await
            .unwrap()
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
    let count = async |sql: &str| pg.count(sql).await;
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
    let conn = pg.conn().await.unwrap();
    conn.batch_execute("SET enable_seqscan = off")
        .await
        .unwrap();
    for (what, f) in crate::journal::query::tests::every_filter() {
        let q = crate::journal::query::entries(&f, crate::journal::query::Dialect::Postgres);
        let params: Vec<_> = q.params.iter().map(|p| p.pg()).collect();
        let plan: Vec<String> = conn
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
