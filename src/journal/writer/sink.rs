//! Where the writer commits (the SQLite file or PostgreSQL), and how much at a time.

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::journal::letter::Letter;
use crate::journal::{Entry, JournalError};

/// At most this many entries per transaction.
pub(in crate::journal) const MAX_BATCH: usize = 512;
/// Old entries are removed this many at a time, so that no step holds the journal for long.
pub(in crate::journal) const PRUNE_STEP: usize = 1_000;

/// Where the writer commits.
pub(in crate::journal) trait Sink: Send + 'static {
    /// Commits `batch` in one transaction; gives the batch back, to try again.
    fn commit(
        &mut self,
        batch: Vec<Entry>,
    ) -> impl Future<Output = (Vec<Entry>, Result<(), JournalError>)> + Send;

    /// Removes up to [`PRUNE_STEP`] rows older than `before` (entries first, then operator
    /// actions and recoveries); how many went: as many as the step takes while more are left.
    fn prune_step(
        &mut self,
        before: DateTime<Utc>,
    ) -> impl Future<Output = Result<usize, JournalError>> + Send;

    /// Connects ahead of the first commit, so that a journal that cannot be reached (a
    /// server whose certificate the URL does not trust, a database that is down) is told of
    /// when the relay starts, not at its first delivery. The writer goes on either way.
    fn open(&mut self) -> impl Future<Output = Result<(), JournalError>> + Send {
        std::future::ready(Ok(()))
    }

    /// Writes dead letters to the index in one transaction; gives them back, to try again.
    fn commit_letters(
        &mut self,
        letters: Vec<Letter>,
    ) -> impl Future<Output = (Vec<Letter>, Result<(), JournalError>)> + Send {
        std::future::ready((letters, Ok(())))
    }
}
