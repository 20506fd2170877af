//! The HTTP request a destination sends, and the copies of it that are safe to show.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::contract::encode::encode_component;
use crate::contract::redact::REDACTED;

/// An HTTP request ready to send, or to show (`render`, dead letters).
#[derive(Clone, Debug, Serialize, Deserialize)]
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
    /// `url` as the HTTP client reads it, kept by `render`'s check so that the client does
    /// not parse it a second time; used only while it still reads as `url`.
    #[serde(skip)]
    pub parsed_url: Option<url::Url>,
}

/// Two requests are the same when they send the same thing: the parsed URL is a cache of
/// `url`, not a part of the request.
impl PartialEq for Request {
    fn eq(&self, other: &Request) -> bool {
        (
            &self.destination,
            self.method,
            &self.url,
            &self.headers,
            &self.body,
            &self.secrets,
        ) == (
            &other.destination,
            other.method,
            &other.url,
            &other.headers,
            &other.body,
            &other.secrets,
        )
    }
}

impl Eq for Request {}

impl Request {
    /// A copy safe to print, log or store: every secret, raw or percent-encoded, replaced by
    /// `REDACTED`.
    pub fn redacted(&self) -> Request {
        let hide = |s: &str| self.hide(s);
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
            parsed_url: None,
        }
    }

    /// `s` with every secret of this request, raw or percent-encoded, replaced by `REDACTED`.
    pub fn hide(&self, s: &str) -> String {
        let mut out = s.to_owned();
        for secret in self.secrets.iter().filter(|s| !s.is_empty()) {
            out = out
                .replace(&encode_component(secret), REDACTED)
                .replace(secret.as_str(), REDACTED);
        }
        out
    }
}

impl Request {
    /// A copy safe to show: [`Request::redacted`], and every secret of the configuration
    /// replaced too (a token written into a callback URL, say).
    pub fn shown(&self, secrets: &crate::contract::redact::Secrets) -> Request {
        let mut r = self.redacted();
        secrets.scrub_in_place(&mut r.url);
        for v in r.headers.values_mut() {
            secrets.scrub_in_place(v);
        }
        if let Some(b) = &mut r.body {
            secrets.scrub_in_place(b);
        }
        r
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[serde(alias = "get")]
    Get,
    #[serde(alias = "post")]
    Post,
    #[serde(alias = "put")]
    Put,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
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
