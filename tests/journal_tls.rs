//! The PostgreSQL journal over TLS, against a server of each test's own that takes only TLS on
//! TCP (tests/common/pg_server.rs), with certificates made at test time (tests/common/tls.rs):
//! a relay writes its journal checking the server in full; a server signed by another CA, an
//! expired certificate and one for another name are refused, naming the server and the
//! reason, and the misnamed one is taken under `verify-ca`; a client certificate is presented
//! when the server asks; and `check-config` refuses what the relay cannot honour.

mod common;

use std::path::Path;
use std::time::Duration;

use common::pg_server::PgServer;
use common::process::stderr;
use common::tls::Pki;
use common::{Cli, ConfigBuilder, Env, RelayProcess, event, eventually, until};
use postback_relay::journal::{Filter, JournalConfig, JournalKind, Reader};

const WAIT: Duration = Duration::from_secs(30);
/// The URL's password: trust authentication ignores it, and no message may show it.
const PASSWORD: &str = "s3cret-pw";

fn url(pg: &PgServer, query: &str) -> String {
    format!(
        "postgres://postgres:{PASSWORD}@127.0.0.1:{}/postgres?{query}",
        pg.port()
    )
}

fn checked(mode: &str, ca: &Path) -> String {
    format!("sslmode={mode}&sslrootcert={}", ca.display())
}

/// The journal at `url` opened for reading (connected, its schema brought up to date), or
/// the error as a user reads it.
async fn open(url: &str) -> Result<Reader, String> {
    let config = JournalConfig {
        kind: JournalKind::Postgres,
        url: Some(url.to_owned()),
        ..JournalConfig::default()
    };
    let opened = Reader::open(&config).await.map_err(|e| e.to_string());
    if let Err(e) = &opened {
        assert!(!e.contains(PASSWORD), "the password shown: {e}");
    }
    opened
}

