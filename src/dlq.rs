//! The dead-letter queue, for operators: read it without consuming (`dlq stats`, `dlq list`)
//! and send chosen dead letters back for delivery (`replay`); and, for the relay, the age of
//! the oldest dead letter.
//!
//! Every read goes through [`crate::browse`]: it takes the queue's lock, reads every message
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

use std::collections::{BTreeMap, HashMap};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use lapin::message::Delivery as AmqpDelivery;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use serde::Serialize;

use crate::broker::{Publisher, Topology};
use crate::browse::{self, Lock, Verdict};
use crate::deadletter::{Envelope, RawBody, Reason};
use crate::delivery::Delivery;

/// How long a command waits for another reader of the queue to finish.
pub const LOCK_PATIENCE: Duration = Duration::from_secs(600);
/// Deepest nesting of an event shown as JSON in `dlq list --format json`: deeper, common JSON
/// readers (serde_json stops at 128) could not read the listing, so the event is shown as text.
pub const SHOWN_DEPTH: usize = 100;

/// A message in the dead-letter queue: an envelope the relay wrote, or a message the broker
/// moved there itself (delivery limit reached, or rejected whole by the relay), or anything
/// else found there.
#[derive(Debug)]
pub enum DeadLetter {
    Envelope(Box<Envelope>),
    Raw(RawDead),
}

/// A message the broker dead-lettered, as it was; or a message that is not an envelope.
#[derive(Debug, Clone)]
pub struct RawDead {
    pub reason: Reason,
    /// The queue it was dead-lettered from.
    pub queue: String,
    pub dead_lettered_at: Option<DateTime<Utc>>,
    pub body: Vec<u8>,
    pub event_id: Option<String>,
    /// The AMQP message id, when it had one.
    pub message_id: Option<String>,
    /// Why it is shown as it is, when it was not moved by the broker.
    pub note: Option<String>,
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
        let mut note = None;
        if death_reason.is_none() {
            match serde_json::from_slice::<Envelope>(&m.data) {
                Ok(env) => return DeadLetter::Envelope(Box::new(env)),
                Err(e) => note = Some(format!("not a dead-letter envelope ({e}); shown as it is")),
            }
        }
        let is_json = || serde_json::from_slice::<serde::de::IgnoredAny>(&m.data).is_ok();
        let reason = match death_reason.as_deref() {
            Some("rejected") if m.data.len() > max_event_bytes => Reason::EventTooLarge,
            Some("rejected") => Reason::Poison,
            Some(_) => Reason::DeliveryLimit,
            // Not written by the relay nor moved by the broker: the closest reasons.
            None if is_json() => Reason::InvalidEvent,
            None => Reason::NotJson,
        };
        let dead_lettered_at = header("x-death").and_then(death_time);
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
            message_id: m.properties.message_id().as_ref().map(|s| s.to_string()),
            note,
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
                detail: match (&r.note, r.reason) {
                    (Some(note), _) => note.clone(),
                    (None, Reason::EventTooLarge) => {
                        format!("{} bytes, refused whole by the relay", r.body.len())
                    }
                    (None, Reason::Poison) => {
                        "processing it crashed the relay; refused whole".into()
                    }
                    (None, _) => format!(
                        "delivered too many times from {}; moved by the broker",
                        r.queue
                    ),
                },
            },
        }
    }

    /// The dead letter as `dlq list --format json` shows it: the envelope as written, or the
    /// message as found; with a note on whatever could not be shown as it is.
    pub fn shown(&self) -> Shown<'_> {
        match self {
            DeadLetter::Envelope(e) => match &e.event {
                Some(ev) if nested_deeper_than(ev.get().as_bytes(), SHOWN_DEPTH) => {
                    let mut flat = (**e).clone();
                    flat.raw_body = Some(RawBody::new(ev.get().as_bytes()));
                    flat.event = None;
                    Shown::Envelope {
                        envelope: Box::new(std::borrow::Cow::Owned(flat)),
                        note: Some(format!(
                            "the event is nested more than {SHOWN_DEPTH} levels deep: shown as \
                             text in raw_body"
                        )),
                    }
                }
                _ => Shown::Envelope {
                    envelope: Box::new(std::borrow::Cow::Borrowed(&**e)),
                    note: None,
                },
            },
            DeadLetter::Raw(r) => Shown::Raw {
                moved_by_broker: r.note.is_none(),
                reason: r.reason,
                queue: &r.queue,
                dead_lettered_at: r.dead_lettered_at,
                event_id: r.event_id.as_deref(),
                raw_body: RawBody::new(&r.body),
                note: r.note.as_deref(),
            },
        }
    }
}

