//! Template destinations: any partner with a server-to-server postback, by configuration. A
//! method, a URL template, headers and a body (JSON, form or text) whose values are templates,
//! in the macro syntax the partner documents; or a preset (`presets/*.toml`) that holds all of
//! that for a well-known network.
//!
//! Every value is encoded once, for where it lands:
//! - URL path: percent-encoded as a segment (`/` included), so it never adds a segment; a
//!   value making a `.` or `..` segment is refused, naming its macro;
//! - URL query: percent-encoded, so it never ends its parameter or adds another;
//! - header: kept as it is but for `%` and what a header cannot hold (control characters,
//!   non-ASCII), which are percent-encoded;
//! - form field: form-encoded; JSON: a JSON string (or a number, for a macro that says so);
//!   text body: as it is (the partner's format is the template's), so a text body with
//!   macros may not be sent as JSON or a form, whose values `json` and `form` encode.
//!
//! The scheme, host and port are template text: a macro may appear in the path, the query,
//! headers and the body only. A macro the destination does not know is a config error at
//! load, pointing at it. A macro without a value follows the destination's `missing` rule:
//! `skip` leaves out its query parameter, header or body field (in the path it refuses the
//! delivery), `empty` sends it empty, `fail` refuses the delivery.

mod compile;
mod macros;
pub mod preset;
mod render;
pub mod settings;

use std::collections::BTreeMap;

use serde::Deserialize;

pub use compile::compile;
use macros::Macros;
pub use macros::{Case, MacroOptions, MoneyFormat, TimeFormat, minor_digits};

use super::template::{Missing, QueryPair, Syntax, Template};
use super::{KeyError, Method, key_err, sign};
use crate::contract::event::{ConversionEvent, EventType};

/// A `[destinations.template]` table.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// A preset from `presets/` whose settings the rest of this table adds to or changes.
    #[serde(default)]
    pub preset: Option<String>,
    /// Values the preset asks for (its tracking domain, say), each checked for the kind the
    /// preset gives it and put in its text at load.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// `brace` ({name}), `hash` (#name#), `bang` (!!!name!!!) or `bracket` (\[name\]).
    #[serde(default)]
    pub syntax: Option<Syntax>,
    /// GET (default), POST or PUT.
    #[serde(default)]
    pub method: Option<Method>,
    #[serde(default)]
    pub url: Option<String>,
    /// Header name -> value template.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<BodyOptions>,
    /// Macros of the destination's own: a time or an amount in the partner's form.
    #[serde(default)]
    pub macros: BTreeMap<String, MacroOptions>,
    /// Merchant status (or hold, approved, rejected) -> the partner's status, for `status`.
    #[serde(default)]
    pub status_map: BTreeMap<String, String>,
    /// Event type -> the partner's status, for an event without `order.status`.
    #[serde(default)]
    pub status_by_type: BTreeMap<EventType, String>,
    #[serde(default)]
    pub signature: Option<sign::Options>,
    /// Keep statuses in order (never send a status after a later one for the same
    /// order): on unless set to false; it applies when the templates send `status`.
    #[serde(default)]
    pub status_order: Option<bool>,
}

impl Options {
    /// Every text of the table that is read as a template.
    pub fn texts(&self) -> Vec<&str> {
        fn json<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
            match v {
                serde_json::Value::String(s) => out.push(s),
                serde_json::Value::Array(items) => items.iter().for_each(|i| json(i, out)),
                serde_json::Value::Object(m) => m.values().for_each(|i| json(i, out)),
                _ => {}
            }
        }
        let mut out: Vec<&str> = self.url.iter().map(String::as_str).collect();
        out.extend(self.headers.values().map(String::as_str));
        if let Some(b) = &self.body {
            out.extend(b.text.as_deref());
            if let Some(j) = &b.json {
                json(j, &mut out);
            }
            for v in b.form.iter().flat_map(|f| f.values()) {
                json(v, &mut out);
            }
        }
        out
    }
}

/// A template body: exactly one of `json`, `form` or `text`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BodyOptions {
    /// Any JSON value; its strings are templates.
    #[serde(default)]
    pub json: Option<serde_json::Value>,
    /// Field -> value template, sent in the order written.
    #[serde(default)]
    pub form: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub text: Option<String>,
    /// For `text`: the Content-Type (`text/plain; charset=utf-8` unless given).
    #[serde(default)]
    pub content_type: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
enum Json {
    Text(Template),
    /// A macro alone, written as a JSON number.
    Number(String),
    Value(serde_json::Value),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

#[derive(Clone, Debug, PartialEq)]
enum Body {
    Json(Json),
    Form(Vec<(String, Template)>),
    Text(Template),
}

/// A checked template destination.
#[derive(Clone, Debug, PartialEq)]
pub struct Custom {
    syntax: Syntax,
    method: Method,
    /// The URL up to its query.
    base: Template,
    query: Option<Vec<QueryPair>>,
    headers: Vec<(String, Template)>,
    body: Option<Body>,
    macros: Macros,
    /// Every macro the templates use.
    used: Vec<String>,
    /// Statuses are kept in order.
    status_order: bool,
}

impl Custom {
    /// The destination's macro syntax.
    pub fn syntax(&self) -> Syntax {
        self.syntax
    }

    /// Whether its requests have a body.
    pub fn has_body(&self) -> bool {
        self.body.is_some()
    }

    /// A macro its templates use that has no value for some values on purpose (`omit`).
    pub fn omitting(&self) -> Option<&str> {
        self.macros.omitting(&self.used)
    }

    /// Whether its requests carry the time of the try (the `now` macro, or one of its own
    /// from it).
    pub fn sends_now(&self) -> bool {
        self.macros.sends_now(&self.used)
    }

    /// The HOQU class of the status an order or order-status event carries (hold,
    /// approved, rejected), and whether it is an update, when this destination keeps
    /// statuses in order. Other event types (a rebill is a new conversion) have none.
    pub fn status_class(&self, event: &ConversionEvent) -> Option<(&'static str, bool)> {
        if !self.status_order {
            return None;
        }
        let update = match event.kind {
            EventType::Order => false,
            EventType::OrderStatus => true,
            _ => return None,
        };
        let status = event.order.as_ref()?.status.as_deref()?;
        Some((super::hoqu::map_status(status)?, update))
    }
}

/// What compiling a template table gives: the destination, its default routes (a preset's),
/// and its signature.
pub struct Compiled {
    pub custom: Custom,
    pub routes: Option<BTreeMap<EventType, String>>,
    /// The preset's `missing` rule, for a destination that sets none.
    pub missing: Option<Missing>,
    pub signature: Option<sign::Options>,
}

/// Checks what a `conversions` entry of a template destination sends: any short text.
pub fn check_conversion(key: &str, v: &str) -> Result<(), KeyError> {
    if v.is_empty() {
        return Err(key_err(key, "is empty"));
    }
    macros::check_value(key, v)
}

pub use crate::contract::encode::header_text;

#[cfg(test)]
mod tests;
