//! A test's own PostgreSQL database for the journal, created on the real server and dropped
//! with the test's `Env`, passed or failed.

/// The server's maintenance database, from which a test's databases are made.
pub fn postgres_url() -> String {
    std::env::var("POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into())
}

async fn admin() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL must be running on 127.0.0.1:5432 (scripts/test starts it)");
    tokio::spawn(conn);
    client
}

/// A database of the test's own.
pub struct PgDb {
    pub name: String,
}

impl PgDb {
    pub async fn new(prefix: &str) -> PgDb {
        let name = format!("j_{}", prefix.replace('-', "_"));
        admin()
            .await
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
        PgDb { name }
    }

    /// Its URL, for `journal.url`.
    pub fn url(&self) -> String {
        let mut u = url::Url::parse(&postgres_url()).unwrap();
        u.set_path(&self.name);
        u.to_string()
    }
}

/// Drops the database `name` made by [`PgDb::new`], whoever is still connected to it (a
/// relay's writer); [`super::Env`]'s clean-up calls it.
pub async fn drop_database(name: &str) {
    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    let _ = admin().await.batch_execute(&sql).await;
}
