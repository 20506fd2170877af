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
use serde::Deserialize;
use sha2::Sha256;

use super::{KeyError, Rendered, key_err};

/// How a Standard Webhooks secret is read: standard base64 with its `=` padding or without
/// it (a 32-byte key is 43 characters unpadded), as the standard's libraries take both.
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Signatures a request carries at most: the current secret and the one it replaces.
pub const MAX_SECRETS: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    StandardWebhooks,
    Header,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    #[default]
    Hex,
    Base64,
}

/// What is signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Over {
    Body,
    Url,
}

#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    pub scheme: Scheme,
    /// One or two secrets, the current first: write them `${VAR}`, from the environment.
    pub secrets: Vec<String>,
    /// For `header`: the header's name.
    #[serde(default)]
    pub header: Option<String>,
    /// For `header`: hex (default) or base64.
    #[serde(default)]
    pub encoding: Encoding,
    /// For `header`: text before the signature, like `sha256=`.
    #[serde(default)]
    pub prefix: String,
    /// The body (default when the request has one) or the URL (default otherwise).
    #[serde(default)]
    pub over: Option<Over>,
}

impl std::fmt::Debug for Options {
    /// The secrets never: only how many there are.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("scheme", &self.scheme)
            .field("secrets", &format!("{} secret(s)", self.secrets.len()))
            .field("header", &self.header)
            .field("encoding", &self.encoding)
            .field("prefix", &self.prefix)
            .field("over", &self.over)
            .finish()
    }
}

/// The headers a signature writes, in lower case, to keep out of a template's own.
pub fn writes(o: &Options) -> Vec<String> {
    match (o.scheme, &o.header) {
        (Scheme::StandardWebhooks, _) => ["webhook-id", "webhook-timestamp", "webhook-signature"]
            .map(str::to_owned)
            .to_vec(),
        (Scheme::Header, Some(h)) => vec![h.to_ascii_lowercase()],
        (Scheme::Header, None) => Vec::new(),
    }
}

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
mod tests {
    use super::*;
    use crate::contract::partner::Method;
    use std::collections::BTreeMap;

    fn opts(scheme: Scheme, secrets: &[&str]) -> Options {
        Options {
            scheme,
            secrets: secrets.iter().map(|s| s.to_string()).collect(),
            header: None,
            encoding: Encoding::Hex,
            prefix: String::new(),
            over: None,
        }
    }

    fn post(body: &str) -> Rendered {
        Rendered {
            method: Method::Post,
            url: "https://partner.example/hook".into(),
            headers: BTreeMap::new(),
            body: Some(body.into()),
        }
    }

