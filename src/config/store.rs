//! `[store]`: where the state replicas share is kept ([`crate::shared`]).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::tls::{TlsFiles, Verify, client_config};
use super::{ConfigError, key_err};

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "StoreTable")]
pub enum StoreConfig {
    /// A SQLite file for one relay process.
    Embedded { path: PathBuf, ttl_secs: u64 },
    /// Redis, shared by every replica.
    Redis {
        url: String,
        key_prefix: String,
        ttl_secs: u64,
        /// `[store.tls]`: the CA and client certificate for a `rediss://` URL.
        tls: Option<TlsFiles>,
    },
}

/// `[store]` as written. Read as one table (rather than as an enum tagged by `kind`) so that
/// an error in a key is reported under the key's own name (`store.ttl_secs`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreTable {
    kind: StoreKind,
    path: Option<PathBuf>,
    url: Option<String>,
    key_prefix: Option<String>,
    #[serde(default = "default_ttl")]
    ttl_secs: u64,
    tls: Option<TlsFiles>,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StoreKind {
    Embedded,
    Redis,
}

impl TryFrom<StoreTable> for StoreConfig {
    type Error = String;

    fn try_from(t: StoreTable) -> Result<StoreConfig, String> {
        match t.kind {
            StoreKind::Embedded => {
                if t.url.is_some() || t.key_prefix.is_some() || t.tls.is_some() {
                    return Err("url, key_prefix and tls are for kind = \"redis\"".into());
                }
                Ok(StoreConfig::Embedded {
                    path: t.path.unwrap_or_else(default_path),
                    ttl_secs: t.ttl_secs,
                })
            }
            StoreKind::Redis => {
                if t.path.is_some() {
                    return Err("path is for kind = \"embedded\"".into());
                }
                Ok(StoreConfig::Redis {
                    url: t
                        .url
                        .ok_or("missing field `url` (required for kind = \"redis\")")?,
                    key_prefix: t.key_prefix.unwrap_or_else(default_prefix),
                    ttl_secs: t.ttl_secs,
                    tls: t.tls,
                })
            }
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::Embedded {
            path: default_path(),
            ttl_secs: default_ttl(),
        }
    }
}

fn default_path() -> PathBuf {
    PathBuf::from("postback-relay.db")
}

/// 72 hours: above the default retry budget (48 h), so a delivery retried to the end is still
/// known when a late redelivery comes.
fn default_ttl() -> u64 {
    72 * 3600
}

fn default_prefix() -> String {
    "postback-relay".into()
}

/// The longest `ttl_secs`: ten years. Expiry times are milliseconds since 1970 in a signed
/// 64-bit integer (SQLite, Redis `PX`), which a far larger TTL would overflow.
pub const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 3600;

impl StoreConfig {
    /// The store's own check of its keys; the configuration checks `ttl_secs` against the
    /// retry budgets, which it alone knows.
    /// What is wrong with `ttl_secs`, if anything.
    pub fn check_ttl(&self) -> Result<(), String> {
        let ttl = self.ttl().as_secs();
        if !(1..=MAX_TTL_SECS).contains(&ttl) {
            return Err(format!(
                "{ttl} must be between 1 and {MAX_TTL_SECS} (10 years)"
            ));
        }
        Ok(())
    }

    pub fn ttl(&self) -> Duration {
        match self {
            StoreConfig::Embedded { ttl_secs, .. } | StoreConfig::Redis { ttl_secs, .. } => {
                Duration::from_secs(*ttl_secs)
            }
        }
    }
}

impl StoreConfig {
    /// What the Redis URL and `[store.tls]` ask that the relay cannot do: a URL it cannot
    /// read, `[store.tls]` beside a `redis://` URL, redis-rs' `#insecure` fragment (the relay
    /// always checks the server's certificate), files that cannot be read or used, no root to
    /// check the server's certificate against, or a system root store that redis-rs would
    /// refuse to load.
    pub(super) fn check_tls(&self) -> Result<(), ConfigError> {
        use redis::IntoConnectionInfo as _;
        let StoreConfig::Redis { url, tls, .. } = self else {
            return Ok(());
        };
        let info = url.as_str().into_connection_info().map_err(|e| {
            key_err(
                "store.url",
                format!("not a Redis URL the relay can use ({})", e.category()),
            )
        })?;
        let insecure = match info.addr() {
            redis::ConnectionAddr::TcpTls { insecure, .. } => *insecure,
            _ if tls.is_some() => {
                return Err(key_err(
                    "store.url",
                    "[store.tls] is set, but the URL is not rediss:// (no TLS): use rediss://",
                ));
            }
            _ => return Ok(()),
        };
        if insecure {
            return Err(key_err(
                "store.url",
                "#insecure would connect without checking the server's certificate, which the \
                 relay does not do: remove it, and name the server's CA in store.tls.ca_file",
            ));
        }
        let material = tls
            .clone()
            .unwrap_or_default()
            .load("store.tls")
            .map_err(|e| key_err("store.tls", e.to_string()))?;
        client_config(&material, Verify::Full, "store.tls")
            .map_err(|e| key_err("store.tls", e.to_string()))?;
        // redis-rs reads the system's roots for every TLS connection, with or without a CA of
        // the operator's, and gives up on the first file it cannot read.
        if let Some(e) = rustls_native_certs::load_native_certs().errors.first() {
            return Err(key_err(
                "store.url",
                format!(
                    "the system's root certificates cannot all be read ({e}), which fails every rediss:// connection"
                ),
            ));
        }
        Ok(())
    }
}
