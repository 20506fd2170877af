//! TLS for the PostgreSQL journal, as the URL's libpq parameters say: `sslmode` (`disable`,
//! `prefer`, `require`, `verify-ca`, `verify-full`), `sslrootcert` (a CA file, or `system`),
//! `sslcert` and `sslkey`. tokio-postgres knows only `disable`, `prefer` and `require` and
//! none of the files, so these are read here, taken out of the URL, and the rest handed to
//! tokio-postgres. The libpq parameters the relay cannot honour (`sslcrl`, `sslpassword`,
//! `gssencmode=require`...) are refused by name, so that no URL passes `check-config` and is
//! then connected otherwise than it says.
//!
//! Where libpq differs: no file is read that the URL does not name (libpq also looks in
//! `~/.postgresql/`), `verify-ca` and `verify-full` without `sslrootcert` trust the system's
//! roots (libpq wants `~/.postgresql/root.crt`), and a handshake that fails under `prefer`
//! is an error, not a second try without TLS.

use std::path::PathBuf;
use std::sync::Arc;

use super::super::tls::{TlsError, TlsMaterial, Verify, client_config, read_certs, read_identity};

mod pairs;
#[cfg(test)]
mod tests;

use pairs::{key_value_pairs, url_pairs};

/// libpq's `sslmode`, the modes the relay honours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// TLS when the server offers it (libpq's default).
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// Where the server's certificate is checked against (`sslrootcert`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Root {
    /// `sslrootcert=system`: the system's roots.
    System,
    File(PathBuf),
}

/// The URL's TLS parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgTls {
    pub mode: SslMode,
    pub root: Option<Root>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// A journal URL as the relay connects with it: its TLS, and the rest for tokio-postgres
/// (its `sslmode` set to what the TLS needs).
#[derive(Clone, Debug)]
pub struct PgUrl {
    pub tls: PgTls,
    pub config: tokio_postgres::Config,
}

