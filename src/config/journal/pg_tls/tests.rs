use std::path::PathBuf;

use super::super::super::tls::Verify;
use super::*;
use tokio_postgres::config::SslMode as Wire;

fn parsed(url: &str) -> PgUrl {
    PgUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
}

fn refused(url: &str) -> PgUrlError {
    match PgUrl::parse(url) {
        Ok(u) => panic!("{url}: accepted as {:?}", u.tls),
        Err(e) => e,
    }
}

#[test]
fn each_mode_as_libpq_reads_it() {
    let cases = [
        ("", SslMode::Prefer, Some(Verify::Nothing), Wire::Prefer),
        ("?sslmode=disable", SslMode::Disable, None, Wire::Disable),
        (
            "?sslmode=prefer",
            SslMode::Prefer,
            Some(Verify::Nothing),
            Wire::Prefer,
        ),
        (
            "?sslmode=require",
            SslMode::Require,
            Some(Verify::Nothing),
            Wire::Require,
        ),
        (
            "?sslmode=verify-ca",
            SslMode::VerifyCa,
            Some(Verify::ChainOnly),
            Wire::Require,
        ),
        (
            "?sslmode=verify-full",
            SslMode::VerifyFull,
            Some(Verify::Full),
            Wire::Require,
        ),
        // A root certificate makes prefer and require check the chain, as verify-ca does.
        (
            "?sslmode=require&sslrootcert=/ca.pem",
            SslMode::Require,
            Some(Verify::ChainOnly),
            Wire::Require,
        ),
        (
            "?sslrootcert=/ca.pem",
            SslMode::Prefer,
            Some(Verify::ChainOnly),
            Wire::Prefer,
        ),
        // The system's roots: verify-full unless said, and nothing weaker.
        (
            "?sslrootcert=system",
            SslMode::VerifyFull,
            Some(Verify::Full),
            Wire::Require,
        ),
    ];
    for (query, mode, verify, wire) in cases {
        let url = parsed(&format!(
            "postgres://relay:pw@db.example:6432/journal{query}"
        ));
        assert_eq!(url.tls.mode, mode, "{query}");
        assert_eq!(url.tls.verify(), verify, "{query}");
        assert_eq!(url.config.get_ssl_mode(), wire, "{query}");
        assert_eq!(url.config.get_dbname(), Some("journal"));
        assert_eq!(url.config.get_password(), Some(&b"pw"[..]));
        assert_eq!(url.servers(), "db.example:6432");
    }
}

#[test]
fn the_files_are_taken_out_and_the_rest_left_to_tokio_postgres() {
    let url = parsed(
        "postgresql://relay@db/j?application_name=relay&sslmode=verify-full\
         &sslrootcert=/etc/ca%20bundle.pem&sslcert=/c.pem&sslkey=/k.pem&connect_timeout=3",
    );
    assert_eq!(
        url.tls,
        PgTls {
            mode: SslMode::VerifyFull,
            root: Some(Root::File(PathBuf::from("/etc/ca bundle.pem"))),
            cert: Some("/c.pem".into()),
            key: Some("/k.pem".into()),
        }
    );
    assert_eq!(url.config.get_application_name(), Some("relay"));
    assert_eq!(
        url.config.get_connect_timeout(),
        Some(&std::time::Duration::from_secs(3))
    );
}

#[test]
fn the_readmes_managed_service_example() {
    let url = parsed(
        "postgres://relay:pw@journal.abc123.eu-west-1.rds.amazonaws.com:5432/journal\
         ?sslmode=verify-full&sslrootcert=/etc/postback-relay/rds-global-bundle.pem",
    );
    assert_eq!(url.tls.verify(), Some(Verify::Full));
    assert_eq!(
        url.servers(),
        "journal.abc123.eu-west-1.rds.amazonaws.com:5432"
    );
}

#[test]
fn the_key_value_form_too() {
    let url = parsed(
        "host=127.0.0.1 port=5433 user=relay password='p w\\'x' sslmode = verify-ca \
         sslrootcert='/my ca.pem' dbname=j",
    );
    assert_eq!(url.tls.mode, SslMode::VerifyCa);
    assert_eq!(url.tls.root, Some(Root::File("/my ca.pem".into())));
    assert_eq!(url.config.get_password(), Some(&b"p w'x"[..]));
    assert_eq!(url.config.get_dbname(), Some("j"));
    assert_eq!(url.servers(), "127.0.0.1:5433");
    let by_address = parsed("hostaddr=10.0.3.7 port=6432 user=relay sslmode=disable");
    assert_eq!(by_address.servers(), "10.0.3.7:6432");
    for refusal in [
        "hostaddr=10.0.3.7 user=relay",
        "host=a,b port=1,2,3 sslmode=disable",
        "host=a,b hostaddr=10.0.3.7 sslmode=disable",
    ] {
        assert!(
            matches!(refused(refusal), PgUrlError::Contradiction(_)),
            "{refusal}"
        );
    }
    assert_eq!(parsed("host=a,b port=1,2").servers(), "a:1,b:2");
    assert_eq!(refused("host=h sslmode='verify-ca"), PgUrlError::Syntax);
    assert_eq!(refused("host=h sslmode"), PgUrlError::Syntax);
}

