//! The journal's writer task: commits what has queued up, batch by batch, into its sink (the
//! SQLite file or PostgreSQL), tries a failed commit again before it drops it and counts
//! it, and prunes what is past the retention in small steps between batches.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

use super::{Entry, JournalError, Metrics};

/// At most this many entries per transaction.
pub(super) const MAX_BATCH: usize = 512;
/// Old entries are removed this many at a time, so that no step holds the journal for long.
pub(super) const PRUNE_STEP: usize = 1_000;
/// How often the writer looks for entries past the retention.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Where the writer commits.
pub(super) trait Sink: Send + 'static {
    /// Commits `batch` in one transaction; gives the batch back, to try again.
    fn commit(
        &mut self,
        batch: Vec<Entry>,
    ) -> impl Future<Output = (Vec<Entry>, Result<(), JournalError>)> + Send;

    /// Removes up to [`PRUNE_STEP`] entries older than `before`; how many went.
    fn prune_step(
        &mut self,
        before: DateTime<Utc>,
    ) -> impl Future<Output = Result<usize, JournalError>> + Send;
}

/// Commits until every sender is gone (or `stop` refuses new entries) and the queue is empty.
pub(super) async fn write_all<S: Sink>(
    mut sink: S,
    mut queued: Receiver<Entry>,
    metrics: Metrics,
    retention: chrono::Duration,
    stop: CancellationToken,
) {
    let mut stopping = false;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            n = queued.recv_many(&mut batch, MAX_BATCH) => {
                if n == 0 {
                    return;
                }
                metrics.buffered.sub(n as i64);
                commit_with_retries(&mut sink, std::mem::take(&mut batch), &metrics).await;
            }
            _ = stop.cancelled(), if !stopping => {
                stopping = true;
                queued.close();
            }
            _ = prune.tick(), if !stopping => {
                prune_old(&mut sink, Utc::now() - retention).await;
            }
        }
    }
}

/// Commits a batch, trying again while the journal refuses it (a full disk, a lock held by
/// another program, a database restarting); entries keep queuing behind it meanwhile, up to
/// the buffer.
async fn commit_with_retries<S: Sink>(sink: &mut S, mut batch: Vec<Entry>, metrics: &Metrics) {
    for tries in 1..=super::MAX_WRITE_TRIES {
        let (back, result) = sink.commit(batch).await;
        batch = back;
        match result {
            Ok(()) => {
                metrics.written.inc_by(batch.len() as u64);
                if let Some(oldest) = batch.iter().map(|e| e.at).min() {
                    let lag = (Utc::now() - oldest).num_milliseconds().max(0);
                    metrics.lag.set(lag as f64 / 1000.0);
                }
                return;
            }
            Err(e) => {
                tracing::warn!(message = "journal write failed; trying again", tries, error = %e);
                tokio::time::sleep(super::RETRY_WRITE).await;
            }
        }
    }
    metrics
        .dropped
        .with_label_values(&["write_failed"])
        .inc_by(batch.len() as u64);
    tracing::error!(
        message = "journal entries dropped after repeated write failures",
        entries = batch.len()
    );
}

/// Removes what is past the retention, a step at a time, letting the writer's batches in
/// between steps.
async fn prune_old<S: Sink>(sink: &mut S, before: DateTime<Utc>) {
    loop {
        match sink.prune_step(before).await {
            Ok(n) if n == PRUNE_STEP => tokio::task::yield_now().await,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(message = "journal pruning failed", error = %e);
                return;
            }
        }
    }
}
