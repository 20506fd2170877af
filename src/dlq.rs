//! The dead-letter queue, for operators: read it without consuming (`dlq stats`, `dlq list`)
//! and send chosen dead letters back for delivery (`replay`).
//!
//! Reading takes every message without acknowledging it and then closes the channel, so the
//! broker returns them all, in their order. Replay publishes each chosen dead letter back,
//! waits for the broker's confirm, and only then acknowledges it: a replay interrupted at any
//! point (Ctrl-C, kill -9, broker restart) loses none. The one dead letter whose confirm had
//! arrived but whose ack had not left when the replay died is also still in the queue, and a
//! re-run sends it again; it carries the dead letter's id as its message id, and the relay
//! does not deliver the same event to the same destination twice.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use futures_util::StreamExt;
use lapin::message::Delivery as AmqpDelivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use serde::Serialize;

use crate::broker::{Publisher, Topology};
use crate::deadletter::{Envelope, Reason};
use crate::delivery::Delivery;

/// How long to wait for the next message once the broker has nothing more to send.
const IDLE: Duration = Duration::from_secs(2);

/// A message in the dead-letter queue: an envelope the relay wrote, or a message the broker
/// moved there itself (delivery limit reached, or rejected whole by the relay).
#[derive(Debug)]
pub enum DeadLetter {
    Envelope(Box<Envelope>),
    Raw(RawDead),
}

/// A message the broker dead-lettered, as it was.
#[derive(Debug, Clone)]
pub struct RawDead {
    pub reason: Reason,
    /// The queue it was dead-lettered from.
    pub queue: String,
    pub dead_lettered_at: Option<DateTime<Utc>>,
    pub body: Vec<u8>,
    pub event_id: Option<String>,
}

/// What `list` shows and filters look at, for either kind of dead letter.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub dead_letter_id: Option<String>,
    pub event_id: Option<String>,
    pub destination: Option<String>,
    pub reason: Reason,
    pub dead_lettered_at: Option<DateTime<Utc>>,
    pub attempts: u32,
    pub detail: String,
}

impl DeadLetter {
    /// Reads a dead-letter-queue message. `max_event_bytes` tells a body the relay refused as
    /// too large from one it refused because processing it crashed.
    pub fn from_message(m: &AmqpDelivery, max_event_bytes: usize) -> DeadLetter {
        let headers = m.properties.headers().as_ref();
        let header = |k: &str| headers.and_then(|h| h.inner().get(k));
        let death_reason = header("x-first-death-reason").and_then(text);
        if death_reason.is_none()
            && let Ok(env) = serde_json::from_slice::<Envelope>(&m.data)
        {
            return DeadLetter::Envelope(Box::new(env));
        }
        let reason = match death_reason.as_deref() {
            Some("rejected") if m.data.len() > max_event_bytes => Reason::EventTooLarge,
            Some("rejected") => Reason::Poison,
            _ => Reason::DeliveryLimit,
        };
        let dead_lettered_at = header("x-death").and_then(|v| match v {
            AMQPValue::FieldArray(a) => a.as_slice().first().and_then(|d| match d {
                AMQPValue::FieldTable(t) => match t.inner().get("time") {
                    Some(AMQPValue::Timestamp(secs)) => Utc.timestamp_opt(*secs as i64, 0).single(),
                    _ => None,
                },
                _ => None,
            }),
            _ => None,
        });
        #[derive(serde::Deserialize)]
        struct Id {
            event_id: Option<serde_json::Value>,
        }
        let event_id = (m.data.len() <= max_event_bytes)
            .then(|| serde_json::from_slice::<Id>(&m.data).ok())
            .flatten()
            .and_then(|i| i.event_id)
            .and_then(|v| v.as_str().map(str::to_owned));
        DeadLetter::Raw(RawDead {
            reason,
            queue: header("x-first-death-queue")
                .and_then(text)
                .unwrap_or_default(),
            dead_lettered_at,
            body: m.data.clone(),
            event_id,
        })
    }

    pub fn summary(&self) -> Summary {
        match self {
            DeadLetter::Envelope(e) => Summary {
                dead_letter_id: Some(e.dead_letter_id.to_string()),
                event_id: e.event_id.clone(),
                destination: e.destination.clone(),
                reason: e.reason,
                dead_lettered_at: Some(e.dead_lettered_at),
                attempts: e.attempts,
                detail: e.detail.clone(),
            },
            DeadLetter::Raw(r) => Summary {
                dead_letter_id: None,
                event_id: r.event_id.clone(),
                destination: None,
                reason: r.reason,
                dead_lettered_at: r.dead_lettered_at,
                attempts: 0,
                detail: match r.reason {
                    Reason::EventTooLarge => {
                        format!("{} bytes, refused whole by the relay", r.body.len())
                    }
                    Reason::Poison => "processing it crashed the relay; refused whole".into(),
                    _ => format!(
                        "delivered too many times from {}; moved by the broker",
                        r.queue
                    ),
                },
            },
        }
    }
}

fn text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

/// Which dead letters a command applies to; every given criterion must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub destination: Option<String>,
    pub reason: Option<Reason>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub event_id: Option<String>,
}

