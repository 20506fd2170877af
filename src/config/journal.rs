//! `[journal]`: where the delivery journal is kept ([`crate::journal`]).

use std::path::PathBuf;

use serde::Deserialize;

pub mod pg_tls;

/// `[journal]` in the configuration.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// Whether the relay keeps a journal at all.
    pub enabled: bool,
    /// `embedded` (a SQLite file, one relay) or `postgres` (one journal for several).
    pub kind: JournalKind,
    /// The SQLite file (`embedded`).
    pub path: PathBuf,
    /// The PostgreSQL connection URL (`postgres`), e.g. `postgres://relay:${PGPASSWORD}@db/journal`,
    /// with libpq's TLS parameters (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`: [`pg_tls`]).
    pub url: Option<String>,
    /// Entries older than this many days are pruned.
    pub retention_days: u32,
    /// Entries waiting for the writer, at most; beyond, new entries are dropped and counted.
    pub buffer: usize,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            enabled: true,
            kind: JournalKind::Embedded,
            url: None,
            path: PathBuf::from("postback-relay-journal.db"),
            retention_days: 30,
            buffer: 10_000,
        }
    }
}

/// Where the journal is kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalKind {
    #[default]
    Embedded,
    Postgres,
}

impl JournalConfig {
    /// What the types cannot check: a URL for `postgres`, and only there.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        match (self.kind, &self.url) {
            (JournalKind::Postgres, None) => {
                Err(("journal.url", "kind = \"postgres\" needs a url".into()))
            }
            (JournalKind::Postgres, Some(u)) => {
                let url = pg_tls::PgUrl::parse(u).map_err(|e| ("journal.url", e.to_string()))?;
                // The files are read now, so that none is found unusable once the relay runs.
                url.tls
                    .client_config()
                    .map(|_| ())
                    .map_err(|e| ("journal.url", e.to_string()))
            }
            (JournalKind::Embedded, Some(_)) => {
                Err(("journal.url", "url is for kind = \"postgres\"".into()))
            }
            (JournalKind::Embedded, None) => Ok(()),
        }
    }
}
