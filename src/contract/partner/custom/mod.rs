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

mod macros;
pub mod preset;
pub mod settings;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Deserialize;

pub use macros::{Case, MacroOptions, MoneyFormat, TimeFormat, minor_digits};
use macros::{Context, Macros};

use super::template::{Missing, MissingValue, QueryPair, Syntax, Template, TemplateError};
use super::{KeyError, Method, RenderError, Rendered, key_err, sign};
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
    /// `brace` ({name}), `hash` (#name#), `bang` (!!!name!!!) or `bracket` ([name]).
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

/// Headers a template may not set: the HTTP client writes them from the request.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "trailer",
];

fn parse(
    key: &str,
    text: &str,
    syntax: Syntax,
    known: &[&str],
    used: &mut Vec<String>,
) -> Result<Template, KeyError> {
    let t = Template::parse(text, syntax, known)
        .map_err(|e: TemplateError| key_err(key, e.pointed(text)))?;
    for p in t.placeholders() {
        if !used.iter().any(|u| u == p) {
            used.push(p.to_owned());
        }
    }
    Ok(t)
}

pub fn compile(o: Option<&Options>) -> Result<Compiled, KeyError> {
    let o = o.ok_or_else(|| {
        key_err(
            "template",
            "required for kind template (a preset, or syntax and url)",
        )
    })?;
    let resolved = preset::resolve(o)?;
    let o = &resolved.options;
    let syntax = o.syntax.ok_or_else(|| {
        key_err(
            "template.syntax",
            "required: brace ({name}), hash (#name#), bang (!!!name!!!) or bracket ([name]), as the partner documents its macros",
        )
    })?;
    let method = o.method.unwrap_or(Method::Get);
    let macros = Macros::compile(&o.macros, &o.status_map, &o.status_by_type)?;
    let known = macros.known();
    let mut used = Vec::new();

    let text = o
        .url
        .as_deref()
        .ok_or_else(|| key_err("template.url", "required: the partner's postback URL"))?;
    let url = parse("template.url", text, syntax, &known, &mut used)?
        .as_sent()
        .map_err(|e| key_err("template.url", e))?;
    let origin = url.fixed_origin().map_err(|e| key_err("template.url", e))?;
    if !origin.username().is_empty() || origin.password().is_some() {
        return Err(key_err(
            "template.url",
            "holds a user or password, which the HTTP client would send as an Authorization header, not in the URL shown; write the header in template.headers",
        ));
    }
    let (base, query) = url.split_query();

    let mut headers = Vec::new();
    let signed: Vec<String> = o.signature.iter().flat_map(sign::writes).collect();
    for (name, value) in &o.headers {
        let key = format!("template.headers.{name}");
        let lower = name.to_ascii_lowercase();
        if o.headers
            .keys()
            .filter(|h| h.to_ascii_lowercase() == lower)
            .count()
            > 1
        {
            return Err(key_err(
                &key,
                "appears twice (header names are matched without regard to case)",
            ));
        }
        if signed.contains(&lower) {
            return Err(key_err(&key, "is written by the signature"));
        }
        reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| key_err(&key, format!("{name:?} is not an HTTP header name")))?;
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(key_err(
                &key,
                "is written by the HTTP client from the request; a template may not set it",
            ));
        }
        headers.push((name.clone(), parse(&key, value, syntax, &known, &mut used)?));
    }
    let has_header = |headers: &[(String, Template)], n: &str| {
        headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(n))
    };

    let body = match &o.body {
        None => None,
        Some(b) => {
            if method == Method::Get {
                return Err(key_err(
                    "template.body",
                    "a GET request has no body: set method = \"POST\" or \"PUT\"",
                ));
            }
            let given = [b.json.is_some(), b.form.is_some(), b.text.is_some()];
            if given.iter().filter(|g| **g).count() != 1 {
                return Err(key_err(
                    "template.body",
                    "give exactly one of json, form or text",
                ));
            }
            if b.content_type.is_some() && b.text.is_none() {
                return Err(key_err(
                    "template.body.content_type",
                    "is for a text body; json and form bodies have their own",
                ));
            }
            let (body, content_type) = if let Some(j) = &b.json {
                let body = Body::Json(json(
                    j,
                    "template.body.json",
                    syntax,
                    &known,
                    &macros,
                    &mut used,
                )?);
                (body, "application/json".to_owned())
            } else if let Some(f) = &b.form {
                let mut fields = Vec::new();
                for (k, v) in f {
                    let key = format!("template.body.form.{k}");
                    let serde_json::Value::String(v) = v else {
                        return Err(key_err(key, "a form field's value is a string"));
                    };
                    fields.push((k.clone(), parse(&key, v, syntax, &known, &mut used)?));
                }
                (
                    Body::Form(fields),
                    "application/x-www-form-urlencoded".to_owned(),
                )
            } else {
                let text = b.text.as_deref().unwrap_or_default();
                let t = parse("template.body.text", text, syntax, &known, &mut used)?;
                let ct = b
                    .content_type
                    .clone()
                    .unwrap_or_else(|| "text/plain; charset=utf-8".to_owned());
                reqwest::header::HeaderValue::from_str(&ct).map_err(|_| {
                    key_err(
                        "template.body.content_type",
                        "is not valid in an HTTP header",
                    )
                })?;
                // A text body holds each value as it is: sent as JSON or a form, a value
                // could add to its structure. The type may come from either key.
                if t.placeholders().next().is_some() {
                    let header = o
                        .headers
                        .iter()
                        .find(|(h, _)| h.eq_ignore_ascii_case("content-type"))
                        .map(|(h, v)| (format!("template.headers.{h}"), v.as_str()));
                    let given = b
                        .content_type
                        .as_deref()
                        .map(|ct| ("template.body.content_type".to_owned(), ct));
                    for (key, ct) in given.into_iter().chain(header) {
                        if let Some(refusal) = structured_text(ct) {
                            return Err(key_err(key, refusal));
                        }
                    }
                }
                (Body::Text(t), ct)
            };
            if !has_header(&headers, "content-type") {
                headers.push((
                    "Content-Type".to_owned(),
                    Template::parse(&content_type, Syntax::Bang, &[])
                        .map_err(|e| key_err("template.body", e.to_string()))?,
                ));
            }
            Some(body)
        }
    };
    Ok(Compiled {
        custom: Custom {
            syntax,
            method,
            base,
            query,
            headers,
            body,
            status_order: o.status_order.unwrap_or(true) && macros.sends_status(&used),
            macros,
            used,
        },
        routes: resolved.conversions,
        missing: resolved.missing,
        signature: o.signature.clone(),
    })
}

