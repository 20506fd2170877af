//! The macros a template destination can use: every field of the event contract by name, the
//! conversion it is sent as, its status through the destination's status map, the time of
//! the attempt, and macros of the destination's own that write a time or an amount in the
//! form the partner documents.

mod check;
mod value;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

pub use value::minor_digits;

use crate::contract::event::{ConversionEvent, EventType};
use crate::contract::partner::{KeyError, fields, key_err};

/// Macros beyond the event's fields.
const MORE: &[&str] = &[
    "conversion",
    "status",
    "tracked_amount",
    "tracked_currency",
    "now",
];

/// Longest text a status map or a conversion may send.
const MAX_VALUE_LEN: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// `2026-11-22T10:00:00Z`, or with the zone's offset.
    Rfc3339,
    /// `2026-11-22 10:00:00`.
    Datetime,
    /// `2026-11-22`.
    Date,
    /// Seconds since 1970-01-01 UTC.
    Unix,
    /// Milliseconds since 1970-01-01 UTC.
    UnixMs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MoneyFormat {
    /// `decimals` fraction digits (2 unless given), rounded half-up: `89.99`.
    Fixed,
    /// The exact amount with a dot, no trailing zeros: `125.5`.
    Decimal,
    /// Minor units of the currency (cents; yen for JPY), rounded half-up: `8999`.
    Minor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Case {
    Lower,
    Upper,
}

/// A macro of the destination's own, from `[template.macros]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MacroOptions {
    /// The field it writes: a time, an amount, or any other macro.
    pub from: String,
    #[serde(default)]
    pub time: Option<TimeFormat>,
    /// For a time: an IANA zone, like `Europe/Paris` (UTC unless given).
    #[serde(default)]
    pub zone: Option<String>,
    #[serde(default)]
    pub money: Option<MoneyFormat>,
    /// For `money = "fixed"`: fraction digits (0 to 8).
    #[serde(default)]
    pub decimals: Option<u32>,
    #[serde(default)]
    pub case: Option<Case>,
    /// In a JSON body, a string that is this macro alone is written as a JSON number (for
    /// amounts and Unix times).
    #[serde(default)]
    pub number: bool,
    /// For an amount of the order: other amounts of the order taken off it (`shipping`,
    /// `tax`), one the order lacks counting 0. Two decimals unless `money` says.
    #[serde(default)]
    pub less: Vec<String>,
    /// Values, as written, for which the macro has none (so that the destination's `missing`
    /// decides): `omit = ["base"]` on a conversion leaves out the parameter for base ones.
    #[serde(default)]
    pub omit: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
enum Form {
    Text,
    Time(TimeFormat, Tz),
    Money(MoneyFormat, u32),
}

#[derive(Clone, Debug, PartialEq)]
struct Derived {
    from: String,
    form: Form,
    case: Option<Case>,
    number: bool,
    less: Vec<String>,
    omit: Vec<String>,
}

/// A destination's macros, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Macros {
    derived: BTreeMap<String, Derived>,
    /// Lower-case merchant status, or `hold` / `approved` / `rejected` -> what is sent.
    status_map: BTreeMap<String, String>,
    status_by_type: BTreeMap<EventType, String>,
}

/// What a macro's value is taken from.
pub struct Context<'a> {
    pub event: &'a ConversionEvent,
    pub conversion: &'a str,
    pub now: DateTime<Utc>,
}

/// Checks a sent value written in the config (a status map's, a conversion's).
pub(super) fn check_value(key: &str, v: &str) -> Result<(), KeyError> {
    if v.chars().count() > MAX_VALUE_LEN {
        return Err(key_err(
            key,
            format!("longer than {MAX_VALUE_LEN} characters"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(key_err(key, "holds a control character"));
    }
    Ok(())
}

impl Macros {
    fn base_names() -> Vec<&'static str> {
        fields::EVENT_FIELDS
            .iter()
            .chain(MORE)
            .copied()
            .collect::<Vec<_>>()
    }

    /// Every name a template of this destination may use (`params.*` for any param).
    pub fn known(&self) -> Vec<&str> {
        let mut k = Self::base_names();
        k.extend(self.derived.keys().map(String::as_str));
        k
    }

    /// Whether any of `used` is the status, or a macro of the destination's own from it.
    pub fn sends_status(&self, used: &[String]) -> bool {
        used.iter()
            .any(|u| u == "status" || self.derived.get(u).is_some_and(|d| d.from == "status"))
    }

    /// Whether any of `used` is the time of the try (`now`), or a macro of the destination's
    /// own from it: a request that carries it is rendered again right before each try.
    pub fn sends_now(&self, used: &[String]) -> bool {
        used.iter()
            .any(|u| u == "now" || self.derived.get(u).is_some_and(|d| d.from == "now"))
    }

    /// The first of `used` that has no value for some values on purpose (`omit`).
    pub fn omitting<'u>(&self, used: &'u [String]) -> Option<&'u str> {
        used.iter()
            .find(|u| self.derived.get(*u).is_some_and(|d| !d.omit.is_empty()))
            .map(String::as_str)
    }

    /// Whether `name` is written as a JSON number when it is a JSON string alone.
    pub fn is_number(&self, name: &str) -> bool {
        self.derived.get(name).is_some_and(|d| d.number)
    }
}
