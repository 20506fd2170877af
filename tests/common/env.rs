//! A test's own world: a fresh exchange and queues on the real RabbitMQ, a partner sandbox on
//! loopback, and whatever the test leaves behind (queues, the exchange, SQLite files, Redis
//! keys) removed when the `Env` is dropped, whether the test passed or panicked.

use std::path::PathBuf;
use std::time::Duration;

use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio_util::sync::CancellationToken;

use postback_relay::config::Config;
use postback_relay::interfaces::sandbox;
use postback_relay::operate::dlq::DeadLetter;
use postback_relay::relay::broker::{self, Publisher, Topology};
use postback_relay::relay::deadletter::Envelope;

use super::config::{Circuit, ConfigBuilder, Dest, Retry, amqp_url, redis_url};
use super::wait::eventually;

/// How long the clean-up at drop may take: a broker that does not answer must not hang the
/// test run.
const CLEANUP_LIMIT: Duration = Duration::from_secs(10);

/// A test's own broker names and sandbox.
pub struct Env {
    pub prefix: String,
    pub sandbox: sandbox::Client,
    pub conn: Connection,
    pub channel: Channel,
    pub publisher: Publisher,
    /// Stops the sandbox and the relays started with [`Env::start`].
    pub shutdown: CancellationToken,
    /// The names every relay of this test uses (the test configurations share the tiers).
    topology: Topology,
    /// The journal's own PostgreSQL database, for a test on that journal.
    postgres: Option<super::postgres::PgDb>,
}

impl Env {
    pub async fn new() -> Env {
        let shutdown = CancellationToken::new();
        let addr = sandbox::spawn(shutdown.clone()).await.unwrap();
        let conn = broker::connect(&amqp_url(), None, "test")
            .await
            .expect("RabbitMQ must be running on 127.0.0.1:5672 (see README)");
        let channel = conn.create_channel().await.unwrap();
        let publisher = Publisher::new(&conn).await.unwrap();
        let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
        let sandbox = sandbox::Client::new(addr);
        // The queue names do not depend on the destinations; the config needs one.
        let any = Dest::powerspace("powerspace", sandbox.base_url()).retry(Retry::fast());
        let config = ConfigBuilder::for_test(&prefix, &db_path(&prefix)).destination(any);
        Env {
            topology: Topology::from_config(&config.load()),
            prefix,
            sandbox,
            conn,
            channel,
            publisher,
            shutdown,
            postgres: None,
        }
    }

    /// An `Env` whose journal is a PostgreSQL database of its own.
    pub async fn with_postgres_journal() -> Env {
        let mut env = Env::new().await;
        env.postgres = Some(super::postgres::PgDb::new(&env.prefix).await);
        env
    }

    /// This test's broker, worker, HTTP, (embedded) store and journal sections, without
    /// destinations.
    pub fn config(&self) -> ConfigBuilder {
        let c = ConfigBuilder::for_test(&self.prefix, &self.db_path());
        match &self.postgres {
            Some(pg) => c.journal_postgres(&pg.url()),
            None => c,
        }
    }

    /// The Powerspace destination most tests use: at the sandbox, a 2 s timeout, fast
    /// retries, no circuit breaker.
    pub fn powerspace(&self) -> Dest {
        Dest::powerspace("powerspace", self.sandbox.base_url())
            .timeout_ms(2000)
            .retry(Retry::fast())
            .circuit(Circuit::disabled())
    }

    /// [`Env::config`] with [`Env::powerspace`].
    pub fn default_config(&self) -> ConfigBuilder {
        self.config().destination(self.powerspace())
    }

    /// The embedded store's file.
    pub fn db_path(&self) -> PathBuf {
        db_path(&self.prefix)
    }

    /// The journal's file (the configuration's `[journal] path`).
    pub fn journal_path(&self) -> PathBuf {
        super::config::journal_path(&self.db_path())
    }

    /// This test's journal, as [`Env::config`] configures it.
    pub fn journal_config(&self) -> postback_relay::journal::JournalConfig {
        match &self.postgres {
            Some(pg) => postback_relay::journal::JournalConfig {
                kind: postback_relay::journal::JournalKind::Postgres,
                url: Some(pg.url()),
                ..Default::default()
            },
            None => postback_relay::journal::JournalConfig {
                path: self.journal_path(),
                ..Default::default()
            },
        }
    }

