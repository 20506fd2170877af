//! TLS to RabbitMQ (`amqps://`) and Redis (`rediss://`), against servers of the test's own:
//! a RabbitMQ node with a TLS listener only, and redis-servers with `--tls-port` only, each
//! with certificates of a throwaway CA made at test time (common::tls). A relay delivers
//! through both, with its journal in a PostgreSQL server that takes only TLS (the journal's
//! own TLS tests are in journal_tls.rs); the commands reach the broker with the same settings; every refusal (an
//! unknown CA, a missing or foreign client certificate, an expired or misnamed server
//! certificate) says which server and why, and never the password.

mod common;

use std::path::Path;
use std::time::Duration;

use common::config::Tls;
use common::partner::until_clicks;
use common::pg_server::PgServer;
use common::rabbit_node::{NodeTls, RabbitNode};
use common::redis::{Redis, RedisTls};
use common::tls::{Pair, Pki};
use common::{Cli, Env, event, eventually};
use postback_relay::config::store::StoreConfig;
use postback_relay::config::tls::TlsFiles;
use postback_relay::relay::broker::{self, Publisher};
use postback_relay::shared::Shared;

fn files(ca: &Path, client: Option<&Pair>) -> TlsFiles {
    TlsFiles {
        ca_file: Some(ca.to_owned()),
        cert_file: client.map(|c| c.cert.clone()),
        key_file: client.map(|c| c.key.clone()),
    }
}

fn redis_tls(pki: &Pki, server: &Pair, require_client_cert: bool) -> Option<Redis> {
    Redis::start_tls(RedisTls {
        cert: server.cert.clone(),
        key: server.key.clone(),
        ca: pki.ca.clone(),
        require_client_cert,
    })
}

/// The error connecting to the broker at `url` with `tls` gives; it must fail.
async fn broker_refusal(url: &str, tls: &TlsFiles) -> String {
    match broker::connect(url, Some(tls), "test").await {
        Ok(_) => panic!("connected, though the handshake must fail"),
        Err(e) => e.to_string(),
    }
}

/// The error opening the Redis store at `url` with `tls` gives; it must fail.
async fn store_refusal(url: &str, tls: TlsFiles) -> String {
    let config = StoreConfig::Redis {
        url: url.to_owned(),
        key_prefix: "tls-test".into(),
        ttl_secs: 60,
        tls: Some(tls),
    };
    match Shared::open(&config).await {
        Ok(_) => panic!("opened, though the handshake must fail"),
        Err(e) => e.to_string(),
    }
}

