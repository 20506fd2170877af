//! Shared test harness: a fresh exchange and queues per test on the real RabbitMQ, a partner
//! sandbox on loopback, and helpers that await conditions with deadlines instead of sleeping.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio_util::sync::CancellationToken;

use postback_relay::broker::{self, Publisher, Topology};
use postback_relay::config::Config;
use postback_relay::deadletter::Envelope;
use postback_relay::sandbox;

pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| postback_relay::config::DEFAULT_AMQP_URL.into())
}

/// Waits until `cond` holds, polling; fails the test with `what` after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A test's own broker names and sandbox.
pub struct Env {
    pub prefix: String,
    pub sandbox: sandbox::Client,
    pub conn: Connection,
    pub channel: Channel,
    pub publisher: Publisher,
    pub shutdown: CancellationToken,
}

impl Env {
    pub async fn new() -> Env {
        let shutdown = CancellationToken::new();
        let addr = sandbox::spawn(shutdown.clone()).await.unwrap();
        let conn = broker::connect(&amqp_url(), "test")
            .await
            .expect("RabbitMQ must be running on 127.0.0.1:5672 (see README)");
        let channel = conn.create_channel().await.unwrap();
        let publisher = Publisher::new(&conn).await.unwrap();
        Env {
            prefix: format!("test-{}", uuid::Uuid::new_v4().simple()),
            sandbox: sandbox::Client::new(addr),
            conn,
            channel,
            publisher,
            shutdown,
        }
    }

    /// A configuration for this test: its own exchange and queues, one Powerspace destination
    /// at the sandbox, fast in-process retries. `extra` is appended to the destination table.
    pub fn config_toml(&self, extra: &str) -> String {
        format!(
            r#"
            [broker]
            url = "{url}"
            exchange = "{p}.conversions"
            queue_prefix = "{p}"
            prefetch = 32
            reconnect_max_delay_secs = 1

            [worker]
            shutdown_grace_secs = 5

            [http]
            listen = "127.0.0.1:0"

            [[destinations]]
            name = "powerspace"
            kind = "powerspace"
            base_url = "{base}"
            timeout_ms = 2000
            match = {{ networks = ["powerspace"] }}
            retry = {{ attempts = 3, initial_delay_ms = 10, max_delay_ms = 50 }}
            {extra}
            "#,
            url = amqp_url(),
            p = self.prefix,
            base = self.sandbox.base_url(),
        )
    }

    pub fn config(&self) -> Config {
        Config::from_toml(&self.config_toml(""), &|_| None).unwrap()
    }

    pub fn topology(&self) -> Topology {
        Topology::from_config(&self.config())
    }

    /// Declares the topology, so events published before the relay starts are kept.
    pub async fn declare(&self) {
        self.topology().declare(&self.channel).await.unwrap();
    }

    pub async fn publish(&self, body: &[u8]) {
        let m = postback_relay::publish::Outgoing::new(body.to_vec());
        self.publisher
            .publish_json(
                &self.topology().exchange,
                &m.routing_key,
                &m.body,
                None,
                None,
            )
            .await
            .unwrap();
    }

    /// Ready messages in a queue (unacknowledged ones are not counted).
    pub async fn ready(&self, queue: &str) -> u32 {
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap()
            .message_count()
    }

    /// Takes every dead letter out of the dead-letter queue.
    pub async fn take_dead_letters(&self) -> Vec<Envelope> {
        let mut out = Vec::new();
        let dead = self.topology().dead;
        while let Some(m) = self
            .channel
            .basic_get(dead.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            out.push(serde_json::from_slice(&m.delivery.data).expect("an envelope"));
            m.delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .unwrap();
        }
        out
    }

    pub async fn cleanup(self) {
        self.shutdown.cancel();
        let _ = self.topology().delete(&self.channel).await;
        let _ = self.conn.close(200, "test done".into()).await;
    }
}

/// An event body.
pub fn event(id: &str, kind: &str, click: &str, amount: Option<&str>) -> Vec<u8> {
    let order = amount
        .map(|a| format!(r#","order":{{"id":"{id}","amount":"{a}","currency":"EUR"}}"#))
        .unwrap_or_default();
    format!(
        r#"{{"event_id":"{id}","type":"{kind}","occurred_at":"2026-11-22T10:00:00Z","attribution":{{"network":"powerspace","click_id":"{click}"}}{order}}}"#
    )
    .into_bytes()
}
