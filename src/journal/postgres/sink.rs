//! The database as the writer's sink, connecting again after a lost connection.

use chrono::{DateTime, Utc};

use super::{Pg, nul};
use crate::journal::letter::Letter;
use crate::journal::writer::{PRUNE_STEP, Sink};
use crate::journal::{CALL_TIMEOUT, Entry, JournalError};

/// The database as the writer's sink. It connects when it first writes (bringing the schema
/// up to date) and, through the pool, again after a connection is lost, so that a database
/// that is down when the relay starts, or restarts under it, holds up no delivery: the writer
/// tries again, and counts what it must drop.
pub(in crate::journal) struct PgSink {
    url: String,
    pg: Option<Pg>,
}

impl PgSink {
    pub(in crate::journal) fn new(url: &str) -> PgSink {
        PgSink {
            url: url.to_owned(),
            pg: None,
        }
    }

    async fn pg(&mut self) -> Result<&Pg, JournalError> {
        if self.pg.is_none() {
            self.pg = Some(Pg::connect(&self.url).await?);
        }
        Ok(self.pg.as_ref().expect("just connected"))
    }
}

impl PgSink {
    /// `call` on the database within [`CALL_TIMEOUT`]; the connection it used is let go
    /// after a failure or a timeout (a server that froze never answers on it), and the next
    /// call takes another.
    async fn within<T>(
        &mut self,
        what: &'static str,
        call: impl AsyncFnOnce(&Pg) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        let pg = self.pg().await?;
        tokio::time::timeout(CALL_TIMEOUT, call(pg))
            .await
            .unwrap_or(Err(JournalError::Timeout(what, CALL_TIMEOUT)))
    }
}

impl Sink for PgSink {
    async fn open(&mut self) -> Result<(), JournalError> {
        self.pg().await.map(|_| ())
    }

    async fn commit(&mut self, mut batch: Vec<Entry>) -> (Vec<Entry>, Result<(), JournalError>) {
        batch.iter_mut().for_each(nul::entry);
        let result = self
            .within("committing", async |pg: &Pg| pg.commit(&batch).await)
            .await;
        (batch, result)
    }

    async fn commit_letters(
        &mut self,
        mut letters: Vec<Letter>,
    ) -> (Vec<Letter>, Result<(), JournalError>) {
        letters.iter_mut().for_each(nul::letter);
        let result = self
            .within("committing", async |pg: &Pg| {
                let mut conn = pg.conn().await?;
                conn.transaction("committing", CALL_TIMEOUT, async |tx| {
                    Pg::insert_letters(tx, &letters).await
                })
                .await
            })
            .await;
        (letters, result)
    }

    async fn prune_step(&mut self, before: DateTime<Utc>) -> Result<usize, JournalError> {
        let step = PRUNE_STEP as i64;
        self.within("pruning", async |pg: &Pg| pg.prune_step(before, step).await)
            .await
    }
}