fn says(text: &str, server: &str, words: &[&str]) {
    assert!(
        text.contains(&format!("TLS with {server} failed")),
        "{text}"
    );
    for w in words {
        assert!(text.contains(w), "{w:?} missing in: {text}");
    }
    assert!(
        !text.contains("guest:guest"),
        "the password is shown: {text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_delivers_through_rabbitmq_redis_and_postgresql_over_tls_and_refusals_say_why() {
    let pki = Pki::new();
    let Some(node) = RabbitNode::start(&NodeTls {
        ca: &pki.ca,
        cert: &pki.server.cert,
        key: &pki.server.key,
        require_client_cert: true,
    }) else {
        return;
    };
    let Some(redis) = redis_tls(&pki, &pki.server, true) else {
        return;
    };
    // The journal's server asks for a client certificate too.
    let Some(pg) = PgServer::start_tls(&pki.server, Some(&pki.ca)) else {
        return;
    };
    let journal = format!(
        "postgres://postgres:guest@127.0.0.1:{}/postgres?sslmode=verify-full&sslrootcert={}\
         &sslcert={}&sslkey={}",
        pg.port(),
        pki.ca.display(),
        pki.client.cert.display(),
        pki.client.key.display()
    );
    let client = Tls::new(&pki.ca, Some((&pki.client.cert, &pki.client.key)));
    let good = files(&pki.ca, Some(&pki.client));

    // A relay on all three, over TLS, delivers and journals.
    let env = Env::new().await;
    let config = env
        .config()
        .destination(env.powerspace())
        .broker_tls(&node.url(), client.clone())
        .redis_tls(&redis.url(), client.clone())
        .journal_postgres(&journal);
    let _running = env.start(&config).await;
    let conn = broker::connect(&node.url(), Some(&good), "test")
        .await
        .unwrap();
    let publisher = Publisher::new(&conn).await.unwrap();
    let body = event("tls-1", "lead", "click-tls-1", None);
    let m = postback_relay::interfaces::publish::Outgoing::new(body);
    publisher
        .publish_json(
            &env.topology().exchange,
            &m.routing_key,
            &m.body,
            None,
            None,
        )
        .await
        .unwrap();
    until_clicks(
        &env.sandbox,
        1,
        true,
        Duration::from_secs(30),
        "delivered over TLS",
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the delivery journaled over TLS",
        || async { pg.entries().await == Some(1) },
    )
    .await;

    // A command reaches the broker with the configuration's TLS settings.
    let dir = tempfile::tempdir().unwrap();
    let path = config.write(&dir);
    let out = Cli::new(&["dlq", "stats", "--config", &path]).ok();
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 dead letter"));
    // And the store with its own: a destination paused and listed, over TLS.
    Cli::new(&["destination", "pause", "powerspace", "--config", &path]).ok();
    let out = Cli::new(&["destination", "list", "--config", &path]).ok();
    assert!(String::from_utf8_lossy(&out.stdout).contains("powerspace\tpaused by"));

    // Without a CA file, the system's roots: the test CA is one when SSL_CERT_FILE names it.
    let identity_only = Tls {
        ca_file: None,
        ..client.clone()
    };
    let system = config
        .clone()
        .broker_tls(&node.url(), identity_only.clone())
        .redis_tls(&redis.url(), identity_only);
    let system_dir = tempfile::tempdir().unwrap();
    let system_path = system.write(&system_dir);
    let ca = pki.ca.display().to_string();
    let out = Cli::new(&["dlq", "stats", "--config", &system_path])
        .env("SSL_CERT_FILE", &ca)
        .ok();
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 dead letter"));
    let out = Cli::new(&["destination", "list", "--config", &system_path])
        .env("SSL_CERT_FILE", &ca)
        .ok();
    assert!(String::from_utf8_lossy(&out.stdout).contains("powerspace\tpaused by"));
    // The machine's own roots do not hold the test CA.
    let out = Cli::new(&["dlq", "stats", "--config", &system_path]).output();
    assert!(!out.status.success());
    assert!(common::process::stderr(&out).contains("UnknownIssuer"));

    let broker_at = format!("the broker at 127.0.0.1:{}", node.port);
    // Another CA's certificate is not trusted: the relay refuses the server.
    let wrong_ca = files(&pki.other_ca, Some(&pki.client));
    says(
        &broker_refusal(&node.url(), &wrong_ca).await,
        &broker_at,
        &["UnknownIssuer", "broker.tls.ca_file"],
    );
    // Without a client certificate the server refuses the relay; with another CA's too.
    let without = files(&pki.ca, None);
    says(
        &broker_refusal(&node.url(), &without).await,
        &broker_at,
        &["broker.tls.cert_file"],
    );
    says(
        &broker_refusal(&node.url(), &files(&pki.ca, Some(&pki.stranger))).await,
        &broker_at,
        &["refused the relay's client certificate"],
    );
    // The same for the store.
    let store_at = format!(
        "the store at 127.0.0.1:{}",
        redis
            .url()
            .split(':')
            .nth(2)
            .unwrap()
            .trim_end_matches("/0")
    );
    says(
        &store_refusal(&redis.url(), wrong_ca).await,
        &store_at,
        &["UnknownIssuer", "store.tls.ca_file"],
    );
    says(
        &store_refusal(&redis.url(), without).await,
        &store_at,
        &["store.tls.cert_file"],
    );
    says(
        &store_refusal(&redis.url(), files(&pki.ca, Some(&pki.stranger))).await,
        &store_at,
        &["refused the relay's client certificate"],
    );

    // A command with the wrong CA says so, and exits with an error.
    let refused = config.clone().broker_tls(
        &node.url(),
        Tls::new(&pki.other_ca, Some((&pki.client.cert, &pki.client.key))),
    );
    let path = refused.write(&dir);
    let out = Cli::new(&["dlq", "stats", "--config", &path]).output();
    assert!(!out.status.success());
    says(
        &common::process::stderr(&out),
        &broker_at,
        &["UnknownIssuer"],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_and_misnamed_server_certificates_are_refused() {
    let pki = Pki::new();
    for (pair, reason) in [
        (&pki.expired, "Expired"),
        (&pki.misnamed, "NotValidForName"),
    ] {
        let Some(redis) = redis_tls(&pki, pair, false) else {
            return;
        };
        let port = redis
            .url()
            .split(':')
            .nth(2)
            .unwrap()
            .trim_end_matches("/0")
            .to_owned();
        says(
            &store_refusal(&redis.url(), files(&pki.ca, None)).await,
            &format!("the store at 127.0.0.1:{port}"),
            &[reason],
        );
        // The broker's connection checks the server's certificate before a word of AMQP:
        // any TLS server shows it, this one too.
        let url = format!("amqps://guest:guest@127.0.0.1:{port}/%2f");
        says(
            &broker_refusal(&url, &files(&pki.ca, None)).await,
            &format!("the broker at 127.0.0.1:{port}"),
            &[reason],
        );
    }
}

#[test]
fn check_config_refuses_what_tls_cannot_honour() {
    let pki = Pki::new();
    let base = || {
        common::ConfigBuilder::for_test("tls-check", Path::new("/tmp/tls-check.db")).destination(
            common::Dest::powerspace("p", "http://127.0.0.1:1").retry(common::Retry::fast()),
        )
    };
    let ca = Tls::new(&pki.ca, None);
    // A TLS table beside a URL without TLS.
    let e = base()
        .broker_tls("amqp://guest:guest@127.0.0.1:5672/%2f", ca.clone())
        .error();
    assert!(e.contains("broker.url") && e.contains("amqps://"), "{e}");
    let e = base()
        .redis_tls("redis://127.0.0.1:6379/0", ca.clone())
        .error();
    assert!(e.contains("store.url") && e.contains("rediss://"), "{e}");
    // amqp and amqps mixed among the broker's addresses.
    let e = base()
        .broker_nodes(
            "amqps://guest:guest@127.0.0.1:5671/%2f",
            &["amqp://guest:guest@127.0.0.1:5672/%2f".into()],
            5,
        )
        .error();
    assert!(e.contains("broker.failover_urls[0]"), "{e}");
    // redis-rs' #insecure.
    let e = base()
        .redis_tls("rediss://127.0.0.1:6380/0#insecure", ca.clone())
        .error();
    assert!(e.contains("store.url") && e.contains("#insecure"), "{e}");
    // A file that is missing, one that is not PEM, a certificate without its key.
    let missing = Tls::new(&pki.dir().join("nowhere.crt"), None);
    let e = base()
        .redis_tls("rediss://127.0.0.1:6380/0", missing)
        .error();
    assert!(
        e.contains("store.tls.ca_file") && e.contains("nowhere.crt"),
        "{e}"
    );
    let not_pem = Tls::new(&pki.server.key, None);
    let e = base()
        .broker_tls("amqps://guest:guest@127.0.0.1:5671/%2f", not_pem)
        .error();
    assert!(e.contains("broker.tls.ca_file"), "{e}");
    let half = Tls {
        cert_file: Some(pki.client.cert.display().to_string()),
        ..Tls::default()
    };
    let e = base()
        .broker_tls("amqps://guest:guest@127.0.0.1:5671/%2f", half)
        .error();
    assert!(e.contains("broker.tls") && e.contains("key"), "{e}");
    assert!(!e.contains("guest:guest"), "{e}");
    // What the relay can do passes.
    let both = Tls::new(&pki.ca, Some((&pki.client.cert, &pki.client.key)));
    base()
        .broker_tls("amqps://guest:guest@127.0.0.1:5671/%2f", both.clone())
        .redis_tls("rediss://127.0.0.1:6380/0", both)
        .load();
}
