//! The delivery journal: what happened to each delivery, kept for people. Every attempt and
//! every outcome of a delivery (an event at one destination) is an [`Entry`]; the event itself
//! is kept once. It answers "what did we send for order 10045, when, and what came back".
//!
//! The journal never decides delivery: the broker and the store do. It is written off the hot
//! path: [`Journal::record`] hands an entry to a bounded buffer and returns at once; one
//! writer task commits what has queued up in batches, and adds each batch to per-minute
//! counts by destination and outcome (`counts`) in the same transaction. A batch that cannot be committed (the
//! file or the database is away) is kept and tried again until it commits; entries queue
//! behind it, and only when the buffer is full is an entry dropped and counted with its
//! reason, never waited for. A journal that cannot be opened holds up no delivery: the relay
//! starts without it, and the writer keeps trying. Entries older than the retention are
//! pruned by the writer, in small steps between batches.
//!
//! The schema is versioned: the files in `src/journal/migrations/` are applied in order at
//! start-up, each once.

mod access;
pub(crate) mod browse;
mod counts;
#[cfg(test)]
mod counts_in_file;
mod letter;
mod letter_query;
pub mod letters;
mod postgres;
mod query;
mod recovery;
mod sqlite;
#[cfg(test)]
mod tests;
pub mod timeline;
mod writer;

use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use serde::{Deserialize, Serialize};

pub use crate::config::journal::{JournalConfig, JournalKind};
pub use access::{Reader, Recoveries};
pub use counts::{HourCount, hour_of};
pub use recovery::{Action, Candidate, Which, Window, WindowError, in_order};
pub use sqlite::Filter;

/// The destination of an entry for an event no destination took (`unroutable`): no
/// configured destination has an empty name.
pub const NO_DESTINATION: &str = "";

/// The tier a `retry_scheduled` entry names for a try made again at once, in the same
/// process (not a delay tier).
pub const IN_PROCESS: &str = "in_process";

/// What happened, as the journal records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    /// The partner accepted it.
    Delivered,
    /// Another try later, in this delay tier.
    RetryScheduled(String),
    /// Moved to the dead-letter queue, with this reason code.
    DeadLettered(String),
    /// Accepted before: not sent again.
    Duplicate,
    /// A status not higher than one already sent: not sent.
    Superseded,
}

impl Outcome {
    /// The outcome's code, as stored and as `--outcome` takes it.
    pub fn code(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::RetryScheduled(_) => "retry_scheduled",
            Outcome::DeadLettered(_) => "dead_lettered",
            Outcome::Duplicate => "duplicate",
            Outcome::Superseded => "superseded",
        }
    }

    pub(crate) fn detail(&self) -> Option<&str> {
        match self {
            Outcome::RetryScheduled(d) | Outcome::DeadLettered(d) => Some(d),
            _ => None,
        }
    }

    /// Changes the detail's text in place, if the outcome has one.
    pub(crate) fn clean_detail(&mut self, f: impl FnOnce(&mut String)) {
        if let Outcome::RetryScheduled(d) | Outcome::DeadLettered(d) = self {
            f(d);
        }
    }

    pub(crate) fn from_parts(code: &str, detail: Option<String>) -> Option<Outcome> {
        let detail = detail.unwrap_or_default();
        Some(match code {
            "delivered" => Outcome::Delivered,
            "retry_scheduled" => Outcome::RetryScheduled(detail),
            "dead_lettered" => Outcome::DeadLettered(detail),
            "duplicate" => Outcome::Duplicate,
            "superseded" => Outcome::Superseded,
            _ => return None,
        })
    }
}

/// One thing that happened to a delivery. `request` and `response` are written as shown:
/// the caller redacts them before they get here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub event_id: String,
    pub order_id: Option<String>,
    pub event_type: String,
    pub destination: String,
    /// Partner calls made for this delivery so far.
    pub attempt: u32,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub http_status: Option<u16>,
    /// For a call that got no HTTP answer: `timeout`, `connect_error`...
    pub error_class: Option<String>,
    pub latency_ms: Option<f64>,
    /// The request as sent, secrets redacted (JSON).
    pub request: Option<String>,
    /// The start of the partner's answer, secrets redacted.
    pub response: Option<String>,
    /// The recovery (`postback-relay recover`) this delivery was sent again by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<String>,
    /// The trace the delivery was in (W3C trace id, 32 hex digits), when the relay traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The event as published, kept once per event: given with the event's first entry.
    #[serde(skip)]
    pub event: Option<String>,
}

