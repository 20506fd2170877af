//! Replay: each chosen dead letter published back (a delivery for its destination with a fresh
//! budget, or an event through routing again), confirmed, and only then acknowledged.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{DeadLetter, DlqError, Filter, Summary, lock_for_command};
use crate::relay::broker::{Publisher, Topology};
use crate::relay::deadletter::browse::{self, Choice};
use crate::relay::delivery::Delivery;

/// What a replay did.
#[derive(Debug, Default, Serialize)]
pub struct ReplayReport {
    /// Dead letters looked at.
    pub examined: u64,
    /// Matched the filter (and the limit).
    pub matched: u64,
    /// Sent back and removed from the dead-letter queue.
    pub replayed: u64,
    /// Of those, moved by the broker from the deliveries queue but not a valid delivery:
    /// sent back as they were, without a fresh budget.
    pub as_it_was: u64,
}

/// What became of a chosen letter in a replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Published back to this queue, confirmed, and removed from the dead-letter queue.
    Republished { queue: String, budget: Budget },
    /// Not sent back, for this reason; it stays in the queue (and the replay stops).
    Failed(String),
}

/// Sends the dead letters matching `filter` (at most `limit`) back for delivery with a fresh
/// attempt budget; the others stay in the queue, in order. `dry_run` only counts. `progress`
/// is called after each examined message.
pub async fn replay(
    conn: &lapin::Connection,
    topology: &Topology,
    max_event_bytes: usize,
    filter: &Filter,
    limit: Option<u64>,
    dry_run: bool,
    progress: impl FnMut(&Summary, bool),
) -> Result<ReplayReport, DlqError> {
    let args = (filter, limit, dry_run);
    replay_telling(conn, topology, max_event_bytes, args, progress, |_, _| {}).await
}

/// [`replay`], telling `sent` what became of each chosen letter once it is known.
pub async fn replay_telling(
    conn: &lapin::Connection,
    topology: &Topology,
    max_event_bytes: usize,
    (filter, limit, dry_run): (&Filter, Option<u64>, bool),
    mut progress: impl FnMut(&Summary, bool),
    sent: impl Fn(&Summary, &Sent) + Send + Sync,
) -> Result<ReplayReport, DlqError> {
    let sent = &sent;
    let publisher = Publisher::new(conn).await?;
    let _lock = lock_for_command(conn, &topology.dead).await?;
    let mut report = ReplayReport::default();
    let read = browse::read_all(conn, &topology.dead, |m| {
        report.examined += 1;
        let letter = DeadLetter::from_message(m, max_event_bytes);
        let summary = letter.summary();
        let chosen = filter.matches(&summary) && limit.is_none_or(|l| report.matched < l);
        let mut send = None;
        if chosen {
            report.matched += 1;
            if !dry_run {
                send = Some(replay_message(&letter, topology, Utc::now()).map(
                    |(queue, body, budget)| {
                        report.replayed += 1;
                        if budget == Budget::AsItWas {
                            report.as_it_was += 1;
                        }
                        (queue.to_owned(), body, budget)
                    },
                ));
            }
        }
        progress(&summary, chosen);
        let publisher = publisher.clone();
        async move {
            let Some(send) = send else {
                return Ok(Choice::Keep);
            };
            let failed = |e: &dyn std::fmt::Display| sent(&summary, &Sent::Failed(e.to_string()));
            let (queue, body, budget) = send.inspect_err(|e| failed(e)).map_err(Box::new)?;
            // Publish, confirm, then ack (the read acks on Remove): never lost, whatever
            // stops the replay.
            let id = summary.dead_letter_id.as_deref();
            publisher
                .publish_json("", &queue, &body, id, None)
                .await
                .inspect_err(|e| failed(e))
                .map_err(Box::new)?;
            sent(&summary, &Sent::Republished { queue, budget });
            Ok(Choice::Remove)
        }
    })
    .await?;
    let _ = read;
    Ok(report)
}

/// What a replayed message starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// No attempts made: a delivery from now, or an event that goes through routing again.
    Fresh,
    /// A body from the deliveries queue that is not a valid delivery, sent back unchanged
    /// with whatever it carries.
    AsItWas,
}

/// Where a dead letter goes back to, and as what.
fn replay_message<'a>(
    letter: &DeadLetter,
    topology: &'a Topology,
    now: DateTime<Utc>,
) -> Result<(&'a str, Vec<u8>, Budget), DlqError> {
    Ok(match letter {
        // One destination failed: a delivery for that destination alone, fresh budget.
        DeadLetter::Envelope(e) => match (&e.destination, &e.event, &e.event_id) {
            (Some(dest), Some(event), Some(id)) => {
                let mut d = Delivery::new(id.clone(), dest.clone(), event.clone(), now);
                d.replay_of = Some(e.dead_letter_id);
                d.recovery.clone_from(&e.recovery);
                (
                    topology.deliveries.as_str(),
                    serde_json::to_vec(&d)?,
                    Budget::Fresh,
                )
            }
            // Failed before routing: the event goes through routing again.
            _ => {
                let body = match (&e.event, &e.raw_body) {
                    (Some(ev), _) => ev.get().as_bytes().to_vec(),
                    (None, Some(raw)) if raw.encoding == "base64" => {
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD
                            .decode(&raw.data)
                            .map_err(|_| DlqError::Base64(e.dead_letter_id))?
                    }
                    (None, Some(raw)) => raw.data.clone().into_bytes(),
                    (None, None) => return Err(DlqError::NoEvent(e.dead_letter_id)),
                };
                (topology.events.as_str(), body, Budget::Fresh)
            }
        },
        // Moved by the broker from the deliveries queue: the delivery, with a fresh budget.
        DeadLetter::Raw(r) if r.queue == topology.deliveries => {
            match fresh_delivery(&r.body, r.message_id.as_deref(), now) {
                Some(body) => (topology.deliveries.as_str(), body, Budget::Fresh),
                None => (
                    topology.deliveries.as_str(),
                    r.body.clone(),
                    Budget::AsItWas,
                ),
            }
        }
        // Moved from the events queue: the event, through routing again.
        DeadLetter::Raw(r) => (topology.events.as_str(), r.body.clone(), Budget::Fresh),
    })
}

/// A delivery body with a fresh attempt budget: no attempts or retries, first attempt now,
/// and its history cleared, as a replayed envelope starts (the history told of the budget
/// that ran out; the next dead letter, if any, tells of the new one). `replay_of` becomes the
/// message's id when that is a dead letter id, and is kept otherwise. `None` when the body
/// is not a valid delivery.
pub fn fresh_delivery(
    body: &[u8],
    message_id: Option<&str>,
    now: DateTime<Utc>,
) -> Option<Vec<u8>> {
    let mut d: Delivery = serde_json::from_slice(body).ok()?;
    if d.schema != crate::relay::delivery::SCHEMA {
        return None;
    }
    d.attempts = 0;
    d.retries = 0;
    d.first_attempt_at = now;
    d.paused_ms = 0;
    d.history.clear();
    if let Some(id) = message_id.and_then(|id| uuid::Uuid::parse_str(id).ok()) {
        d.replay_of = Some(id);
    }
    serde_json::to_vec(&d).ok()
}
