//! The index of dead letters, in the journal: a row per letter the relay confirmed into the
//! dead-letter queue (written by the journal's writer, beside the entries), marked when a
//! replay sends it back or an operator discards it, and rebuilt from one read of the queue
//! (a reindex) when it has drifted from it. The console pages, opens and previews letters by
//! querying it; the queue stays the hand-off that replays read.

mod file;

use chrono::{DateTime, Utc};

use super::access::{Backend, on_file};
use super::{JournalConfig, JournalError};

pub use super::letter::{Group, Indexed, Letter, LetterFilter, Mark, State};
pub(super) use file::FileLetters;

/// The index, read and changed by the console and the commands.
#[derive(Clone)]
pub struct Letters(Backend<FileLetters>);

impl Letters {
    /// Opens the configured journal, its schema brought up to date. The file must exist.
    pub async fn open(config: &JournalConfig) -> Result<Letters, JournalError> {
        Ok(Letters(Backend::open(config, FileLetters::open).await?))
    }

    /// The waiting letters `f` selects, by destination and reason.
    pub async fn groups(&self, f: &LetterFilter) -> Result<Vec<Group>, JournalError> {
        match &self.0 {
            Backend::File(file) => {
                let f = f.clone();
                on_file(file, move |l| l.groups(&f)).await
            }
            Backend::Postgres(p) => p.letter_groups(f).await,
        }
    }

    /// The waiting letters in all.
    pub async fn waiting(&self) -> Result<u64, JournalError> {
        match &self.0 {
            Backend::File(file) => on_file(file, |l| l.waiting()).await,
            Backend::Postgres(p) => p.letters_waiting().await,
        }
    }

    /// The waiting letters `f` selects, oldest first: `limit` after the first `skip`. The
    /// letters themselves (`letter`) are left empty.
    pub async fn page(
        &self,
        f: &LetterFilter,
        skip: u64,
        limit: u64,
    ) -> Result<Vec<Letter>, JournalError> {
        match &self.0 {
            Backend::File(file) => {
                let f = f.clone();
                on_file(file, move |l| l.page(&f, skip, limit)).await
            }
            Backend::Postgres(p) => p.letter_page(f, skip, limit).await,
        }
    }

    /// One letter, whatever its state.
    pub async fn get(&self, id: &str) -> Result<Option<Indexed>, JournalError> {
        match &self.0 {
            Backend::File(file) => {
                let id = id.to_owned();
                on_file(file, move |l| l.get(&id)).await
            }
            Backend::Postgres(p) => p.letter(id).await,
        }
    }

    /// Marks letters (by a replay, a discard), each that is known; returns how many were.
    pub async fn mark(&self, marks: &[Mark], by: &str) -> Result<u64, JournalError> {
        let at = Utc::now();
        match &self.0 {
            Backend::File(file) => {
                let (marks, by) = (marks.to_vec(), by.to_owned());
                on_file(file, move |l| l.mark(&marks, &by, at)).await
            }
            Backend::Postgres(p) => p.mark_letters(marks, by, at).await,
        }
    }

    /// A reindex found these letters in the queue: they are written, or marked waiting again,
    /// as seen by the reindex `run`.
    pub async fn seen(&self, letters: &[Letter], run: i64) -> Result<(), JournalError> {
        match &self.0 {
            Backend::File(file) => {
                let letters = letters.to_vec();
                on_file(file, move |l| l.seen(&letters, run)).await
            }
            Backend::Postgres(p) => p.letters_seen(letters, run).await,
        }
    }

    /// Ends the reindex `run`, whose read began at `began`: the letters waiting from before
    /// then that it did not see are marked gone. Returns how many.
    pub async fn reindexed(
        &self,
        run: i64,
        began: DateTime<Utc>,
        by: &str,
    ) -> Result<u64, JournalError> {
        let at = Utc::now();
        match &self.0 {
            Backend::File(file) => {
                let by = by.to_owned();
                on_file(file, move |l| l.reindexed(run, began, &by, at)).await
            }
            Backend::Postgres(p) => p.letters_reindexed(run, began, by, at).await,
        }
    }
}

#[cfg(test)]
mod pruning;
#[cfg(test)]
mod tests;