impl Filter {
    pub fn matches(&self, s: &Summary) -> bool {
        self.destination
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

/// Messages ready in the dead-letter queue.
pub async fn depth(ch: &lapin::Channel, queue: &str) -> Result<u32, lapin::Error> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    Ok(ch
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await?
        .message_count())
}

/// Reads up to `count` messages of `queue` on `ch` without acknowledging them, calling `each`
/// in queue order; `each` returns false to stop early. Closing `ch` afterwards returns every
/// unacknowledged message to the queue.
async fn take(
    ch: &lapin::Channel,
    queue: &str,
    count: u32,
    mut each: impl AsyncFnMut(AmqpDelivery) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    if count == 0 {
        return Ok(());
    }
    // No prefetch limit: the messages stay unacknowledged until the end.
    ch.basic_qos(0, BasicQosOptions::default()).await?;
    let tag = format!("postback-relay-dlq-{}", uuid::Uuid::new_v4());
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut seen = 0;
    while seen < count {
        let next = match tokio::time::timeout(IDLE, consumer.next()).await {
            Ok(Some(m)) => m?,
            // Fewer than counted (another consumer took some): done.
            Ok(None) | Err(_) => break,
        };
        seen += 1;
        if !each(next).await? {
            break;
        }
    }
    // Cancel now, so that no more messages arrive while the caller finishes; the ones taken
    // and not acknowledged stay held until the channel closes, then return in order.
    ch.basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
        .await?;
    drop(consumer);
    Ok(())
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

/// Reads the whole dead-letter queue without consuming it.
pub async fn browse(
    conn: &lapin::Connection,
    topology: &Topology,
    max_event_bytes: usize,
) -> anyhow::Result<Vec<DeadLetter>> {
    let ch = conn.create_channel().await?;
    let count = depth(&ch, &topology.dead).await?;
    let mut out = Vec::with_capacity(count as usize);
    take(&ch, &topology.dead, count, async |m| {
        out.push(DeadLetter::from_message(&m, max_event_bytes));
        Ok(true)
    })
    .await?;
    ch.close(200, "read, not consumed".into()).await?;
    Ok(out)
}

pub fn stats(letters: &[DeadLetter]) -> Stats {
    let mut st = Stats::default();
    for l in letters {
        let s = l.summary();
        st.total += 1;
        *st.by_destination_reason
            .entry(s.destination.unwrap_or_else(|| "-".into()))
            .or_default()
            .entry(s.reason.as_str().into())
            .or_default() += 1;
        if let Some(at) = s.dead_lettered_at {
            st.oldest = Some(st.oldest.map_or(at, |o| o.min(at)));
            st.newest = Some(st.newest.map_or(at, |n| n.max(at)));
        }
    }
    st
}

/// What a replay did.
#[derive(Debug, Default, Serialize)]
pub struct ReplayReport {
    /// Dead letters looked at.
    pub examined: u64,
    /// Matched the filter (and the limit).
    pub matched: u64,
    /// Sent back and removed from the dead-letter queue.
    pub replayed: u64,
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
    mut progress: impl FnMut(&Summary, bool),
) -> anyhow::Result<ReplayReport> {
    let ch = conn.create_channel().await?;
    let publisher = Publisher::new(conn).await?;
    let count = depth(&ch, &topology.dead).await?;
    let mut report = ReplayReport::default();
    take(&ch, &topology.dead, count, async |m| {
        report.examined += 1;
        let letter = DeadLetter::from_message(&m, max_event_bytes);
        let summary = letter.summary();
        let chosen = filter.matches(&summary) && limit.is_none_or(|l| report.matched < l);
        if chosen {
            report.matched += 1;
            if !dry_run {
                let (queue, body) = replay_message(&letter, topology)?;
                // Publish, confirm, then ack: never lost, whatever stops the replay.
                let id = summary.dead_letter_id.as_deref();
                publisher.publish_json("", queue, &body, id, None).await?;
                m.acker.ack(BasicAckOptions::default()).await?;
                report.replayed += 1;
            }
        }
        progress(&summary, chosen);
        Ok(limit.is_none_or(|l| report.matched < l) || !chosen)
    })
    .await?;
    // Closing returns everything not replayed, in order.
    ch.close(200, "replay done".into()).await?;
    Ok(report)
}

/// Where a dead letter goes back to, and as what.
fn replay_message<'a>(
    letter: &DeadLetter,
    topology: &'a Topology,
) -> anyhow::Result<(&'a str, Vec<u8>)> {
    Ok(match letter {
        // One destination failed: a delivery for that destination alone, fresh budget.
        DeadLetter::Envelope(e) => match (&e.destination, &e.event, &e.event_id) {
            (Some(dest), Some(event), Some(id)) => {
                let mut d = Delivery::new(id.clone(), dest.clone(), event.clone(), Utc::now());
                d.replay_of = Some(e.dead_letter_id);
                (topology.deliveries.as_str(), serde_json::to_vec(&d)?)
            }
            // Failed before routing: the event goes through routing again.
            _ => {
                let body = match (&e.event, &e.raw_body) {
                    (Some(ev), _) => ev.get().as_bytes().to_vec(),
                    (None, Some(raw)) if raw.encoding == "base64" => {
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD.decode(&raw.data)?
                    }
                    (None, Some(raw)) => raw.data.clone().into_bytes(),
                    (None, None) => {
                        anyhow::bail!("dead letter {} holds no event", e.dead_letter_id)
                    }
                };
                (topology.events.as_str(), body)
            }
        },
        // Moved by the broker: back to the queue it came from.
        DeadLetter::Raw(r) if r.queue == topology.deliveries => {
            (topology.deliveries.as_str(), r.body.clone())
        }
        DeadLetter::Raw(r) => (topology.events.as_str(), r.body.clone()),
    })
}