fn server(pg: &PgServer) -> String {
    format!("PostgreSQL at 127.0.0.1:{}", pg.port())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_writes_its_journal_over_tls_checking_the_server_in_full() {
    const N: usize = 20;
    let pki = Pki::new();
    let Some(pg) = PgServer::start_tls(&pki.server, None) else {
        return;
    };
    // The server takes nothing without TLS: what is written below went over it.
    let plain = open(&url(&pg, "sslmode=disable")).await.err().unwrap();
    assert!(plain.contains("no encryption"), "{plain}");

    let journal = url(&pg, &checked("verify-full", &pki.ca));
    let env = Env::new().await;
    let config = env
        .config()
        .destination(env.powerspace())
        .journal_postgres(&journal);
    let running = env.start(&config).await;
    for i in 0..N {
        env.publish(&event(&format!("t{i}"), "lead", &format!("t-{i}"), None))
            .await;
    }
    until(&running, "every entry written", |m| {
        m.registry()
            .gather()
            .iter()
            .filter(|f| f.name() == "postback_relay_journal_written_total")
            .flat_map(|f| f.get_metric().iter())
            .map(|s| s.get_counter().get_value())
            .sum::<f64>()
            == N as f64
    })
    .await;
    assert_eq!(pg.entries().await, Some(N as i64));
    // The readers (the console, the commands) over TLS too.
    let reader = open(&journal).await.unwrap();
    let found = reader
        .entries(&Filter {
            event_id: Some("t7".into()),
            limit: 10,
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_the_url_does_not_trust_is_refused_naming_it_and_why() {
    let pki = Pki::new();
    let Some(pg) = PgServer::start_tls(&pki.server, None) else {
        return;
    };
    let at = server(&pg);
    // Another CA's: refused, under verify-full and under require with a root certificate
    // (which checks the chain, as libpq's does); require without one checks nothing.
    for mode in ["verify-full", "verify-ca", "require"] {
        let e = open(&url(&pg, &checked(mode, &pki.other_ca)))
            .await
            .err()
            .unwrap();
        eprintln!("{mode}, another CA: {e}");
        assert!(
            e.contains(&at) && e.contains("not signed by a CA the relay trusts"),
            "{mode}: {e}"
        );
    }
    open(&url(&pg, "sslmode=require")).await.unwrap();
    open(&url(&pg, &checked("verify-full", &pki.ca)))
        .await
        .unwrap();

    pg.set_certificate(&pki.expired);
    let full = url(&pg, &checked("verify-full", &pki.ca));
    eventually(WAIT, "the expired certificate refused", || async {
        open(&full)
            .await
            .err()
            .is_some_and(|e| e.contains(&at) && e.contains("certificate has expired"))
    })
    .await;
    let e = open(&url(&pg, &checked("verify-ca", &pki.ca)))
        .await
        .err()
        .unwrap();
    eprintln!("verify-ca, expired: {e}");
    assert!(e.contains("certificate has expired"), "verify-ca: {e}");

    pg.set_certificate(&pki.misnamed);
    eventually(WAIT, "the misnamed certificate refused", || async {
        open(&full).await.err().is_some_and(|e| {
            e.contains(&at) && e.contains("not for this host name but for elsewhere.example")
        })
    })
    .await;
    // verify-ca checks the chain, not the name.
    open(&url(&pg, &checked("verify-ca", &pki.ca)))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_is_presented_when_the_server_asks() {
    let pki = Pki::new();
    let Some(pg) = PgServer::start_tls(&pki.server, Some(&pki.ca)) else {
        return;
    };
    let at = server(&pg);
    let base = checked("verify-full", &pki.ca);
    let e = open(&url(&pg, &base)).await.err().unwrap();
    eprintln!("no client certificate: {e}");
    assert!(
        e.contains(&at) && e.contains("requires a valid client certificate"),
        "{e}"
    );
    let identity = |pair: &common::tls::Pair| {
        format!(
            "{base}&sslcert={}&sslkey={}",
            pair.cert.display(),
            pair.key.display()
        )
    };
    let e = open(&url(&pg, &identity(&pki.stranger)))
        .await
        .err()
        .unwrap();
    eprintln!("another CA's client certificate: {e}");
    assert!(
        e.contains(&at) && e.contains("refused the relay's client certificate"),
        "{e}"
    );
    let reader = open(&url(&pg, &identity(&pki.client))).await.unwrap();
    assert!(reader.entries(&Filter::default()).await.unwrap().is_empty());
}

/// What a user sees of a server signed by another CA: `check-config` passes (the file is a
/// certificate; whose, only the server can tell), and the relay starts and logs an error
/// naming the server and the reason at once, and again when it writes; `deliveries` fails
/// with it.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_ca_is_told_at_the_relays_first_write_and_by_the_commands() {
    let pki = Pki::new();
    let Some(pg) = PgServer::start_tls(&pki.server, None) else {
        return;
    };
    let env = Env::new().await;
    env.declare().await;
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let config = env
        .config()
        .destination(env.powerspace())
        .listen(&format!("127.0.0.1:{port}"))
        .journal_postgres(&url(&pg, &checked("verify-full", &pki.other_ca)))
        .write(&dir);
    Cli::new(&["check-config", "--config", &config]).ok();

    let out = Cli::new(&["deliveries", "--config", &config, "--event-id", "w1"]).output();
    let said = stderr(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains(&server(&pg)) && said.contains("not signed by a CA the relay trusts"),
        "{said}"
    );
    assert!(!said.contains(PASSWORD), "{said}");

    let log = dir.path().join("relay.log");
    let _relay = RelayProcess::run_with(&config, &[], Some(&log));
    let logged = |what: &'static str| {
        let (log, at) = (log.clone(), server(&pg));
        async move {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.lines().any(|l| {
                l.contains(what)
                    && l.contains(&at)
                    && l.contains("not signed by a CA the relay trusts")
            })
        }
    };
    eventually(WAIT, "the failure logged at start", || {
        logged("journal not reachable at start")
    })
    .await;
    env.publish(&event("w1", "lead", "w-1", None)).await;
    eventually(WAIT, "the failure logged at the first write", || {
        logged("journal write failed")
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(PASSWORD), "{text}");
}

/// `check-config` refuses, naming it, every TLS setting the relay cannot honour, so that
/// none is found at run time.
#[test]
fn check_config_refuses_what_the_relay_cannot_honour() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "no certificate here").unwrap();
    let base = "postgres://relay:s3cret-pw@db.example/journal?";
    let cases = [
        ("sslmode=verify".to_owned(), "sslmode must be"),
        ("sslmode=allow".to_owned(), "allow is not supported"),
        (
            "sslmode=verify-full&sslrootcert=/no/such/ca.pem".to_owned(),
            "sslrootcert: cannot read /no/such/ca.pem",
        ),
        (
            format!("sslmode=verify-full&sslrootcert={}", not_pem.display()),
            "holds no PEM certificate",
        ),
        (
            format!(
                "sslmode=verify-full&sslcert={}&sslkey={}",
                not_pem.display(),
                pki.client.key.display()
            ),
            "sslcert: ",
        ),
        (
            format!("sslmode=require&sslcert={}", pki.client.cert.display()),
            "sslcert and sslkey go together",
        ),
        (
            format!(
                "sslmode=require&sslcert={}&sslkey={}",
                pki.client.cert.display(),
                pki.stranger.key.display()
            ),
            "cannot be used together",
        ),
        ("sslcrl=/crl.pem".to_owned(), "sslcrl is not supported"),
        ("sslpassword=x".to_owned(), "sslpassword is not supported"),
        (
            "gssencmode=require".to_owned(),
            "gssencmode is not supported",
        ),
        (
            "sslmode=require&sslrootcert=system".to_owned(),
            "sslrootcert=system needs sslmode=verify-full",
        ),
    ];
    for (query, says) in cases {
        let path = ConfigBuilder::new()
            .destination(common::Dest::powerspace("ps", "http://127.0.0.1:9/"))
            .journal_postgres(&format!("{base}{query}"))
            .write(&dir);
        let out = Cli::new(&["check-config", "--config", &path]).output();
        let said = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{query}: {said}");
        assert!(
            said.contains("journal.url") && said.contains(says),
            "{query}: {said}"
        );
        assert!(!said.contains("s3cret-pw"), "{said}");
    }
}
