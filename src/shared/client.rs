//! Every Redis connection the relay and its commands open goes through [`manager`] (or
//! [`client`]), so that `rediss://` is set up the same way everywhere: the server's
//! certificate checked against `store.tls.ca_file` (or, without one, the system's roots) and
//! the URL's host name, and the client certificate presented when the server asks for one.
//!
//! redis-rs builds its rustls configuration itself, from the PEM files, with the process's
//! default cryptographic provider: the relay's own ([`crate::config::tls::provider`]) is made
//! that default first. When a connection fails, redis-rs' error does not keep rustls' reason;
//! the relay then tries one handshake of its own with the same files, to say which check
//! refused (the server's certificate unknown, expired, for another name; the server asking for
//! a client certificate, or refusing the one presented).

use std::sync::Arc;

use redis::{
    ClientTlsConfig, ConnectionAddr, IntoConnectionInfo as _, RedisError, TlsCertificates,
};

use crate::config::handshake::{Refusal, probe, rustls_cause};
use crate::config::tls::{TlsFiles, TlsMaterial, provider};

/// The TLS table of the store.
const SETTING: &str = "store.tls";

/// A client for `url`; over TLS, with `tls`'s files, for a `rediss://` URL. Commands go out
/// without delay (TCP_NODELAY): small commands on one multiplexed connection would otherwise
/// wait for the previous one's acknowledgement.
pub fn client(url: &str, tls: Option<&TlsFiles>) -> Result<redis::Client, RedisError> {
    let info = url
        .into_connection_info()?
        .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
    if !matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
        return redis::Client::open(info);
    }
    let material = material(tls)?;
    // Ignored when a default is already set: the relay's, set earlier.
    let _ = rustls::crypto::CryptoProvider::install_default(Arc::unwrap_or_clone(provider()));
    let certificates = TlsCertificates {
        client_tls: material.identity.map(|id| ClientTlsConfig {
            client_cert: id.cert_pem,
            client_key: id.key_pem,
        }),
        root_cert: material.ca_pem,
    };
    redis::Client::build_with_tls(info, certificates)
}

fn material(tls: Option<&TlsFiles>) -> Result<TlsMaterial, RedisError> {
    tls.cloned()
        .unwrap_or_default()
        .load(SETTING)
        .map_err(|e| std::io::Error::other(e.to_string()).into())
}

/// A connection manager (reconnecting by itself) for `url`, see [`client`]. A TLS failure's
/// error names the store by host and port and says why.
pub async fn manager(
    url: &str,
    tls: Option<&TlsFiles>,
) -> Result<redis::aio::ConnectionManager, RedisError> {
    let client = client(url, tls)?;
    let addr = client.get_connection_info().addr().clone();
    match redis::aio::ConnectionManager::new(client).await {
        Ok(m) => Ok(m),
        Err(e) => Err(explained(e, &addr, tls).await),
    }
}

/// `e`, or, when TLS is what failed, the sentence that says why.
async fn explained(e: RedisError, addr: &ConnectionAddr, tls: Option<&TlsFiles>) -> RedisError {
    let ConnectionAddr::TcpTls { host, port, .. } = addr else {
        return e;
    };
    let Ok(material) = material(tls) else {
        return e;
    };
    let presented = material.identity.is_some();
    let refused = match rustls_cause(&e) {
        Some(t) => Some(t.clone()),
        None => probe(host, *port, &material, SETTING).await,
    };
    match refused {
        Some(t) => {
            let server = format!("the store at {host}:{port}");
            std::io::Error::other(Refusal::of(&t, presented).explain(&server, SETTING)).into()
        }
        None => e,
    }
}
