//! A throwaway certificate authority made at test time, and the certificates the TLS tests
//! give their own servers and clients: a server certificate for `localhost` and 127.0.0.1, a
//! client certificate, and the certificates a handshake must refuse (another CA's, an expired
//! one, one for another name). Every file is PEM, in a temporary directory that goes with the
//! value.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A certificate and its key, written as `{name}.crt` and `{name}.key`.
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct Pki {
    dir: tempfile::TempDir,
    /// The CA's certificate: what a client trusts.
    pub ca: PathBuf,
    /// Another CA, which signed nothing the servers show.
    pub other_ca: PathBuf,
    /// The servers' certificate, for `localhost` and 127.0.0.1, by `ca`.
    pub server: Pair,
    /// A client certificate (common name `relay`), by `ca`.
    pub client: Pair,
    /// A client certificate by `other_ca`, which the servers refuse.
    pub stranger: Pair,
    /// A server certificate by `ca` that expired yesterday.
    pub expired: Pair,
    /// A server certificate by `ca` for `elsewhere.example` only.
    pub misnamed: Pair,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    names: &[&str],
    common_name: &str,
    purpose: ExtendedKeyUsagePurpose,
    issuer: &CertifiedIssuer<'static, KeyPair>,
    expired: bool,
) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![purpose];
    if expired {
        let now = std::time::SystemTime::now();
        params.not_before = (now - std::time::Duration::from_secs(30 * 86_400)).into();
        params.not_after = (now - std::time::Duration::from_secs(86_400)).into();
    }
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let pair = |name: &str, (cert, key): (String, String)| Pair {
            cert: write(&format!("{name}.crt"), &cert),
            key: write(&format!("{name}.key"), &key),
        };
        let authority = ca("postback-relay test CA");
        let other = ca("another CA");
        let server = ExtendedKeyUsagePurpose::ServerAuth;
        let client = ExtendedKeyUsagePurpose::ClientAuth;
        let local = ["localhost", "127.0.0.1"];
        Pki {
            ca: write("ca.crt", &authority.pem()),
            other_ca: write("other-ca.crt", &other.pem()),
            server: pair(
                "server",
                leaf(&local, "localhost", server.clone(), &authority, false),
            ),
            client: pair(
                "client",
                leaf(&[], "relay", client.clone(), &authority, false),
            ),
            stranger: pair("stranger", leaf(&[], "relay", client, &other, false)),
            expired: pair(
                "expired",
                leaf(&local, "localhost", server.clone(), &authority, true),
            ),
            misnamed: pair(
                "misnamed",
                leaf(
                    &["elsewhere.example"],
                    "elsewhere.example",
                    server,
                    &authority,
                    false,
                ),
            ),
            dir,
        }
    }

    /// The directory holding every file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
