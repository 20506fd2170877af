//! The journal's writer task: commits what has queued up, batch by batch, into its sink (the
//! SQLite file or PostgreSQL), keeps a batch that fails and tries it again until it commits
//! (entries queue behind it meanwhile, and only a full buffer drops any), and prunes what is
//! past the retention in small steps between batches.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

use super::letter::Letter;
use super::{Entry, JournalError, Metrics};

/// At most this many entries per transaction.
pub(super) const MAX_BATCH: usize = 512;
/// Old entries are removed this many at a time, so that no step holds the journal for long.
pub(super) const PRUNE_STEP: usize = 1_000;
/// How often the writer looks for entries past the retention.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How long a batch that is not full waits for more entries before it is committed. A
/// commit writes every page it touched, however few entries it holds: a batch of ten
/// costs the file about twice as much per entry as a batch of hundreds, so the writer
/// lets entries gather for a moment rather than commit each trickle at once.
pub(super) const LINGER: Duration = Duration::from_millis(50);

/// Where the writer commits.
pub(super) trait Sink: Send + 'static {
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

    /// Writes dead letters to the index in one transaction; gives them back, to try again.
    fn commit_letters(
        &mut self,
        letters: Vec<Letter>,
    ) -> impl Future<Output = (Vec<Letter>, Result<(), JournalError>)> + Send {
        std::future::ready((letters, Ok(())))
    }
}

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

