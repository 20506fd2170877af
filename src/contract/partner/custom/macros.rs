//! The macros a template destination can use: every field of the event contract by name, the
//! conversion it is sent as, its status through the destination's status map, the time of
//! the attempt, and macros of the destination's own that write a time or an amount in the
//! form the partner documents.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use crate::contract::event::{ConversionEvent, EventType, Money};
use crate::contract::partner::hoqu::map_status;
use crate::contract::partner::{KeyError, RenderError, fields, key_err};

/// Macros beyond the event's fields.
const MORE: &[&str] = &[
    "conversion",
    "status",
    "tracked_amount",
    "tracked_currency",
    "now",
];

/// The fields holding a time: RFC 3339 in UTC unless a macro of the destination says.
const TIMES: &[&str] = &["occurred_at", "clicked_at", "now"];

/// The fields holding an amount: two decimals with a dot unless a macro says.
const AMOUNTS: &[&str] = &["amount", "shipping", "tax", "commission", "tracked_amount"];

/// The amounts of the order, all in its currency: what `less` takes one from another.
const ORDER_AMOUNTS: &[&str] = &["amount", "shipping", "tax", "commission"];

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

fn is_base(name: &str) -> bool {
    fields::EVENT_FIELDS.contains(&name)
        || MORE.contains(&name)
        || name.strip_prefix("params.").is_some_and(|k| !k.is_empty())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
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
    pub fn compile(
        macros: &BTreeMap<String, MacroOptions>,
        status_map: &BTreeMap<String, String>,
        status_by_type: &BTreeMap<EventType, String>,
    ) -> Result<Macros, KeyError> {
        let mut derived = BTreeMap::new();
        for (name, m) in macros {
            let key = |k: &str| format!("template.macros.{name}{k}");
            if !valid_name(name) || name.starts_with("params.") {
                return Err(key_err(
                    key(""),
                    "a macro name is letters, digits, `_` and `.`, and not params.*",
                ));
            }
            if is_base(name) {
                return Err(key_err(
                    key(""),
                    format!("{name} is a built-in macro; give yours another name"),
                ));
            }
            if !is_base(&m.from) {
                return Err(key_err(
                    key(".from"),
                    format!(
                        "{:?} is not a field; fields: {}",
                        m.from,
                        Self::base_names().join(", ")
                    ),
                ));
            }
            let is_time = TIMES.contains(&m.from.as_str());
            let is_money = AMOUNTS.contains(&m.from.as_str());
            let form = match (m.time, m.money) {
                (Some(_), Some(_)) => {
                    return Err(key_err(key(""), "a macro is a time or an amount, not both"));
                }
                (Some(t), None) => {
                    if !is_time {
                        return Err(key_err(
                            key(".time"),
                            format!("{} is not a time (times: {})", m.from, TIMES.join(", ")),
                        ));
                    }
                    let zone = match &m.zone {
                        None => Tz::UTC,
                        Some(z) => Tz::from_str(z).map_err(|_| {
                            key_err(
                                key(".zone"),
                                format!("{z:?} is not a time zone name, like Europe/Paris or UTC"),
                            )
                        })?,
                    };
                    Form::Time(t, zone)
                }
                (None, Some(f)) => {
                    if !is_money {
                        return Err(key_err(
                            key(".money"),
                            format!(
                                "{} is not an amount (amounts: {})",
                                m.from,
                                AMOUNTS.join(", ")
                            ),
                        ));
                    }
                    let dp = match (f, m.decimals) {
                        (MoneyFormat::Fixed, Some(d)) if d <= 8 => d,
                        (MoneyFormat::Fixed, Some(d)) => {
                            return Err(key_err(key(".decimals"), format!("{d} is over 8")));
                        }
                        (MoneyFormat::Fixed, None) => 2,
                        (_, Some(_)) => {
                            return Err(key_err(key(".decimals"), "is for money = \"fixed\""));
                        }
                        (_, None) => 0,
                    };
                    Form::Money(f, dp)
                }
                // An amount less others is still an amount: two decimals, as the field's own.
                (None, None) if !m.less.is_empty() => Form::Money(MoneyFormat::Fixed, 2),
                (None, None) => Form::Text,
            };
            check_less(&key(".less"), &m.from, &m.less)?;
            for v in &m.omit {
                check_value(&key(".omit"), v)?;
            }
            if m.zone.is_some() && !matches!(form, Form::Time(..)) {
                return Err(key_err(key(".zone"), "is for a time (with `time = ...`)"));
            }
            let numeric = matches!(
                form,
                Form::Money(..) | Form::Time(TimeFormat::Unix | TimeFormat::UnixMs, _)
            );
            if m.number && !numeric {
                return Err(key_err(
                    key(".number"),
                    "only an amount or a Unix time can be written as a JSON number",
                ));
            }
            derived.insert(
                name.clone(),
                Derived {
                    from: m.from.clone(),
                    form,
                    case: m.case,
                    number: m.number,
                    less: m.less.clone(),
                    omit: m.omit.clone(),
                },
            );
        }
        let mut map = BTreeMap::new();
        for (k, v) in status_map {
            let key = format!("template.status_map.{k}");
            check_value(&key, v)?;
            let norm = k.trim().to_lowercase();
            if map.insert(norm, v.clone()).is_some() {
                return Err(key_err(
                    key,
                    "appears twice (statuses are matched without regard to case)",
                ));
            }
        }
        for (t, v) in status_by_type {
            check_value(&format!("template.status_by_type.{t}"), v)?;
        }
        Ok(Macros {
            derived,
            status_map: map,
            status_by_type: status_by_type.clone(),
        })
    }

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

    /// The value of `name` for an event, `None` when the event has none or it is one its
    /// macro omits. An error is a value that exists but cannot be written as the destination
    /// says (a status its map does not have, an amount in minor units without a currency).
    pub fn value(&self, name: &str, c: &Context<'_>) -> Result<Option<String>, RenderError> {
        let Some(d) = self.derived.get(name) else {
            return self.base(name, c);
        };
        let v = match &d.form {
            Form::Text => self.base(&d.from, c)?,
            Form::Time(f, zone) => time_of(&d.from, c).map(|t| write_time(t, *f, *zone)),
            Form::Money(f, dp) => match money_of(&d.from, c.event) {
                None => None,
                Some((m, currency)) => {
                    let m = take_off(name, &d.from, m, &d.less, c.event)?;
                    Some(write_money(name, m, currency, *f, *dp)?)
                }
            },
        };
        Ok(v.map(|v| match d.case {
            None => v,
            Some(Case::Lower) => v.to_lowercase(),
            Some(Case::Upper) => v.to_uppercase(),
        })
        .filter(|v| !d.omit.contains(v)))
    }

    fn base(&self, name: &str, c: &Context<'_>) -> Result<Option<String>, RenderError> {
        let o = c.event.order.as_ref();
        Ok(match name {
            "conversion" => Some(c.conversion.to_owned()),
            "status" => self.status(c.event)?,
            "now" => Some(c.now.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            "tracked_amount" => o.and_then(|o| o.tracked_amount).map(|m| m.fixed2()),
            "tracked_currency" => o
                .and_then(|o| o.tracked_currency.as_ref())
                .map(|c| c.as_str().to_owned()),
            _ => fields::value(c.event, name),
        })
    }

    /// The status sent: the merchant's `order.status` through the status map (the status
    /// itself first, then its HOQU class: hold, approved, rejected); without a map, its HOQU
    /// class. An event without a status takes its type's entry in `status_by_type`, if any.
    fn status(&self, event: &ConversionEvent) -> Result<Option<String>, RenderError> {
        let by_type = self.status_by_type.get(&event.kind).cloned();
        let merchant = event.order.as_ref().and_then(|o| o.status.as_deref());
        // An order and its updates carry the order's state; any other type (a lead, a
        // registration, a rebill...) is a conversion of its own kind, which its entry names
        // (a paid rebill is a rebill), unless its order was rejected (a declined rebill is no
        // revenue).
        let carries_state = matches!(event.kind, EventType::Order | EventType::OrderStatus);
        let rejected = merchant.and_then(map_status) == Some("rejected");
        if by_type.is_some() && !carries_state && !rejected {
            return Ok(by_type);
        }
        let Some(s) = merchant else {
            return Ok(by_type);
        };
        let norm = s.trim().to_lowercase();
        if let Some(v) = self.status_map.get(&norm) {
            return Ok(Some(v.clone()));
        }
        let class = map_status(s);
        let sent = match class {
            Some(c) if self.status_map.is_empty() => Some(c.to_owned()),
            Some(c) => self.status_map.get(c).cloned(),
            None => None,
        };
        sent.map(Some).ok_or_else(|| {
            let shown: String = s.chars().take(64).collect();
            let mut keys: Vec<&str> = self.status_map.keys().map(String::as_str).collect();
            if keys.is_empty() {
                keys = vec!["hold", "approved", "rejected"];
            }
            RenderError::Invalid(format!(
                "order.status {shown:?} is not in this destination's status map (it maps: {}; \
                 add it to template.status_map)",
                keys.join(", ")
            ))
        })
    }
}

fn time_of(field: &str, c: &Context<'_>) -> Option<DateTime<Utc>> {
    match field {
        "occurred_at" => Some(c.event.occurred_at),
        "clicked_at" => c.event.attribution.as_ref()?.clicked_at,
        "now" => Some(c.now),
        _ => None,
    }
}

fn write_time(t: DateTime<Utc>, f: TimeFormat, zone: Tz) -> String {
    let local = t.with_timezone(&zone);
    match f {
        TimeFormat::Rfc3339 if zone == Tz::UTC => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        TimeFormat::Rfc3339 => local.to_rfc3339_opts(SecondsFormat::AutoSi, false),
        TimeFormat::Datetime => local.format("%Y-%m-%d %H:%M:%S").to_string(),
        TimeFormat::Date => local.format("%Y-%m-%d").to_string(),
        TimeFormat::Unix => t.timestamp().to_string(),
        TimeFormat::UnixMs => t.timestamp_millis().to_string(),
    }
}

/// An amount and the currency it is in.
fn money_of<'e>(field: &str, e: &'e ConversionEvent) -> Option<(Money, Option<&'e str>)> {
    let o = e.order.as_ref()?;
    let currency = o.currency.as_ref().map(|c| c.as_str());
    match field {
        "amount" => o.amount.map(|m| (m, currency)),
        "shipping" => o.shipping.map(|m| (m, currency)),
        "tax" => o.tax.map(|m| (m, currency)),
        "commission" => o.commission.map(|m| (m, currency)),
        "tracked_amount" => o
            .tracked_amount
            .map(|m| (m, o.tracked_currency.as_ref().map(|c| c.as_str()))),
        _ => None,
    }
}

