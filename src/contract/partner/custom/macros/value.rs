//! A macro's value for an event: a field, the conversion, the status, the time, or an amount.

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;

use super::{Case, Context, Form, Macros, MoneyFormat, TimeFormat};
use crate::contract::event::{ConversionEvent, EventType, Money};
use crate::contract::partner::hoqu::map_status;
use crate::contract::partner::{RenderError, fields};

impl Macros {
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
