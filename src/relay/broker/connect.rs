//! Connecting to RabbitMQ: in the clear for `amqp://`, over TLS for `amqps://`.
//!
//! TLS is the relay's own rustls configuration ([`crate::config::tls`]), not lapin's: with
//! lapin's, a CA file is trusted on top of the system's roots, where `broker.tls.ca_file`
//! replaces them, and its failures would not say which check refused. lapin opens the TCP
//! connection; the relay's connector does the handshake on it, checking the server's
//! certificate against the roots and the host name of the URL, and presenting the client
//! certificate when the server asks for one. The files are read at each connection, so that
//! renewed certificates are taken at the next reconnection without a restart.

use std::sync::Arc;

use lapin::tcp::{AMQPUriTcpExt as _, OwnedTLSConfig, RustlsConnector};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Connection, ConnectionProperties};

use crate::config::handshake::{Refusal, probe, rustls_cause};
use crate::config::tls::{TlsFiles, Verify, client_config};

/// The TLS table every broker address shares.
const SETTING: &str = "broker.tls";

/// Opens a connection named after the process role, shown in the management UI; over TLS
/// when `url` is `amqps://`, with `tls`'s files (none: the system's roots, no client
/// certificate). A failed handshake's error names the broker by host and port, and says why.
pub async fn connect(
    url: &str,
    tls: Option<&TlsFiles>,
    role: &str,
) -> Result<Connection, lapin::Error> {
    let props = ConnectionProperties::default()
        .with_connection_name(format!("postback-relay {role} (pid {})", std::process::id()).into());
    // The parser's message may repeat the URL, password included.
    let uri = url
        .parse::<AMQPUri>()
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an AMQP URL"))?;
    if uri.scheme != AMQPScheme::AMQPS {
        return Connection::connect_uri(uri, props).await;
    }
    let material = tls
        .cloned()
        .unwrap_or_default()
        .load(SETTING)
        .map_err(std::io::Error::other)?;
    let presented = material.identity.is_some();
    let config = client_config(&material, Verify::Full, SETTING).map_err(std::io::Error::other)?;
    let connector = RustlsConnector::from(Arc::new(config));
    let (host, port) = (uri.authority.host.clone(), uri.authority.port);
    let runtime = lapin::runtime::default_runtime()?;
    let opened = Connection::connector(
        uri,
        runtime,
        async move |uri: AMQPUri, runtime| {
            let mut plain = uri.clone();
            plain.scheme = AMQPScheme::AMQP;
            let tcp = plain
                .connect_with_config_async(OwnedTLSConfig::default().as_ref(), &runtime)
                .await?;
            Ok(tcp.into_rustls(&connector, &uri.authority.host).await?)
        },
        props,
    )
    .await;
    let e = match opened {
        Ok(conn) => return Ok(conn),
        Err(e) => e,
    };
    // A server refusing the relay's certificate may say so only after the handshake (TLS
    // 1.3), at lapin's first read, or reset the connection before the alert is read: the
    // rustls error is looked for in whatever failed, then in a handshake of the relay's own.
    let refused = match rustls_cause(&e) {
        Some(t) => Some(t.clone()),
        None if matches!(e.kind(), lapin::ErrorKind::IOError(_)) => {
            probe(&host, port, &material, SETTING).await
        }
        None => None,
    };
    Err(match refused {
        Some(t) => {
            let server = format!("the broker at {host}:{port}");
            std::io::Error::other(Refusal::of(&t, presented).explain(&server, SETTING)).into()
        }
        None => e,
    })
}

/// A connection to the first of `addresses` that accepts one within `timeout`, trying them
/// in turn from `start` (the one that worked last, say); with the index of the one it is.
/// The error is the last address's.
pub async fn connect_any(
    addresses: &[&str],
    tls: Option<&TlsFiles>,
    start: usize,
    timeout: std::time::Duration,
    role: &str,
) -> Result<(Connection, usize), lapin::Error> {
    let mut last = None;
    for k in 0..addresses.len() {
        let i = (start + k) % addresses.len();
        match tokio::time::timeout(timeout, connect(addresses[i], tls, role)).await {
            Ok(Ok(conn)) => return Ok((conn, i)),
            Ok(Err(e)) => last = Some(e),
            Err(_) => {
                let why = format!("no connection within {timeout:?}");
                last = Some(std::io::Error::new(std::io::ErrorKind::TimedOut, why).into());
            }
        }
        if addresses.len() > 1 {
            tracing::warn!(
                message = "a broker address does not answer; trying the next",
                address = i,
                of = addresses.len()
            );
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no broker address").into()
    }))
}

/// A connection to the configured broker: its first address that answers.
pub async fn connect_to(
    broker: &crate::config::BrokerConfig,
    role: &str,
) -> Result<Connection, lapin::Error> {
    let addresses = broker.addresses();
    let tls = broker.tls.as_ref();
    let (conn, _) = connect_any(&addresses, tls, 0, broker.connect_timeout(), role).await?;
    Ok(conn)
}
