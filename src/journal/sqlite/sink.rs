//! The file as the writer's sink, made again if it is removed or replaced under the relay.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::{Db, blocking};
use crate::journal::letter::{self, Letter};
use crate::journal::writer::Sink;
use crate::journal::{Entry, JournalError};

/// The file as the writer's sink: each commit and pruning step on a blocking thread. It opens
/// the file when it can (a directory that cannot be written, a full disk, a file of a newer
/// relay: the writer tries again), and before each step makes sure the file is still the one
/// it opened: one removed or replaced under the relay is noticed, counted, and made again,
/// rather than written to where nobody can read it.
pub(in crate::journal) struct FileSink {
    path: PathBuf,
    db: Option<Db>,
    /// The opened file's device and inode.
    identity: Option<(u64, u64)>,
    replaced: prometheus::IntCounter,
}

/// A file's device and inode, if it exists.
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl FileSink {
    /// The sink on `path`, opened now if it can be; if not, the error is logged, and each
    /// commit tries again.
    pub(in crate::journal) async fn open(
        path: PathBuf,
        replaced: prometheus::IntCounter,
    ) -> FileSink {
        let mut sink = FileSink {
            path,
            db: None,
            identity: None,
            replaced,
        };
        if let Err(e) = sink.ensure_open().await {
            tracing::error!(message = "journal: cannot open its file; deliveries go on without it, its entries wait in its buffer, and it is tried again", error = %e);
        }
        sink
    }

    /// The file open, and still the one at its path.
    async fn ensure_open(&mut self) -> Result<(), JournalError> {
        if self.db.is_some() {
            if identity(&self.path) == self.identity {
                return Ok(());
            }
            tracing::error!(message = "journal: its file was removed or replaced under the relay (what it held went with it); making a new one", path = %self.path.display());
            self.replaced.inc();
            self.db = None;
        }
        let db = Db::open(self.path.clone()).await?;
        self.identity = identity(&self.path);
        self.db = Some(db);
        Ok(())
    }

    async fn with<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Db) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, JournalError> {
        self.ensure_open().await?;
        let mut db = self.db.take().ok_or_else(|| {
            JournalError::Task("the journal's connection was lost with a crashed task".into())
        })?;
        let (db, result) = blocking(move || {
            let r = f(&mut db);
            (db, r)
        })
        .await?;
        self.db = Some(db);
        Ok(result?)
    }
}

impl Sink for FileSink {
    async fn commit(&mut self, batch: Vec<Entry>) -> (Vec<Entry>, Result<(), JournalError>) {
        // Shared with the blocking task, so that the batch comes back for another try even
        // if that task crashes.
        let shared = std::sync::Arc::new(batch);
        let for_task = shared.clone();
        let result = self.with(move |db| db.commit(&for_task)).await;
        let batch = std::sync::Arc::try_unwrap(shared).unwrap_or_else(|a| (*a).clone());
        (batch, result)
    }

    async fn prune_step(&mut self, before: DateTime<Utc>) -> Result<usize, JournalError> {
        self.with(move |db| db.prune_step(before)).await
    }

    async fn commit_letters(
        &mut self,
        letters: Vec<Letter>,
    ) -> (Vec<Letter>, Result<(), JournalError>) {
        let shared = std::sync::Arc::new(letters);
        let for_task = shared.clone();
        let result = self
            .with(move |db| {
                let tx = db
                    .conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                letter::insert(&tx, &for_task)?;
                tx.commit()
            })
            .await;
        let letters = std::sync::Arc::try_unwrap(shared).unwrap_or_else(|a| (*a).clone());
        (letters, result)
    }
}