#[test]
fn what_the_relay_cannot_honour_is_refused_by_name() {
    let base = "postgres://relay:secret@db/j?";
    for (query, param) in [
        ("sslcrl=/crl.pem", "sslcrl"),
        ("sslcrldir=/crls", "sslcrldir"),
        ("sslpassword=x", "sslpassword"),
        ("gssencmode=require", "gssencmode"),
        ("sslsni=0", "sslsni"),
        (
            "ssl_min_protocol_version=TLSv1.3",
            "ssl_min_protocol_version",
        ),
        (
            "ssl_max_protocol_version=TLSv1.2",
            "ssl_max_protocol_version",
        ),
        ("channel_binding=require", "channel_binding"),
        ("sslcertmode=require", "sslcertmode"),
        ("passfile=/p", "passfile"),
        ("requiressl=1", "requiressl"),
    ] {
        let e = refused(&format!("{base}{query}"));
        assert!(
            matches!(&e, PgUrlError::Unsupported { param: p, .. } if p == param),
            "{query}: {e:?}"
        );
        assert!(!e.to_string().contains("secret"));
    }
    // What is libpq's default and the relay's behaviour is accepted.
    for query in [
        "gssencmode=disable",
        "gssencmode=prefer",
        "sslsni=1",
        "sslcertmode=allow",
    ] {
        parsed(&format!("{base}{query}"));
    }
    assert_eq!(
        refused(&format!("{base}sslmode=verify")),
        PgUrlError::SslMode(false)
    );
    assert_eq!(
        refused(&format!("{base}sslmode=allow")),
        PgUrlError::SslMode(true)
    );
    assert_eq!(
        refused(&format!("{base}sslmode=require&sslmode=disable")),
        PgUrlError::Twice("sslmode")
    );
    // tokio-postgres's own refusal of what neither knows, without the URL.
    let e = refused(&format!("{base}nonsense=1"));
    assert!(matches!(e, PgUrlError::Postgres(_)), "{e:?}");
    assert!(!e.to_string().contains("secret"), "{e}");
}

#[test]
fn settings_that_contradict_each_other_are_refused() {
    for query in [
        "sslmode=disable&sslrootcert=/ca.pem",
        "sslmode=disable&sslcert=/c.pem&sslkey=/k.pem",
        "sslmode=require&sslrootcert=system",
        "sslmode=verify-ca&sslrootcert=system",
        "sslmode=verify-full&sslcert=/c.pem",
        "sslkey=/k.pem",
        "sslnegotiation=direct",
        "sslmode=prefer&sslnegotiation=direct",
        "host=/var/run/postgresql&sslmode=require",
    ] {
        let e = refused(&format!("postgres://db/j?{query}"));
        assert!(matches!(e, PgUrlError::Contradiction(_)), "{query}: {e:?}");
    }
}

#[test]
fn what_tokio_postgres_takes_with_tls() {
    let url = parsed("postgres://db/j?sslmode=verify-full&sslnegotiation=direct");
    assert_eq!(
        url.config.get_ssl_negotiation(),
        tokio_postgres::config::SslNegotiation::Direct
    );
    // Over a Unix socket, prefer is no TLS, as libpq's.
    parsed("postgres://db/j?host=/var/run/postgresql");
}

#[test]
fn the_files_are_read_when_the_configuration_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let url = parsed(&format!(
        "postgres://db/j?sslmode=verify-full&sslrootcert={}",
        not_pem.display()
    ));
    let e = url.tls.client_config().unwrap_err().to_string();
    assert!(
        e.starts_with("sslrootcert: ") && e.contains("no PEM certificate"),
        "{e}"
    );
    let missing = parsed("postgres://db/j?sslmode=require&sslrootcert=/no/such/ca.pem");
    let e = missing.tls.client_config().unwrap_err().to_string();
    assert!(
        e.contains("sslrootcert: cannot read /no/such/ca.pem"),
        "{e}"
    );
    // No TLS, no file; TLS without checking, none either.
    assert!(
        parsed("postgres://db/j?sslmode=disable")
            .tls
            .client_config()
            .unwrap()
            .is_none()
    );
    assert!(
        parsed("postgres://db/j?sslmode=require")
            .tls
            .client_config()
            .unwrap()
            .is_some()
    );
}
