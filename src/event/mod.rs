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

use crate::reason::Reason;

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

fn check_id(path: &str, v: &str) -> Result<(), ParseError> {
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
mod tests {
    use super::*;

    const LIMIT: usize = 1 << 20;

    pub(crate) const EXAMPLE: &str = r#"{
      "event_id": "ord-10045-paid",
      "type": "order",
      "occurred_at": "2026-11-22T10:00:00Z",
      "attribution": {
        "network": "powerspace",
        "click_id": "abc123xyz789",
        "clicked_at": "2026-11-20T09:00:00Z",
        "publisher_id": "45628",
        "tracker": "trID_1234567_aff9-tx77-ck42_trID",
        "params": { "clickRef": "LINKCMP2013-06" }
      },
      "order": {
        "id": "10045", "amount": "89.99", "currency": "EUR", "status": "paid",
        "shipping": "4.99", "tax": "14.99", "commission": "1.64",
        "products": [], "commission_groups": []
      },
      "customer": { "id": "cust-77" },
      "action": "sale"
    }"#;

    fn with(path: &[&str], value: serde_json::Value) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
        let mut cur = &mut v;
        for p in &path[..path.len() - 1] {
            cur = cur.get_mut(*p).unwrap();
        }
        let last = path[path.len() - 1];
        if value.is_null() {
            cur.as_object_mut().unwrap().remove(last);
        } else {
            cur[last] = value;
        }
        serde_json::to_vec(&v).unwrap()
    }

    fn invalid_at(body: &[u8]) -> (String, String) {
        match parse(body, LIMIT) {
            Err(ParseError::Invalid { path, message }) => (path, message),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn parses_the_design_example() {
        let e = parse(EXAMPLE.as_bytes(), LIMIT).unwrap();
        assert_eq!(e.event_id, "ord-10045-paid");
        assert_eq!(e.kind, EventType::Order);
        let o = e.order.unwrap();
        assert_eq!(o.amount.unwrap().to_string(), "89.99");
        assert_eq!(o.currency.unwrap().as_str(), "EUR");
        assert_eq!(e.attribution.unwrap().params["clickRef"], "LINKCMP2013-06");
    }

    #[test]
    fn numbers_are_accepted_as_amounts_exactly() {
        let e = parse(&with(&["order", "amount"], serde_json::json!(89.99)), LIMIT).unwrap();
        assert_eq!(e.order.unwrap().amount.unwrap().to_string(), "89.99");
    }

    #[test]
    fn bad_amounts_name_the_field() {
        for bad in ["12,50", "1e3", "NaN", "-3.00", ""] {
            let (path, msg) = invalid_at(&with(&["order", "amount"], serde_json::json!(bad)));
            assert_eq!(path, "order.amount");
            assert!(msg.contains(bad), "{msg}");
        }
    }

    #[test]
    fn missing_required_fields_are_named() {
        let (path, msg) = invalid_at(&with(&["event_id"], serde_json::Value::Null));
        assert_eq!(path, ".");
        assert!(msg.contains("missing field `event_id`"), "{msg}");
        let (path, msg) = invalid_at(&with(&["attribution", "click_id"], serde_json::Value::Null));
        assert_eq!(path, "attribution");
        assert!(msg.contains("missing field `click_id`"), "{msg}");
        let (path, _) = invalid_at(&with(&["attribution", "click_id"], serde_json::json!(" ")));
        assert_eq!(path, "attribution.click_id");
    }

    #[test]
    fn wrong_types_and_unknown_enum_values_are_invalid() {
        let (path, _) = invalid_at(&with(&["event_id"], serde_json::json!(42)));
        assert_eq!(path, "event_id");
        let (path, msg) = invalid_at(&with(&["type"], serde_json::json!("refund")));
        assert_eq!(path, "type");
        assert!(msg.contains("refund"), "{msg}");
        let (path, _) = invalid_at(&with(&["occurred_at"], serde_json::json!("yesterday")));
        assert_eq!(path, "occurred_at");
        let (path, _) = invalid_at(&with(&["order", "currency"], serde_json::json!("eur")));
        assert_eq!(path, "order.currency");
        let (path, _) = invalid_at(b"[1,2]");
        assert_eq!(path, ".");
    }

    #[test]
    fn not_json_and_trailing_garbage() {
        assert!(matches!(
            parse(b"hello", LIMIT),
            Err(ParseError::NotJson(_))
        ));
        assert!(matches!(parse(b"", LIMIT), Err(ParseError::NotJson(_))));
        // Not UTF-8 at all: an invalid event that says so.
        assert!(matches!(
            parse(&[0xff, 0xfe], LIMIT),
            Err(ParseError::NotUtf8 { at: 0 })
        ));
        let mut trailing = EXAMPLE.as_bytes().to_vec();
        trailing.extend_from_slice(b" {}");
        assert!(matches!(
            parse(&trailing, LIMIT),
            Err(ParseError::NotJson(_))
        ));
    }

    #[test]
    fn oversized_bodies_are_refused_before_parsing() {
        let body = vec![b' '; 10 * 1024 * 1024];
        assert_eq!(
            parse(&body, LIMIT),
            Err(ParseError::TooLarge {
                size: 10 * 1024 * 1024,
                limit: LIMIT
            })
        );
    }

    #[test]
    fn unknown_fields_are_tolerated_for_forward_compatibility() {
        let e = parse(&with(&["extra"], serde_json::json!({"x": 1})), LIMIT).unwrap();
        assert_eq!(e.event_id, "ord-10045-paid");
    }

    #[test]
    fn params_are_bounded_like_identifiers() {
        let params = |v: serde_json::Value| with(&["attribution", "params"], v);
        let ok = params(serde_json::json!({ "clickRef": "x".repeat(MAX_ID_LEN), "clickRef2": "" }));
        assert!(parse(&ok, LIMIT).is_ok());
        let (path, msg) = invalid_at(&params(
            serde_json::json!({ "clickRef": "x".repeat(MAX_ID_LEN + 1) }),
        ));
        assert_eq!(path, "attribution.params.clickRef");
        assert!(msg.contains("4096"), "{msg}");
        let (path, _) = invalid_at(&params(serde_json::json!({ "clickRef": "a\u{0}b" })));
        assert_eq!(path, "attribution.params.clickRef");
        for key in [
            String::new(),
            " ".into(),
            "a\nb".into(),
            "k".repeat(MAX_ID_LEN + 1),
        ] {
            let (path, msg) = invalid_at(&params(serde_json::json!({ key: "v" })));
            assert_eq!(path, "attribution.params");
            assert!(msg.starts_with("a key "), "{msg}");
        }
    }

    #[test]
    fn attribution_is_optional() {
        let e = parse(&with(&["attribution"], serde_json::Value::Null), LIMIT).unwrap();
        assert!(e.attribution.is_none());
    }
}
