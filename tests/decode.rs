//! What producers in other languages send: events published the way Python's pika, .NET and
//! compressing producers publish them, and bodies that are not valid UTF-8 where the contract
//! does not look.

mod common;

use std::io::Write as _;

use common::{Env, until};
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use postback_relay::operate::dlq::DeadLetter;
use postback_relay::relay::deadletter::Reason;

fn body(id: &str, click: &str) -> Vec<u8> {
    common::event(id, "order", click, Some("10.00"))
}

/// Publishes `body` with `props` and routing key `key`, as a producer outside this crate would
/// (no content type unless `props` sets one), and waits for the broker's confirm.
async fn publish_as(env: &Env, key: &str, body: &[u8], props: BasicProperties) {
    let confirm = env
        .publisher
        .channel()
        .basic_publish(
            env.topology().exchange.as_str().into(),
            key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body,
            props,
        )
        .await
        .unwrap();
    postback_relay::relay::broker::confirmed(confirm, key)
        .await
        .unwrap();
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn clicks_sent(requests: &[postback_relay::interfaces::sandbox::Recorded]) -> Vec<String> {
    let mut c: Vec<String> = requests.iter().filter_map(|r| r.param("qci")).collect();
    c.sort();
    c
}

#[tokio::test]
async fn events_as_other_producers_publish_them_are_delivered() {
    let env = Env::new().await;
    let running = env.start(&env.default_config()).await;
    let plain = BasicProperties::default();
    // pika's defaults: no content type, no encoding; a routing key that is not the type.
    publish_as(&env, "anything", &body("none", "no-type"), plain.clone()).await;
    publish_as(
        &env,
        "order",
        &body("text", "text-plain"),
        plain.clone().with_content_type("text/plain".into()),
    )
    .await;
    // Compressed by the producer, said so in content_encoding.
    publish_as(
        &env,
        "order",
        &gzip(&body("gz", "gzipped")),
        plain
            .clone()
            .with_content_type("application/json".into())
            .with_content_encoding("gzip".into()),
    )
    .await;
    publish_as(
        &env,
        "order",
        &deflate(&body("df", "deflated")),
        plain.clone().with_content_encoding("deflate".into()),
    )
    .await;
    // .NET's default UTF-8 encoder writes a byte order mark first.
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend(body("bom", "byte-order-mark"));
    publish_as(&env, "order", &bom, plain.clone()).await;
    until(&running, "five events acked", |m| m.events_acked.get() == 5).await;
    assert_eq!(
        clicks_sent(&env.sandbox.requests().await.unwrap()),
        [
            "byte-order-mark",
            "deflated",
            "gzipped",
            "no-type",
            "text-plain"
        ]
    );
    assert!(env.take_all_dead().await.is_empty(), "no dead letter");
}

#[tokio::test]
async fn undecodable_bodies_are_invalid_events_that_say_why() {
    let env = Env::new().await;
    let running = env.start(&env.default_config()).await;
    let plain = BasicProperties::default();
    // Invalid UTF-8 in a field the contract does not know (and so does not read).
    let mut bad_utf8 = br#"{"event_id":"utf8","type":"order","occurred_at":"2026-11-22T10:00:00Z","attribution":{"network":"powerspace","click_id":"u"},"note":""#.to_vec();
    bad_utf8.extend_from_slice(b"\xff\xfe caf\xe9");
    bad_utf8.extend_from_slice(br#""}"#);
    publish_as(&env, "order", &bad_utf8, plain.clone()).await;
    publish_as(
        &env,
        "order",
        &body("br", "brotli"),
        plain.clone().with_content_encoding("br".into()),
    )
    .await;
    publish_as(
        &env,
        "order",
        b"\x1f\x8b not really gzip",
        plain.clone().with_content_encoding("gzip".into()),
    )
    .await;
    until(&running, "three events acked", |m| {
        m.events_acked.get() == 3
    })
    .await;
    assert!(env.sandbox.requests().await.unwrap().is_empty());
    let dead = env.take_all_dead().await;
    let mut envelopes: Vec<_> = dead
        .into_iter()
        .map(|l| match l {
            DeadLetter::Envelope(e) => *e,
            DeadLetter::Raw(r) => panic!("refused whole instead of an envelope: {:?}", r.reason),
        })
        .collect();
    envelopes.sort_by(|a, b| a.detail.cmp(&b.detail));
    assert_eq!(envelopes.len(), 3);
    for e in &envelopes {
        assert_eq!(e.reason, Reason::InvalidEvent, "{}", e.detail);
    }
    let details: Vec<&str> = envelopes.iter().map(|e| e.detail.as_str()).collect();
    assert!(
        details.iter().any(|d| d.contains("UTF-8")),
        "the UTF-8 problem named: {details:?}"
    );
    assert!(
        details
            .iter()
            .any(|d| d.contains("content encoding") && d.contains("\"br\"")),
        "the unknown encoding named: {details:?}"
    );
    assert!(
        details
            .iter()
            .any(|d| d.contains("gzip") && !d.contains("\"br\"")),
        "the broken gzip body named: {details:?}"
    );
    // Nothing is lost: the bodies are kept whole.
    assert!(
        envelopes
            .iter()
            .all(|e| e.raw_body.is_some() || e.event.is_some())
    );
}
