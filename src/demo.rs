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

/// The demo's destinations: one of each kind, each under its own path at the sandbox.
pub const DESTINATIONS: [&str; 4] = ["powerspace", "hoqu", "publisher", "affiliate"];

/// The demo's configuration: one destination of each kind, all pointing at the sandbox.
fn demo_config(amqp_url: &str, prefix: &str, sb: &str) -> anyhow::Result<Config> {
    let db = std::env::temp_dir()
        .join(format!("{prefix}.db"))
        .display()
        .to_string();
    let text = format!(
        r##"
        [broker]
        url = {amqp_url:?}
        exchange = "{prefix}.conversions"
        queue_prefix = {prefix:?}
        prefetch = 64

        [http]
        listen = "127.0.0.1:0"

        [store]
        kind = "embedded"
        path = {db:?}

        [[destinations]]
        name = "powerspace"
        kind = "powerspace"
        base_url = "{sb}/powerspace"
        match = {{ networks = ["powerspace"] }}

        [[destinations]]
        name = "hoqu"
        kind = "hoqu"
        base_url = "{sb}/hoqu"
        match = {{ networks = ["hoqu"] }}
        hoqu = {{ api_key = "demo-api-key", payout = "percentage", action = "lead", status_wait_secs = 2 }}
        retry = {{ initial_delay_ms = 1000 }}

        [[destinations]]
        name = "publisher"
        kind = "callback"
        match = {{ networks = ["awin"] }}
        callback = {{ url = "{sb}/publisher/!!!merchantId!!!/pixel.php?clk=!!!clickRef!!!&cnv=!!!transactionId!!!&com=!!!commission!!!", merchant_id = "3661", allow_any_port = true }}

        [[destinations]]
        name = "affiliate"
        kind = "tracker"
        match = {{ networks = ["espace-plus"] }}
        tracker = {{ structure = "#affid#-#clickId#", url = "{sb}/affiliate/postback?affid=#affid#&cid=#clickId#&kind=#conversion#" }}
        "##
    );
    Ok(Config::from_toml(&text, &|_| None)?)
}