/// Why a journal URL cannot be used; each names the parameter, never the URL (which may hold
/// a password).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PgUrlError {
    #[error(
        "sslmode must be disable, prefer, require, verify-ca or verify-full{}",
        if *.0 { " (allow is not supported: use prefer or disable)" } else { "" }
    )]
    SslMode(bool),
    #[error("{0} is given twice")]
    Twice(&'static str),
    #[error("{param} is not supported: {why}")]
    Unsupported { param: String, why: &'static str },
    #[error("{0}")]
    Contradiction(&'static str),
    #[error("a parameter is not of the form name=value, or a value's quote is not closed")]
    Syntax,
    #[error("not a PostgreSQL URL: {0}")]
    Postgres(String),
}

/// What the relay does with a libpq parameter it reads itself.
enum Param {
    Mode,
    RootCert,
    Cert,
    Key,
    /// Accepted as it is libpq's behaviour and the relay's: dropped.
    Ignored,
    Refused(&'static str),
}

/// What `name=value` is to the relay; `None`: tokio-postgres's own (which refuses what it
/// does not know).
fn param(name: &str, value: &str) -> Option<Param> {
    Some(match (name, value) {
        ("sslmode", _) => Param::Mode,
        ("sslrootcert", _) => Param::RootCert,
        ("sslcert", _) => Param::Cert,
        ("sslkey", _) => Param::Key,
        ("gssencmode", "disable" | "prefer") => Param::Ignored,
        ("gssencmode", _) => Param::Refused("the relay has no GSSAPI encryption"),
        ("sslsni", "1") | ("sslcompression", "0") | ("sslcertmode", "allow") => Param::Ignored,
        ("ssl_min_protocol_version", "TLSv1.2") => Param::Ignored,
        ("sslsni", _) => Param::Refused("the relay always sends the server's name"),
        ("sslcompression", _) => Param::Refused("TLS compression is not offered"),
        ("sslcertmode", _) => Param::Refused(
            "a client certificate is sent when sslcert names one and the server asks (allow)",
        ),
        ("ssl_min_protocol_version" | "ssl_max_protocol_version", _) => {
            Param::Refused("the relay speaks TLS 1.2 and 1.3")
        }
        ("sslcrl" | "sslcrldir", _) => Param::Refused("no revocation list is read"),
        ("sslpassword", _) => Param::Refused("sslkey must not be encrypted"),
        ("sslkeylogfile", _) => Param::Refused("session keys are never written out"),
        ("channel_binding", "require") => {
            Param::Refused("channel binding is not offered over the relay's TLS")
        }
        ("requiressl", _) => Param::Refused("use sslmode"),
        ("passfile" | "service" | "require_auth" | "krbsrvname" | "gsslib", _) => {
            Param::Refused("the relay reads only the URL's own settings")
        }
        _ => return None,
    })
}

impl PgUrl {
    /// Reads `url` (`postgres://...?sslmode=verify-full&sslrootcert=/ca.pem`, or libpq's
    /// `host=... sslmode=...`). Reads no file.
    pub fn parse(url: &str) -> Result<PgUrl, PgUrlError> {
        let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let (base, pairs) = match (is_url, url.split_once('?')) {
            (true, Some((base, query))) => (base, url_pairs(query, base.len() + 1)?),
            (true, None) => (url, Vec::new()),
            (false, _) => ("", key_value_pairs(url)?),
        };
        let mut tls: (
            Option<SslMode>,
            Option<Root>,
            Option<PathBuf>,
            Option<PathBuf>,
        ) = (None, None, None, None);
        let mut kept = Vec::new();
        for p in pairs {
            let once = |given: bool, name| match given {
                true => Err(PgUrlError::Twice(name)),
                false => Ok(()),
            };
            match param(&p.name, &p.value) {
                None => kept.push(&url[p.raw]),
                Some(Param::Ignored) => {}
                Some(Param::Refused(why)) => {
                    return Err(PgUrlError::Unsupported { param: p.name, why });
                }
                Some(Param::Mode) => {
                    once(tls.0.is_some(), "sslmode")?;
                    tls.0 = Some(mode(&p.value)?);
                }
                Some(Param::RootCert) => {
                    once(tls.1.is_some(), "sslrootcert")?;
                    tls.1 = Some(match p.value.as_str() {
                        "system" => Root::System,
                        v => Root::File(v.into()),
                    });
                }
                Some(Param::Cert) => {
                    once(tls.2.is_some(), "sslcert")?;
                    tls.2 = Some(PathBuf::from(p.value));
                }
                Some(Param::Key) => {
                    once(tls.3.is_some(), "sslkey")?;
                    tls.3 = Some(PathBuf::from(p.value));
                }
            }
        }
        let (mode, root, cert, key) = tls;
        let tls = PgTls::new(mode, root, cert, key)?;
        let rest = match (is_url, kept.is_empty()) {
            (true, true) => base.to_owned(),
            (true, false) => format!("{base}?{}", kept.join("&")),
            (false, _) => kept.join(" "),
        };
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e: tokio_postgres::Error| PgUrlError::Postgres(e.to_string()))?;
        if config.get_ssl_negotiation() == tokio_postgres::config::SslNegotiation::Direct
            && matches!(tls.mode, SslMode::Disable | SslMode::Prefer)
        {
            return Err(PgUrlError::Contradiction(
                "sslnegotiation=direct needs sslmode=require, verify-ca or verify-full",
            ));
        }
        // What tokio-postgres would refuse only when connecting.
        let (hosts, addrs) = (config.get_hosts().len(), config.get_hostaddrs().len());
        let ports = config.get_ports().len();
        if (hosts > 0 && addrs > 0 && hosts != addrs) || (ports > 1 && ports != hosts.max(addrs)) {
            return Err(PgUrlError::Contradiction(
                "host, hostaddr and port must list as many values each (or one port for all)",
            ));
        }
        // tokio-postgres, like libpq for a checked certificate, takes the name to give the
        // server and check its certificate against from `host`, never from `hostaddr`.
        if tls.mode != SslMode::Disable && config.get_hosts().len() < config.get_hostaddrs().len() {
            return Err(PgUrlError::Contradiction(
                "TLS needs the server's name: give host as well as hostaddr, or sslmode=disable",
            ));
        }
        #[cfg(unix)]
        if tls.mode != SslMode::Prefer
            && tls.mode != SslMode::Disable
            && config
                .get_hosts()
                .iter()
                .any(|h| matches!(h, tokio_postgres::config::Host::Unix(_)))
        {
            return Err(PgUrlError::Contradiction(
                "a Unix socket (a host that is a directory) carries no TLS: use sslmode=prefer \
                 or disable for it, or connect over TCP",
            ));
        }
        config.ssl_mode(match tls.mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        Ok(PgUrl { tls, config })
    }

    /// The servers it names, `host:port` each (or the addresses, `hostaddr`, where no host
    /// is named), for messages.
    pub fn servers(&self) -> String {
        let ports = self.config.get_ports();
        let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .collect();
        let hosts = match hosts.is_empty() {
            true => self
                .config
                .get_hostaddrs()
                .iter()
                .map(|a| a.to_string())
                .collect(),
            false => hosts,
        };
        hosts
            .iter()
            .enumerate()
            .map(|(i, h)| format!("{h}:{}", port(i)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn mode(value: &str) -> Result<SslMode, PgUrlError> {
    Ok(match value {
        "disable" => SslMode::Disable,
        "prefer" => SslMode::Prefer,
        "require" => SslMode::Require,
        "verify-ca" => SslMode::VerifyCa,
        "verify-full" => SslMode::VerifyFull,
        v => return Err(PgUrlError::SslMode(v == "allow")),
    })
}

impl PgTls {
    /// The parameters as libpq reads them together: the mode is `prefer` when not given, or
    /// `verify-full` with `sslrootcert=system`, which allows no weaker mode.
    pub fn new(
        mode: Option<SslMode>,
        root: Option<Root>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<PgTls, PgUrlError> {
        let mode = match (mode, &root) {
            (None, Some(Root::System)) => SslMode::VerifyFull,
            (None, _) => SslMode::Prefer,
            (Some(m), _) => m,
        };
        if mode == SslMode::Disable && (root.is_some() || cert.is_some() || key.is_some()) {
            return Err(PgUrlError::Contradiction(
                "sslmode=disable uses no TLS, yet sslrootcert, sslcert or sslkey is given",
            ));
        }
        if root == Some(Root::System) && mode != SslMode::VerifyFull {
            return Err(PgUrlError::Contradiction(
                "sslrootcert=system needs sslmode=verify-full (or no sslmode)",
            ));
        }
        if cert.is_some() != key.is_some() {
            return Err(PgUrlError::Contradiction(
                "sslcert and sslkey go together: set both or neither",
            ));
        }
        Ok(PgTls {
            mode,
            root,
            cert,
            key,
        })
    }

    /// How much of the server's certificate is checked; `None`: no TLS. libpq's `prefer` and
    /// `require` check the chain when `sslrootcert` names a CA, as `verify-ca` does.
    pub fn verify(&self) -> Option<Verify> {
        match (self.mode, &self.root) {
            (SslMode::Disable, _) => None,
            (SslMode::Prefer | SslMode::Require, None) => Some(Verify::Nothing),
            (SslMode::Prefer | SslMode::Require | SslMode::VerifyCa, _) => Some(Verify::ChainOnly),
            (SslMode::VerifyFull, _) => Some(Verify::Full),
        }
    }

    /// Reads the files and builds the client configuration (`None`: no TLS). `check-config`
    /// calls it too, so that a file that cannot be used is found before the relay runs.
    pub fn client_config(&self) -> Result<Option<Arc<rustls::ClientConfig>>, TlsError> {
        let Some(verify) = self.verify() else {
            return Ok(None);
        };
        let mut material = TlsMaterial::default();
        if let Some(Root::File(path)) = &self.root {
            let (certs, pem) = read_certs("sslrootcert", path)?;
            material.roots = Some(certs);
            material.ca_pem = Some(pem);
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            material.identity = Some(read_identity(("sslcert", cert), ("sslkey", key))?);
        }
        Ok(Some(Arc::new(client_config(&material, verify, "sslmode")?)))
    }
}
