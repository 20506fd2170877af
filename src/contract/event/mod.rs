//! The conversion event contract (`schemas/conversion-event.v1.json`) and its parser.
//!
//! Parsing never panics: every way a message can be wrong becomes a [`ParseError`] whose
//! [`ParseError::reason`] is a stable code and whose text names the field and the problem.

mod decode;
mod money;

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

pub use decode::{Decoded, Encoding, decode, from_raw, inflate};
pub use money::{Money, MoneyError};

use crate::contract::reason::Reason;

/// Longest identifier accepted, in characters (event id, click id, order id...).
pub const MAX_ID_LEN: usize = 4096;
/// Longest `attribution.tracker` accepted, in characters.
pub const MAX_TRACKER_LEN: usize = 8192;

/// What kind of fact an event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Lead,
    Order,
    OrderStatus,
    Registration,
    Trial,
    Signup,
    Rebill,
    CustomerStatus,
}

impl EventType {
    pub const ALL: [EventType; 8] = [
        EventType::Lead,
        EventType::Order,
        EventType::OrderStatus,
        EventType::Registration,
        EventType::Trial,
        EventType::Signup,
        EventType::Rebill,
        EventType::CustomerStatus,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Lead => "lead",
            EventType::Order => "order",
            EventType::OrderStatus => "order_status",
            EventType::Registration => "registration",
            EventType::Trial => "trial",
            EventType::Signup => "signup",
            EventType::Rebill => "rebill",
            EventType::CustomerStatus => "customer_status",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One conversion fact, as published by a backend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConversionEvent {
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    #[serde(deserialize_with = "rfc3339")]
    pub occurred_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution: Option<Attribution>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Order>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<Customer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// Who brought the conversion: the network that routes it and the click it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attribution {
    pub network: String,
    pub click_id: String,
    #[serde(
        default,
        deserialize_with = "rfc3339_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub clicked_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracker: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Order {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What the customer paid in all, shipping and tax included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commission: Option<Money>,
    /// The amount in the currency the customer paid in, when it differs from `currency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracked_amount: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracked_currency: Option<Currency>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commission_groups: Vec<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// An ISO 4217 code: three upper-case ASCII letters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Currency(String);

impl Currency {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Currency(s))
        } else {
            Err(serde::de::Error::custom(format!(
                "currency {s:?} must be three upper-case letters (ISO 4217), like \"EUR\""
            )))
        }
    }
}

fn rfc3339<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let s = String::deserialize(d)?;
    DateTime::parse_from_rfc3339(&s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            serde::de::Error::custom(format!(
                "time {s:?} is not RFC 3339 ({e}); write it like \"2026-11-22T10:00:00Z\""
            ))
        })
}

fn rfc3339_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    rfc3339(d).map(Some)
}

/// Why a message body is not a conversion event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("event body is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("event body is not JSON: {0}")]
    NotJson(String),
    #[error("invalid event: {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("invalid event: the body is not valid UTF-8 (invalid byte at offset {at})")]
    NotUtf8 { at: usize },
    #[error(
        "invalid event: unknown content encoding {0:?}; publish the JSON as it is, or compressed with gzip or deflate"
    )]
    Encoding(String),
    #[error(
        "invalid event: the body says content encoding {encoding} but cannot be decompressed: {error}"
    )]
    Inflate {
        encoding: &'static str,
        error: String,
    },
}

impl ParseError {
    pub fn reason(&self) -> Reason {
        match self {
            ParseError::TooLarge { .. } => Reason::EventTooLarge,
            ParseError::NotJson(_) => Reason::NotJson,
            ParseError::Invalid { .. }
            | ParseError::NotUtf8 { .. }
            | ParseError::Encoding(_)
            | ParseError::Inflate { .. } => Reason::InvalidEvent,
        }
    }

    pub(crate) fn invalid(path: &str, message: impl Into<String>) -> Self {
        ParseError::Invalid {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

/// Parses a message body into an event, enforcing the size limit first (see [`decode`]).
pub fn parse(body: &[u8], max_bytes: usize) -> Result<ConversionEvent, ParseError> {
    decode(body, max_bytes).map(|d| d.event)
}

/// serde_json appends "at line 1 column 40" to data errors; the path already says where.
pub(crate) fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

impl ConversionEvent {
    /// Rules JSON typing cannot express: identifiers non-empty, bounded and printable; params
    /// bounded and printable.
    pub(crate) fn validate(&self) -> Result<(), ParseError> {
        check_id("event_id", &self.event_id)?;
        if let Some(a) = &self.attribution {
            check_id("attribution.network", &a.network)?;
            check_id("attribution.click_id", &a.click_id)?;
            if let Some(p) = &a.publisher_id {
                check_id("attribution.publisher_id", p)?;
            }
            if a.tracker
                .as_ref()
                .is_some_and(|t| t.chars().count() > MAX_TRACKER_LEN)
            {
                return Err(ParseError::invalid(
                    "attribution.tracker",
                    format!("is over the limit of {MAX_TRACKER_LEN} characters"),
                ));
            }
            // Params fill partner URLs and bodies as the identifiers do: the same bounds,
            // except that a value may be empty (a placeholder with nothing to say).
            for (key, value) in &a.params {
                check_id("attribution.params", key).map_err(|e| match e {
                    ParseError::Invalid { path, message } => ParseError::Invalid {
                        path,
                        message: format!("a key {message}"),
                    },
                    other => other,
                })?;
                check_text(&format!("attribution.params.{key}"), value)?;
            }
        }
        if let Some(id) = self.order.as_ref().and_then(|o| o.id.as_deref()) {
            check_id("order.id", id)?;
        }
        Ok(())
    }
}

/// Whether `v` is an identifier as the contract has them (event and order ids): not only
/// white space, at most 4096 characters, no control characters. `path` names it in the error.
pub fn check_id(path: &str, v: &str) -> Result<(), ParseError> {
    if v.trim().is_empty() {
        return Err(ParseError::invalid(path, "must not be empty"));
    }
    check_text(path, v)
}

/// At most [`MAX_ID_LEN`] characters, none of them a control character.
fn check_text(path: &str, v: &str) -> Result<(), ParseError> {
    if v.chars().count() > MAX_ID_LEN {
        return Err(ParseError::invalid(
            path,
            format!(
                "is {} characters long, over the limit of {MAX_ID_LEN}",
                v.chars().count()
            ),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(ParseError::invalid(
            path,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// A short name for a JSON value's type, for error messages.
pub(crate) fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