/// One dead letter in `dlq list --format json`.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Shown<'a> {
    Envelope {
        #[serde(flatten)]
        envelope: Box<std::borrow::Cow<'a, Envelope>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    Raw {
        moved_by_broker: bool,
        reason: Reason,
        queue: &'a str,
        dead_lettered_at: Option<DateTime<Utc>>,
        event_id: Option<&'a str>,
        raw_body: RawBody,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<&'a str>,
    },
}

/// Whether JSON text nests arrays and objects more than `limit` deep (strings skipped).
pub fn nested_deeper_than(json: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

fn text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

/// When the broker last dead-lettered a message, from its `x-death` header.
fn death_time(v: &AMQPValue) -> Option<DateTime<Utc>> {
    match v {
        AMQPValue::FieldArray(a) => a.as_slice().first().and_then(|d| match d {
            AMQPValue::FieldTable(t) => match t.inner().get("time") {
                Some(AMQPValue::Timestamp(secs)) => {
                    Utc.timestamp_opt(i64::try_from(*secs).ok()?, 0).single()
                }
                _ => None,
            },
            _ => None,
        }),
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

/// Takes the dead-letter queue's lock for a command, saying so if it has to wait.
async fn lock_for_command(conn: &lapin::Connection, queue: &str) -> anyhow::Result<Lock> {
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
    mut each: impl FnMut(DeadLetter) -> anyhow::Result<()>,
) -> anyhow::Result<u32> {
    let lock = lock_for_command(conn, &topology.dead).await?;
    let read = browse::read_all(conn, &topology.dead, |m| {
        std::future::ready(
            each(DeadLetter::from_message(m, max_event_bytes)).map(|()| Verdict::Keep),
        )
    })
    .await;
    lock.release().await;
    Ok(read?.seen)
}

/// Reads the whole dead-letter queue into memory without consuming it: for small queues
/// (the demo). Commands use [`each`].
pub async fn browse(
    conn: &lapin::Connection,
    topology: &Topology,
    max_event_bytes: usize,
) -> anyhow::Result<Vec<DeadLetter>> {
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
) -> anyhow::Result<Stats> {
    let mut st = Stats::default();
    each(conn, topology, max_event_bytes, |l| {
        st.add(&l.summary());
        Ok(())
    })
    .await?;
    Ok(st)
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
    /// Of those, moved by the broker from the deliveries queue but not a valid delivery:
    /// sent back as they were, without a fresh budget.
    pub as_it_was: u64,
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
    let publisher = Publisher::new(conn).await?;
    let lock = lock_for_command(conn, &topology.dead).await?;
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
                        (queue.to_owned(), body)
                    },
                ));
            }
        }
        progress(&summary, chosen);
        let (publisher, id) = (publisher.clone(), summary.dead_letter_id);
        async move {
            let Some(send) = send else {
                return Ok(Verdict::Keep);
            };
            let (queue, body) = send?;
            // Publish, confirm, then ack (the read acks on Remove): never lost, whatever
            // stops the replay.
            publisher
                .publish_json("", &queue, &body, id.as_deref(), None)
                .await?;
            Ok(Verdict::Remove)
        }
    })
    .await;
    lock.release().await;
    read?;
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
) -> anyhow::Result<(&'a str, Vec<u8>, Budget)> {
    Ok(match letter {
        // One destination failed: a delivery for that destination alone, fresh budget.
        DeadLetter::Envelope(e) => match (&e.destination, &e.event, &e.event_id) {
            (Some(dest), Some(event), Some(id)) => {
                let mut d = Delivery::new(id.clone(), dest.clone(), event.clone(), now);
                d.replay_of = Some(e.dead_letter_id);
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
                        base64::engine::general_purpose::STANDARD.decode(&raw.data)?
                    }
                    (None, Some(raw)) => raw.data.clone().into_bytes(),
                    (None, None) => {
                        anyhow::bail!("dead letter {} holds no event", e.dead_letter_id)
                    }
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
    if d.schema != crate::delivery::SCHEMA {
        return None;
    }
    d.attempts = 0;
    d.retries = 0;
    d.first_attempt_at = now;
    d.history.clear();
    if let Some(id) = message_id.and_then(|id| uuid::Uuid::parse_str(id).ok()) {
        d.replay_of = Some(id);
    }
    serde_json::to_vec(&d).ok()
}

/// The last measure of one dead-letter queue, for [`oldest_dead_letter_age`].
#[derive(Clone, Copy, Debug)]
struct Measured {
    oldest: Option<DateTime<Utc>>,
    /// When the read ended, and how long it took.
    at: Instant,
    took: Duration,
    /// Dead letters it read.
    seen: u32,
}

/// A read of the whole queue is repeated at most once per this many times its own duration.
const MEASURE_SPACING: u32 = 20;

/// The last measure of each dead-letter queue this process samples.
static MEASURED: LazyLock<Mutex<HashMap<String, Measured>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Whether to read the queue again now, or go on from the last measure.
fn measure_due(last: Option<&Measured>, ready: u32, now: Instant) -> bool {
    match last {
        None => true,
        // Fewer than it read: some left, maybe the oldest.
        Some(m) if ready < m.seen => true,
        Some(m) => now.duration_since(m.at) >= m.took * MEASURE_SPACING,
    }
}

/// The age in seconds of the oldest dead letter in `queue` (0 when there is none), for the
/// relay's `postback_relay_oldest_dead_letter_age_seconds`.
///
/// Position in the queue does not tell age (a broker-moved message carries the time it was
/// moved, a replica's clock may lag, and a read cut short puts its part at the end), so the
/// oldest is the earliest time among all of them: a full read ([`crate::browse`]), which
/// moves none and hides none from the dead-letter commands (they wait for its lock). It runs
/// on a connection of its own (`url`), in a task of its own, so that a relay stopping midway
/// through does not cut it short. A large queue is not read every sample: between reads the
/// oldest is the one last found (new dead letters are newer), and a read comes again when
/// the queue has fewer than it read, or after 20 times the last read's duration. When a
/// command holds the queue, the last measure stands.
pub async fn oldest_dead_letter_age(
    conn: &lapin::Connection,
    url: &str,
    queue: &str,
    max_event_bytes: usize,
) -> Result<i64, lapin::Error> {
    let probe = conn.create_channel().await?;
    let ready = depth(&probe, queue).await;
    let _ = probe.close(200, "sampled".into()).await;
    let ready = ready?;
    let last = MEASURED.lock().expect("not poisoned").get(queue).copied();
    if measure_due(last.as_ref(), ready, Instant::now()) {
        let (url, name) = (url.to_owned(), queue.to_owned());
        let measured = tokio::spawn(async move { measure(&url, &name, max_event_bytes).await });
        match measured.await {
            Ok(Ok(Some(m))) => {
                MEASURED
                    .lock()
                    .expect("not poisoned")
                    .insert(queue.to_owned(), m);
            }
            // A command is reading the queue: the last measure stands.
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::warn!(message = "cannot read the dead-letter queue", queue, error = %e)
            }
            Err(e) => {
                tracing::warn!(message = "dead-letter queue read failed", queue, error = %e)
            }
        }
    }
    let oldest = MEASURED
        .lock()
        .expect("not poisoned")
        .get(queue)
        .and_then(|m| m.oldest);
    Ok(oldest.map_or(0, |t| (Utc::now() - t).num_seconds().max(0)))
}

/// Reads the whole queue for the earliest dead-letter time; `None` when another reader
/// holds it.
async fn measure(
    url: &str,
    queue: &str,
    max_event_bytes: usize,
) -> anyhow::Result<Option<Measured>> {
    let conn = crate::broker::connect(url, "dead-letter age").await?;
    let result = async {
        let Some(lock) = Lock::try_acquire(&conn, queue).await? else {
            return Ok(None);
        };
        let started = Instant::now();
        let mut oldest: Option<DateTime<Utc>> = None;
        let read = browse::read_all(&conn, queue, |m| {
            let at = DeadLetter::from_message(m, max_event_bytes)
                .summary()
                .dead_lettered_at;
            if let Some(at) = at {
                oldest = Some(oldest.map_or(at, |o| o.min(at)));
            }
            std::future::ready(Ok(Verdict::Keep))
        })
        .await;
        lock.release().await;
        let read = read?;
        Ok(Some(Measured {
            oldest,
            at: Instant::now(),
            took: started.elapsed(),
            seen: read.seen,
        }))
    }
    .await;
    let _ = conn.close(200, "measured".into()).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_measured_outside_strings() {
        assert!(!nested_deeper_than(br#"{"a":[1,{"b":2}]}"#, 3));
        assert!(nested_deeper_than(br#"{"a":[1,{"b":2}]}"#, 2));
        assert!(!nested_deeper_than(br#"{"a":"[[[[[[\"[[["}"#, 1));
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(nested_deeper_than(deep.as_bytes(), SHOWN_DEPTH));
        assert!(!nested_deeper_than(b"not json at all", 0));
    }

    fn delivery(attempts: u32) -> Delivery {
        let event = serde_json::value::RawValue::from_string(r#"{"event_id":"e"}"#.into()).unwrap();
        let old = Utc::now() - chrono::Duration::days(2);
        let mut d = Delivery::new("e".into(), "d".into(), event, old);
        d.attempts = attempts;
        d.retries = 4;
        d.record([crate::delivery::AttemptRecord {
            at: old,
            result: "5xx".into(),
            status: Some(500),
            error: None,
        }]);
        d
    }

    #[test]
    fn a_replayed_delivery_starts_a_fresh_budget() {
        let now = Utc::now();
        let body = serde_json::to_vec(&delivery(9)).unwrap();
        let fresh: Delivery =
            serde_json::from_slice(&fresh_delivery(&body, None, now).unwrap()).unwrap();
        assert_eq!((fresh.attempts, fresh.retries), (0, 0));
        assert_eq!(fresh.first_attempt_at, now);
        assert!(fresh.history.is_empty());
        assert_eq!(fresh.replay_of, None);
        assert_eq!(fresh.event.get(), r#"{"event_id":"e"}"#);

        let id = uuid::Uuid::now_v7();
        let fresh: Delivery =
            serde_json::from_slice(&fresh_delivery(&body, Some(&id.to_string()), now).unwrap())
                .unwrap();
        assert_eq!(fresh.replay_of, Some(id));
        // A message id that is not a dead letter's leaves replay_of as it was.
        let mut again = delivery(3);
        again.replay_of = Some(id);
        let body = serde_json::to_vec(&again).unwrap();
        let fresh: Delivery =
            serde_json::from_slice(&fresh_delivery(&body, Some("x-1"), now).unwrap()).unwrap();
        assert_eq!(fresh.replay_of, Some(id));
    }

    #[test]
    fn what_is_not_a_delivery_is_not_rewritten() {
        let now = Utc::now();
        assert_eq!(fresh_delivery(b"{\"schema\":\"other\"}", None, now), None);
        assert_eq!(fresh_delivery(b"\xff", None, now), None);
        let mut d = serde_json::to_value(delivery(1)).unwrap();
        d["schema"] = "postback-relay.delivery.v0".into();
        assert_eq!(
            fresh_delivery(&serde_json::to_vec(&d).unwrap(), None, now),
            None
        );
    }

    #[test]
    fn the_queue_is_read_again_when_due() {
        let now = Instant::now();
        assert!(measure_due(None, 0, now));
        let m = Measured {
            oldest: None,
            at: now,
            took: Duration::from_secs(3),
            seen: 100,
        };
        assert!(!measure_due(Some(&m), 100, now + Duration::from_secs(59)));
        assert!(!measure_due(Some(&m), 150, now + Duration::from_secs(1)));
        assert!(measure_due(Some(&m), 99, now + Duration::from_secs(1)));
        assert!(measure_due(Some(&m), 100, now + Duration::from_secs(60)));
    }
}