/// The first pause after a failed commit; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// While commits keep failing, the failure is logged again this often.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// Commits a batch, trying it again while the journal refuses it (a full disk, a lock held by
/// another program, a database that is down or restarting), for as long as it takes: entries
/// keep queuing behind it meanwhile, and only once the buffer is full are new ones dropped
/// (counted `buffer_full`). A stop that cannot wait for it counts what is left
/// ([`super::Writer::close`]). `buffered` counts the batch until it is committed.
async fn commit_until_done<S: Sink>(sink: &mut S, mut batch: Vec<Entry>, metrics: &Metrics) {
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
async fn commit_letters_waiting<S: Sink>(
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
async fn letters_until_done<S: Sink>(sink: &mut S, mut letters: Vec<Letter>, metrics: &Metrics) {
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::journal::Outcome;

    /// Keeps the size of each batch it is asked to commit.
    #[derive(Clone, Default)]
    struct Batches(Arc<Mutex<Vec<usize>>>);

    impl Sink for Batches {
        async fn commit(&mut self, batch: Vec<Entry>) -> (Vec<Entry>, Result<(), JournalError>) {
            self.0.lock().unwrap().push(batch.len());
            (batch, Ok(()))
        }

        async fn prune_step(&mut self, _: DateTime<Utc>) -> Result<usize, JournalError> {
            Ok(0)
        }
    }

    /// Fails its first `fails` commits (or every one, with `usize::MAX`), then keeps what it
    /// is given.
    #[derive(Clone, Default)]
    struct Flaky {
        fails: Arc<Mutex<usize>>,
        kept: Arc<Mutex<Vec<Entry>>>,
    }

    impl Sink for Flaky {
        async fn commit(&mut self, batch: Vec<Entry>) -> (Vec<Entry>, Result<(), JournalError>) {
            let mut fails = self.fails.lock().unwrap();
            if *fails > 0 {
                *fails = fails.saturating_sub(1);
                return (
                    batch,
                    Err(JournalError::Task("the database is away".into())),
                );
            }
            self.kept.lock().unwrap().extend(batch.iter().cloned());
            (batch, Ok(()))
        }

        async fn prune_step(&mut self, _: DateTime<Utc>) -> Result<usize, JournalError> {
            Ok(0)
        }
    }

    /// A journal away for a long while (here 60 failed commits, some minutes of backoff) loses
    /// nothing that the buffer could hold: the batch is kept and tried until it commits.
    #[tokio::test(start_paused = true)]
    async fn a_batch_is_kept_until_it_commits_however_long_the_journal_is_away() {
        let sink = Flaky::default();
        *sink.fails.lock().unwrap() = 60;
        let (tx, _stop, task, metrics) = writer(&sink);
        for i in 0..700 {
            tx.send(entry(i)).await.unwrap();
            metrics.buffered.inc();
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            metrics.failing.get(),
            1,
            "failing while the journal is away"
        );
        assert_eq!(
            metrics.buffered.get(),
            700,
            "the batch out counts as waiting"
        );
        drop(tx);
        task.await.unwrap();
        assert_eq!(sink.kept.lock().unwrap().len(), 700);
        assert_eq!(metrics.written.get(), 700);
        assert_eq!(metrics.write_errors.get(), 60);
        assert_eq!(metrics.failing.get(), 0);
        assert_eq!(metrics.buffered.get(), 0);
        let dropped: u64 = ["buffer_full", "stopped"]
            .iter()
            .map(|r| metrics.dropped.with_label_values(&[r]).get())
            .sum();
        assert_eq!(dropped, 0);
    }

    /// Prunes in 300 steps of 40 ms, as a backlog of expired entries would, and keeps a record
    /// of when each entry is committed.
    #[derive(Clone, Default)]
    struct SlowPrune {
        steps: Arc<Mutex<usize>>,
        committed: Arc<Mutex<Vec<(String, tokio::time::Instant)>>>,
    }

    impl Sink for SlowPrune {
        async fn commit(&mut self, batch: Vec<Entry>) -> (Vec<Entry>, Result<(), JournalError>) {
            let now = tokio::time::Instant::now();
            let mut c = self.committed.lock().unwrap();
            c.extend(batch.iter().map(|e| (e.event_id.clone(), now)));
            (batch, Ok(()))
        }

        async fn prune_step(&mut self, _: DateTime<Utc>) -> Result<usize, JournalError> {
            tokio::time::sleep(Duration::from_millis(40)).await;
            let mut steps = self.steps.lock().unwrap();
            *steps = steps.saturating_sub(1);
            Ok(if *steps > 0 { PRUNE_STEP } else { 7 })
        }
    }

    /// A long pruning (12 s of steps) goes a step at a time between batches: no entry waits
    /// more than the linger and one step to be committed.
    #[tokio::test(start_paused = true)]
    async fn a_long_pruning_holds_no_commit_back_more_than_one_step() {
        let sink = SlowPrune::default();
        *sink.steps.lock().unwrap() = 300;
        let (tx, _stop, task, _) = writer(&sink);
        let mut sent = std::collections::HashMap::new();
        for i in 0..400 {
            let e = entry(i);
            sent.insert(e.event_id.clone(), tokio::time::Instant::now());
            tx.send(e).await.unwrap();
            tokio::time::sleep(Duration::from_millis(7)).await;
        }
        assert!(
            *sink.steps.lock().unwrap() > 0,
            "the pruning still under way"
        );
        drop(tx);
        task.await.unwrap();
        let committed = sink.committed.lock().unwrap();
        assert_eq!(committed.len(), 400);
        let longest = committed
            .iter()
            .map(|(id, at)| *at - sent[id])
            .max()
            .unwrap();
        assert!(
            longest <= LINGER + Duration::from_millis(45),
            "an entry waited {longest:?} for its commit"
        );
    }

    /// A stop does not wait past its deadline for a journal that never answers: the writer
    /// is stopped, and what it had not committed is counted as `stopped`.
    #[tokio::test(start_paused = true)]
    async fn a_stop_waits_no_longer_than_its_deadline_and_counts_what_is_left() {
        let sink = Flaky::default();
        *sink.fails.lock().unwrap() = usize::MAX;
        let (tx, stop, task, metrics) = writer(&sink);
        for i in 0..30 {
            tx.send(entry(i)).await.unwrap();
            metrics.buffered.inc();
        }
        let writer = crate::journal::Writer {
            task,
            stop,
            metrics: metrics.clone(),
        };
        let started = tokio::time::Instant::now();
        writer.close(started + Duration::from_secs(3)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert_eq!(metrics.dropped.with_label_values(&["stopped"]).get(), 30);
        assert_eq!(metrics.buffered.get(), 0);
        assert!(tx.send(entry(99)).await.is_err(), "closed to new entries");
    }

    fn entry(i: usize) -> Entry {
        Entry {
            event_id: format!("e{i}"),
            order_id: None,
            event_type: "lead".into(),
            destination: "d".into(),
            attempt: 1,
            at: Utc::now(),
            outcome: Outcome::Delivered,
            http_status: Some(200),
            error_class: None,
            latency_ms: None,
            request: None,
            response: None,
            recovery: None,
            event: None,
        }
    }

    /// A writer committing to `sink`: its queue, its stop, its task and its metrics.
    fn writer<S: Sink + Clone>(
        sink: &S,
    ) -> (
        tokio::sync::mpsc::Sender<Entry>,
        CancellationToken,
        tokio::task::JoinHandle<()>,
        Metrics,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(1_000);
        let (_, letters) = tokio::sync::mpsc::channel(1);
        let rx = Queued {
            entries: rx,
            letters,
        };
        let metrics = Metrics::register(&prometheus::Registry::new()).unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(write_all(
            sink.clone(),
            rx,
            metrics.clone(),
            chrono::Duration::days(30),
            stop.clone(),
        ));
        (tx, stop, task, metrics)
    }

    /// The linger runs from a batch's first entry: entries each arriving just under the
    /// linger after the last do not keep a batch open.
    #[tokio::test(start_paused = true)]
    async fn a_stream_just_under_the_linger_does_not_hold_commits_back() {
        let sink = Batches::default();
        let (tx, _stop, _task, _) = writer(&sink);
        for i in 0..100 {
            tx.send(entry(i)).await.unwrap();
            tokio::time::sleep(LINGER * 9 / 10).await;
        }
        let batches = sink.0.lock().unwrap().clone();
        assert!(batches.len() >= 45, "{batches:?}");
        assert!(batches.iter().all(|&n| n <= 2), "{batches:?}");
    }

    /// `buffered` counts what the linger gathered until it is committed, and is back to 0
    /// after; `written` counts every entry, through a stop too.
    #[tokio::test(start_paused = true)]
    async fn buffered_and_written_stay_right_through_the_linger() {
        let sink = Batches::default();
        let (tx, stop, task, metrics) = writer(&sink);
        for i in 0..5 {
            tx.send(entry(i)).await.unwrap();
            metrics.buffered.inc();
        }
        tokio::time::sleep(LINGER / 2).await;
        assert_eq!(metrics.buffered.get(), 5, "gathered, not committed yet");
        tokio::time::sleep(LINGER).await;
        assert_eq!(metrics.buffered.get(), 0);
        assert_eq!(metrics.written.get(), 5);
        for i in 0..3 {
            tx.send(entry(i)).await.unwrap();
            metrics.buffered.inc();
        }
        stop.cancel();
        task.await.unwrap();
        assert_eq!(metrics.buffered.get(), 0);
        assert_eq!(metrics.written.get(), 8);
    }

    #[tokio::test(start_paused = true)]
    async fn entries_that_trickle_in_within_the_linger_share_one_commit() {
        let sink = Batches::default();
        let (tx, _stop, task, _) = writer(&sink);
        for i in 0..10 {
            tx.send(entry(i)).await.unwrap();
            tokio::time::sleep(LINGER / 20).await;
        }
        tokio::time::sleep(LINGER).await;
        assert_eq!(*sink.0.lock().unwrap(), vec![10]);
        // A full batch does not wait for the linger.
        for i in 0..MAX_BATCH + 3 {
            tx.send(entry(i)).await.unwrap();
        }
        drop(tx);
        task.await.unwrap();
        assert_eq!(*sink.0.lock().unwrap(), vec![10, MAX_BATCH, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_during_the_linger_commits_at_once_what_was_handed_over() {
        let sink = Batches::default();
        let (tx, stop, task, _) = writer(&sink);
        tx.send(entry(0)).await.unwrap();
        tokio::task::yield_now().await;
        tx.send(entry(1)).await.unwrap();
        let started = tokio::time::Instant::now();
        stop.cancel();
        task.await.unwrap();
        assert!(started.elapsed() < LINGER, "{:?}", started.elapsed());
        assert_eq!(sink.0.lock().unwrap().iter().sum::<usize>(), 2);
        assert!(tx.send(entry(2)).await.is_err(), "closed to new entries");
    }
}
