//! Dead letters: the envelope published to the dead-letter queue (`schemas/dead-letter.v1.json`)
//! and the stable reason codes that metrics, `dlq` and people filter on.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::contract::partner::Request;

pub use crate::contract::reason::Reason;

pub mod age;
pub mod browse;
pub mod read;

pub const SCHEMA: &str = "postback-relay.dead-letter.v1";
/// Longest partner response body kept in an envelope.
pub const SNIPPET_MAX: usize = 1024;
/// How much of an answer is kept until it is scrubbed and cut to [`SNIPPET_MAX`]: the snippet,
/// and room for a secret that runs across its end.
pub const SNIPPET_READ: usize = 4 * SNIPPET_MAX;

/// Where the dead-lettered message came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub queue: String,
    pub routing_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    pub redelivered: bool,
}

/// The original body when it was not JSON, kept whole so nothing is lost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RawBody {
    /// `utf8` or `base64`.
    pub encoding: String,
    pub data: String,
}

impl RawBody {
    pub fn new(body: &[u8]) -> Self {
        match std::str::from_utf8(body) {
            Ok(s) => RawBody {
                encoding: "utf8".into(),
                data: s.to_owned(),
            },
            Err(_) => RawBody {
                encoding: "base64".into(),
                data: base64::engine::general_purpose::STANDARD.encode(body),
            },
        }
    }
}

/// The partner's last answer to a delivery: its status, or what went wrong on the way, and the
/// start of its body.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LastAnswer {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub snippet: Option<String>,
}

impl LastAnswer {
    /// What a call's result shows of the answer; `timeout_ms` names the limit a timeout hit.
    pub fn of(
        result: &crate::contract::classify::CallResult,
        timeout_ms: u64,
        snippet: Option<String>,
    ) -> LastAnswer {
        use crate::contract::classify::CallResult;
        let (status, error) = match result {
            CallResult::Response { status, .. } => (Some(*status), None),
            CallResult::Timeout => (None, Some(format!("timeout after {timeout_ms} ms"))),
            CallResult::ConnectError(e) | CallResult::Unsendable(e) => (None, Some(e.clone())),
        };
        LastAnswer {
            status,
            error,
            snippet,
        }
    }
}

/// A conversion that could not be delivered, with everything an operator needs to act on it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub schema: String,
    pub dead_letter_id: uuid::Uuid,
    /// Absent when the body could not be read far enough to find it.
    pub event_id: Option<String>,
    /// Absent when the event failed before routing (not JSON, invalid, unroutable).
    pub destination: Option<String>,
    pub reason: Reason,
    /// What went wrong, in words: the field and the problem, or the partner's answer.
    pub detail: String,
    pub attempts: u32,
    pub first_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub dead_lettered_at: DateTime<Utc>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// The start of the partner's last response body, at most [`SNIPPET_MAX`] bytes.
    pub response_snippet: Option<String>,
    /// The last request as it was (or would have been) sent, secrets redacted.
    pub request: Option<Request>,
    /// The original event when the body was JSON (even if not a valid event), as published.
    pub event: Option<Box<serde_json::value::RawValue>>,
    /// The original body when it was not JSON.
    pub raw_body: Option<RawBody>,
    /// The latest attempts, oldest first.
    #[serde(default)]
    pub history: Vec<crate::relay::delivery::AttemptRecord>,
    pub source: Source,
    /// The journal's recovery the delivery was sent again by: a replay keeps it, so that the
    /// delivery is claimed under the recovery's key again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<String>,
    /// The trace the delivery was in (W3C trace id, 32 hex digits), when the relay traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

impl Envelope {
    /// An envelope for a delivery to one destination that failed: the delivery's event,
    /// attempts and history, and the request as it was sent (secrets redacted).
    pub fn for_delivery(
        reason: Reason,
        detail: String,
        delivery: &crate::relay::delivery::Delivery,
        request: Option<&Request>,
        last: Option<&LastAnswer>,
        source: Source,
    ) -> Self {
        let mut env = Envelope::for_message(
            reason,
            detail,
            delivery.event.get().as_bytes(),
            Some(delivery.event_id.clone()),
            source,
        );
        env.destination = Some(delivery.destination.clone());
        env.attempts = delivery.attempts;
        env.first_attempt_at = (delivery.attempts > 0).then_some(delivery.first_attempt_at);
        env.last_attempt_at = delivery.history.last().map(|h| h.at);
        env.history = delivery.history.clone();
        env.recovery.clone_from(&delivery.recovery);
        env.request = request.map(Request::redacted);
        if let Some(r) = last {
            env.last_status = r.status;
            env.last_error = r.error.clone();
            env.response_snippet = r.snippet.clone();
        } else if let Some(h) = delivery.history.iter().rev().find(|h| h.result.called()) {
            env.last_status = h.status;
            env.last_error = h.error.clone();
        }
        env
    }

