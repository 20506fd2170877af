//! Partner formats: each destination kind turns an event into the HTTP request its partner
//! expects. Rendering is pure (no I/O), so every format is pinned by unit tests.

pub mod powerspace;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::{DestinationConfig, Kind};
use crate::event::ConversionEvent;

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
}

/// Renders the request `dest` sends for `event`.
pub fn render(dest: &DestinationConfig, event: &ConversionEvent) -> Result<Request, RenderError> {
    match dest.kind {
        Kind::Powerspace => powerspace::render(dest, event),
    }
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
