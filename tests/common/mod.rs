//! Shared test harness: a fresh exchange and queues per test on the real RabbitMQ, a partner
//! sandbox on loopback, and helpers that await conditions with deadlines instead of sleeping.
#![allow(dead_code)]

pub mod proxy;

use std::future::Future;
use std::time::{Duration, Instant};

use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio_util::sync::CancellationToken;

use postback_relay::broker::{self, Publisher, Topology};
use postback_relay::config::Config;
use postback_relay::deadletter::Envelope;
use postback_relay::dlq::DeadLetter;
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

/// Fast retries for tests: three in-process tries, then 100 ms doubling to 400 ms, six in all.
pub const DEFAULT_RETRY: &str = "immediate_attempts = 3, immediate_delay_ms = 10, initial_delay_ms = 100, max_delay_ms = 400, max_attempts = 6, max_age_secs = 60";

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
        self.broker_toml()
            + &self.destination_toml(
                "powerspace",
                self.sandbox.base_url(),
                DEFAULT_RETRY,
                "enabled = false",
                extra,
            )
    }

    /// The broker, worker and HTTP sections: this test's exchange and queues, short tiers.
    pub fn broker_toml(&self) -> String {
        format!(
            r#"
            [broker]
            url = "{url}"
            exchange = "{p}.conversions"
            queue_prefix = "{p}"
            prefetch = 32
            reconnect_max_delay_secs = 1
            retry_tiers_ms = [100, 200, 400, 800, 1600]

            [worker]
            shutdown_grace_secs = 5

            [http]
            listen = "127.0.0.1:0"

            [store]
            kind = "embedded"
            path = "{db}"
            "#,
            url = amqp_url(),
            p = self.prefix,
            db = std::env::temp_dir()
                .join(format!("{}.db", self.prefix))
                .display(),
        )
    }

    /// A Powerspace destination named `name` at `base`, with the given retry and circuit
    /// settings (inline-table bodies).
    pub fn destination_toml(
        &self,
        name: &str,
        base: &str,
        retry: &str,
        circuit: &str,
        extra: &str,
    ) -> String {
        format!(
            r#"
            [[destinations]]
            name = "{name}"
            kind = "powerspace"
            base_url = "{base}"
            timeout_ms = 2000
            match = {{ networks = ["powerspace"] }}
            retry = {{ {retry} }}
            circuit = {{ {circuit} }}
            {extra}
            "#
        )
    }

    /// Starts a relay on `toml` in this process and waits until it consumes.
    pub async fn start(&self, toml: &str) -> postback_relay::relay::Running {
        let config = Config::from_toml(toml, &|_| None).unwrap();
        let running = postback_relay::relay::start(config, self.shutdown.clone())
            .await
            .unwrap();
        let health = running.health.clone();
        eventually(Duration::from_secs(30), "the relay consumes", || {
            let h = health.clone();
            async move { h.is_ready() }
        })
        .await;
        running
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

    /// The consumers on `queue`, or `None` when it does not exist. A fresh channel each time: a
    /// passive declare of a missing queue closes its channel.
    pub async fn consumers(&self, queue: &str) -> Option<u32> {
        let ch = self.conn.create_channel().await.ok()?;
        let info = ch
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .ok()?;
        let _ = ch.close(200, "checked".into()).await;
        Some(info.consumer_count())
    }

    /// Waits until a relay consumes from the events queue.
    pub async fn until_consumed(&self) {
        let queue = self.topology().events;
        eventually(Duration::from_secs(30), "a relay consumes", || {
            let queue = queue.clone();
            async move { self.consumers(&queue).await == Some(1) }
        })
        .await;
    }

    /// Takes every message out of `queue`, acknowledging each.
    pub async fn drain(&self, queue: &str) -> Vec<lapin::message::Delivery> {
        let mut out = Vec::new();
        while let Some(m) = self
            .channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            m.delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .unwrap();
            out.push(m.delivery);
        }
        out
    }

    /// Takes every message out of the dead-letter queue.
    pub async fn take_all_dead(&self) -> Vec<DeadLetter> {
        self.drain(&self.topology().dead)
            .await
            .iter()
            .map(|m| DeadLetter::from_message(m, 1 << 20))
            .collect()
    }

    /// Takes every dead letter out of the dead-letter queue; all must be envelopes.
    pub async fn take_dead_letters(&self) -> Vec<Envelope> {
        self.take_all_dead()
            .await
            .into_iter()
            .map(|l| match l {
                DeadLetter::Envelope(e) => *e,
                DeadLetter::Raw(r) => panic!("a message moved by the broker: {:?}", r.reason),
            })
            .collect()
    }

    /// The store section for Redis, shared by every relay of this test.
    pub fn redis_store_toml(&self) -> String {
        format!(
            "[store]\nkind = \"redis\"\nurl = \"{}\"\nkey_prefix = \"{}\"\n",
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into()),
            self.prefix
        )
    }

    pub async fn cleanup(self) {
        for suffix in [".db", ".db-wal", ".db-shm"] {
            let _ =
                std::fs::remove_file(std::env::temp_dir().join(format!("{}{suffix}", self.prefix)));
        }
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

/// A `postback-relay run` process on a config file; killed (SIGKILL) when dropped.
pub struct RelayProcess(pub std::process::Child);

impl RelayProcess {
    pub fn run(config: &str) -> RelayProcess {
        Self::run_with(config, &[], None)
    }

    /// With these environment variables, and its log written to `log`.
    pub fn run_with(
        config: &str,
        envs: &[(&str, &str)],
        log: Option<&std::path::Path>,
    ) -> RelayProcess {
        let stderr = match log {
            Some(path) => std::process::Stdio::from(std::fs::File::create(path).unwrap()),
            None => std::process::Stdio::null(),
        };
        RelayProcess(
            std::process::Command::new(env!("CARGO_BIN_EXE_postback-relay"))
                .args(["--log-format", "json", "run", "--config", config])
                .envs(envs.iter().copied())
                .stdout(std::process::Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap(),
        )
    }

    /// Sends SIGTERM.
    pub fn signal_term(&self) {
        let pid = self.0.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(s) = self.0.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Waits up to `limit` for the process to exit, without blocking the async runtime.
    pub async fn exited_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(s) = self.0.try_wait().unwrap() {
                return Some(s);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// SIGTERM, then its exit status (within 30 s).
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.signal_term();
        self.wait(Duration::from_secs(30))
            .expect("the relay exits after SIGTERM")
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `f` holds for a relay's metrics.
pub async fn until(
    running: &postback_relay::relay::Running,
    what: &str,
    f: impl Fn(&postback_relay::metrics::Metrics) -> bool,
) {
    let m = running.metrics.clone();
    eventually(Duration::from_secs(30), what, || {
        let ok = f(&m);
        async move { ok }
    })
    .await;
}

/// `toml` (built from [`Env::broker_toml`]) with the Redis store shared by this test's relays in
/// place of the embedded one.
pub fn with_redis_store(env: &Env, toml: &str) -> String {
    let embedded = format!(
        "[store]\n            kind = \"embedded\"\n            path = \"{}\"",
        std::env::temp_dir()
            .join(format!("{}.db", env.prefix))
            .display()
    );
    assert!(
        toml.contains(&embedded),
        "an embedded store section to replace"
    );
    toml.replace(&embedded, &env.redis_store_toml())
}
