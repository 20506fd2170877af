//! Tests of template destinations: each position's encoding, the missing rules, macros and
//! their formats, status maps, presets, and config errors that point at the macro; this file
//! holds what they share: loading a destination, the events, and rendering at a fixed time.

// cfg(test) on each, as on this module: each file reads as tests on its own.
#[cfg(test)]
mod config_errors;
#[cfg(test)]
mod encoding;
#[cfg(test)]
mod findings;
#[cfg(test)]
mod macros;
#[cfg(test)]
mod missing;
#[cfg(test)]
mod presets;
#[cfg(test)]
mod signing;

use chrono::{DateTime, Utc};
use serde_json::json;

// `super::preset` in the preset tests.
use super::preset;
use crate::config::Config;
use crate::contract::event::ConversionEvent;
use crate::contract::partner::{RenderError, Request};

fn load(destination: &str) -> Result<Config, String> {
    let text = format!(
        "[[destinations]]\nname = \"t\"\nkind = \"template\"\nmatch = {{ networks = [\"n\"] }}\n{destination}"
    );
    Config::from_toml(&text, &|v| {
        (v == "SIGNING_SECRET").then(|| "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned())
    })
    .map_err(|e| e.to_string())
}

fn event(v: serde_json::Value) -> ConversionEvent {
    crate::contract::event::parse(&serde_json::to_vec(&v).unwrap(), 1 << 20).unwrap()
}

fn order() -> ConversionEvent {
    event(json!({
        "event_id": "evt-1", "type": "order", "occurred_at": "2026-11-22T10:00:00Z",
        "attribution": { "network": "n", "click_id": "clk 1/2&x=y",
            "clicked_at": "2026-11-21T08:30:00Z", "params": { "sub1": "50% é\"x\"" } },
        "order": { "id": "10045", "amount": "89.99", "currency": "EUR", "status": "paid" },
        "customer": { "id": "cust-9" }
    }))
}

fn at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T10:00:05Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn render(destination: &str, e: &ConversionEvent) -> Result<Request, RenderError> {
    let c = load(destination).unwrap_or_else(|e| panic!("{e}"));
    c.destinations[0].partner.render_at("t", e, at())
}

fn ok(destination: &str, e: &ConversionEvent) -> Request {
    render(destination, e).unwrap_or_else(|e| panic!("{e}"))
}