/// Checks a macro's `less`: other amounts of the order than its own, each once.
fn check_less(key: &str, from: &str, less: &[String]) -> Result<(), KeyError> {
    if less.is_empty() {
        return Ok(());
    }
    if !ORDER_AMOUNTS.contains(&from) {
        return Err(key_err(
            key,
            format!(
                "is for an amount of the order ({})",
                ORDER_AMOUNTS.join(", ")
            ),
        ));
    }
    for (i, l) in less.iter().enumerate() {
        if l == from || !ORDER_AMOUNTS.contains(&l.as_str()) {
            let others: Vec<&str> = ORDER_AMOUNTS
                .iter()
                .copied()
                .filter(|a| *a != from)
                .collect();
            return Err(key_err(
                key,
                format!(
                    "{l:?} is not an amount of the order other than {from} ({})",
                    others.join(", ")
                ),
            ));
        }
        if less[..i].contains(l) {
            return Err(key_err(key, format!("names {l} twice")));
        }
    }
    Ok(())
}

/// `m`, the order's `from`, less the order's amounts named in `less` (one it lacks counts
/// 0). Amounts are never negative: more taken off than there is is an error naming them.
fn take_off(
    name: &str,
    from: &str,
    m: Money,
    less: &[String],
    e: &ConversionEvent,
) -> Result<Money, RenderError> {
    let parts: Vec<(&str, Money)> = less
        .iter()
        .filter_map(|l| money_of(l, e).map(|(p, _)| (l.as_str(), p)))
        .collect();
    let mut left = m;
    for (_, p) in &parts {
        left = left.checked_sub(*p).ok_or_else(|| {
            let named: Vec<String> = parts
                .iter()
                .map(|(l, p)| format!("order.{l} ({p})"))
                .collect();
            let verb = if parts.len() == 1 { "is" } else { "come to" };
            RenderError::Invalid(format!(
                "macro {name}: {} {verb} more than order.{from} ({m})",
                named.join(" and ")
            ))
        })?;
    }
    Ok(left)
}

fn write_money(
    name: &str,
    m: Money,
    currency: Option<&str>,
    f: MoneyFormat,
    dp: u32,
) -> Result<String, RenderError> {
    let out_of_range =
        || RenderError::Invalid(format!("macro {name}: the amount {m} is too large"));
    match f {
        MoneyFormat::Fixed => m.fixed(dp).ok_or_else(out_of_range),
        MoneyFormat::Decimal => Ok(m.plain()),
        MoneyFormat::Minor => {
            let c = currency.ok_or_else(|| {
                RenderError::Invalid(format!(
                    "macro {name} writes minor units, which depend on the currency, and the event has none"
                ))
            })?;
            m.minor(minor_digits(c)).ok_or_else(out_of_range)
        }
    }
}

/// The fraction digits of a currency's minor unit (ISO 4217): 2 but for these.
pub fn minor_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        _ => 2,
    }
}
