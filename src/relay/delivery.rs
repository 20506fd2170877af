//! A delivery: one event for one destination, as it travels through the retry tiers and the
//! deliveries queue (`schemas/delivery.v1.json`). It carries the event, not a reference to
//! it, so a retry needs nothing but itself; and only the destination that failed, so the
//! others are neither re-sent nor delayed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const SCHEMA: &str = "postback-relay.delivery.v1";
/// Most recent attempts kept in a delivery's history.
pub const HISTORY_MAX: usize = 20;

/// What one try of a delivery came to: the class of the partner's answer, what kept the call
/// from being answered, or why no call was made. Written as its code (`5xx`, `timeout`,
/// `circuit_open`...); a code this version does not know is kept as it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum AttemptResult {
    Informational,
    Success,
    Redirect,
    ClientError,
    ServerError,
    Timeout,
    ConnectError,
    /// The HTTP client refused to build the request.
    Unsendable,
    /// Not called: the partner's circuit was open.
    CircuitOpen,
    /// Not called: another worker held the delivery's claim.
    ClaimedElsewhere,
    /// Not called: the delivery's claim was lost before the call.
    ClaimLost,
    /// Not called: the store did not answer.
    StoreUnavailable,
    /// Not called: another status of the same conversion was being sent.
    ConversionBusy,
    /// Not called: an update waited for its conversion.
    WaitingForConversion,
    /// Not called: an operator paused the destination.
    Paused,
    /// A code from another version of the relay.
    Other(String),
}

impl AttemptResult {
    const CODES: [(AttemptResult, &'static str); 15] = [
        (AttemptResult::Informational, "1xx"),
        (AttemptResult::Success, "2xx"),
        (AttemptResult::Redirect, "3xx"),
        (AttemptResult::ClientError, "4xx"),
        (AttemptResult::ServerError, "5xx"),
        (AttemptResult::Timeout, "timeout"),
        (AttemptResult::ConnectError, "connect_error"),
        (AttemptResult::Unsendable, "unsendable"),
        (AttemptResult::CircuitOpen, "circuit_open"),
        (AttemptResult::ClaimedElsewhere, "claimed_elsewhere"),
        (AttemptResult::ClaimLost, "claim_lost"),
        (AttemptResult::StoreUnavailable, "store_unavailable"),
        (AttemptResult::ConversionBusy, "conversion_busy"),
        (
            AttemptResult::WaitingForConversion,
            "waiting_for_conversion",
        ),
        (AttemptResult::Paused, "paused"),
    ];

    pub fn as_str(&self) -> &str {
        match self {
            AttemptResult::Other(code) => code,
            known => Self::CODES
                .iter()
                .find(|(r, _)| r == known)
                .map_or("", |(_, code)| code),
        }
    }

    /// Whether the partner was called.
    pub fn called(&self) -> bool {
        matches!(
            self,
            AttemptResult::Informational
                | AttemptResult::Success
                | AttemptResult::Redirect
                | AttemptResult::ClientError
                | AttemptResult::ServerError
                | AttemptResult::Timeout
                | AttemptResult::ConnectError
        )
    }
}

impl From<&str> for AttemptResult {
    fn from(code: &str) -> Self {
        Self::CODES
            .iter()
            .find(|(_, c)| *c == code)
            .map_or_else(|| AttemptResult::Other(code.to_owned()), |(r, _)| r.clone())
    }
}

impl From<String> for AttemptResult {
    fn from(code: String) -> Self {
        AttemptResult::from(code.as_str())
    }
}

impl From<AttemptResult> for String {
    fn from(r: AttemptResult) -> Self {
        r.as_str().to_owned()
    }
}

impl PartialEq<&str> for AttemptResult {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for AttemptResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One try of a delivery: a partner call, or a wait without one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub at: DateTime<Utc>,
    pub result: AttemptResult,
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
    /// Time spent waiting while its destination was paused, in milliseconds: given back to
    /// the age budget.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub paused_ms: u64,
    /// The latest attempts, oldest first, at most [`HISTORY_MAX`].
    #[serde(default)]
    pub history: Vec<AttemptRecord>,
    /// The dead letter this delivery was replayed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<uuid::Uuid>,
    /// The journal's recovery this delivery is part of (`postback-relay recover`): sent
    /// again on purpose, past the record of the earlier acceptance, once per recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<String>,
    /// The original event, as published.
    pub event: Box<serde_json::value::RawValue>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Delivery {
    /// Where its age budget starts: the first attempt, later by the time spent paused.
    pub fn budget_start(&self) -> DateTime<Utc> {
        let paused =
            chrono::Duration::milliseconds(i64::try_from(self.paused_ms).unwrap_or(i64::MAX));
        self.first_attempt_at
            .checked_add_signed(paused)
            .unwrap_or(self.first_attempt_at)
    }

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
            paused_ms: 0,
            history: Vec::new(),
            replay_of: None,
            recovery: None,
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
    fn attempt_results_keep_their_codes_and_unknown_ones() {
        for (r, code) in AttemptResult::CODES {
            assert_eq!(AttemptResult::from(code), r);
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{code}\""));
        }
        let other: AttemptResult = serde_json::from_str("\"rate_limited\"").unwrap();
        assert_eq!(other, AttemptResult::Other("rate_limited".into()));
        assert_eq!(serde_json::to_string(&other).unwrap(), "\"rate_limited\"");
        assert!(AttemptResult::ServerError.called() && !AttemptResult::CircuitOpen.called());
    }

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
