//! `worker.partner_proxy`: the HTTP proxy partner calls go through. By default the one the
//! environment names (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, less the hosts `NO_PROXY`
//! lists), as curl and the HTTP client read it; `none` to call partners directly whatever
//! the environment says; or a proxy of the configuration's own. A proxy's user and password
//! are never shown: only its scheme, host and port.

use std::fmt;

use serde::Deserialize;

#[derive(Clone, Default, PartialEq, Eq)]
pub enum PartnerProxy {
    /// The environment's proxy variables, read when the HTTP client is built.
    #[default]
    Environment,
    /// Partners are called directly.
    None,
    /// Every partner call (http:// and https://) goes through this proxy; `NO_PROXY` does
    /// not apply.
    Url(url::Url),
}

impl PartnerProxy {
    /// Reads a setting; the refusal never repeats the text, which may hold a password.
    pub fn parse(text: &str) -> Result<PartnerProxy, String> {
        let refuse = |why: &str| {
            format!(
                "{why}; expected \"environment\", \"none\" or an http:// or https:// proxy URL with a host and port and no path (the default is \"environment\")"
            )
        };
        match text {
            "environment" => return Ok(PartnerProxy::Environment),
            "none" => return Ok(PartnerProxy::None),
            _ => {}
        }
        let url = url::Url::parse(text).map_err(|_| refuse("is not a proxy setting"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err(refuse("is not an http:// or https:// URL with a host"));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(refuse("has a path, query or fragment"));
        }
        Ok(PartnerProxy::Url(url))
    }

    /// The password of a proxy URL, decoded, to keep out of what the relay writes.
    pub fn password(&self) -> Option<String> {
        match self {
            PartnerProxy::Url(url) => url.password().map(|p| {
                percent_encoding::percent_decode_str(p)
                    .decode_utf8_lossy()
                    .into_owned()
            }),
            _ => None,
        }
    }
}

/// `scheme://host:port` of a proxy URL: what may be shown of it.
pub fn shown(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port_or_known_default() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

impl fmt::Display for PartnerProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartnerProxy::Environment => f.write_str(
                "the environment's proxy (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY)",
            ),
            PartnerProxy::None => f.write_str("no proxy"),
            PartnerProxy::Url(url) => write!(f, "the proxy {}", shown(url)),
        }
    }
}

impl fmt::Debug for PartnerProxy {
    /// As shown: never the user or password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartnerProxy({self})")
    }
}

impl<'de> Deserialize<'de> for PartnerProxy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        PartnerProxy::parse(&text).map_err(serde::de::Error::custom)
    }
}
