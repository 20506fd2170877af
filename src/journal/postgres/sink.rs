//! The database as the writer's sink, connecting again after a lost connection.

use chrono::{DateTime, Utc};

use super::{Pg, nul};
use crate::journal::letter::Letter;
use crate::journal::writer::{PRUNE_STEP, Sink};
use crate::journal::{CALL_TIMEOUT, Entry, JournalError};

/// The database as the writer's sink. It connects when it first writes and again after a
/// connection is lost, so that a database that is down when the relay starts, or restarts
/// under it, holds up no delivery: the writer tries again, and counts what it must drop.
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

impl Sink for PgSink {
    async fn commit(&mut self, mut batch: Vec<Entry>) -> (Vec<Entry>, Result<(), JournalError>) {
        batch.iter_mut().for_each(nul::entry);
        let result = self
            .within("committing", async |pg: &mut Pg| pg.commit(&batch).await)
            .await;
        (batch, result)
    }

    async fn commit_letters(
        &mut self,
        mut letters: Vec<Letter>,
    ) -> (Vec<Letter>, Result<(), JournalError>) {
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
        let step = PRUNE_STEP as i64;
        self.within("pruning", async |pg: &mut Pg| {
            pg.prune_step(before, step).await
        })
        .await
    }
}