/// Why a text body with macros cannot be sent as `content_type`, when it is JSON
/// (`application/json`, any `+json` type) or a form: its values go in as they are, so a
/// value could add to the structure. Media types are matched without regard to case and
/// without their parameters (`; charset=utf-8`).
fn structured_text(content_type: &str) -> Option<String> {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let json = media.ends_with("/json") || media.ends_with("+json") || media.ends_with("/x-json");
    let (adds, instead) = if json {
        (
            "close its string and add members (`\",\"payout\":\"9999`)",
            "body.json",
        )
    } else if media == "application/x-www-form-urlencoded" {
        ("add fields (`&payout=9999`)", "body.form")
    } else {
        return None;
    };
    Some(format!(
        "{content_type:?} with macros in a text body: a text body holds each value as it is, so a value (a click id comes from a landing URL, so from anyone) could {adds}; write the body as {instead}, which encodes each value"
    ))
}

fn json(
    v: &serde_json::Value,
    key: &str,
    syntax: Syntax,
    known: &[&str],
    macros: &Macros,
    used: &mut Vec<String>,
) -> Result<Json, KeyError> {
    use serde_json::Value;
    Ok(match v {
        Value::String(s) => {
            let t = parse(key, s, syntax, known, used)?;
            match t.only_placeholder() {
                Some(name) if macros.is_number(name) => Json::Number(name.to_owned()),
                _ => Json::Text(t),
            }
        }
        Value::Array(items) => Json::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| json(v, &format!("{key}[{i}]"), syntax, known, macros, used))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Json::Object(
            m.iter()
                .map(|(k, v)| {
                    json(v, &format!("{key}.{k}"), syntax, known, macros, used)
                        .map(|j| (k.clone(), j))
                })
                .collect::<Result<_, _>>()?,
        ),
        other => Json::Value(other.clone()),
    })
}

pub use crate::contract::encode::header_text;

/// Fills one template with its values, each written by the encoder given.
type Fill<'a> = dyn Fn(&Template, &dyn Fn(&str) -> String) -> Result<String, Unfilled> + 'a;

/// A part of the request that could not be filled.
enum Unfilled {
    /// A macro without a value, under `skip`: leave the field out.
    Skip,
    Error(RenderError),
}

impl From<MissingValue> for Unfilled {
    fn from(e: MissingValue) -> Self {
        Unfilled::Error(e.into())
    }
}

impl Custom {
    /// The HOQU class of the status an order or order-status event carries (hold,
    /// approved, rejected), and whether it is an update, when this destination keeps
    /// statuses in order. Other event types (a rebill is a new conversion) have none.
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