    #[test]
    fn standard_webhooks_matches_the_specifications_example() {
        // The example of the Standard Webhooks specification and its reference libraries.
        let s = compile(
            &opts(
                Scheme::StandardWebhooks,
                &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            ),
            "signature",
            true,
        )
        .unwrap();
        let mut r = post(r#"{"test": 2432232314}"#);
        let at = DateTime::from_timestamp(1_614_265_330, 0).unwrap();
        s.sign(&mut r, "msg_p5jXN8AQM9LWM0D4loKWxJek", at);
        assert_eq!(r.headers["webhook-id"], "msg_p5jXN8AQM9LWM0D4loKWxJek");
        assert_eq!(r.headers["webhook-timestamp"], "1614265330");
        assert_eq!(
            r.headers["webhook-signature"],
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn two_active_secrets_sign_twice_the_new_one_first() {
        let at = DateTime::from_timestamp(1_614_265_330, 0).unwrap();
        let one = |secrets: &[&str]| {
            let mut r = post("{}");
            compile(&opts(Scheme::StandardWebhooks, secrets), "s", true)
                .unwrap()
                .sign(&mut r, "e1", at);
            r.headers["webhook-signature"].clone()
        };
        let (new, old) = (one(&["whsec_bmV3LXNlY3JldA=="]), one(&["b2xkLXNlY3JldA=="]));
        assert_ne!(new, old);
        assert_eq!(
            one(&["whsec_bmV3LXNlY3JldA==", "b2xkLXNlY3JldA=="]),
            format!("{new} {old}")
        );
        // With whsec_ or without, the key is what the base64 encodes.
        assert_eq!(one(&["bmV3LXNlY3JldA=="]), new);
    }

    #[test]
    fn a_standard_webhooks_secret_is_read_with_or_without_base64_padding() {
        // A 32-byte key is 44 characters of base64 with its `=`, 43 without: the standard's
        // libraries read both, so a secret copied from either form gives the same key.
        let padded = format!("whsec_{}", STANDARD.encode([0x5a_u8; 32]));
        assert!(padded.ends_with('='), "{padded}");
        let unpadded = padded.trim_end_matches('=').to_owned();
        assert_eq!(unpadded.len(), "whsec_".len() + 43);
        let at = DateTime::from_timestamp(1_614_265_330, 0).unwrap();
        let signature = |secret: &str| {
            let mut r = post("{}");
            compile(&opts(Scheme::StandardWebhooks, &[secret]), "s", true)
                .unwrap_or_else(|e| panic!("{secret}: {e}"))
                .sign(&mut r, "e1", at);
            r.headers["webhook-signature"].clone()
        };
        let expected = format!(
            "v1,{}",
            STANDARD.encode(hmac(&[0x5a_u8; 32], &[b"e1.1614265330.{}"]))
        );
        assert_eq!(signature(&padded), expected);
        assert_eq!(signature(&unpadded), expected);
        assert_eq!(signature(unpadded.trim_start_matches("whsec_")), expected);
        // Padding that is wrong rather than absent is still refused.
        let e = compile(
            &opts(Scheme::StandardWebhooks, &[&format!("{padded}=")]),
            "signature",
            true,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("is not base64"), "{e}");
    }

    #[test]
    fn a_partner_header_in_hex_or_base64_over_body_or_url() {
        let mut o = opts(Scheme::Header, &["key"]);
        o.header = Some("X-Signature".into());
        o.prefix = "sha256=".into();
        let at = DateTime::from_timestamp(0, 0).unwrap();
        let mut r = post("The quick brown fox jumps over the lazy dog");
        compile(&o, "s", true).unwrap().sign(&mut r, "e1", at);
        // RFC 4231-style known value: HMAC-SHA256("key", "The quick brown fox...").
        assert_eq!(
            r.headers["X-Signature"],
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        o.encoding = Encoding::Base64;
        o.prefix.clear();
        o.over = Some(Over::Url);
        let mut r = post("ignored");
        compile(&o, "s", true).unwrap().sign(&mut r, "e1", at);
        let url_mac = hmac(b"key", &[b"https://partner.example/hook"]);
        assert_eq!(r.headers["X-Signature"], STANDARD.encode(&url_mac));
        // Without a body, the URL is signed.
        let mut get = post("");
        get.body = None;
        o.over = None;
        compile(&o, "s", true).unwrap().sign(&mut get, "e1", at);
        assert_eq!(get.headers["X-Signature"], STANDARD.encode(&url_mac));
    }

    #[test]
    fn bad_settings_are_refused_without_repeating_a_secret() {
        let err = |o: Options| compile(&o, "signature", true).unwrap_err().to_string();
        assert!(err(opts(Scheme::StandardWebhooks, &[])).contains("signature.secrets"));
        assert!(err(opts(Scheme::StandardWebhooks, &["a", "b", "c"])).contains("got 3"));
        let e = err(opts(Scheme::StandardWebhooks, &["whsec_not*base64!"]));
        assert!(
            e.contains("signature.secrets[0]") && !e.contains("not*base64"),
            "{e}"
        );
        assert!(err(opts(Scheme::Header, &["k"])).contains("signature.header"));
        let mut o = opts(Scheme::Header, &["k"]);
        o.header = Some("Bad Header".into());
        assert!(err(o).contains("not an HTTP header name"));
        assert!(err(opts(Scheme::StandardWebhooks, &["  "])).contains("is empty"));
        let e = err(opts(Scheme::StandardWebhooks, &["not base64, s3cret"]));
        assert!(e.contains("is not base64") && !e.contains("s3cret"), "{e}");
        // Without a body: Standard Webhooks cannot sign, and a body signature would be the
        // same on every request.
        let no_body = |o: Options| compile(&o, "signature", false).unwrap_err().to_string();
        assert!(no_body(opts(Scheme::StandardWebhooks, &["a2V5"])).contains("signs a body"));
        let mut o = opts(Scheme::Header, &["k"]);
        o.header = Some("X-Signature".into());
        assert!(compile(&o, "s", false).is_ok());
        o.over = Some(Over::Body);
        assert!(no_body(o).contains("over = \"url\""));
        // Debug output never holds a secret.
        let d = format!("{:?}", opts(Scheme::Header, &["TOPSECRET-SIGNING"]));
        assert!(!d.contains("TOPSECRET"), "{d}");
    }
}