/// Sample events, spread over the four networks: leads, orders and status updates, with every
/// 23rd click expired (the sandbox answers 404), every 40th tracker in the wrong shape, every
/// 25th event malformed, and every 50th without attribution.
pub fn sample_events(n: usize) -> Vec<Outgoing> {
    const MALFORMED: [&str; 5] = [
        r#"{"event_id": "broken-"#,
        r#"{"event_id":"bad-amount-{i}","type":"order","occurred_at":"2026-11-22T10:00:00Z","attribution":{"network":"powerspace","click_id":"c{i}"},"order":{"amount":"12,50"}}"#,
        r#"{"event_id":"no-click-{i}","type":"lead","occurred_at":"2026-11-22T10:00:00Z","attribution":{"network":"hoqu"}}"#,
        r#"{"event_id":"nan-{i}","type":"order","occurred_at":"2026-11-22T10:00:00Z","attribution":{"network":"awin","click_id":"c{i}"},"order":{"amount":"NaN"}}"#,
        r#"{"event_id":"refund-{i}","type":"refund","occurred_at":"2026-11-22T10:00:00Z"}"#,
    ];
    const TRACKER_KINDS: [&str; 4] = ["registration", "trial", "signup", "rebill"];
    (0..n)
        .map(|i| {
            let body = if i % 25 == 3 {
                MALFORMED[(i / 25) % MALFORMED.len()].replace("{i}", &i.to_string())
            } else if i % 50 == 11 {
                format!(r#"{{"event_id":"organic-{i}","type":"order","occurred_at":"2026-11-22T10:00:00Z","order":{{"amount":"10.00"}}}}"#)
            } else {
                // A status update carries its conversion's click.
                let c = if i % 8 == 5 { i - 4 } else { i };
                let click = if c % 23 == 5 { format!("expired-{c}") } else { format!("click-{c}") };
                let amount = format!("{}.{:02}", 10 + i % 190, i % 100);
                let (network, kind, extra) = match i % 4 {
                    0 if i % 8 == 0 => ("powerspace", "lead", String::new()),
                    0 => ("powerspace", "order", format!(r#","order":{{"id":"{i}","amount":"{amount}","currency":"EUR"}}"#)),
                    1 if i % 8 == 1 => ("hoqu", "lead", format!(r#","order":{{"id":"{i}","amount":"{amount}"}}"#)),
                    // The status update of the lead published four events earlier.
                    1 => ("hoqu", "order_status", format!(r#","order":{{"id":"{}","amount":"{amount}","status":"paid"}}"#, i - 4)),
                    2 => (
                        "awin",
                        "order",
                        format!(r#","order":{{"id":"{i}","amount":"{amount}","currency":"GBP","commission":"1.64"}}"#),
                    ),
                    _ => (
                        "espace-plus",
                        TRACKER_KINDS[(i / 4) % 4],
                        format!(r#","order":{{"amount":"{amount}"}}"#),
                    ),
                };
                let mut attribution = format!(r#""network":"{network}","click_id":"{click}""#);
                if network == "awin" {
                    attribution.push_str(&format!(r#","publisher_id":"45628","params":{{"clickRef":"{click}"}}"#));
                }
                let mut body = format!(
                    r#"{{"event_id":"demo-{i}","type":"{kind}","occurred_at":"2026-11-22T10:00:00Z","attribution":{{{attribution}}}{extra}}}"#
                );
                if network == "espace-plus" {
                    // The affiliate's structure is #affid#-#clickId#: no dash, no fit.
                    let tracker = if i % 40 == 19 {
                        "trID_nostructure_trID".to_owned()
                    } else {
                        format!("trID_aff{}-{click}_trID", i % 7)
                    };
                    body = body.replace(r#""click_id":"#, &format!(r#""tracker":"{tracker}","click_id":"#));
                }
                body
            };
            Outgoing::new(body.into_bytes())
        })
        .collect()
}

pub async fn run(amqp_url: &str, n: usize) -> anyhow::Result<ExitCode> {
    let conn = match broker::connect(amqp_url, "demo").await {
        Ok(c) => c,
        Err(e) => {
            let shown = match url::Url::parse(amqp_url) {
                Ok(mut u) if u.password().is_some() => {
                    let _ = u.set_password(Some("***"));
                    u.to_string()
                }
                _ => amqp_url.to_owned(),
            };
            eprintln!(
                "Cannot reach RabbitMQ at {shown}: {e}\n\n\
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
        .add_rule(&sandbox::Rule::answer(404).on_query("=expired-"))
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

    // Settled: every event has its final outcome (status updates may wait a moment for their
    // conversion, in the retry tiers).
    let bar = progress_bar(n as u64, "settled");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let settled = accounted(&metrics);
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
    let requests = sandbox.requests().await?;
    let agrees = report(&metrics, &requests, dead_in_queue as u64, n, elapsed);
    show_dead_letters(&conn, &topology).await?;

    shutdown.cancel();
    running.wait().await?;
    topology.delete(&channel).await?;
    let _ = conn.close(200, "demo done".into()).await;
    for suffix in [".db", ".db-wal", ".db-shm"] {
        let _ = std::fs::remove_file(std::env::temp_dir().join(format!("{prefix}{suffix}")));
    }
    println!("  cleaned up        exchange, queues {prefix}.* and the demo's store deleted");
    Ok(if agrees {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Prints one dead letter of each reason, as an operator reads them (`dlq list`).
async fn show_dead_letters(conn: &lapin::Connection, topology: &Topology) -> anyhow::Result<()> {
    let letters = crate::dlq::browse(
        conn,
        topology,
        crate::config::Config::default_worker().max_event_bytes,
    )
    .await?;
    let mut seen = std::collections::BTreeSet::new();
    println!("  a dead letter of each reason (postback-relay dlq list):");
    for l in &letters {
        let s = l.summary();
        if seen.insert(s.reason.as_str()) {
            println!(
                "    {:<17} event {:<16} {}",
                s.reason.as_str(),
                s.event_id.as_deref().unwrap_or("(unreadable)"),
                s.detail.chars().take(90).collect::<String>()
            );
        }
    }
    println!();
    Ok(())
}

/// Events with their final outcome: each sample event has one destination, or none.
fn accounted(m: &Metrics) -> u64 {
    let outcomes: u64 = DESTINATIONS
        .iter()
        .flat_map(|d| {
            ["delivered", "dead_lettered", "duplicate", "superseded"]
                .map(|o| m.deliveries.with_label_values(&[d, o]).get())
        })
        .sum();
    let before_routing: u64 = Reason::ALL
        .iter()
        .map(|r| {
            m.dead_letters
                .with_label_values(&["none", r.as_str()])
                .get()
        })
        .sum();
    outcomes + before_routing + m.events_skipped.get()
}

/// What the sandbox answered, per destination (the first path segment) and status.
fn sandbox_counts(requests: &[sandbox::Recorded]) -> BTreeMap<(String, u16), u64> {
    let mut counts = BTreeMap::new();
    for r in requests {
        let dest = r
            .path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("")
            .to_owned();
        *counts.entry((dest, r.status)).or_default() += 1;
    }
    counts
}

/// Prints the per-destination table; true when the relay's counts agree with the sandbox's.
fn report(
    m: &Metrics,
    requests: &[sandbox::Recorded],
    dead_in_queue: u64,
    n: usize,
    elapsed: Duration,
) -> bool {
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
    let list = |map: &BTreeMap<&str, u64>| {
        if map.is_empty() {
            "-".to_owned()
        } else {
            map.iter()
                .map(|(r, c)| format!("{r}: {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let sandbox = sandbox_counts(requests);
    let answered = |dest: &str, ok: fn(u16) -> bool| -> u64 {
        sandbox
            .iter()
            .filter(|((d, s), _)| d == dest && ok(*s))
            .map(|(_, c)| c)
            .sum()
    };

    println!(
        "  settled           {n} events in {:.2} s",
        elapsed.as_secs_f64()
    );
    println!();
    println!(
        "  {:<11} {:>9} {:>13} {:>8} {:>8} {:>8}   dead letters by reason",
        "destination", "delivered", "dead-lettered", "success", "sandbox", "sandbox"
    );
    println!(
        "  {:<11} {:>9} {:>13} {:>8} {:>8} {:>8}",
        "", "", "", "rate", "2xx", "404"
    );
    let mut checks: Vec<(String, bool)> = Vec::new();
    let mut outcomes = 0;
    for dest in DESTINATIONS {
        let delivered = m.deliveries.with_label_values(&[dest, "delivered"]).get();
        let dead = m
            .deliveries
            .with_label_values(&[dest, "dead_lettered"])
            .get();
        let rate = if delivered + dead == 0 {
            0.0
        } else {
            100.0 * delivered as f64 / (delivered + dead) as f64
        };
        let (ok, not_found) = (
            answered(dest, |s| (200..300).contains(&s)),
            answered(dest, |s| s == 404),
        );
        let reasons = by_reason(dest);
        println!(
            "  {dest:<11} {delivered:>9} {dead:>13} {rate:>7.1}% {ok:>8} {not_found:>8}   {}",
            list(&reasons)
        );
        checks.push((
            format!("{dest}: delivered = sandbox 2xx, partner_rejected = sandbox 404"),
            delivered == ok && reasons.get("partner_rejected").copied().unwrap_or(0) == not_found,
        ));
        outcomes += delivered + dead;
    }
    let unrouted = by_reason("none");
    let before_routing: u64 = unrouted.values().sum();
    println!(
        "  {:<11} {:>9} {:>13} {:>8} {:>8} {:>8}   {}",
        "(unrouted)",
        "-",
        before_routing,
        "",
        "",
        "",
        list(&unrouted)
    );
    let skipped = m.events_skipped.get();
    println!("  skipped (no attribution): {skipped}");
    println!();
    let total_dead: u64 = DESTINATIONS
        .iter()
        .map(|d| m.deliveries.with_label_values(&[d, "dead_lettered"]).get())
        .sum::<u64>()
        + before_routing;
    checks.push((
        "the dead-letter queue holds every dead letter".into(),
        dead_in_queue == total_dead,
    ));
    // Each sample event is meant for exactly one destination.
    checks.push((
        "every event is accounted for".into(),
        outcomes + before_routing + skipped == n as u64,
    ));
    let mut all = true;
    for (what, pass) in checks {
        println!("  [{}] {what}", if pass { "ok" } else { "MISMATCH" });
        all &= pass;
    }
    println!();
    all
}
