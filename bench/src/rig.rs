//! What every measurement works with (the broker, a publisher, the partner sandbox, a working
//! folder), and the helpers that declare queues, publish events and wait for the partner.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;

use postback_relay::interfaces::publish::{self, Outgoing};
use postback_relay::interfaces::sandbox::{self, Rule};
use postback_relay::relay::broker::{self, Publisher, Topology};

use crate::Cli;

/// The benchmark's side of a run: the options, a connection to the broker and a publisher on
/// it, the partner (a sandbox in this process), and the folder the relays' files go to.
pub struct Rig<'a> {
    pub cli: &'a Cli,
    pub conn: lapin::Connection,
    pub publisher: Publisher,
    pub sb: sandbox::Client,
    pub dir: PathBuf,
    shutdown: CancellationToken,
}

impl<'a> Rig<'a> {
    /// Starts the partner sandbox and connects to the broker.
    pub async fn start(cli: &'a Cli) -> anyhow::Result<Rig<'a>> {
        let shutdown = CancellationToken::new();
        let addr = sandbox::spawn(shutdown.clone()).await?;
        let sb = sandbox::Client::new(addr);
        let conn = broker::connect(&cli.amqp_url, None, "bench")
            .await
            .with_context(|| format!("cannot reach RabbitMQ at {}", cli.amqp_url))?;
        let publisher = Publisher::new(&conn).await?;
        Ok(Rig {
            cli,
            conn,
            publisher,
            sb,
            dir: tempfile_dir()?,
            shutdown,
        })
    }

    /// Stops the partner sandbox.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// A fresh topology for one run, declared, and the partner's requests cleared.
    pub async fn fresh(&self, prefix: &str) -> anyhow::Result<Topology> {
        let t = topology(prefix);
        t.declare(&self.conn.create_channel().await?).await?;
        self.sb.reset().await?;
        Ok(t)
    }

    /// The URL the baseline sends each event's GET to, its id appended.
    pub fn baseline_url(&self) -> String {
        format!("{}/ord?qci=", self.sb.base_url())
    }
}

/// The folder for this process's relay configs, stores and journals.
pub fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("postback-relay-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// A prefix of its own for one run's exchange and queues (and the relay's files).
pub fn prefix() -> String {
    format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

fn event(i: usize) -> Outgoing {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    Outgoing::new(
        format!(
            r#"{{"event_id":"b{i}","type":"order","occurred_at":"{now}","attribution":{{"network":"powerspace","click_id":"b{i}"}},"order":{{"id":"{i}","amount":"49.99","currency":"EUR"}}}}"#
        )
        .into_bytes(),
    )
}

fn topology(prefix: &str) -> Topology {
    let mut t = Topology::for_prefix(prefix);
    t.exchange = format!("{prefix}.conversions");
    t
}

/// Waits until the sandbox has `n` requests (or `limit` passes); returns when the last came.
pub async fn wait_for(sb: &sandbox::Client, n: u64, limit: Duration) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        if sb.stats().await?.total >= n {
            return Ok(Instant::now());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the partner got fewer than {n} requests within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn wait_ready(conn: &lapin::Connection, t: &Topology) -> anyhow::Result<()> {
    wait_ready_within(conn, t, Duration::from_secs(30)).await
}

pub async fn wait_ready_within(
    conn: &lapin::Connection,
    t: &Topology,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let ch = conn.create_channel().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let info = ch
            .queue_declare(t.events.as_str().into(), passive, FieldTable::default())
            .await;
        if info.is_ok_and(|q| q.consumer_count() > 0) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the consumer did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn cleanup(conn: &lapin::Connection, t: &Topology) {
    if let Ok(ch) = conn.create_channel().await {
        let _ = t.delete(&ch).await;
        let retry_queues: Vec<String> = postback_relay::config::retry::DEFAULT_TIERS_MS
            .iter()
            .map(|ms| {
                format!(
                    "{}.retry.{}",
                    t.events.trim_end_matches(".events"),
                    postback_relay::config::retry::tier_label(Duration::from_millis(*ms))
                )
            })
            .collect();
        for q in retry_queues {
            let _ = ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    }
}

/// Publishes `n` events (to the exchange, or straight to `queue`), with confirms.
pub async fn publish_n(
    publisher: &Publisher,
    exchange: &str,
    n: usize,
    offset: usize,
) -> anyhow::Result<()> {
    publish::publish_all(publisher, exchange, (offset..offset + n).map(event), || {})
        .await
        .map_err(|(i, e)| anyhow::anyhow!("publish {i}: {e}"))?;
    Ok(())
}

/// Publishes `n` events at `rate` per second, remembering when each went out.
pub async fn publish_at_rate(
    publisher: &Publisher,
    exchange: &str,
    n: usize,
    rate: f64,
) -> anyhow::Result<HashMap<String, chrono::DateTime<chrono::Utc>>> {
    let mut sent = HashMap::new();
    let start = Instant::now();
    for i in 0..n {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let m = event(i);
        sent.insert(format!("b{i}"), chrono::Utc::now());
        publisher
            .send_json(
                exchange,
                &m.routing_key,
                &m.body,
                m.message_id.as_deref(),
                None,
            )
            .await?;
    }
    Ok(sent)
}

pub fn partner_delay(ms: u64) -> Rule {
    Rule::answer(200).after_ms(ms)
}
