//! `postback-relay demo`: starts a partner sandbox and a relay on loopback, publishes sample
//! events (some malformed, some refused by the "partner"), and shows what became of each,
//! checked against what the sandbox recorded. Uses its own exchange and queues and removes them.
//!
//! - [`broker_plan`]: which broker it uses, the one at its URL or a node of its own;
//! - [`node`]: that throwaway RabbitMQ node;
//! - [`sample`]: its configuration and sample events;
//! - [`report`]: what it shows at the end, and the checks.

mod broker_plan;
mod node;
mod report;
mod sample;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use postback_relay::interfaces::{publish, sandbox};
use postback_relay::operate::dlq;
use postback_relay::relay;
use postback_relay::relay::broker::{Publisher, Topology};
use postback_relay::relay::metrics::Metrics;

use super::progress_bar;
use broker_plan::Connected;
use node::OwnBroker;

/// Runs the demo; Ctrl-C or SIGTERM ends it early, and still stops a broker node it started.
pub async fn run(amqp_url: &str, n: usize) -> anyhow::Result<ExitCode> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        code = demo(amqp_url, n) => code,
        // Dropping the demo's future drops its own broker node, which stops it.
        _ = tokio::signal::ctrl_c() => Ok(ExitCode::from(130)),
        _ = term.recv() => Ok(ExitCode::from(143)),
    }
}

async fn demo(amqp_url: &str, n: usize) -> anyhow::Result<ExitCode> {
    let Some(Connected { conn, own }) = broker_plan::connect(amqp_url).await? else {
        return Ok(ExitCode::from(1));
    };
    let amqp_url = own.as_ref().map_or(amqp_url, |o| o.url.as_str());
    let stage = Stage::start(amqp_url).await?;
    stage.introduce(own.as_ref());
    stage.until_ready().await?;

    let started = Instant::now();
    publish_samples(&conn, &stage.topology, n).await?;
    until_settled(&stage.running.metrics, n).await?;
    let elapsed = started.elapsed();

    let channel = conn.create_channel().await?;
    let dead_in_queue = dlq::depth(&channel, &stage.topology.dead).await?;
    let requests = stage.sandbox.requests().await?;
    let agrees = report::report(
        &stage.running.metrics,
        &requests,
        u64::from(dead_in_queue),
        n,
        elapsed,
    );
    report::show_dead_letters(&conn, &stage.topology).await?;

    stage.clean_up(&channel).await?;
    let _ = conn.close(200, "demo done".into()).await;
    if let Some(own) = own {
        let node = own.node.clone();
        own.stop();
        println!("  stopped           the demo's own broker node {node}, its directory removed");
    }
    Ok(if agrees {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// What the demo runs on its broker: a sandbox answering as a partner, and a relay with its
/// own exchange, queues and store.
struct Stage {
    shutdown: CancellationToken,
    sandbox: sandbox::Client,
    prefix: String,
    topology: Topology,
    running: relay::Running,
    // The demo's store is a file of its own: removed however the demo ends.
    store: DemoStore,
}

impl Stage {
    async fn start(amqp_url: &str) -> anyhow::Result<Stage> {
        let shutdown = CancellationToken::new();
        let sandbox_addr = sandbox::spawn(shutdown.clone()).await?;
        let sandbox = sandbox::Client::new(sandbox_addr);
        sandbox
            .add_rule(&sandbox::Rule::answer(404).on_query("=expired-"))
            .await?;
        let prefix = format!(
            "postback-relay-demo-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let store = DemoStore(prefix.clone());
        let config = sample::config(amqp_url, &prefix, sandbox.base_url())?;
        let topology = Topology::from_config(&config);
        let running = relay::start(config, shutdown.clone()).await?;
        Ok(Stage {
            shutdown,
            sandbox,
            prefix,
            topology,
            running,
            store,
        })
    }

    /// Says what runs where.
    fn introduce(&self, own: Option<&OwnBroker>) {
        println!("postback-relay demo");
        println!(
            "  partner sandbox   {} (answers 404 to expired clicks)",
            self.sandbox.base_url()
        );
        println!(
            "  relay metrics     http://{}/metrics",
            self.running.http_addr
        );
        if let Some(own) = own {
            println!(
                "  broker            node {} of the demo's own, on 127.0.0.1:{}",
                own.node, own.port
            );
        }
        println!("  queues            {0}.events, {0}.dead", self.prefix);
    }

    async fn until_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.running.health.is_ready() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the relay did not start consuming within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Stops the relay and the sandbox, and deletes the exchange, the queues and the store.
    async fn clean_up(self, channel: &lapin::Channel) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.running.wait().await?;
        self.topology.delete(channel).await?;
        drop(self.store);
        println!(
            "  cleaned up        exchange, queues {}.* and the demo's store deleted",
            self.prefix
        );
        Ok(())
    }
}

/// Publishes `n` sample events to the demo's exchange, each confirmed.
async fn publish_samples(
    conn: &lapin::Connection,
    topology: &Topology,
    n: usize,
) -> anyhow::Result<()> {
    let publisher = Publisher::new(conn).await?;
    let bar = progress_bar(n as u64, "published");
    publish::publish_all(
        &publisher,
        &topology.exchange,
        sample::sample_events(n),
        || bar.inc(1),
    )
    .await
    .map_err(|(i, e)| anyhow::anyhow!("publishing event {i}: {e}"))?;
    bar.finish_and_clear();
    println!("  published         {n} events, all confirmed by the broker");
    Ok(())
}

/// Waits until every event has its final outcome (status updates may wait a moment for their
/// conversion, in the retry tiers).
async fn until_settled(metrics: &Metrics, n: usize) -> anyhow::Result<()> {
    let bar = progress_bar(n as u64, "settled");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let settled = report::accounted(metrics);
        bar.set_position(settled);
        if settled >= n as u64 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {settled} of {n} events were settled within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bar.finish_and_clear();
    Ok(())
}

/// The demo's embedded store and journal (`{prefix}.db`, `{prefix}.journal.db` in the temp
/// directory), removed when dropped.
struct DemoStore(String);

impl Drop for DemoStore {
    fn drop(&mut self) {
        for suffix in [
            ".db",
            ".db-wal",
            ".db-shm",
            ".journal.db",
            ".journal.db-wal",
            ".journal.db-shm",
        ] {
            let _ = std::fs::remove_file(std::env::temp_dir().join(format!("{}{suffix}", self.0)));
        }
    }
}
