//! A request that can never be sent (a URL over the HTTP client's limit, an invalid header
//! value) is not the partner's failure: it is a `render_error` dead letter at once, never
//! retried, never counted against the circuit, and the destination keeps delivering.

mod common;

use std::time::Duration;

use common::{Circuit, Dest, Env, Event, Hoqu, Retry, deliveries, until};
use postback_relay::contract::classify::CallResult;
use postback_relay::contract::partner::{Method, Request};
use postback_relay::interfaces::sandbox;
use postback_relay::relay::deadletter::Reason;
use postback_relay::relay::dispatch::Client;
use tokio_util::sync::CancellationToken;

/// The longest URL `render` lets through, which must be the longest the HTTP client sends.
const CLIENT_URL_LIMIT: usize = postback_relay::contract::partner::sendable::MAX_URL_BYTES;

fn get(url: String) -> Request {
    Request {
        destination: "powerspace".into(),
        method: Method::Get,
        url,
        headers: Default::default(),
        body: None,
        secrets: Vec::new(),
        parsed_url: None,
    }
}

/// A GET URL on `base` exactly `len` bytes long.
fn url_of_len(base: &str, len: usize) -> String {
    let start = format!("{base}/ld?qci=");
    format!("{start}{}", "a".repeat(len - start.len()))
}

#[tokio::test]
async fn the_client_says_what_it_cannot_send_and_its_limit_is_renders() {
    let stop = CancellationToken::new();
    let addr = sandbox::spawn(stop.clone()).await.unwrap();
    let partner = sandbox::Client::new(addr);
    let base = partner.base_url().to_owned();
    let client = Client::new().unwrap();
    let timeout = Duration::from_secs(5);
    let mut bad_header = get(format!("{base}/ld?qci=h"));
    bad_header
        .headers
        .insert("X-Note".into(), "line\r\nX-Injected: 1".into());
    for req in [get(url_of_len(&base, CLIENT_URL_LIMIT + 1)), bad_header] {
        let answer = client.send(&req, timeout).await;
        assert!(
            matches!(answer.result, CallResult::Unsendable(_)),
            "{:?}",
            answer.result
        );
        assert!(!answer.result.tells_of_partner());
    }
    assert!(partner.requests().await.unwrap().is_empty(), "nothing sent");
    // Exactly at the limit it goes out.
    let answer = client
        .send(&get(url_of_len(&base, CLIENT_URL_LIMIT)), timeout)
        .await;
    assert!(
        matches!(answer.result, CallResult::Response { status: 200, .. }),
        "{:?}",
        answer.result
    );
    stop.cancel();
}

#[tokio::test]
async fn one_request_that_can_never_be_sent_never_stops_its_destination() {
    let env = Env::new().await;
    let config = env.config().destination(
        Dest::hoqu(
            "hoqu",
            env.sandbox.base_url(),
            Hoqu::new("k", "fixed").action("lead"),
        )
        .retry(Retry::new().immediate(3, 10).delays(100, 400))
        .circuit(Circuit::opens_after(2, 600000).enabled()),
    );
    let running = env.start(&config).await;
    // The contract's own limit: 4,096 characters, each percent-encoded into 12 bytes.
    let huge = "🎉".repeat(4096);
    let event = |id: &str, click: &str, order: &str| {
        Event::attributed(id, "lead", "hoqu", click)
            .order_id(order)
            .body()
    };
    for i in 0..3 {
        env.publish(&event(&format!("huge-{i}"), &huge, &huge))
            .await;
    }
    env.publish(&event("normal", "c1", "o1")).await;
    until(&running, "the normal event delivered", |m| {
        deliveries(m, "hoqu", "delivered") == 1
    })
    .await;
    until(&running, "every event acked", |m| m.events_acked.get() == 4).await;
    let dead = env.take_dead_letters().await;
    assert_eq!(dead.len(), 3);
    for d in &dead {
        assert_eq!(d.reason, Reason::RenderError, "{}", d.detail);
        assert_eq!(d.attempts, 0, "never sent");
    }
    let requests = env.sandbox.requests().await.unwrap();
    assert_eq!(
        requests.len(),
        1,
        "only the normal event reached the partner"
    );
    assert_eq!(
        running
            .metrics
            .circuit_state
            .with_label_values(&["hoqu"])
            .get(),
        0,
        "the circuit stayed closed"
    );
}
