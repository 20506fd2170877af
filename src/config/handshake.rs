//! Why a TLS handshake with a server failed, said so that an operator can act on it: which side
//! refused (the relay refusing the server's certificate, or the server refusing the relay's),
//! rustls' own name for the reason, and the setting that changes it. Read from rustls' error
//! value, never from an error's text; the sentence names the server by host and port only, so
//! no password from a URL can reach it.

use rustls::{AlertDescription, CertificateError, Error};

use super::tls::{TlsMaterial, Verify, client_config};

/// A failed handshake, as far as the operator is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The server's certificate is not signed by a CA the relay trusts.
    UnknownIssuer,
    /// The server's certificate is for other names than the one the relay connected to.
    NotValidForName,
    /// The server's certificate has expired.
    Expired,
    /// The server's certificate is not valid yet (a clock is wrong, or it was issued early).
    NotValidYet,
    /// Anything else wrong with the server's certificate (rustls' name for it).
    ServerCertificate(String),
    /// The server asked for a client certificate and the relay has none.
    ClientCertificateRequired,
    /// The server ended the handshake without saying why, and the relay presented no client
    /// certificate: the usual answer of a TLS 1.2 server that requires one.
    HandshakeFailure,
    /// The server refused the client certificate the relay presented (the alert's name).
    ClientCertificateRefused(String),
    /// Another failure of the TLS exchange (rustls' description).
    Other(String),
}

impl Refusal {
    /// The refusal `e` says; `presented`: whether the relay had a client certificate to give.
    pub fn of(e: &Error, presented: bool) -> Refusal {
        use AlertDescription as A;
        match e {
            Error::InvalidCertificate(c) => match c {
                CertificateError::UnknownIssuer => Refusal::UnknownIssuer,
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => Refusal::NotValidForName,
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    Refusal::Expired
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    Refusal::NotValidYet
                }
                other => Refusal::ServerCertificate(format!("{other:?}")),
            },
            Error::AlertReceived(A::CertificateRequired) if !presented => {
                Refusal::ClientCertificateRequired
            }
            Error::AlertReceived(A::HandshakeFailure) if !presented => Refusal::HandshakeFailure,
            Error::AlertReceived(
                a @ (A::CertificateRequired
                | A::BadCertificate
                | A::UnknownCA
                | A::CertificateUnknown
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::AccessDenied
                | A::DecryptError
                | A::HandshakeFailure),
            ) if presented => Refusal::ClientCertificateRefused(format!("{a:?}")),
            other => Refusal::Other(other.to_string()),
        }
    }

    /// What the operator reads: the server (`the broker at host:5671`), what failed, and what
    /// to change; `setting` is the TLS table (`broker.tls`).
    pub fn explain(&self, server: &str, setting: &str) -> String {
        let why = match self {
            Refusal::UnknownIssuer => format!(
                "its certificate is not signed by a CA the relay trusts (UnknownIssuer): set \
                 {setting}.ca_file to the CA that signed it (without it, the system's roots are \
                 trusted)"
            ),
            Refusal::NotValidForName => "its certificate is not for the host name the relay \
                 connected to (NotValidForName): use a host name the certificate names in the URL"
                .to_owned(),
            Refusal::Expired => "its certificate has expired (Expired): the server needs a \
                 renewed certificate"
                .to_owned(),
            Refusal::NotValidYet => "its certificate is not valid yet (NotValidYet): check the \
                 clocks of both machines"
                .to_owned(),
            Refusal::ServerCertificate(why) => format!("its certificate was refused ({why})"),
            Refusal::ClientCertificateRequired => format!(
                "the server requires a client certificate and the relay has none \
                 (CertificateRequired): set {setting}.cert_file and {setting}.key_file"
            ),
            Refusal::HandshakeFailure => format!(
                "the server ended the handshake (HandshakeFailure); if it requires a client \
                 certificate, set {setting}.cert_file and {setting}.key_file"
            ),
            Refusal::ClientCertificateRefused(alert) => format!(
                "the server refused the relay's client certificate ({alert}): \
                 {setting}.cert_file must be signed by a CA the server trusts, and valid"
            ),
            Refusal::Other(why) => why.clone(),
        };
        format!("TLS with {server} failed: {why}")
    }
}

