//! Checking the macros of the destination's own, its status map and `status_by_type`, at load.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono_tz::Tz;

use super::{Derived, Form, MORE, MacroOptions, Macros, MoneyFormat, TimeFormat, check_value};
use crate::contract::event::EventType;
use crate::contract::partner::{KeyError, fields, key_err};

/// The fields holding a time: RFC 3339 in UTC unless a macro of the destination says.
const TIMES: &[&str] = &["occurred_at", "clicked_at", "now"];

/// The fields holding an amount: two decimals with a dot unless a macro says.
const AMOUNTS: &[&str] = &["amount", "shipping", "tax", "commission", "tracked_amount"];

/// The amounts of the order, all in its currency: what `less` takes one from another.
const ORDER_AMOUNTS: &[&str] = &["amount", "shipping", "tax", "commission"];

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
