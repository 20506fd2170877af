//! TLS to the servers the relay uses (RabbitMQ, Redis, PostgreSQL): the files an operator
//! names (`[broker.tls]`, `[store.tls]`, the journal URL's `sslrootcert`, `sslcert`,
//! `sslkey`), read and checked once, and the client configuration built from them.
//!
//! By default a server's certificate is checked against the system's roots (the
//! `/etc/ssl/certs` bundle and its like); `ca_file` replaces them with the operator's CA (a
//! private CA, a managed service's bundle). A client certificate and its key are presented
//! when the server asks for one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Deserialize;

/// The files a TLS connection uses beyond the system's roots, all PEM.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The CA certificate(s) to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The client certificate (with its chain), presented when the server asks for one.
    pub cert_file: Option<PathBuf>,
    /// The private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
}

/// Why TLS files cannot be used. `setting` names where they were given (`broker.tls.ca_file`,
/// `journal.url's sslrootcert`).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{setting}: cannot read {path}: {source}")]
    Read {
        setting: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{setting}: {path} holds no PEM certificate")]
    NoCertificate { setting: String, path: PathBuf },
    #[error("{setting}: {path} holds no PEM private key")]
    NoKey { setting: String, path: PathBuf },
    #[error("{setting}: {path} is not PEM the relay can read ({reason})")]
    BadPem {
        setting: String,
        path: PathBuf,
        reason: String,
    },
    #[error("{0}: a client certificate needs its key and a key its certificate: set both")]
    HalfIdentity(String),
    #[error("{setting}: the certificate and key cannot be used together ({reason})")]
    Identity { setting: String, reason: String },
    #[error("{setting}: {reason}")]
    Config { setting: String, reason: String },
}

/// A client certificate chain and its key, read.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// The files as read, for clients that take PEM.
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// [`TlsFiles`] read and checked.
#[derive(Default)]
pub struct TlsMaterial {
    /// The operator's CA certificates; `None`: the system's roots.
    pub roots: Option<Vec<CertificateDer<'static>>>,
    /// The CA file as read, for clients that take PEM.
    pub ca_pem: Option<Vec<u8>>,
    pub identity: Option<Identity>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("TlsMaterial")
            .field("roots", &self.roots.as_ref().map(Vec::len))
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

/// How much of the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// Its chain to a trusted root and its name (libpq's `verify-full`; always for RabbitMQ
    /// and Redis).
    Full,
    /// Its chain only, whatever name it carries (libpq's `verify-ca`).
    ChainOnly,
    /// Nothing: encrypted, not authenticated (libpq's `require` and `prefer` without a root
    /// certificate).
    Nothing,
}

impl TlsFiles {
    /// Whether any file is named.
    pub fn is_empty(&self) -> bool {
        self == &TlsFiles::default()
    }

    /// Reads and checks the files; `setting` is the table they were given in
    /// (`broker.tls`), named in every error.
    pub fn load(&self, setting: &str) -> Result<TlsMaterial, TlsError> {
        let ca = self
            .ca_file
            .as_deref()
            .map(|p| read_certs(&format!("{setting}.ca_file"), p))
            .transpose()?;
        let identity = match (&self.cert_file, &self.key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(read_identity(
                (&format!("{setting}.cert_file"), cert),
                (&format!("{setting}.key_file"), key),
            )?),
            _ => return Err(TlsError::HalfIdentity(setting.to_owned())),
        };
        let (roots, ca_pem) = match ca {
            Some((certs, pem)) => (Some(certs), Some(pem)),
            None => (None, None),
        };
        Ok(TlsMaterial {
            roots,
            ca_pem,
            identity,
        })
    }
}

fn read(setting: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        setting: setting.to_owned(),
        path: path.to_owned(),
        source,
    })
}

/// The certificates of a PEM file, and the file.
pub fn read_certs(
    setting: &str,
    path: &Path,
) -> Result<(Vec<CertificateDer<'static>>, Vec<u8>), TlsError> {
    let pem = read(setting, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            setting: setting.to_owned(),
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            setting: setting.to_owned(),
            path: path.to_owned(),
        });
    }
    Ok((certs, pem))
}

/// A client certificate and its key, from `(setting, path)` each.
pub fn read_identity(cert: (&str, &Path), key: (&str, &Path)) -> Result<Identity, TlsError> {
    let (chain, cert_pem) = read_certs(cert.0, cert.1)?;
    let key_pem = read(key.0, key.1)?;
    let parsed = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            setting: key.0.to_owned(),
            path: key.1.to_owned(),
        },
        e => TlsError::BadPem {
            setting: key.0.to_owned(),
            path: key.1.to_owned(),
            reason: e.to_string(),
        },
    })?;
    let identity = Identity {
        chain,
        key: parsed,
        cert_pem,
        key_pem,
    };
    // A key that is not the certificate's is found now, not at the first handshake.
    let provider = provider();
    let signing = provider
        .key_provider
        .load_private_key(identity.key.clone_key())
        .map_err(|e| TlsError::Identity {
            setting: key.0.to_owned(),
            reason: e.to_string(),
        })?;
    rustls::sign::CertifiedKey::new(identity.chain.clone(), signing)
        .keys_match()
        .map_err(|e| TlsError::Identity {
            setting: cert.0.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(identity)
}

/// The one cryptographic provider the relay's TLS uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The system's roots (`SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured).
fn system_roots(setting: &str) -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "none installed".into());
        return Err(TlsError::Config {
            setting: setting.to_owned(),
            reason: format!(
                "no system root certificate could be loaded ({why}): install the system's CA \
                 bundle or name a CA file"
            ),
        });
    }
    Ok(store)
}

/// A client configuration for `material`, checking the server's certificate as `verify`
/// says. `setting` is named in errors.
pub fn client_config(
    material: &TlsMaterial,
    verify: Verify,
    setting: &str,
) -> Result<rustls::ClientConfig, TlsError> {
    let config_error = |e: rustls::Error| TlsError::Config {
        setting: setting.to_owned(),
        reason: e.to_string(),
    };
    let provider = provider();
    let roots = match &material.roots {
        Some(certs) => {
            let mut store = RootCertStore::empty();
            for c in certs {
                store.add(c.clone()).map_err(config_error)?;
            }
            store
        }
        None if verify == Verify::Nothing => RootCertStore::empty(),
        None => system_roots(setting)?,
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?;
    let builder = match verify {
        Verify::Full => builder.with_root_certificates(roots),
        Verify::ChainOnly | Verify::Nothing => {
            let inner =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .ok();
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Lenient {
                    inner: if verify == Verify::ChainOnly {
                        Some(inner.ok_or_else(|| TlsError::Config {
                            setting: setting.to_owned(),
                            reason:
                                "no root certificate to check the server's chain against".into(),
                        })?)
                    } else {
                        None
                    },
                    provider,
                }))
        }
    };
    match &material.identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|e| TlsError::Identity {
                setting: setting.to_owned(),
                reason: e.to_string(),
            }),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// A verifier for [`Verify::ChainOnly`] (`inner` set: the chain is checked, the name is not)
/// and [`Verify::Nothing`]. The handshake's signatures are checked either way.
#[derive(Debug)]
struct Lenient {
    inner: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

/// Whether a failed check is only the certificate's name, which `verify-ca` leaves out.
pub fn only_the_name(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        )
    )
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else {
            return Ok(ServerCertVerified::assertion());
        };
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(e) if only_the_name(&e) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