/// The rustls error at the root of `e`, if TLS is what failed: found along the sources, and
/// inside the I/O errors that carry it (an I/O error's `source` skips the error it wraps).
pub fn rustls_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
    let mut next = Some(e);
    // Bounded: a chain of sources is short, and a cycle must not hang the relay.
    for _ in 0..16 {
        let e = next?;
        if let Some(t) = e.downcast_ref::<Error>() {
            return Some(t);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| rustls_cause(i))
        {
            return Some(inner);
        }
        next = e.source();
    }
    None
}

/// How long the handshake of [`probe`] may take, and the wait after it for the server's word
/// on the client certificate (a TLS 1.3 server says it after the handshake).
const PROBE: std::time::Duration = std::time::Duration::from_secs(2);

/// One handshake with `host:port` with the relay's files, and what rustls refused in it, if
/// anything: for when a client library's error has lost the reason (redis-rs), or the
/// connection was reset before the server's alert could be read (RabbitMQ, after the
/// client's first bytes). Nothing is sent after the handshake: RabbitMQ and Redis both wait
/// for the client, so a server content with the relay says nothing, and one that wanted a
/// certificate it did not get sends its alert.
pub async fn probe(host: &str, port: u16, material: &TlsMaterial, setting: &str) -> Option<Error> {
    use tokio::io::AsyncReadExt as _;
    let config = client_config(material, Verify::Full, setting).ok()?;
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).ok()?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::time::timeout(PROBE, tokio::net::TcpStream::connect((host, port)))
        .await
        .ok()?
        .ok()?;
    let mut tls = match tokio::time::timeout(PROBE, connector.connect(name, tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return rustls_cause(&e).cloned(),
        Err(_) => return None,
    };
    let mut answer = [0u8; 64];
    match tokio::time::timeout(PROBE, tls.read(&mut answer)).await {
        Ok(Err(e)) => rustls_cause(&e).cloned(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(c: CertificateError) -> Error {
        Error::InvalidCertificate(c)
    }

    #[test]
    fn the_server_certificate_refusals_are_named() {
        assert_eq!(
            Refusal::of(&cert(CertificateError::UnknownIssuer), false),
            Refusal::UnknownIssuer
        );
        assert_eq!(
            Refusal::of(&cert(CertificateError::NotValidForName), true),
            Refusal::NotValidForName
        );
        assert_eq!(
            Refusal::of(&cert(CertificateError::Expired), false),
            Refusal::Expired
        );
        assert_eq!(
            Refusal::of(&cert(CertificateError::BadSignature), false),
            Refusal::ServerCertificate("BadSignature".into())
        );
    }

    #[test]
    fn an_alert_is_read_against_whether_a_certificate_was_presented() {
        let required = Error::AlertReceived(AlertDescription::CertificateRequired);
        assert_eq!(
            Refusal::of(&required, false),
            Refusal::ClientCertificateRequired
        );
        assert_eq!(
            Refusal::of(&required, true),
            Refusal::ClientCertificateRefused("CertificateRequired".into())
        );
        let unknown_ca = Error::AlertReceived(AlertDescription::UnknownCA);
        assert_eq!(
            Refusal::of(&unknown_ca, true),
            Refusal::ClientCertificateRefused("UnknownCA".into())
        );
        assert!(matches!(Refusal::of(&unknown_ca, false), Refusal::Other(_)));
        let failure = Error::AlertReceived(AlertDescription::HandshakeFailure);
        assert_eq!(Refusal::of(&failure, false), Refusal::HandshakeFailure);
    }

    #[test]
    fn the_sentence_names_the_server_and_the_setting() {
        let s = Refusal::UnknownIssuer.explain("the broker at mq.example:5671", "broker.tls");
        assert!(
            s.starts_with("TLS with the broker at mq.example:5671 failed:"),
            "{s}"
        );
        assert!(s.contains("broker.tls.ca_file"), "{s}");
        let s = Refusal::ClientCertificateRequired.explain("the store at r:6380", "store.tls");
        assert!(s.contains("store.tls.cert_file"), "{s}");
    }

    #[test]
    fn the_cause_is_found_inside_io_errors_and_sources() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            cert(CertificateError::Expired),
        );
        assert_eq!(rustls_cause(&io), Some(&cert(CertificateError::Expired)));
        let outer = std::io::Error::other(io);
        assert!(rustls_cause(&outer).is_some());
        let plain = std::io::Error::other("refused");
        assert_eq!(rustls_cause(&plain), None);
    }
}
