//! Signatures on outgoing requests: HMAC-SHA256 with a secret from the environment, over the
//! body (or, for a request without one, the URL), so that the partner can tell the request
//! came from us and was not changed on the way.
//!
//! - `standard_webhooks` (<https://www.standardwebhooks.com/>): headers `webhook-id` (the
//!   event's id, the same on every attempt), `webhook-timestamp` (Unix seconds of the
//!   attempt) and `webhook-signature` (`v1,<base64>`, space-separated, one per active secret)
//!   over `{id}.{timestamp}.{body}`. A secret is base64 (padded with `=` or not), `whsec_`
//!   before it or not, and its key is the bytes it encodes, as the standard's libraries read
//!   it. A request without a body (GET) cannot be signed so: the standard signs a body.
//! - `header`: the partner's own header, holding `prefix` and the HMAC of the payload (the
//!   body, or the URL) in hex or base64, one per active secret, separated by `,`; its
//!   secrets are used as their UTF-8 bytes.
//!
//! Rotation: up to two secrets are active at once (the new one first); each request carries
//! a signature by each, so the partner accepts it with either while it moves to the new one.

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

mod options;

pub use options::{Encoding, Options, Over, Scheme, writes};

use super::{KeyError, Rendered, key_err};

/// How a Standard Webhooks secret is read: standard base64 with its `=` padding or without
/// it (a 32-byte key is 43 characters unpadded), as the standard's libraries take both.
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Signatures a request carries at most: the current secret and the one it replaces.
pub const MAX_SECRETS: usize = 2;

/// A checked signature setting.
#[derive(Clone, PartialEq)]
pub struct Signer {
    scheme: Scheme,
    keys: Vec<Vec<u8>>,
    /// The secrets as written, to keep out of what is shown.
    secrets: Vec<String>,
    header: String,
    encoding: Encoding,
    prefix: String,
    over: Option<Over>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("scheme", &self.scheme)
            .field("secrets", &self.secrets.len())
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// Checks a `signature` table for requests with or without a body; `at` is its key, for
/// errors. Errors never repeat a secret.
pub fn compile(o: &Options, at: &str, has_body: bool) -> Result<Signer, KeyError> {
    let key = |k: &str| format!("{at}.{k}");
    if o.secrets.is_empty() || o.secrets.len() > MAX_SECRETS {
        return Err(key_err(
            key("secrets"),
            format!(
                "give one secret, or two while rotating (the new one first); got {}",
                o.secrets.len()
            ),
        ));
    }
    let mut keys = Vec::new();
    for (i, s) in o.secrets.iter().enumerate() {
        let k = key(&format!("secrets[{i}]"));
        if s.trim().is_empty() {
            return Err(key_err(k, "is empty"));
        }
        let bytes = match o.scheme {
            Scheme::StandardWebhooks => {
                let b64 = s.strip_prefix("whsec_").unwrap_or(s);
                SECRET_BASE64.decode(b64).map_err(|_| {
                    key_err(
                        &k,
                        "is not base64: a Standard Webhooks secret is its key in base64 (padded with = or not), with whsec_ before it or not, as the standard's libraries read it",
                    )
                })?
            }
            Scheme::Header => s.as_bytes().to_vec(),
        };
        if bytes.is_empty() {
            return Err(key_err(k, "holds no key"));
        }
        keys.push(bytes);
    }
    let header = match (o.scheme, &o.header) {
        (Scheme::Header, Some(h)) => {
            reqwest::header::HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| key_err(key("header"), format!("{h:?} is not an HTTP header name")))?;
            h.clone()
        }
        (Scheme::Header, None) => {
            return Err(key_err(
                key("header"),
                "required for scheme header: the partner's header name, like X-Signature",
            ));
        }
        (Scheme::StandardWebhooks, Some(_)) => {
            return Err(key_err(
                key("header"),
                "standard_webhooks uses its own headers (webhook-id, webhook-timestamp, webhook-signature)",
            ));
        }
        (Scheme::StandardWebhooks, None) => String::new(),
    };
    if o.scheme == Scheme::StandardWebhooks && (!o.prefix.is_empty() || o.encoding != Encoding::Hex)
    {
        return Err(key_err(
            key("prefix"),
            "prefix and encoding are for scheme header; standard_webhooks writes v1,<base64>",
        ));
    }
    reqwest::header::HeaderValue::from_str(&o.prefix)
        .map_err(|_| key_err(key("prefix"), "is not valid in an HTTP header"))?;
    if !has_body {
        if o.scheme == Scheme::StandardWebhooks {
            return Err(key_err(
                key("scheme"),
                "Standard Webhooks signs a body, and these requests have none: send them with a body (POST or PUT), or use scheme = \"header\", which signs the URL",
            ));
        }
        if o.over == Some(Over::Body) {
            return Err(key_err(
                key("over"),
                "these requests have no body: every one would carry the same signature; sign the URL (over = \"url\")",
            ));
        }
    }
    Ok(Signer {
        scheme: o.scheme,
        keys,
        secrets: o.secrets.clone(),
        header,
        encoding: o.encoding,
        prefix: o.prefix.clone(),
        over: o.over,
    })
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

impl Signer {
    /// The secrets, for redaction.
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// Whether the signature carries the time it was made (Standard Webhooks'
    /// `webhook-timestamp`, which receivers hold to a tolerance of a few minutes).
    pub fn timed(&self) -> bool {
        self.scheme == Scheme::StandardWebhooks
    }

    /// Adds the signature headers to `r`, for the event `id`, at `now`.
    pub(crate) fn sign(&self, r: &mut Rendered, id: &str, now: DateTime<Utc>) {
        let over = self.over.unwrap_or(if r.body.is_some() {
            Over::Body
        } else {
            Over::Url
        });
        let payload = match over {
            Over::Body => r.body.as_deref().unwrap_or(""),
            Over::Url => r.url.as_str(),
        }
        .as_bytes()
        .to_vec();
        match self.scheme {
            Scheme::StandardWebhooks => {
                // The id goes in a header: written as a header can hold it, and signed as sent.
                let id = crate::contract::encode::header_text(id);
                let ts = now.timestamp().to_string();
                let sigs: Vec<String> = self
                    .keys
                    .iter()
                    .map(|k| {
                        let mac = hmac(k, &[id.as_bytes(), b".", ts.as_bytes(), b".", &payload]);
                        format!("v1,{}", STANDARD.encode(mac))
                    })
                    .collect();
                r.headers.insert("webhook-id".into(), id);
                r.headers.insert("webhook-timestamp".into(), ts);
                r.headers.insert("webhook-signature".into(), sigs.join(" "));
            }
            Scheme::Header => {
                let sigs: Vec<String> = self
                    .keys
                    .iter()
                    .map(|k| {
                        let mac = hmac(k, &[&payload]);
                        let text = match self.encoding {
                            Encoding::Hex => hex::encode(mac),
                            Encoding::Base64 => STANDARD.encode(mac),
                        };
                        format!("{}{text}", self.prefix)
                    })
                    .collect();
                r.headers.insert(self.header.clone(), sigs.join(","));
            }
        }
    }
}

#[cfg(test)]
mod tests;
