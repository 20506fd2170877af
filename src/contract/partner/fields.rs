//! Event fields by name, for templates that take values from the event (HOQU extra parameters,
//! tracker postback URLs): `{order_id}`, `#amount#`, `{params.sub1}`...

use chrono::{DateTime, SecondsFormat, Utc};

use crate::contract::event::ConversionEvent;

/// Every name [`value`] knows; `params.*` stands for any `attribution.params` key.
pub const EVENT_FIELDS: &[&str] = &[
    "event_id",
    "type",
    "occurred_at",
    "network",
    "click_id",
    "clicked_at",
    "publisher_id",
    "tracker",
    "order_id",
    "amount",
    "currency",
    "order_status",
    "shipping",
    "tax",
    "commission",
    "customer_id",
    "customer_status",
    "action",
    "params.*",
];

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The value of the event field `name`, or `None` when the event does not have it. Money comes
/// with two fraction digits, times as RFC 3339 in UTC.
pub fn value(event: &ConversionEvent, name: &str) -> Option<String> {
    let a = event.attribution.as_ref();
    let o = event.order.as_ref();
    let c = event.customer.as_ref();
    if let Some(key) = name.strip_prefix("params.") {
        return a.and_then(|a| a.params.get(key)).cloned();
    }
    match name {
        "event_id" => Some(event.event_id.clone()),
        "type" => Some(event.kind.to_string()),
        "occurred_at" => Some(time(&event.occurred_at)),
        "network" => a.map(|a| a.network.clone()),
        "click_id" => a.map(|a| a.click_id.clone()),
        "clicked_at" => a.and_then(|a| a.clicked_at.as_ref()).map(time),
        "publisher_id" => a.and_then(|a| a.publisher_id.clone()),
        "tracker" => a.and_then(|a| a.tracker.clone()),
        "order_id" => o.and_then(|o| o.id.clone()),
        "amount" => o.and_then(|o| o.amount).map(|m| m.fixed2()),
        "currency" => o
            .and_then(|o| o.currency.as_ref())
            .map(|c| c.as_str().to_owned()),
        "order_status" => o.and_then(|o| o.status.clone()),
        "shipping" => o.and_then(|o| o.shipping).map(|m| m.fixed2()),
        "tax" => o.and_then(|o| o.tax).map(|m| m.fixed2()),
        "commission" => o.and_then(|o| o.commission).map(|m| m.fixed2()),
        "customer_id" => c.and_then(|c| c.id.clone()),
        "customer_status" => c.and_then(|c| c.status.clone()),
        "action" => event.action.clone(),
        _ => None,
    }
}