    pub(crate) fn render(
        &self,
        event: &ConversionEvent,
        conversion: &str,
        missing: Missing,
        now: DateTime<Utc>,
    ) -> Result<Rendered, RenderError> {
        let context = Context {
            event,
            conversion,
            now,
        };
        let mut values: HashMap<&str, Option<String>> = HashMap::new();
        for name in &self.used {
            values.insert(name, self.macros.value(name, &context)?);
        }
        let value = |n: &str| values.get(n).cloned().flatten();
        // Fills one field: under `skip`, a missing value leaves the field out.
        let fill = |t: &Template, encode: &dyn Fn(&str) -> String| -> Result<String, Unfilled> {
            match t.render_with(&value, missing, encode) {
                Ok(s) => Ok(s),
                Err(_) if missing == Missing::Skip => Err(Unfilled::Skip),
                Err(e) => Err(e.into()),
            }
        };
        let keep = |r: Result<String, Unfilled>| -> Result<Option<String>, RenderError> {
            match r {
                Ok(s) => Ok(Some(s)),
                Err(Unfilled::Skip) => Ok(None),
                Err(Unfilled::Error(e)) => Err(e),
            }
        };
        // The path cannot leave a segment out: there `skip` fails the delivery.
        let path_missing = match missing {
            Missing::Skip => Missing::Fail,
            m => m,
        };
        let mut url = self.base.render_url(&value, path_missing)?;
        if let Some(pairs) = &self.query {
            let mut sent = Vec::new();
            for p in pairs {
                let encode = &|v: &str| super::encode_component(v);
                let pair = fill(&p.key, encode).and_then(|k| match &p.value {
                    None => Ok(k),
                    Some(v) => fill(v, encode).map(|v| format!("{k}={v}")),
                });
                if let Some(pair) = keep(pair)? {
                    sent.push(pair);
                }
            }
            // Every parameter left out: no query at all.
            if !sent.is_empty() {
                url.push('?');
                url.push_str(&sent.join("&"));
            }
        }
        let mut headers = BTreeMap::new();
        for (name, t) in &self.headers {
            if let Some(v) = keep(fill(t, &header_text))? {
                headers.insert(name.clone(), v);
            }
        }
        let raw = &|v: &str| v.to_owned();
        let body = match &self.body {
            None => None,
            // A text body cannot leave a piece out: there `skip` fails the delivery.
            Some(Body::Text(t)) => Some(t.render_with(&value, path_missing, raw)?),
            Some(Body::Form(fields)) => {
                let mut ser = url::form_urlencoded::Serializer::new(String::new());
                for (k, t) in fields {
                    if let Some(v) = keep(fill(t, raw))? {
                        ser.append_pair(k, &v);
                    }
                }
                Some(ser.finish())
            }
            Some(Body::Json(j)) => {
                let v = match self.json(j, missing, &fill, &value)? {
                    Some(v) => v,
                    None => return Err(self.unfilled(j, &value)),
                };
                Some(serde_json::to_string(&v).expect("a JSON value serializes"))
            }
        };
        Ok(Rendered {
            method: self.method,
            url,
            headers,
            body,
        })
    }

    /// The refusal of a JSON part that `skip` would leave out where nothing can be: its
    /// first macro without a value.
    fn unfilled(&self, j: &Json, value: &dyn Fn(&str) -> Option<String>) -> RenderError {
        fn first(j: &Json, value: &dyn Fn(&str) -> Option<String>) -> Option<String> {
            match j {
                Json::Text(t) => t
                    .placeholders()
                    .find(|p| value(p).is_none())
                    .map(str::to_owned),
                Json::Number(n) => Some(n.clone()),
                Json::Value(_) => None,
                Json::Array(items) => items.iter().find_map(|i| first(i, value)),
                Json::Object(fields) => fields.iter().find_map(|(_, f)| first(f, value)),
            }
        }
        let name = first(j, value).unwrap_or_default();
        MissingValue(self.syntax.show(&name)).into()
    }

    /// A JSON body part, `None` when it is left out (`skip`). A number macro without a
    /// value is left out, written `null` (`empty`) or refused.
    fn json(
        &self,
        j: &Json,
        missing: Missing,
        fill: &Fill<'_>,
        value: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<serde_json::Value>, RenderError> {
        use serde_json::Value;
        Ok(match j {
            Json::Text(t) => match fill(t, &|v: &str| v.to_owned()) {
                Ok(s) => Some(Value::String(s)),
                Err(Unfilled::Skip) => None,
                Err(Unfilled::Error(e)) => return Err(e),
            },
            Json::Number(name) => match value(name) {
                Some(v) => Some(Value::Number(serde_json::from_str(&v).map_err(|_| {
                    RenderError::Invalid(format!("macro {name}: {v:?} is not a number"))
                })?)),
                None => match missing {
                    Missing::Skip => None,
                    Missing::Empty => Some(Value::Null),
                    Missing::Fail => {
                        return Err(MissingValue(self.syntax.show(name)).into());
                    }
                },
            },
            Json::Value(v) => Some(v.clone()),
            // An element of an array is a position, not a field: leaving it out would move
            // the others, so there `skip` fails the delivery.
            Json::Array(items) => {
                let mut out = Vec::new();
                for i in items {
                    match self.json(i, missing, fill, value)? {
                        Some(v) => out.push(v),
                        None => return Err(self.unfilled(i, value)),
                    }
                }
                Some(Value::Array(out))
            }
            Json::Object(fields) => {
                let mut out = serde_json::Map::new();
                for (k, f) in fields {
                    if let Some(v) = self.json(f, missing, fill, value)? {
                        out.insert(k.clone(), v);
                    }
                }
                Some(Value::Object(out))
            }
        })
    }
}

#[cfg(test)]
mod tests;
