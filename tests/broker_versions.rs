//! What RabbitMQ 4 changed in quorum queues that could touch the relay, held against the broker
//! the tests run on (see README, "RabbitMQ versions").
//!
//! RabbitMQ 4 gives every quorum queue declared without `x-delivery-limit` a limit of 20
//! deliveries, and a message over it is dead-lettered or, without a dead-letter exchange,
//! dropped. Reading the dead-letter queue (`dlq list`, `dlq stats`, `replay`, the relay's age
//! sample) takes every message and gives it back, and the broker counts each give-back: on
//! 3.10 and on 4.0 to 4.2 every return counts, and from 4.3 a channel closed with messages
//! unacknowledged still counts. So a dead letter read twenty times would be gone, were the
//! dead-letter queue without a limit of its own. The relay declares one out of reach; these
//! tests read a dead letter more often than 20 and find it there, and show that the same reads
//! on a dead-letter queue limited to 20 drop it. A queue that exists with other arguments (as
//! one created by RabbitMQ 4 defaults, or by another setting, would) is not changed: the relay
//! stops and says what to do.

mod common;

use std::process::Output;
use std::time::Duration;

use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};

use common::{Cli, Env, eventually};
use postback_relay::relay::RelayError;
use postback_relay::relay::deadletter::{Envelope, Reason, Source};

/// The delivery limit RabbitMQ 4 gives a quorum queue declared without one.
const RABBITMQ_4_DEFAULT_LIMIT: u32 = 20;
/// Reads in each test: more than that limit allows.
const READS: u32 = RABBITMQ_4_DEFAULT_LIMIT + 5;

/// `dlq list --format json` on this test's queues: the dead letters' ids, in queue order.
fn listed(env: &Env) -> Vec<String> {
    let out: Output = Cli::new(&["dlq", "list", "--format", "json"]).on(env).ok();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["dead_letter_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Publishes `n` envelopes to the dead-letter queue; their ids, in order.
async fn dead_letters(env: &Env, n: usize) -> Vec<String> {
    let source = Source {
        queue: "events".into(),
        routing_key: "lead".into(),
        message_id: None,
        redelivered: false,
    };
    let mut ids = Vec::new();
    for i in 0..n {
        let e = Envelope::for_message(
            Reason::PartnerRejected,
            "HTTP 404".into(),
            format!("{{\"n\":{i}}}").as_bytes(),
            None,
            source.clone(),
        );
        ids.push(e.dead_letter_id.to_string());
        env.publisher
            .publish_json(
                "",
                &env.topology().dead,
                &serde_json::to_vec(&e).unwrap(),
                None,
                None,
            )
            .await
            .unwrap();
    }
    ids
}

/// Messages ready in `queue` once the last read has given back what it held: the broker
/// counts a read's consumer gone in the same step as it puts (or drops) that consumer's
/// messages.
async fn settled(env: &Env, queue: &str) -> u32 {
    eventually(
        Duration::from_secs(10),
        &format!("the read of {queue} has given its messages back"),
        || async move { env.consumers(queue).await == Some(0) },
    )
    .await;
    env.ready(queue).await
}

/// How many times the broker has had `queue`'s first message given back: its
/// `x-delivery-count` header, 0 when absent. The message goes back when the channel closes.
async fn returns_of_first(env: &Env, queue: &str) -> i64 {
    let ch = env.conn.create_channel().await.unwrap();
    let got = ch
        .basic_get(queue.into(), BasicGetOptions::default())
        .await
        .unwrap()
        .expect("a message in the queue");
    let count = got
        .delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-delivery-count").cloned());
    ch.close(200, "looked".into()).await.unwrap();
    match count {
        None => 0,
        Some(AMQPValue::LongLongInt(n)) => n,
        Some(AMQPValue::LongInt(n)) => i64::from(n),
        Some(AMQPValue::LongUInt(n)) => i64::from(n),
        Some(AMQPValue::ShortInt(n)) => i64::from(n),
        Some(AMQPValue::ShortUInt(n)) => i64::from(n),
        Some(other) => panic!("x-delivery-count is not an integer: {other:?}"),
    }
}

/// Declares this test's dead-letter queue with a delivery limit of 20 and no dead-letter
/// exchange, before anything else does.
async fn limited_dead_letter_queue(env: &Env) {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongUInt(RABBITMQ_4_DEFAULT_LIMIT),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    env.channel
        .queue_declare(env.topology().dead.as_str().into(), durable, args)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_read_more_often_than_rabbitmq_4s_default_limit_is_kept() {
    let env = Env::new().await;
    env.declare().await;
    let dead = env.topology().dead;
    let ids = dead_letters(&env, 3).await;

    for read in 1..=READS {
        assert_eq!(
            listed(&env),
            ids,
            "read {read}: every dead letter, in order"
        );
        assert_eq!(settled(&env, &dead).await, 3, "after read {read}");
    }
    // The broker counted the reads: a limit of 20 would have been passed.
    let counted = returns_of_first(&env, &dead).await;
    assert!(
        counted >= i64::from(READS),
        "the broker counted {counted} returns of a dead letter read {READS} times"
    );
    // That look took the first alone and gave it back, which moves it to the end.
    assert_eq!(settled(&env, &dead).await, 3);
    let mut after = listed(&env);
    after.sort();
    let mut expected = ids;
    expected.sort();
    assert_eq!(after, expected, "still every dead letter");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_reads_drop_a_dead_letter_from_a_queue_limited_like_rabbitmq_4s_default() {
    let env = Env::new().await;
    let dead = env.topology().dead;
    // The dead-letter queue as RabbitMQ 4 runs one declared without `x-delivery-limit`.
    limited_dead_letter_queue(&env).await;
    let ids = dead_letters(&env, 1).await;

    let mut dropped_after = None;
    for read in 1..=READS {
        assert_eq!(listed(&env), ids, "read {read} finds the dead letter");
        if settled(&env, &dead).await == 0 {
            dropped_after = Some(read);
            break;
        }
    }
    let read = dropped_after.expect("the broker dropped the dead letter within the reads");
    assert!(
        read > RABBITMQ_4_DEFAULT_LIMIT / 2,
        "dropped after only {read} reads"
    );
    assert!(listed(&env).is_empty(), "the dead letter is gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_queue_with_other_arguments_stops_the_relay_with_what_to_do() {
    let env = Env::new().await;
    let dead = env.topology().dead;
    limited_dead_letter_queue(&env).await;
    let ids = dead_letters(&env, 1).await;

    let running = postback_relay::relay::start(env.default_config().load(), env.shutdown.clone())
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(30), running.wait())
        .await
        .expect("the relay stops by itself instead of retrying");
    let Err(e @ RelayError::TopologyRefused(_)) = ended else {
        panic!("not a refused topology: {ended:?}");
    };
    let said = e.to_string();
    for part in [
        dead.as_str(),
        "x-delivery-limit",
        "restore the settings it was declared with",
        "replay what a dead-letter queue holds first",
        "broker.queue_prefix",
    ] {
        assert!(said.contains(part), "{part:?} missing from: {said}");
    }
    assert_eq!(listed(&env), ids, "the dead letter is where it was");
}