/// Why an entry was not written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// The buffer was full: the writer is behind (a slow or unwritable file).
    BufferFull,
    /// The writer has stopped.
    Stopped,
}

impl Dropped {
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::BufferFull => "buffer_full",
            Dropped::Stopped => "stopped",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("journal {path}: schema version {found}, where this relay knows version {known}")]
    Schema {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("journal: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("journal (PostgreSQL): {}", postgres::said(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// Connecting failed: the server (`host:port`, never the URL) and why.
    #[error("journal (PostgreSQL at {server}): {reason}")]
    Connect { server: String, reason: String },
    /// `journal.url` cannot be used (a TLS file that changed since the configuration was
    /// checked).
    #[error("journal.url: {0}")]
    Url(String),
    #[error("no journal at {0} (journal.path): has a relay with this configuration run?")]
    Missing(String),
    #[error("journal: the blocking task failed: {0}")]
    Task(String),
    #[error("journal: no answer while {0} within {1:?}")]
    Timeout(&'static str, Duration),
}

/// The journal's own series.
#[derive(Clone)]
pub(crate) struct Metrics {
    written: IntCounter,
    dropped: IntCounterVec,
    /// Seconds from the oldest entry of the last committed batch to its commit.
    lag: Gauge,
    /// Handed over and not committed yet.
    buffered: IntGauge,
    /// 1 while the last commit failed (the batch is kept and tried again).
    failing: IntGauge,
    /// Commits that failed.
    write_errors: IntCounter,
    /// Times the SQLite file was found removed or replaced under the relay, and made again.
    replaced: IntCounter,
}

impl Metrics {
    fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        let m = Metrics {
            written: IntCounter::new(
                "postback_relay_journal_written_total",
                "Journal entries committed to the journal.",
            )?,
            dropped: IntCounterVec::new(
                Opts::new(
                    "postback_relay_journal_dropped_total",
                    "Journal entries not written, by reason: buffer_full (the writer was a whole buffer behind), stopped (handed over after the writer stopped, or not committed by the stop's deadline).",
                ),
                &["reason"],
            )?,
            lag: Gauge::new(
                "postback_relay_journal_lag_seconds",
                "From the oldest entry of the last committed batch to its commit.",
            )?,
            buffered: IntGauge::new(
                "postback_relay_journal_buffered",
                "Journal entries handed to the writer and not committed yet.",
            )?,
            failing: IntGauge::new(
                "postback_relay_journal_failing",
                "1 while the journal's last commit failed: the batch is kept and tried again, and entries wait in the buffer.",
            )?,
            write_errors: IntCounter::new(
                "postback_relay_journal_write_errors_total",
                "Journal commits that failed (each is tried again).",
            )?,
            replaced: IntCounter::new(
                "postback_relay_journal_file_replaced_total",
                "Times the journal's SQLite file was found removed or replaced under the relay, and made again.",
            )?,
        };
        registry.register(Box::new(m.written.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.lag.clone()))?;
        registry.register(Box::new(m.buffered.clone()))?;
        registry.register(Box::new(m.failing.clone()))?;
        registry.register(Box::new(m.write_errors.clone()))?;
        registry.register(Box::new(m.replaced.clone()))?;
        for reason in ["buffer_full", "stopped"] {
            m.dropped.with_label_values(&[reason]);
        }
        Ok(m)
    }
}

/// The writing side of the journal, cheap to clone.
#[derive(Clone)]
pub struct Journal {
    queue: tokio::sync::mpsc::Sender<Entry>,
    /// Dead letters for the index, committed by the same writer.
    letters: tokio::sync::mpsc::Sender<letter::Letter>,
    metrics: Metrics,
}

/// The journal's writer task: [`Writer::close`] refuses new entries and waits until every
/// entry queued before it is committed, or until its deadline.
pub struct Writer {
    task: tokio::task::JoinHandle<()>,
    stop: tokio_util::sync::CancellationToken,
    metrics: Metrics,
}

impl Writer {
    /// Refuses new entries and waits until every entry handed over is committed, or until
    /// `deadline`: then the writer is stopped, and what it had not committed is counted
    /// (`stopped`) and logged with its size. A stop never waits longer for a journal that
    /// is away or does not answer.
    pub async fn close(self, deadline: tokio::time::Instant) {
        self.stop.cancel();
        let mut task = self.task;
        if tokio::time::timeout_at(deadline, &mut task).await.is_ok() {
            return;
        }
        task.abort();
        let _ = task.await;
        let left = self.metrics.buffered.get().max(0);
        self.metrics.buffered.set(0);
        self.metrics
            .dropped
            .with_label_values(&[Dropped::Stopped.as_str()])
            .inc_by(left.unsigned_abs());
        tracing::error!(
            message = "journal entries not written before the stop: the journal did not take them in time",
            entries = left
        );
    }
}

/// Longest a journal call may take (a commit, a pruning step, connecting): past it, the
/// connection is dropped and the call tried again.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(10);

impl Journal {
    /// Opens (or creates) the journal, brings its schema up to date, and starts its writer.
    /// The writer stops once every clone of the returned [`Journal`] is dropped.
    pub async fn open(
        config: &JournalConfig,
        registry: &Registry,
    ) -> Result<(Journal, Writer), JournalError> {
        let metrics = Metrics::register(registry)
            .map_err(|e| JournalError::Task(format!("journal metrics: {e}")))?;
        let (queue, queued) = tokio::sync::mpsc::channel(config.buffer.max(1));
        let (letters, letters_queued) = tokio::sync::mpsc::channel(config.buffer.max(1));
        let queued = writer::Queued {
            entries: queued,
            letters: letters_queued,
        };
        let retention = chrono::Duration::days(i64::from(config.retention_days.max(1)));
        let stop = tokio_util::sync::CancellationToken::new();
        let task = match config.kind {
            JournalKind::Embedded => {
                let sink =
                    sqlite::FileSink::open(config.path.clone(), metrics.replaced.clone()).await;
                let w = writer::write_all(sink, queued, metrics.clone(), retention, stop.clone());
                tokio::spawn(w)
            }
            JournalKind::Postgres => {
                let sink = postgres::PgSink::new(config.url.as_deref().unwrap_or_default());
                let w = writer::write_all(sink, queued, metrics.clone(), retention, stop.clone());
                tokio::spawn(w)
            }
        };
        let writer = Writer {
            task,
            stop,
            metrics: metrics.clone(),
        };
        Ok((
            Journal {
                queue,
                letters,
                metrics,
            },
            writer,
        ))
    }

    /// Hands a dead letter confirmed into the queue to the writer, for the index, without
    /// waiting; a full buffer drops it and counts it, as an entry (the index then differs
    /// from the queue, which the console shows, until a reindex).
    pub fn record_letter(&self, letter: letter::Letter) -> Result<(), Dropped> {
        let dropped = match self.letters.try_send(letter) {
            Ok(()) => return Ok(()),
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => Dropped::BufferFull,
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => Dropped::Stopped,
        };
        self.metrics
            .dropped
            .with_label_values(&[dropped.as_str()])
            .inc();
        Err(dropped)
    }

    /// Hands `entry` to the writer, without waiting. When the writer is behind by a whole
    /// buffer the entry is dropped and counted: the journal never holds a delivery back.
    pub fn record(&self, entry: Entry) -> Result<(), Dropped> {
        let dropped = match self.queue.try_send(entry) {
            Ok(()) => {
                self.metrics.buffered.inc();
                return Ok(());
            }
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => Dropped::BufferFull,
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => Dropped::Stopped,
        };
        self.metrics
            .dropped
            .with_label_values(&[dropped.as_str()])
            .inc();
        Err(dropped)
    }
}
