//! Tests of `broker`.

use super::*;
use lapin::options::QueueDeclareOptions;
use std::time::{Duration, Instant};

#[tokio::test]
async fn one_deadline_covers_the_whole_publish() {
    let deadline = Duration::from_millis(100);
    // A send that never ends: a connection the broker has blocked.
    let never = within(deadline, std::future::pending::<Result<(), PublishError>>()).await;
    assert!(
        matches!(never, Err(PublishError::Timeout(d)) if d == deadline),
        "{never:?}"
    );
    // Sending and confirming share the deadline: two steps of 60 ms overrun 100 ms,
    // though each alone is within it.
    let step = || tokio::time::sleep(Duration::from_millis(60));
    let slow = within(deadline, async {
        step().await;
        step().await;
        Ok(())
    })
    .await;
    assert!(matches!(slow, Err(PublishError::Timeout(_))), "{slow:?}");
    // In time, the publish's own outcome comes through.
    let nacked = within(deadline, async { Err::<(), _>(PublishError::Nacked) }).await;
    assert!(matches!(nacked, Err(PublishError::Nacked)), "{nacked:?}");
    assert!(within(deadline, async { Ok(()) }).await.is_ok());
}

/// A broker under a memory alarm blocks publishing connections: it stops reading from
/// them. Needs RabbitMQ installed; it starts a node of its own (so the alarm disturbs no
/// one else), which is slow: `cargo test --lib -- --ignored a_blocked_broker`.
#[tokio::test]
#[ignore = "starts a RabbitMQ node of its own: slow"]
async fn a_blocked_broker_cannot_hold_a_publish_past_its_deadline() {
    let server = crate::demo::find_rabbitmq_server().expect("RabbitMQ must be installed");
    // An alarm from the start: any memory use is over a 1-byte watermark.
    let node = crate::demo::OwnBroker::start(&server, "vm_memory_high_watermark.absolute = 1")
        .await
        .unwrap();
    let conn = connect(&node.url, "test").await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "blocked".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let publisher = Publisher::new(&conn).await.unwrap();
    // Larger than the socket buffers: its frames cannot all be written while the broker
    // reads nothing, so the publish waits on the send, before any confirm.
    let body = vec![b'x'; 10 << 20];
    let started = Instant::now();
    let outcome = tokio::time::timeout(
        CONFIRM_TIMEOUT + Duration::from_secs(15),
        publisher.publish_json("", "blocked", &body, None, None),
    )
    .await;
    assert!(
        matches!(outcome, Ok(Err(PublishError::Timeout(_)))),
        "after {:?}: {outcome:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < CONFIRM_TIMEOUT + Duration::from_secs(5));
}
