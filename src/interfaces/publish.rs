//! The reference producer: publishes event bodies to the exchange, routing key = event type,
//! with publisher confirms and a window of publishes in flight.

use std::collections::VecDeque;
use std::path::Path;

use crate::relay::broker::{PublishError, Publisher, confirmed};
use crate::relay::trace;

/// How many publishes may await their confirm at once.
const WINDOW: usize = 512;

/// One message to publish, exactly as read (bodies are not re-serialized).
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub routing_key: String,
    pub body: Vec<u8>,
    pub message_id: Option<String>,
}

impl Outgoing {
    /// Routing key from the body's `type`, `unknown` when unreadable; message id from
    /// `event_id`.
    pub fn new(body: Vec<u8>) -> Outgoing {
        #[derive(serde::Deserialize)]
        struct Peek {
            #[serde(rename = "type")]
            kind: Option<serde_json::Value>,
            event_id: Option<serde_json::Value>,
        }
        let peek = serde_json::from_slice::<Peek>(&body).ok();
        let text = |v: Option<serde_json::Value>| v.and_then(|v| v.as_str().map(str::to_owned));
        let (kind, id) = match peek {
            Some(p) => (text(p.kind), text(p.event_id)),
            None => (None, None),
        };
        Outgoing {
            routing_key: kind
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .unwrap_or_else(|| "unknown".into()),
            body,
            message_id: id,
        }
    }
}

/// Reads a file of events: one JSON document, or JSON Lines (one event per non-empty line)
/// when the file is not a single JSON document. `-` reads standard input.
pub fn read_events(path: &Path) -> std::io::Result<Vec<Outgoing>> {
    let data = if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
        buf
    } else {
        std::fs::read(path)?
    };
    if serde_json::from_slice::<serde::de::IgnoredAny>(&data).is_ok() {
        return Ok(vec![Outgoing::new(data)]);
    }
    let mut out = Vec::new();
    for line in data.split(|b| *b == b'\n') {
        let trimmed = line.trim_ascii();
        if !trimmed.is_empty() {
            out.push(Outgoing::new(trimmed.to_vec()));
        }
    }
    // A file that is neither is published whole: malformed input is the relay's to judge.
    if out.is_empty() {
        out.push(Outgoing::new(data));
    }
    Ok(out)
}

/// Publishes every message with confirms, at most `WINDOW` unconfirmed at a time; calls
/// `progress` after each confirm. Stops at the first failure and says which message it was.
/// Each message starts a trace of its own: its headers carry a fresh W3C `traceparent`, which
/// a relay that traces continues.
pub async fn publish_all(
    publisher: &Publisher,
    exchange: &str,
    messages: impl IntoIterator<Item = Outgoing>,
    mut progress: impl FnMut(),
) -> Result<u64, (u64, PublishError)> {
    let mut pending: VecDeque<(u64, String, lapin::PublisherConfirm)> = VecDeque::new();
    let mut confirmed_count = 0u64;
    for (i, m) in messages.into_iter().enumerate() {
        if pending.len() >= WINDOW {
            let (j, key, p) = pending.pop_front().expect("window not empty");
            confirmed(p, &key).await.map_err(|e| (j, e))?;
            confirmed_count += 1;
            progress();
        }
        let p = publisher
            .send_json(
                exchange,
                &m.routing_key,
                &m.body,
                m.message_id.as_deref(),
                Some(trace::traceparent_headers(&trace::new_traceparent())),
            )
            .await
            .map_err(|e| (i as u64, e))?;
        pending.push_back((i as u64, m.routing_key, p));
    }
    while let Some((j, key, p)) = pending.pop_front() {
        confirmed(p, &key).await.map_err(|e| (j, e))?;
        confirmed_count += 1;
        progress();
    }
    Ok(confirmed_count)
}