    /// Replaces every secret in what the relay wrote into the envelope (the detail, the error,
    /// the partner's answer, the request, the history), and cuts the partner's answer to
    /// [`SNIPPET_MAX`] once scrubbed. The original event stays as it was published.
    pub fn scrub(&mut self, secrets: &crate::contract::redact::Secrets) {
        if let Some(s) = &mut self.response_snippet {
            *s = secrets.scrub_and_cut(s, SNIPPET_MAX);
        }
        if secrets.is_empty() {
            return;
        }
        secrets.scrub_in_place(&mut self.detail);
        if let Some(e) = &mut self.last_error {
            secrets.scrub_in_place(e);
        }
        if let Some(r) = &mut self.request {
            secrets.scrub_in_place(&mut r.url);
            for v in r.headers.values_mut() {
                secrets.scrub_in_place(v);
            }
            if let Some(b) = &mut r.body {
                secrets.scrub_in_place(b);
            }
        }
        for h in &mut self.history {
            if let Some(e) = &mut h.error {
                secrets.scrub_in_place(e);
            }
        }
    }

    /// An envelope for a message that failed before any partner was called. Keeps the original
    /// body: as JSON when it parses as JSON, raw otherwise.
    pub fn for_message(
        reason: Reason,
        detail: String,
        body: &[u8],
        event_id: Option<String>,
        source: Source,
    ) -> Self {
        // Kept as text: checked to be JSON, never expanded into a tree (a hostile body can be
        // many times larger as a tree than as text).
        let event = serde_json::from_slice::<Box<serde_json::value::RawValue>>(body).ok();
        let raw_body = event.is_none().then(|| RawBody::new(body));
        let event_id = event_id.or_else(|| {
            #[derive(Deserialize)]
            struct Id {
                event_id: Option<serde_json::Value>,
            }
            let id = serde_json::from_slice::<Id>(body).ok()?.event_id?;
            id.as_str().map(str::to_owned)
        });
        Envelope {
            schema: SCHEMA.into(),
            dead_letter_id: uuid::Uuid::now_v7(),
            event_id,
            destination: None,
            reason,
            detail,
            attempts: 0,
            first_attempt_at: None,
            last_attempt_at: None,
            dead_lettered_at: Utc::now(),
            last_status: None,
            last_error: None,
            response_snippet: None,
            request: None,
            event,
            raw_body,
            history: Vec::new(),
            source,
            recovery: None,
            trace_id: None,
        }
    }
}

/// The start of a response body, at most [`SNIPPET_READ`] bytes, as text; an envelope cuts it
/// to [`SNIPPET_MAX`] once scrubbed ([`Envelope::scrub`]).
pub fn snippet(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let cut = &body[..body.len().min(SNIPPET_READ)];
    let s = String::from_utf8_lossy(cut);
    // A multi-byte character split by the cut shows as one replacement character at the end.
    Some(s.into_owned())
}

/// The index's row for an envelope the relay dead-lettered.
pub fn envelope_row(env: &Envelope) -> crate::journal::letters::Letter {
    crate::journal::letters::Letter {
        id: env.dead_letter_id.to_string(),
        at: env.dead_lettered_at,
        destination: env
            .destination
            .clone()
            .unwrap_or_else(|| crate::journal::NO_DESTINATION.to_owned()),
        reason: env.reason.as_str().to_owned(),
        event_id: env.event_id.clone(),
        attempts: env.attempts,
        detail: env.detail.clone(),
        letter: serde_json::to_string(env).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> Source {
        Source {
            queue: "q".into(),
            routing_key: "order".into(),
            message_id: None,
            redelivered: false,
        }
    }

    #[test]
    fn keeps_json_bodies_as_json_and_others_raw() {
        let e = Envelope::for_message(
            Reason::InvalidEvent,
            "x".into(),
            br#"{"event_id":"e1","type":"nope"}"#,
            None,
            source(),
        );
        assert_eq!(e.event_id.as_deref(), Some("e1"));
        assert_eq!(e.event.unwrap().get(), r#"{"event_id":"e1","type":"nope"}"#);
        assert!(e.raw_body.is_none());

        let e = Envelope::for_message(Reason::NotJson, "x".into(), b"\xff\x00", None, source());
        let raw = e.raw_body.unwrap();
        assert_eq!(raw.encoding, "base64");
        assert_eq!(raw.data, "/wA=");
    }

    #[test]
    fn snippets_are_capped() {
        assert_eq!(snippet(b""), None);
        assert_eq!(snippet(&[b'a'; 50_000]).unwrap().len(), SNIPPET_READ);
        let mut env = Envelope::for_message(Reason::NotJson, "x".into(), b"x", None, source());
        env.response_snippet = snippet(&[b'a'; 5000]);
        env.scrub(&crate::contract::redact::Secrets::default());
        assert_eq!(env.response_snippet.unwrap().len(), SNIPPET_MAX);
    }
}
