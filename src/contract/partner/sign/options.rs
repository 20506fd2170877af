//! A `signature` table as written: scheme, secrets, and a partner header's name, encoding, prefix.

use serde::Deserialize;

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
