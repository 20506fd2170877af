//! `--only letters`: the console's dead-letter pages at size. For each size, a journal of its
//! own is filled with that many dead letters in the index (as a relay writes them: a few
//! destinations and reasons, a minute apart), a console is started on it, and each page is
//! loaded over HTTP: the list (whole, by destination, by reason, both, a time window, an
//! event, a far page), a letter, a replay's preview and the overview. Each page's median of
//! five loads is printed. The dead-letter queue is empty, so each page also says that the
//! index differs from it (that check, a passive declare, is part of the time).

use std::path::Path;
use std::time::{Duration, Instant};

use postback_relay::journal::letters::{LetterFilter, Letters};
use postback_relay::relay::deadletter::{Envelope, Reason, Source};

/// Letters in the index, per run.
const SIZES: [usize; 2] = [100_000, 1_000_000];
/// Letters written per transaction while filling.
const FILL_BATCH: usize = 10_000;
/// Loads of each page; the median is printed.
const LOADS: usize = 5;

const DESTINATIONS: [&str; 4] = ["powerspace", "hoqu", "publisher", "tracker"];
const REASONS: [Reason; 3] = [
    Reason::PartnerRejected,
    Reason::RetriesExhausted,
    Reason::InvalidEvent,
];

/// The `i`th letter: a destination and a reason in turn (one in ten from before routing).
fn envelope(i: usize, start: chrono::DateTime<chrono::Utc>) -> Envelope {
    let source = Source {
        queue: "events".into(),
        routing_key: "order".into(),
        message_id: None,
        redelivered: false,
    };
    let reason = REASONS[i % REASONS.len()];
    let body = format!(
        r#"{{"event_id":"ev-{i:07}","type":"order","occurred_at":"2026-11-20T10:00:00Z","order":{{"id":"o-{i}","amount":"25.00","currency":"EUR"}},"attribution":{{"network":"powerspace","click_id":"c-{i}"}}}}"#
    );
    let mut e = Envelope::for_message(
        reason,
        "HTTP 404 Not Found".into(),
        body.as_bytes(),
        None,
        source,
    );
    e.destination = (i % 10 != 9).then(|| DESTINATIONS[i % DESTINATIONS.len()].to_owned());
    e.dead_lettered_at = start + chrono::Duration::minutes(i as i64);
    e.attempts = 5;
    e
}

/// Fills a fresh journal at `path` with `n` letters; returns how long it took.
async fn fill(path: &Path, n: usize) -> anyhow::Result<(Letters, Duration)> {
    std::fs::File::create(path)?;
    let config = postback_relay::journal::JournalConfig {
        path: path.to_owned(),
        ..Default::default()
    };
    let letters = Letters::open(&config).await?;
    let start: chrono::DateTime<chrono::Utc> = "2025-01-01T00:00:00Z".parse()?;
    let began = Instant::now();
    let mut batch = Vec::with_capacity(FILL_BATCH);
    for i in 0..n {
        batch.push(postback_relay::relay::deadletter::envelope_row(&envelope(
            i, start,
        )));
        if batch.len() == FILL_BATCH || i + 1 == n {
            letters.seen(&batch, 1).await?;
            batch.clear();
        }
    }
    Ok((letters, began.elapsed()))
}

fn config(
    dir: &Path,
    prefix: &str,
    journal: &Path,
    amqp_url: &str,
) -> anyhow::Result<postback_relay::config::Config> {
    let path = dir.join(format!("{prefix}.letters.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
            [broker]
            url = "{amqp_url}"
            exchange = "{prefix}.conversions"
            queue_prefix = "{prefix}"

            [store]
            kind = "embedded"
            path = "{store}"

            [journal]
            path = "{journal}"

            [console]
            listen = "127.0.0.1:0"

            [[destinations]]
            name = "powerspace"
            kind = "powerspace"
            base_url = "http://127.0.0.1:9"
            match = {{ networks = ["powerspace"] }}
            "#,
            store = dir.join(format!("{prefix}.db")).display(),
            journal = journal.display(),
        ),
    )?;
    Ok(postback_relay::config::Config::load(&path)?)
}

fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

/// Runs the part: prints each size's fill time and page times.
pub async fn run(amqp_url: &str, conn: &lapin::Connection, dir: &Path) -> anyhow::Result<()> {
    for n in SIZES {
        let prefix = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let journal = dir.join(format!("{prefix}.journal.db"));
        eprintln!("filling the index with {n} dead letters...");
        let (letters, took) = fill(&journal, n).await?;
        let bytes = std::fs::metadata(&journal)?.len();
        println!(
            "dead letters: {n} in the index, filled in {:.1} s ({} bytes per letter)",
            took.as_secs_f64(),
            bytes / n as u64
        );
        let topology = postback_relay::relay::broker::Topology::for_prefix(&prefix);
        topology.declare(&conn.create_channel().await?).await?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let console = postback_relay::operate::console::start(
            config(dir, &prefix, &journal, amqp_url)?,
            shutdown.clone(),
        )
        .await?;
        let base = format!("http://{}", console.addr);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let one = letters
            .page(&LetterFilter::default(), (n / 2) as u64, 1)
            .await?
            .remove(0);
        let form = http
            .get(format!("{base}/recover"))
            .send()
            .await?
            .text()
            .await?;
        let csrf = form
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_default()
            .to_owned();
        let pages = [
            ("list, everything".to_owned(), "/dead".to_owned()),
            (
                "list, a destination".into(),
                "/dead?destination=hoqu".into(),
            ),
            (
                "list, a reason".into(),
                "/dead?reason=retries_exhausted".into(),
            ),
            (
                "list, destination and reason".into(),
                "/dead?destination=hoqu&reason=partner_rejected".into(),
            ),
            (
                "list, a day's window".into(),
                "/dead?since=2025-03-01T00:00:00Z&until=2025-03-02T00:00:00Z".into(),
            ),
            (
                "list, an event".into(),
                format!("/dead?event_id=ev-{:07}", n / 3),
            ),
            ("list, page 1000".into(), "/dead?page=1000".into()),
            ("a letter".into(), format!("/dead/{}", one.id)),
            ("overview".into(), "/".into()),
        ];
        println!("  {:<32} {:>10}", "page", "median");
        for (what, path) in &pages {
            let mut times = Vec::new();
            for _ in 0..LOADS {
                let t = Instant::now();
                let r = http.get(format!("{base}{path}")).send().await?;
                anyhow::ensure!(r.status().is_success(), "{path}: {}", r.status());
                r.text().await?;
                times.push(t.elapsed());
            }
            println!(
                "  {what:<32} {:>7.1} ms",
                median(times).as_secs_f64() * 1000.0
            );
        }
        let mut times = Vec::new();
        for _ in 0..LOADS {
            let t = Instant::now();
            let r = http
                .post(format!("{base}/replay"))
                .header("sec-fetch-site", "same-origin")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("mode=filter&destination=hoqu&csrf={csrf}"))
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "replay preview: {}", r.status());
            r.text().await?;
            times.push(t.elapsed());
        }
        println!(
            "  {:<32} {:>7.1} ms",
            "replay preview, a destination",
            median(times).as_secs_f64() * 1000.0
        );
        shutdown.cancel();
        console.wait().await;
        for q in topology.queues() {
            let ch = conn.create_channel().await?;
            let _ = ch
                .queue_delete(
                    q.as_str().into(),
                    lapin::options::QueueDeleteOptions::default(),
                )
                .await;
        }
        drop(letters);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", journal.display()));
        }
    }
    Ok(())
}