    /// The journal's entries `filter` selects; none while there is no journal yet.
    pub async fn journal_entries(
        &self,
        filter: &postback_relay::journal::Filter,
    ) -> Vec<postback_relay::journal::Entry> {
        match postback_relay::journal::Reader::open(&self.journal_config()).await {
            Ok(r) => r.entries(filter).await.unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    /// The journal's entries `filter` selects, once there are at least `n` (the journal's
    /// writer is behind the acknowledgements).
    pub async fn until_journaled(
        &self,
        filter: &postback_relay::journal::Filter,
        n: usize,
    ) -> Vec<postback_relay::journal::Entry> {
        eventually(
            Duration::from_secs(30),
            &format!("{n} journal entries"),
            || async { self.journal_entries(filter).await.len() >= n },
        )
        .await;
        self.journal_entries(filter).await
    }

    /// The journal's recoveries and actions; the journal must exist.
    pub async fn recoveries(&self) -> postback_relay::journal::Recoveries {
        postback_relay::journal::Recoveries::open(&self.journal_config())
            .await
            .expect("the journal opens")
    }

    /// Starts a relay on `config` in this process and waits until it consumes; it stops with
    /// [`Env::shutdown`].
    pub async fn start(&self, config: &ConfigBuilder) -> postback_relay::relay::Running {
        self.start_until(config.load(), self.shutdown.clone()).await
    }

    /// Starts a relay on `config` that stops with `stop`, and waits until it consumes.
    pub async fn start_until(
        &self,
        config: Config,
        stop: CancellationToken,
    ) -> postback_relay::relay::Running {
        let running = postback_relay::relay::start(config, stop).await.unwrap();
        let health = running.health.clone();
        eventually(Duration::from_secs(30), "the relay consumes", || {
            let h = health.clone();
            async move { h.is_ready() }
        })
        .await;
        running
    }

    pub fn topology(&self) -> Topology {
        self.topology.clone()
    }

    /// Declares the topology, so events published before the relay starts are kept.
    pub async fn declare(&self) {
        self.topology().declare(&self.channel).await.unwrap();
    }

    pub async fn publish(&self, body: &[u8]) {
        let m = postback_relay::interfaces::publish::Outgoing::new(body.to_vec());
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
        passive_declare(&self.channel, queue)
            .await
            .unwrap()
            .message_count()
    }

    /// Waits until `queue` holds `n` ready messages.
    pub async fn until_holds(&self, queue: &str, n: u32, timeout: Duration, what: &str) {
        eventually(
            timeout,
            what,
            || async move { self.ready(queue).await == n },
        )
        .await;
    }

    /// The consumers on `queue`, or `None` when it does not exist. A fresh channel each time: a
    /// passive declare of a missing queue closes its channel.
    pub async fn consumers(&self, queue: &str) -> Option<u32> {
        let ch = self.conn.create_channel().await.ok()?;
        let info = passive_declare(&ch, queue).await.ok()?;
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

    /// Takes every message out of the dead-letter queue. It holds the queue's reader lock as
    /// the dead-letter commands do, so that no relay is measuring the oldest dead letter (and
    /// holding the letters) meanwhile.
    pub async fn take_all_dead(&self) -> Vec<DeadLetter> {
        let dead = self.topology().dead;
        let _lock = postback_relay::relay::deadletter::browse::Lock::acquire(
            &self.conn,
            &dead,
            std::time::Duration::from_secs(60),
            || {},
        )
        .await
        .expect("the dead-letter queue's reader lock");
        self.drain(&dead)
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
}

fn db_path(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{prefix}.db"))
}

/// What the broker says of `queue`, without creating it.
async fn passive_declare(ch: &Channel, queue: &str) -> Result<lapin::Queue, lapin::Error> {
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
}

impl Drop for Env {
    /// Runs on a panic too. Stops this test's relays and sandbox first, so none declares the
    /// queues again; then removes only what carries this test's prefix. The broker, Redis and
    /// PostgreSQL (for a journal there) are reached from a thread of its own with its own
    /// runtime (the test's may be the one blocked here), and waited for at most
    /// [`CLEANUP_LIMIT`].
    fn drop(&mut self) {
        self.shutdown.cancel();
        for file in [self.db_path(), self.journal_path()] {
            for suffix in ["", "-wal", "-shm"] {
                let mut path = file.clone().into_os_string();
                path.push(suffix);
                let _ = std::fs::remove_file(path);
            }
        }
        let topology = self.topology.clone();
        let prefix = self.prefix.clone();
        let database = self.postgres.as_ref().map(|pg| pg.name.clone());
        let (done, finished) = std::sync::mpsc::channel();
        let cleanup = std::thread::Builder::new()
            .name(format!("cleanup {prefix}"))
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async {
                    if let Err(e) = super::broker::remove_topology(&amqp_url(), &topology).await {
                        eprintln!("{prefix}: queues left on the broker: {e}");
                    }
                    if let Err(e) = super::broker::remove_keys(&redis_url(), &prefix).await {
                        eprintln!("{prefix}: keys left in Redis: {e}");
                    }
                    if let Some(name) = database {
                        super::postgres::drop_database(&name).await;
                    }
                });
                let _ = done.send(());
            });
        match cleanup {
            Ok(handle) => match finished.recv_timeout(CLEANUP_LIMIT) {
                Ok(()) => {
                    let _ = handle.join();
                }
                Err(_) => eprintln!("{}: clean-up gave up after {CLEANUP_LIMIT:?}", self.prefix),
            },
            Err(e) => eprintln!("{}: no clean-up thread: {e}", self.prefix),
        }
    }
}
