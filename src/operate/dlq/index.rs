//! Dead letters as the journal's index keeps them: the row written for each letter (by the
//! relay as it dead-letters, by a reindex as it reads the queue), the letter kept whole as
//! JSON for its page, and read back.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{DeadLetter, RawDead, Summary};
use crate::journal::letters::Letter;
use crate::relay::deadletter::{Envelope, RawBody, Reason, envelope_row};

/// A letter that is not an envelope, as the index keeps it.
#[derive(Serialize, Deserialize)]
struct KeptRaw {
    reason: Reason,
    queue: String,
    dead_lettered_at: Option<DateTime<Utc>>,
    raw_body: RawBody,
    event_id: Option<String>,
    message_id: Option<String>,
    note: Option<String>,
}

/// Marks the id the index gives a letter without one (moved by the broker, or not written
/// by the relay): such a letter is listed, but not opened nor chosen by its id.
pub const RAW_ID: &str = "raw-";

/// The index's row for a letter read from the queue. A letter without an id of its own
/// gets one made from what it holds, and `nth` (how many identical letters came before it
/// in the same read); one without a time is given `read_at`.
pub fn row(letter: &DeadLetter, nth: u32, read_at: DateTime<Utc>) -> Letter {
    match letter {
        DeadLetter::Envelope(e) => envelope_row(e),
        DeadLetter::Raw(r) => {
            let s = letter.summary();
            let kept = KeptRaw {
                reason: r.reason,
                queue: r.queue.clone(),
                dead_lettered_at: r.dead_lettered_at,
                raw_body: RawBody::new(&r.body),
                event_id: r.event_id.clone(),
                message_id: r.message_id.clone(),
                note: r.note.clone(),
            };
            Letter {
                id: raw_id(r, nth),
                at: r.dead_lettered_at.unwrap_or(read_at),
                destination: crate::journal::NO_DESTINATION.to_owned(),
                reason: r.reason.as_str().to_owned(),
                event_id: r.event_id.clone(),
                attempts: 0,
                detail: s.detail,
                letter: serde_json::to_string(&kept).unwrap_or_default(),
            }
        }
    }
}

/// The id of a letter without one: the same letter read again gets the same id.
pub fn raw_id(r: &RawDead, nth: u32) -> String {
    let mut named = Vec::with_capacity(r.body.len() + 64);
    named.extend_from_slice(r.queue.as_bytes());
    named.push(0);
    named.extend_from_slice(r.message_id.as_deref().unwrap_or("").as_bytes());
    named.push(0);
    let at = r.dead_lettered_at.map_or(0, |t| t.timestamp_millis());
    named.extend_from_slice(&at.to_be_bytes());
    named.extend_from_slice(&nth.to_be_bytes());
    named.extend_from_slice(&r.body);
    format!(
        "{RAW_ID}{}",
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, &named).hyphenated()
    )
}

impl DeadLetter {
    /// The letter the index kept, read back; `None` when it cannot be read.
    pub fn from_kept(kept: &str) -> Option<DeadLetter> {
        if let Ok(env) = serde_json::from_str::<Envelope>(kept) {
            return Some(DeadLetter::Envelope(Box::new(env)));
        }
        let raw: KeptRaw = serde_json::from_str(kept).ok()?;
        let body = match raw.raw_body.encoding.as_str() {
            "base64" => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(&raw.raw_body.data)
                    .ok()?
            }
            _ => raw.raw_body.data.into_bytes(),
        };
        Some(DeadLetter::Raw(RawDead {
            reason: raw.reason,
            queue: raw.queue,
            dead_lettered_at: raw.dead_lettered_at,
            body,
            event_id: raw.event_id,
            message_id: raw.message_id,
            note: raw.note,
        }))
    }
}

/// A listed letter of the index, as the pages show it.
pub fn summary_of(l: &Letter) -> Summary {
    Summary {
        dead_letter_id: (!l.id.starts_with(RAW_ID)).then(|| l.id.clone()),
        event_id: l.event_id.clone(),
        destination: (l.destination != crate::journal::NO_DESTINATION)
            .then(|| l.destination.clone()),
        reason: l.reason.parse().unwrap_or(Reason::InvalidEvent),
        dead_lettered_at: Some(l.at),
        attempts: l.attempts,
        detail: l.detail.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::deadletter::Source;

    fn source() -> Source {
        Source {
            queue: "q".into(),
            routing_key: "order".into(),
            message_id: None,
            redelivered: false,
        }
    }

    #[test]
    fn an_envelope_is_kept_whole_and_read_back() {
        let mut env = Envelope::for_message(
            Reason::NotJson,
            "not JSON".into(),
            b"\xffhi",
            None,
            source(),
        );
        env.destination = None;
        let row = envelope_row(&env);
        assert_eq!(row.destination, crate::journal::NO_DESTINATION);
        assert_eq!(row.id, env.dead_letter_id.to_string());
        let back = DeadLetter::from_kept(&row.letter).unwrap();
        let DeadLetter::Envelope(e) = back else {
            panic!("an envelope")
        };
        assert_eq!(e.raw_body, env.raw_body);
        let s = summary_of(&row);
        assert_eq!((s.destination, s.reason), (None, Reason::NotJson));
    }

    #[test]
    fn a_raw_letter_gets_the_same_id_each_read_and_identical_ones_differ_by_position() {
        let r = RawDead {
            reason: Reason::DeliveryLimit,
            queue: "p.deliveries".into(),
            dead_lettered_at: None,
            body: vec![0xff, 0x00, b'x'],
            event_id: None,
            message_id: Some("m1".into()),
            note: None,
        };
        assert_eq!(raw_id(&r, 0), raw_id(&r, 0));
        assert_ne!(raw_id(&r, 0), raw_id(&r, 1));
        let now = Utc::now();
        let row = row(&DeadLetter::Raw(r.clone()), 0, now);
        assert!(row.id.starts_with(RAW_ID));
        assert_eq!(row.at, now);
        assert_eq!(summary_of(&row).dead_letter_id, None);
        let DeadLetter::Raw(back) = DeadLetter::from_kept(&row.letter).unwrap() else {
            panic!("raw")
        };
        assert_eq!(back.body, r.body);
        assert_eq!(back.message_id.as_deref(), Some("m1"));
    }
}
