//! tokio-postgres over rustls: the handshake the journal URL's `sslmode` asks for
//! ([`crate::config::journal::pg_tls`]), and what a refused handshake means in words an
//! operator can act on (the CA, the name, the dates, the client certificate).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use rustls::{AlertDescription, CertificateError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

/// Makes a TLS connection to each server of the URL, named as the URL names it.
#[derive(Clone)]
pub(super) struct Rustls(pub Arc<rustls::ClientConfig>);

/// The handshake with one server.
pub(super) struct Connect {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

/// The TLS stream, as tokio-postgres takes it.
pub(super) struct Stream<S>(tokio_rustls::client::TlsStream<S>);

/// A handshake that failed: the server and why.
#[derive(Debug, thiserror::Error)]
#[error("TLS with {server}: {reason}")]
pub(super) struct HandshakeError {
    server: String,
    reason: String,
}

impl HandshakeError {
    pub(super) fn reason(&self) -> &str {
        &self.reason
    }
}

impl<S> MakeTlsConnect<S> for Rustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type TlsConnect = Connect;
    type Error = HandshakeError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Connect, HandshakeError> {
        let name = ServerName::try_from(domain.to_owned()).map_err(|_| HandshakeError {
            server: domain.to_owned(),
            reason: "the host is neither a DNS name nor an IP address, so it cannot be \
                     checked against a certificate"
                .into(),
        })?;
        Ok(Connect {
            config: self.0.clone(),
            name,
        })
    }
}

impl<S> TlsConnect<S> for Connect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type Error = HandshakeError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream<S>, HandshakeError>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let server = self.name.to_str().into_owned();
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move {
            connector
                .connect(self.name, stream)
                .await
                .map(Stream)
                .map_err(|e| HandshakeError {
                    reason: io_reason(&e),
                    server,
                })
        })
    }
}

/// What an I/O error of the TLS layer means: the TLS error it carries, said plainly.
pub(super) fn io_reason(e: &io::Error) -> String {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(tls) => reason(tls),
        None => e.to_string(),
    }
}

/// A refused handshake, in words: what the operator checks or changes.
pub(super) fn reason(e: &rustls::Error) -> String {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => {
                "the server's certificate is not signed by a CA the relay trusts \
                 (sslrootcert, or the system's roots without it)"
                    .into()
            }
            CertificateError::NotValidForName => {
                "the server's certificate is not for this host name (verify-full checks \
                 it; verify-ca does not)"
                    .into()
            }
            CertificateError::NotValidForNameContext { presented, .. } => format!(
                "the server's certificate is not for this host name but for {} \
                 (verify-full checks it; verify-ca does not)",
                presented
                    .iter()
                    .map(|n| bare_name(n))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet".into()
            }
            other => format!("the server's certificate was refused ({other:?})"),
        },
        E::AlertReceived(alert) => match alert {
            AlertDescription::CertificateRequired => {
                "the server asks for a client certificate: set sslcert and sslkey".into()
            }
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied => format!(
                "the server refused the relay's client certificate (sslcert; alert \
                 {alert:?}): is it signed by the CA the server trusts?"
            ),
            AlertDescription::CertificateExpired => {
                "the server refused the relay's client certificate: it has expired".into()
            }
            other => format!("the server ended the handshake (alert {other:?})"),
        },
        other => format!("the handshake failed: {other}"),
    }
}

/// A name the certificate presents, as rustls writes it (`DnsName("db.example")`), bare.
fn bare_name(shown: &str) -> &str {
    shown
        .split_once("(\"")
        .and_then(|(_, rest)| rest.strip_suffix("\")"))
        .unwrap_or(shown)
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for Stream<S> {
    /// None: SCRAM's channel binding is not offered (a URL that requires it is refused by
    /// `check-config`), so the password exchange runs as it would without it.
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_says_what_to_check() {
        let cert = |c| reason(&rustls::Error::InvalidCertificate(c));
        assert!(cert(CertificateError::UnknownIssuer).contains("not signed by a CA"));
        assert!(cert(CertificateError::Expired).contains("has expired"));
        assert!(cert(CertificateError::NotValidForName).contains("not for this host name"));
        assert_eq!(bare_name("DnsName(\"db.example\")"), "db.example");
        assert_eq!(bare_name("10.0.0.1"), "10.0.0.1");
        let alert = |a| reason(&rustls::Error::AlertReceived(a));
        assert!(alert(AlertDescription::CertificateRequired).contains("set sslcert and sslkey"));
        assert!(alert(AlertDescription::UnknownCA).contains("refused the relay's client"));
        let io = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert!(io_reason(&io).contains("not signed by a CA"));
        assert_eq!(
            io_reason(&io::Error::other("reset")),
            "reset",
            "not TLS: as it is"
        );
    }
}
