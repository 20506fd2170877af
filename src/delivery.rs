//! A delivery: one event for one destination, as it travels through the retry tiers and the
//! deliveries queue (`schemas/delivery.v1.json`). It carries the event, not a reference to
//! it, so a retry needs nothing but itself; and only the destination that failed, so the
//! others are neither re-sent nor delayed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const SCHEMA: &str = "postback-relay.delivery.v1";
/// Most recent attempts kept in a delivery's history.
pub const HISTORY_MAX: usize = 20;

/// One partner call, or one wait while the partner's circuit was open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub at: DateTime<Utc>,
    /// `2xx`, `5xx`, `timeout`, `connect_error`..., or `circuit_open` when it was not called.
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Delivery {
    pub schema: String,
    pub event_id: String,
    pub destination: String,
    /// Partner calls made so far.
    pub attempts: u32,
    /// Durable retries scheduled so far after failed calls (waits for an open circuit do not
    /// count): the backoff step of the next one.
    #[serde(default)]
    pub retries: u32,
    pub first_attempt_at: DateTime<Utc>,
    /// The latest attempts, oldest first, at most [`HISTORY_MAX`].
    #[serde(default)]
    pub history: Vec<AttemptRecord>,
    /// The dead letter this delivery was replayed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<uuid::Uuid>,
    /// The original event, as published.
    pub event: Box<serde_json::value::RawValue>,
}

impl Delivery {
    pub fn new(
        event_id: String,
        destination: String,
        event: Box<serde_json::value::RawValue>,
        now: DateTime<Utc>,
    ) -> Delivery {
        Delivery {
            schema: SCHEMA.into(),
            event_id,
            destination,
            attempts: 0,
            retries: 0,
            first_attempt_at: now,
            history: Vec::new(),
            replay_of: None,
            event,
        }
    }

    /// Adds attempts to the history, keeping the latest [`HISTORY_MAX`].
    pub fn record(&mut self, attempts: impl IntoIterator<Item = AttemptRecord>) {
        self.history.extend(attempts);
        let excess = self.history.len().saturating_sub(HISTORY_MAX);
        self.history.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_capped_to_the_latest() {
        let event = serde_json::value::RawValue::from_string("{}".into()).unwrap();
        let mut d = Delivery::new("e".into(), "d".into(), event, Utc::now());
        d.record((0..30).map(|i| AttemptRecord {
            at: Utc::now(),
            result: "5xx".into(),
            status: Some(500 + i),
            error: None,
        }));
        assert_eq!(d.history.len(), HISTORY_MAX);
        assert_eq!(d.history[0].status, Some(510));
        let text = serde_json::to_string(&d).unwrap();
        let back: Delivery = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
    }
}
