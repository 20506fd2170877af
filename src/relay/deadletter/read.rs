//! A message in the dead-letter queue, read: an envelope the relay wrote, a message the broker
//! moved there itself, or anything else found there; its summary for listings and filters, and
//! how it is shown.

use chrono::{DateTime, TimeZone, Utc};
use lapin::message::Delivery as Message;
use lapin::types::AMQPValue;
use serde::Serialize;

use super::{Envelope, RawBody, Reason};

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
    pub fn from_message(m: &Message, max_event_bytes: usize) -> DeadLetter {
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
