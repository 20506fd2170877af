//! `postback-relay demo`: starts a partner sandbox and a relay on loopback, publishes sample
//! events (some malformed, some refused by the "partner"), and shows what became of each,
//! checked against what the sandbox recorded. Uses its own exchange and queues and removes them.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;

use crate::broker::{self, Publisher, Topology};
use crate::config::Config;
use crate::deadletter::Reason;
use crate::metrics::Metrics;
use crate::publish::{self, Outgoing};
use crate::{relay, sandbox};

/// A progress bar on a terminal; hidden otherwise (logs and CI stay clean).
pub fn progress_bar(len: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "  {what:>10} [{{bar:40}}] {{pos}}/{{len}} {{per_sec}}"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

/// The demo's configuration: one Powerspace destination pointing at the sandbox.
fn demo_config(amqp_url: &str, prefix: &str, sandbox_url: &str) -> anyhow::Result<Config> {
    let text = format!(
        r#"
        [broker]
        url = {amqp_url:?}
        exchange = "{prefix}.conversions"
        queue_prefix = {prefix:?}
        prefetch = 64

        [http]
        listen = "127.0.0.1:0"

        [[destinations]]
        name = "powerspace"
        kind = "powerspace"
        base_url = {sandbox_url:?}
        timeout_ms = 5000
        match = {{ networks = ["powerspace"], types = ["lead", "order"] }}
        retry = {{ attempts = 3, initial_delay_ms = 50, max_delay_ms = 500 }}
        "#
    );
    Ok(Config::from_toml(&text, &|_| None)?)
}

/// Sample events: mostly leads and orders, with every 20th order's click expired (the sandbox
/// answers 404), every 25th event malformed, and every 50th without attribution.
pub fn sample_events(n: usize) -> Vec<Outgoing> {
    const MALFORMED: [&str; 5] = [
        r#"{"event_id": "broken-"#,
        r#"{"event_id":"bad-amount-{i}","type":"order","occurred_at":"2026-11-22T10:00:00Z","attribution":{"network":"powerspace","click_id":"c{i}"},"order":{"amount":"12,50"}}"#,
        r#"{"event_id":"no-click-{i}","type":"lead","occurred_at":"2026-11-22T10:00:00Z","attribution":{"network":"powerspace"}}"#,
        r#"{"event_id":"nan-{i}","type":"order","occurred_at":"2026-11-22T10:00:00Z","attribution":{"network":"powerspace","click_id":"c{i}"},"order":{"amount":"NaN"}}"#,
        r#"{"event_id":"refund-{i}","type":"refund","occurred_at":"2026-11-22T10:00:00Z"}"#,
    ];
    (0..n)
        .map(|i| {
            let body = if i % 25 == 3 {
                MALFORMED[(i / 25) % MALFORMED.len()].replace("{i}", &i.to_string())
            } else if i % 50 == 11 {
                format!(r#"{{"event_id":"organic-{i}","type":"order","occurred_at":"2026-11-22T10:00:00Z","order":{{"amount":"10.00"}}}}"#)
            } else {
                let click = if i % 20 == 7 { format!("expired-{i}") } else { format!("demo-click-{i}") };
                let (kind, order) = if i % 2 == 0 {
                    ("lead", String::new())
                } else {
                    ("order", format!(r#","order":{{"id":"{i}","amount":"{}.{:02}","currency":"EUR"}}"#, 10 + i % 190, i % 100))
                };
                format!(
                    r#"{{"event_id":"demo-{i}","type":"{kind}","occurred_at":"2026-11-22T10:00:00Z","attribution":{{"network":"powerspace","click_id":"{click}"}}{order}}}"#
                )
            };
            Outgoing::new(body.into_bytes())
        })
        .collect()
}

pub async fn run(amqp_url: &str, n: usize) -> anyhow::Result<ExitCode> {
    let conn = match broker::connect(amqp_url, "demo").await {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "Cannot reach RabbitMQ at {amqp_url}: {e}\n\n\
                 The demo needs a RabbitMQ broker. Start one, then run the demo again:\n  \
                 - installed locally: rabbitmq-server -detached\n  \
                 - on Debian/Ubuntu:  sudo apt-get install rabbitmq-server && sudo rabbitmq-server -detached\n  \
                 - with Docker:       docker compose up -d rabbitmq\n\
                 Or point the demo at another broker with --amqp-url or AMQP_URL."
            );
            return Ok(ExitCode::from(1));
        }
    };
    let shutdown = CancellationToken::new();
    let sandbox_addr = sandbox::spawn(shutdown.clone()).await?;
    let sandbox = sandbox::Client::new(sandbox_addr);
    sandbox
        .add_rule(&sandbox::Rule {
            matcher: sandbox::Match {
                path_prefix: None,
                query_contains: Some("qci=expired-".into()),
            },
            status: 404,
            delay_ms: 0,
            retry_after: None,
            times: None,
        })
        .await?;
    let prefix = format!(
        "postback-relay-demo-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let config = demo_config(amqp_url, &prefix, sandbox.base_url())?;
    let topology = Topology::from_config(&config);
    let running = relay::start(config, shutdown.clone()).await?;
    let metrics = running.metrics.clone();

    println!("postback-relay demo");
    println!(
        "  partner sandbox   {} (answers 404 to expired clicks)",
        sandbox.base_url()
    );
    println!("  relay metrics     http://{}/metrics", running.http_addr);
    println!("  queues            {prefix}.events, {prefix}.dead");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !running.health.is_ready() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the relay did not start consuming within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let started = Instant::now();
    let publisher = Publisher::new(&conn).await?;
    let bar = progress_bar(n as u64, "published");
    publish::publish_all(&publisher, &topology.exchange, sample_events(n), || {
        bar.inc(1)
    })
    .await
    .map_err(|(i, e)| anyhow::anyhow!("publishing event {i}: {e}"))?;
    bar.finish_and_clear();
    println!("  published         {n} events, all confirmed by the broker");

    let bar = progress_bar(n as u64, "settled");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let settled = metrics.events_acked.get();
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
    let elapsed = started.elapsed();

    let channel = conn.create_channel().await?;
    let dead_in_queue = channel
        .queue_declare(
            topology.dead.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?
        .message_count();
    let stats = sandbox.stats().await?;
    let agrees = report(&metrics, &stats, dead_in_queue as u64, n, elapsed);
    show_dead_letters(&channel, &topology.dead, dead_in_queue).await?;

    shutdown.cancel();
    running.wait().await?;
    topology.delete(&channel).await?;
    let _ = conn.close(200, "demo done".into()).await;
    println!("  cleaned up        exchange and queues {prefix}.* deleted");
    Ok(if agrees {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Prints one dead letter of each reason, as an operator would read them. Reads without
/// acknowledging: the queue is deleted afterwards anyway.
async fn show_dead_letters(
    channel: &lapin::Channel,
    queue: &str,
    count: u32,
) -> anyhow::Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    println!("  a dead letter of each reason (from {queue}):");
    for _ in 0..count {
        let Some(m) = channel
            .basic_get(queue.into(), lapin::options::BasicGetOptions::default())
            .await?
        else {
            break;
        };
        let env: crate::deadletter::Envelope = serde_json::from_slice(&m.delivery.data)?;
        if seen.insert(env.reason.as_str()) {
            println!(
                "    {:<17} event {:<16} {}",
                env.reason.as_str(),
                env.event_id.as_deref().unwrap_or("(unreadable)"),
                env.detail.chars().take(90).collect::<String>()
            );
        }
    }
    println!();
    Ok(())
}

/// Prints the per-destination table; true when the relay's counts agree with the sandbox's.
fn report(
    m: &Metrics,
    sandbox: &sandbox::Stats,
    dead_in_queue: u64,
    n: usize,
    elapsed: Duration,
) -> bool {
    let delivered = m
        .deliveries
        .with_label_values(&["powerspace", "delivered"])
        .get();
    let dead = m
        .deliveries
        .with_label_values(&["powerspace", "dead_lettered"])
        .get();
    let by_reason = |dest: &str| -> BTreeMap<&'static str, u64> {
        Reason::ALL
            .iter()
            .map(|r| {
                (
                    r.as_str(),
                    m.dead_letters.with_label_values(&[dest, r.as_str()]).get(),
                )
            })
            .filter(|(_, c)| *c > 0)
            .collect()
    };
    let list = |map: BTreeMap<&str, u64>| {
        if map.is_empty() {
            "none".to_owned()
        } else {
            map.iter()
                .map(|(r, c)| format!("{r}: {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let sandbox_2xx: u64 = sandbox
        .by_status
        .iter()
        .filter(|(s, _)| (200..300).contains(*s))
        .map(|(_, c)| c)
        .sum();
    let sandbox_404 = sandbox.by_status.get(&404).copied().unwrap_or(0);
    let before_routing: u64 = by_reason("none").values().sum();
    let skipped = m.events_skipped.get();
    let rate = if delivered + dead == 0 {
        0.0
    } else {
        100.0 * delivered as f64 / (delivered + dead) as f64
    };

    println!(
        "  settled           {n} events in {:.2} s",
        elapsed.as_secs_f64()
    );
    println!();
    println!(
        "  {:<12} {:>10} {:>14} {:>13} {:>12} {:>12}",
        "destination", "delivered", "dead-lettered", "success rate", "sandbox 2xx", "sandbox 404"
    );
    println!(
        "  {:<12} {:>10} {:>14} {:>12.1}% {:>12} {:>12}",
        "powerspace", delivered, dead, rate, sandbox_2xx, sandbox_404
    );
    println!(
        "  {:<12} dead letters by reason: {}",
        "",
        list(by_reason("powerspace"))
    );
    println!(
        "  {:<12} {:>10} {:>14}   {}",
        "(unrouted)",
        "-",
        before_routing,
        list(by_reason("none"))
    );
    println!("  skipped (no attribution): {skipped}");
    println!();
    let total_dead = dead + before_routing;
    let checks = [
        (
            "every delivery was a 2xx at the sandbox",
            delivered == sandbox_2xx,
        ),
        (
            "every partner rejection was a 404 at the sandbox",
            by_reason("powerspace")
                .get("partner_rejected")
                .copied()
                .unwrap_or(0)
                == sandbox_404,
        ),
        (
            "the dead-letter queue holds every dead letter",
            dead_in_queue == total_dead,
        ),
        (
            "every event is accounted for",
            delivered + total_dead + skipped == n as u64,
        ),
    ];
    let mut ok = true;
    for (what, pass) in checks {
        println!("  [{}] {what}", if pass { "ok" } else { "MISMATCH" });
        ok &= pass;
    }
    println!();
    ok
}
