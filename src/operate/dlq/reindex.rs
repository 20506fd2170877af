//! A reindex: the journal's index of dead letters rebuilt from one read of the queue (under
//! the queue's lock, in order, nothing consumed). Each letter found is written or marked
//! waiting again; each the index had waiting from before the read that was not found is
//! marked gone. Letters dead-lettered while it reads are left as the relay wrote them.

use std::collections::HashMap;

use chrono::Utc;

use super::{DeadLetter, DlqError, lock_for_command};
use crate::journal::JournalError;
use crate::journal::letters::{Letter, Letters};
use crate::relay::broker::Topology;
use crate::relay::deadletter::browse::{self, Choice};

/// Letters written to the index at a time.
const BATCH: usize = 500;

/// Why a reindex did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ReindexError {
    #[error(transparent)]
    Dlq(#[from] DlqError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// What a reindex found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reindexed {
    /// Letters in the queue, now waiting in the index.
    pub found: u64,
    /// Letters the index had waiting that the queue no longer holds, marked gone.
    pub gone: u64,
}

/// Rebuilds the index from one read of the queue; `progress` is called after each letter.
pub async fn reindex(
    conn: &lapin::Connection,
    topology: &Topology,
    max_event_bytes: usize,
    letters: &Letters,
    by: &str,
    mut progress: impl FnMut(u64),
) -> Result<Reindexed, ReindexError> {
    let _lock = lock_for_command(conn, &topology.dead).await?;
    let began = Utc::now();
    let run = began.timestamp_millis();
    let mut found = 0u64;
    let mut batch: Vec<Letter> = Vec::with_capacity(BATCH);
    // Identical letters without an id, told apart by their place among themselves.
    let mut identical: HashMap<String, u32> = HashMap::new();
    browse::read_all(conn, &topology.dead, |m| {
        let letter = DeadLetter::from_message(m, max_event_bytes);
        let nth = match &letter {
            DeadLetter::Raw(r) => {
                let n = identical.entry(super::index::raw_id(r, 0)).or_default();
                *n += 1;
                *n - 1
            }
            DeadLetter::Envelope(_) => 0,
        };
        batch.push(super::index::row(&letter, nth, began));
        found += 1;
        progress(found);
        let full = (batch.len() >= BATCH).then(|| std::mem::take(&mut batch));
        async move {
            if let Some(full) = full {
                letters.seen(&full, run).await.map_err(Box::new)?;
            }
            Ok(Choice::Keep)
        }
    })
    .await
    .map_err(DlqError::from)?;
    letters.seen(&batch, run).await?;
    let gone = letters.reindexed(run, began, by).await?;
    Ok(Reindexed { found, gone })
}
