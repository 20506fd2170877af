//! The writer against sinks that count, fail or dawdle: batches, linger, retries, pruning, stop.

use std::sync::{Arc, Mutex};

use super::*;
use crate::journal::{JournalError, Outcome};

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
        trace_id: None,
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
