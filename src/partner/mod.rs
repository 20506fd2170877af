//! Partner formats: each destination kind turns an event into the HTTP request its partner
//! expects. Rendering is pure (no I/O), so every format is pinned by unit tests.

pub mod callback;
pub mod fields;
pub mod hoqu;
pub mod powerspace;
pub mod template;
pub mod tracker;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::{DestinationConfig, Format, Kind};
use crate::event::ConversionEvent;

/// Shown in place of a secret.
pub const REDACTED: &str = "REDACTED";

/// An HTTP request ready to send, or to show (`render`, dead letters).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub destination: String,
    pub method: Method,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    /// Values that must not be shown (API keys): see [`Request::redacted`].
    #[serde(skip)]
    pub secrets: Vec<String>,
}

impl Request {
    /// A copy safe to print, log or store: every secret, raw or percent-encoded, replaced by
    /// `REDACTED`.
    pub fn redacted(&self) -> Request {
        let hide = |s: &str| {
            let mut out = s.to_owned();
            for secret in self.secrets.iter().filter(|s| !s.is_empty()) {
                out = out
                    .replace(&encode_component(secret), REDACTED)
                    .replace(secret.as_str(), REDACTED);
            }
            out
        };
        Request {
            destination: self.destination.clone(),
            method: self.method,
            url: hide(&self.url),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), hide(v)))
                .collect(),
            body: self.body.as_deref().map(hide),
            secrets: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Post,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Post => "POST",
        })
    }
}

/// The method a destination uses, where the partner offers both (HOQU, publisher callbacks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpMethod {
    #[default]
    Get,
    Post,
}

/// Why a destination cannot build a request from an event. Permanent: retrying the same event
/// gives the same answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("{kind} has no request for events of type {event_type}")]
    UnsupportedType { kind: Kind, event_type: String },
    #[error("{field} is required by {kind}")]
    Missing { kind: Kind, field: &'static str },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    MissingValue(#[from] template::MissingValue),
}

/// Renders the request `dest` sends for `event`.
pub fn render(dest: &DestinationConfig, event: &ConversionEvent) -> Result<Request, RenderError> {
    let conversion = dest
        .routes
        .get(&event.kind)
        .ok_or_else(|| RenderError::UnsupportedType {
            kind: dest.kind,
            event_type: event.kind.to_string(),
        })?;
    let request = |method, url, headers, body, secrets| Request {
        destination: dest.name.clone(),
        method,
        url,
        headers,
        body,
        secrets,
    };
    match &dest.format {
        Format::Powerspace(o) => {
            let url = powerspace::url(dest, o, event, conversion)?;
            Ok(request(Method::Get, url, BTreeMap::new(), None, Vec::new()))
        }
        Format::Hoqu(h) => h.render(event, conversion, dest.missing).map(|r| {
            request(
                r.method,
                r.url,
                r.headers,
                r.body,
                vec![h.api_key().to_owned()],
            )
        }),
        Format::Callback(c) => c
            .render(event, dest.missing)
            .map(|r| request(r.method, r.url, r.headers, r.body, Vec::new())),
        Format::Tracker(t) => t
            .render(event, conversion, dest.missing)
            .map(|url| request(Method::Get, url, BTreeMap::new(), None, Vec::new())),
    }
}

/// A status a request carries for a conversion, for status order: a status is never sent
/// after a later one for the same conversion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusOf {
    /// The conversion, per destination: the store key.
    pub key: String,
    /// hold 1, approved 2, rejected 3: a status of a lower or equal rank than the one sent is
    /// superseded (an approved conversion can still be rejected on a refund, never put back
    /// on hold).
    pub rank: u8,
    pub name: &'static str,
    /// An update (rather than the conversion itself), which waits for its conversion.
    pub update: bool,
    /// How long an update waits for its conversion before it is sent anyway ("a final
    /// status may be sent directly").
    pub wait_for_conversion: chrono::Duration,
}

/// The status `event` carries to `dest`, if the partner has statuses (HOQU).
pub fn status_of(dest: &DestinationConfig, event: &ConversionEvent) -> Option<StatusOf> {
    let Format::Hoqu(h) = &dest.format else {
        return None;
    };
    let conversion = dest.routes.get(&event.kind)?;
    let (name, update) = h.status_for(event, conversion)?;
    let order = event.order.as_ref()?.id.as_deref()?;
    let rank = match name {
        "hold" => 1,
        "approved" => 2,
        _ => 3,
    };
    Some(StatusOf {
        key: format!("{}\u{1f}order\u{1f}{order}", dest.name),
        rank,
        name,
        update,
        wait_for_conversion: i64::try_from(h.status_wait_secs())
            .ok()
            .and_then(chrono::Duration::try_seconds)
            .unwrap_or(chrono::Duration::MAX),
    })
}

/// What a kind's renderer produces; [`render`] adds the destination and secrets.
pub(crate) struct Rendered {
    pub method: Method,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
}

/// A required event field, or a render error naming it.
pub(crate) fn required<T>(kind: Kind, field: &'static str, v: Option<T>) -> Result<T, RenderError> {
    v.ok_or(RenderError::Missing { kind, field })
}

/// Characters left as they are in a query value or path segment: RFC 3986 "unreserved".
/// Everything else, including `&`, `=`, `#`, `%`, `+` and space, is percent-encoded, so a value
/// can never end its parameter or start another.
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a value (UTF-8) for a URL query or path. Exactly once: a value that looks
/// encoded already (`%41`) is data and is encoded again (`%2541`).
pub fn encode_component(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, COMPONENT).to_string()
}

/// Joins a base URL (no trailing slash needed) and a path that starts with `/`.
pub(crate) fn join(base: &str, path_and_query: &str) -> String {
    format!("{}{}", base.trim_end_matches('/'), path_and_query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_reserved_characters_once() {
        assert_eq!(encode_component("abc123xyz789"), "abc123xyz789");
        assert_eq!(encode_component("a b&c=d#e"), "a%20b%26c%3Dd%23e");
        assert_eq!(encode_component("%41"), "%2541");
        assert_eq!(encode_component("é"), "%C3%A9");
        assert_eq!(encode_component("a+b/c?"), "a%2Bb%2Fc%3F");
        assert_eq!(encode_component("!!!x!!!"), "%21%21%21x%21%21%21");
    }
}
