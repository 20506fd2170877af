//! Commits the journal refuses, kept and tried again after a growing pause until they succeed.

use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc::Receiver;

use super::sink::{MAX_BATCH, Sink};
use crate::journal::letter::Letter;
use crate::journal::{Entry, Metrics};

/// The first pause after a failed commit; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// While commits keep failing, the failure is logged again this often.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// Commits a batch, trying it again while the journal refuses it (a full disk, a lock held by
/// another program, a database that is down or restarting), for as long as it takes: entries
/// keep queuing behind it meanwhile, and only once the buffer is full are new ones dropped
/// (counted `buffer_full`). A stop that cannot wait for it counts what is left
/// ([`crate::journal::Writer::close`]). `buffered` counts the batch until it is committed.
pub(super) async fn commit_until_done<S: Sink>(
    sink: &mut S,
    mut batch: Vec<Entry>,
    metrics: &Metrics,
) {
    let mut pause = RETRY_FIRST;
    let mut failing_since: Option<tokio::time::Instant> = None;
    let mut logged: Option<tokio::time::Instant> = None;
    loop {
        let (back, result) = sink.commit(batch).await;
        batch = back;
        match result {
            Ok(()) => {
                metrics.buffered.sub(batch.len() as i64);
                metrics.written.inc_by(batch.len() as u64);
                metrics.failing.set(0);
                if let Some(oldest) = batch.iter().map(|e| e.at).min() {
                    let lag = (Utc::now() - oldest).num_milliseconds().max(0);
                    metrics.lag.set(lag as f64 / 1000.0);
                }
                if let Some(since) = failing_since {
                    tracing::info!(
                        message = "journal writes again",
                        failed_for_secs = since.elapsed().as_secs(),
                        entries = batch.len()
                    );
                }
                return;
            }
            Err(e) => {
                metrics.failing.set(1);
                metrics.write_errors.inc();
                let now = tokio::time::Instant::now();
                failing_since.get_or_insert(now);
                if logged.is_none_or(|at| now - at >= LOG_EVERY) {
                    logged = Some(now);
                    tracing::error!(message = "journal write failed; the batch is kept and tried again, and entries wait in the buffer", entries = batch.len(), buffered = metrics.buffered.get(), error = %e);
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Commits the letters waiting now, if any.
pub(super) async fn commit_letters_waiting<S: Sink>(
    sink: &mut S,
    letters: &mut Receiver<Letter>,
    metrics: &Metrics,
) {
    let mut waiting = Vec::new();
    while let Ok(l) = letters.try_recv() {
        waiting.push(l);
        if waiting.len() >= MAX_BATCH {
            letters_until_done(sink, std::mem::take(&mut waiting), metrics).await;
        }
    }
    if !waiting.is_empty() {
        letters_until_done(sink, waiting, metrics).await;
    }
}

/// Commits letters, trying again while the journal refuses them, as a batch of entries.
pub(super) async fn letters_until_done<S: Sink>(
    sink: &mut S,
    mut letters: Vec<Letter>,
    metrics: &Metrics,
) {
    let mut pause = RETRY_FIRST;
    let mut logged: Option<tokio::time::Instant> = None;
    loop {
        let (back, result) = sink.commit_letters(letters).await;
        letters = back;
        match result {
            Ok(()) => {
                metrics.failing.set(0);
                return;
            }
            Err(e) => {
                metrics.failing.set(1);
                metrics.write_errors.inc();
                let now = tokio::time::Instant::now();
                if logged.is_none_or(|at| now - at >= LOG_EVERY) {
                    logged = Some(now);
                    tracing::error!(message = "journal write of dead letters failed; they are kept and tried again", letters = letters.len(), error = %e);
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
            }
        }
    }
}
