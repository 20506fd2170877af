//! The TLS files an operator names are read once and checked: a missing file, a file that is
//! not PEM, a certificate without its key, and a key that is not the certificate's are each
//! refused with the setting named, before any connection is tried.

mod common;

use common::tls::Pki;
use postback_relay::config::tls::{TlsError, TlsFiles, Verify, client_config};

fn files(
    ca: Option<&std::path::Path>,
    cert: Option<&std::path::Path>,
    key: Option<&std::path::Path>,
) -> TlsFiles {
    TlsFiles {
        ca_file: ca.map(Into::into),
        cert_file: cert.map(Into::into),
        key_file: key.map(Into::into),
    }
}

#[test]
fn good_files_load_and_make_a_client() {
    let pki = Pki::new();
    let m = files(Some(&pki.ca), Some(&pki.client.cert), Some(&pki.client.key))
        .load("store.tls")
        .unwrap();
    assert_eq!(m.roots.as_ref().map(Vec::len), Some(1));
    assert!(m.identity.is_some());
    for verify in [Verify::Full, Verify::ChainOnly, Verify::Nothing] {
        client_config(&m, verify, "store.tls").unwrap();
    }
    // Nothing named: the system's roots.
    let none = TlsFiles::default().load("broker.tls").unwrap();
    assert!(none.roots.is_none() && none.identity.is_none());
    assert!(format!("{none:?}").contains("identity: false"));
}

#[test]
fn bad_files_are_refused_naming_the_setting() {
    let pki = Pki::new();
    let missing = pki.dir().join("nope.crt");
    let err = |f: TlsFiles| f.load("broker.tls").unwrap_err();

    let e = err(files(Some(&missing), None, None));
    assert!(matches!(e, TlsError::Read { .. }), "{e}");
    assert!(
        e.to_string().starts_with("broker.tls.ca_file: cannot read"),
        "{e}"
    );

    // A key where a certificate is expected holds no certificate.
    let e = err(files(Some(&pki.client.key), None, None));
    assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");

    let e = err(files(None, Some(&pki.client.cert), None));
    assert!(matches!(e, TlsError::HalfIdentity(_)), "{e}");
    let e = err(files(None, None, Some(&pki.client.key)));
    assert!(matches!(e, TlsError::HalfIdentity(_)), "{e}");

    // A certificate where the key is expected.
    let e = err(files(None, Some(&pki.client.cert), Some(&pki.client.cert)));
    assert!(matches!(e, TlsError::NoKey { .. }), "{e}");
    assert!(e.to_string().starts_with("broker.tls.key_file"), "{e}");

    // Another certificate's key.
    let e = err(files(None, Some(&pki.client.cert), Some(&pki.stranger.key)));
    assert!(matches!(e, TlsError::Identity { .. }), "{e}");
    // No key material in any message.
    let key = std::fs::read_to_string(&pki.stranger.key).unwrap();
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!e.to_string().contains(&body[..20]), "{e}");
}
