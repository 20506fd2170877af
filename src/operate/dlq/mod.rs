//! The dead-letter queue, for operators: read it without consuming (`dlq stats`, `dlq list`)
//! and send chosen dead letters back for delivery (`replay`); and, for the relay, the age of
//! the oldest dead letter.
//!
//! Every read goes through [`crate::relay::deadletter::browse`]: it takes the queue's lock, reads every message
//! ready at its start in batches (at most one batch in flight), hands each to the caller as
//! it comes, and gives back what it kept in its order. Nothing is gathered in memory: `list`
//! prints each dead letter as it is read, `stats` keeps counters. A message that cannot be
//! decoded is shown as it is, with a note, never as an error for the whole command.
//!
//! Replay publishes each chosen dead letter back, waits for the broker's confirm, and only
//! then acknowledges it: a replay interrupted at any point (Ctrl-C, kill -9, broker restart)
//! loses none. The one dead letter whose confirm had arrived but whose ack had not left when
//! the replay died is also still in the queue, and a re-run sends it again; it carries the
//! dead letter's id as its message id, and the relay does not deliver the same event to the
//! same destination twice. A replay with `--limit` still reads to the end: stopping early
//! would give back a part of the queue, which the broker puts behind the rest.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::contract::reason::Reason;
use crate::relay::broker::Topology;
use crate::relay::deadletter::browse::{self, Choice, Lock};

/// Why a dead-letter command did not finish.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    #[error(transparent)]
    Read(#[from] browse::ReadError),
    #[error("cannot publish: {0}")]
    Publish(#[from] crate::relay::broker::PublishError),
    #[error("cannot write the delivery: {0}")]
    Json(#[from] serde_json::Error),
    #[error("dead letter {0}: its raw body is not valid base64")]
    Base64(uuid::Uuid),
    #[error("dead letter {0} holds no event")]
    NoEvent(uuid::Uuid),
}

/// An error from a caller's own work on each dead letter.
pub type CallerError = Box<dyn std::error::Error + Send + Sync>;

/// How long a command waits for another reader of the queue to finish.
pub const LOCK_PATIENCE: Duration = Duration::from_secs(600);

/// Which dead letters a command applies to; every given criterion must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub destination: Option<String>,
    pub reason: Option<Reason>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub event_id: Option<String>,
    /// Only these dead letters (their `dead_letter_id`); empty: any.
    pub ids: Vec<String>,
}

impl Filter {
    pub fn matches(&self, s: &Summary) -> bool {
        (self.ids.is_empty()
            || s.dead_letter_id
                .as_ref()
                .is_some_and(|id| self.ids.contains(id)))
            && self
                .destination
                .as_ref()
                .is_none_or(|d| s.destination.as_ref() == Some(d))
            && self.reason.is_none_or(|r| s.reason == r)
            && self
                .event_id
                .as_ref()
                .is_none_or(|e| s.event_id.as_ref() == Some(e))
            && self
                .since
                .is_none_or(|t| s.dead_lettered_at.is_some_and(|at| at >= t))
            && self
                .until
                .is_none_or(|t| s.dead_lettered_at.is_some_and(|at| at < t))
    }
}

/// Takes the dead-letter queue's lock for a command, saying so if it has to wait.
pub(crate) async fn lock_for_command(
    conn: &lapin::Connection,
    queue: &str,
) -> Result<Lock, DlqError> {
    Ok(Lock::acquire(conn, queue, LOCK_PATIENCE, || {
        tracing::warn!(
            message = "waiting for another reader of the dead-letter queue",
            queue
        );
    })
    .await?)
}

/// Reads every dead letter without consuming it, in queue order, calling `each` on each as
/// it is read. Returns how many were read.
pub async fn each(
    conn: &lapin::Connection,
    topology: &Topology,
    max_event_bytes: usize,
    mut each: impl FnMut(DeadLetter) -> Result<(), CallerError>,
) -> Result<u32, DlqError> {
    let _lock = lock_for_command(conn, &topology.dead).await?;
    let read = browse::read_all(conn, &topology.dead, |m| {
        std::future::ready(
            each(DeadLetter::from_message(m, max_event_bytes)).map(|()| Choice::Keep),
        )
    })
    .await?;
    Ok(read.seen)
}

/// Reads the whole dead-letter queue into memory without consuming it: for small queues
/// (the demo). Commands use [`each`].
pub async fn browse(
    conn: &lapin::Connection,
    topology: &Topology,
    max_event_bytes: usize,
) -> Result<Vec<DeadLetter>, DlqError> {
    let mut out = Vec::new();
    each(conn, topology, max_event_bytes, |l| {
        out.push(l);
        Ok(())
    })
    .await?;
    Ok(out)
}

/// Counts by destination and reason, and the oldest and newest dead letter.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub total: u64,
    /// (destination or "-", reason) -> count.
    pub by_destination_reason: BTreeMap<String, BTreeMap<String, u64>>,
    pub oldest: Option<DateTime<Utc>>,
    pub newest: Option<DateTime<Utc>>,
}

impl Stats {
    pub fn add(&mut self, s: &Summary) {
        self.total += 1;
        *self
            .by_destination_reason
            .entry(s.destination.clone().unwrap_or_else(|| "-".into()))
            .or_default()
            .entry(s.reason.as_str().into())
            .or_default() += 1;
        if let Some(at) = s.dead_lettered_at {
            self.oldest = Some(self.oldest.map_or(at, |o| o.min(at)));
            self.newest = Some(self.newest.map_or(at, |n| n.max(at)));
        }
    }
}

/// Counts of the whole dead-letter queue, read without consuming it.
pub async fn stats(
    conn: &lapin::Connection,
    topology: &Topology,
    max_event_bytes: usize,
) -> Result<Stats, DlqError> {
    let mut st = Stats::default();
    each(conn, topology, max_event_bytes, |l| {
        st.add(&l.summary());
        Ok(())
    })
    .await?;
    Ok(st)
}

mod discard;
pub mod index;
mod reindex;
mod replay;
#[cfg(test)]
mod tests;

pub use crate::relay::broker::depth;
pub use crate::relay::deadletter::age::OldestAge;
pub use crate::relay::deadletter::read::{
    DeadLetter, RawDead, SHOWN_DEPTH, Shown, Summary, nested_deeper_than,
};
pub use discard::discard;
pub use reindex::{ReindexError, Reindexed, reindex};
pub use replay::{Budget, ReplayReport, Sent, fresh_delivery, replay, replay_telling};
