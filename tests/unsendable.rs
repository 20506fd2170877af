//! A request the HTTP client refuses to build (a URL over its limit, an invalid header value)
//! is not the partner's failure: against a real loopback partner, it is given up at once, never
//! retried, never counted against the circuit, and the destination keeps delivering.

use std::time::Instant;

use postback_relay::circuit::Admit;
use postback_relay::classify::Verdict;
use postback_relay::config::{Config, DestinationConfig};
use postback_relay::dispatch::Dispatcher;
use postback_relay::metrics::Metrics;
use postback_relay::partner::{Method, Request};
use postback_relay::sandbox;
use tokio_util::sync::CancellationToken;

/// The longest URL `render` lets through, which must be the longest the HTTP client sends.
const CLIENT_URL_LIMIT: usize = postback_relay::partner::sendable::MAX_URL_BYTES;

struct Partner {
    sandbox: sandbox::Client,
    dest: DestinationConfig,
    dispatcher: Dispatcher,
    _stop: tokio_util::sync::DropGuard,
}

/// A sandbox partner and a dispatcher for one destination whose circuit opens after two
/// failures in a row.
async fn partner() -> Partner {
    let stop = CancellationToken::new();
    let addr = sandbox::spawn(stop.clone()).await.unwrap();
    let toml = format!(
        r#"[[destinations]]
        name = "powerspace"
        kind = "powerspace"
        base_url = "http://{addr}"
        match = {{ networks = ["powerspace"] }}
        retry = {{ immediate_attempts = 3, immediate_delay_ms = 1 }}
        circuit = {{ enabled = true, failure_threshold = 2, open_ms = 600000 }}"#
    );
    let config = Config::from_toml(&toml, &|_| None).unwrap();
    let dispatcher = Dispatcher::new(&config, &Metrics::new()).unwrap();
    Partner {
        sandbox: sandbox::Client::new(addr),
        dest: config.destinations[0].clone(),
        dispatcher,
        _stop: stop.drop_guard(),
    }
}

fn get(url: String) -> Request {
    Request {
        destination: "powerspace".into(),
        method: Method::Get,
        url,
        headers: Default::default(),
        body: None,
        secrets: Vec::new(),
    }
}

fn start(p: &Partner) -> String {
    format!("{}/ld?qci=", p.sandbox.base_url())
}

/// A GET URL on the partner exactly `len` bytes long.
fn url_of_len(p: &Partner, len: usize) -> String {
    format!("{}{}", start(p), "a".repeat(len - start(p).len()))
}

#[tokio::test]
async fn a_request_the_client_cannot_build_never_blocks_the_destination() {
    let p = partner().await;
    let mut bad_header = get(format!("{}/ld?qci=h", p.sandbox.base_url()));
    bad_header
        .headers
        .insert("X-Note".into(), "line\r\nX-Injected: 1".into());
    let unsendable = [get(url_of_len(&p, CLIENT_URL_LIMIT + 1)), bad_header];
    // More of them than the circuit's threshold, each with in-process tries to spare.
    let mut reports = Vec::new();
    for req in unsendable.iter().cycle().take(6) {
        reports.push(
            p.dispatcher
                .deliver(&p.dest, req, "e-bad", 3, Instant::now())
                .await,
        );
    }
    // The destination is not blocked.
    assert_eq!(p.dispatcher.admit(&p.dest), Admit::Call);
    for report in &reports {
        assert!(
            matches!(report.verdict, Verdict::Reject { .. }),
            "{:?}",
            report.verdict
        );
        assert_eq!(report.tries, 1, "not tried again: it cannot change");
        assert!(report.unsendable.is_some(), "{report:?}");
    }
    assert!(p.sandbox.requests().await.unwrap().is_empty());
    // The next request goes, and is delivered.
    let good = get(format!("{}/ld?qci=good", p.sandbox.base_url()));
    let report = p
        .dispatcher
        .deliver(&p.dest, &good, "e-good", 3, Instant::now())
        .await;
    assert_eq!(report.verdict, Verdict::Delivered);
    assert_eq!(report.unsendable, None);
    let seen = p.sandbox.requests().await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].param("qci").as_deref(), Some("good"));
}

/// `render`'s limit is the client's own: a URL of exactly that length goes out; one byte more
/// is unsendable (above).
#[tokio::test]
async fn the_url_limit_is_the_clients() {
    let p = partner().await;
    let longest = url_of_len(&p, CLIENT_URL_LIMIT);
    let report = p
        .dispatcher
        .deliver(&p.dest, &get(longest), "e-longest", 1, Instant::now())
        .await;
    assert_eq!(
        report.verdict,
        Verdict::Delivered,
        "{:?}",
        report.last_error
    );
    let seen = p.sandbox.requests().await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].param("qci").map(|q| q.len()),
        Some(CLIENT_URL_LIMIT - start(&p).len())
    );
}
