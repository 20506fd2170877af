//! The journal's writer task: commits what has queued up, batch by batch, into its sink (the
//! SQLite file or PostgreSQL), keeps a batch that fails and tries it again until it commits
//! (entries queue behind it meanwhile, and only a full buffer drops any), and prunes what is
//! past the retention in small steps between batches.

mod retry;
mod sink;
#[cfg(test)]
mod tests;

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

use super::letter::Letter;
use super::{Entry, Metrics};
use retry::{commit_letters_waiting, commit_until_done, letters_until_done};
pub(super) use sink::{MAX_BATCH, PRUNE_STEP, Sink};

/// How often the writer looks for entries past the retention.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How long a batch that is not full waits for more entries before it is committed. A
/// commit writes every page it touched, however few entries it holds: a batch of ten
/// costs the file about twice as much per entry as a batch of hundreds, so the writer
/// lets entries gather for a moment rather than commit each trickle at once.
pub(super) const LINGER: Duration = Duration::from_millis(50);

/// What the writer commits: entries, and dead letters for the index.
pub(super) struct Queued {
    pub entries: Receiver<Entry>,
    pub letters: Receiver<Letter>,
}

/// Commits until every sender is gone (or `stop` refuses new entries) and the queue is empty.
pub(super) async fn write_all<S: Sink>(
    mut sink: S,
    queued: Queued,
    metrics: Metrics,
    retention: chrono::Duration,
    stop: CancellationToken,
) {
    let mut stopping = false;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The cut-off of a pruning under way: one step at a time, each after any batch that is
    // waiting, so that a commit waits on at most one step.
    let mut pruning: Option<DateTime<Utc>> = None;
    let Queued {
        entries: mut queued,
        mut letters,
    } = queued;
    let mut letters_open = true;
    let mut letter_batch = Vec::new();
    if let Err(e) = sink.open().await {
        tracing::error!(message = "journal not reachable at start; entries wait in the buffer and each write tries again", error = %e);
    }
    loop {
        tokio::select! {
            biased;
            n = queued.recv_many(&mut batch, MAX_BATCH) => {
                if n == 0 {
                    letters.close();
                    commit_letters_waiting(&mut sink, &mut letters, &metrics).await;
                    return;
                }
                if !stopping {
                    stopping = gather(&mut queued, &mut batch, &stop).await;
                }
                // The letters first: a dead letter is handed over before the entries that
                // tell of it, and is in the index once they are in the journal.
                commit_letters_waiting(&mut sink, &mut letters, &metrics).await;
                commit_until_done(&mut sink, std::mem::take(&mut batch), &metrics).await;
            }
            n = letters.recv_many(&mut letter_batch, MAX_BATCH), if letters_open => {
                if n == 0 {
                    letters_open = false;
                } else {
                    letters_until_done(&mut sink, std::mem::take(&mut letter_batch), &metrics).await;
                }
            }
            _ = stop.cancelled(), if !stopping => {
                stopping = true;
                queued.close();
                letters.close();
            }
            _ = prune.tick(), if !stopping && pruning.is_none() => {
                pruning = Some(Utc::now() - retention);
            }
            () = std::future::ready(()), if !stopping && pruning.is_some() => {
                let before = pruning.expect("a pruning under way");
                if !prune_one_step(&mut sink, before).await {
                    pruning = None;
                }
            }
        }
    }
}

/// Adds to `batch` what arrives within [`LINGER`], until it is full; stops gathering at once
/// when the writer is told to stop (then returns true, having closed the queue) or every
/// sender is gone.
async fn gather(
    queued: &mut Receiver<Entry>,
    batch: &mut Vec<Entry>,
    stop: &CancellationToken,
) -> bool {
    let deadline = tokio::time::Instant::now() + LINGER;
    while batch.len() < MAX_BATCH {
        let room = MAX_BATCH - batch.len();
        tokio::select! {
            n = queued.recv_many(batch, room) => {
                if n == 0 {
                    return false;
                }
            }
            _ = tokio::time::sleep_until(deadline) => return false,
            _ = stop.cancelled() => {
                queued.close();
                return true;
            }
        }
    }
    false
}

/// One step of removing what is past the retention; whether there is more.
async fn prune_one_step<S: Sink>(sink: &mut S, before: DateTime<Utc>) -> bool {
    match sink.prune_step(before).await {
        Ok(n) => n >= PRUNE_STEP,
        Err(e) => {
            tracing::warn!(message = "journal pruning failed; tried again at the next round", error = %e);
            false
        }
    }
}
