//! `bench --only journal`: the journal at size. Fills SQLite journals (the relay's own
//! schema, made by its migrations) with realistic entries spread over 30 days, then times
//! each look-up the commands, the console and `recover` make, the console's overview, and the
//! file's bytes per entry, at each size.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use postback_relay::journal::{Filter, JournalConfig, Reader, Recoveries, Which, Window};

const DESTINATIONS: [&str; 6] = [
    "powerspace",
    "hoqu",
    "awin",
    "espace-plus",
    "binom",
    "keitaro",
];
const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
/// Keys (events, orders, windows) each look-up is timed with.
const SAMPLES: usize = 51;

/// SplitMix64: the same entries on every run, without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            (b >> 48) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }
}

/// What a filled journal is looked up with: existing events, orders and moments.
#[derive(Default)]
struct Sample {
    events: Vec<String>,
    orders: Vec<String>,
    moments: Vec<(&'static str, i64)>,
}

/// One delivery's entries: (outcome, detail, HTTP status, with a call).
fn delivery(rng: &mut Rng) -> &'static [(&'static str, Option<&'static str>, Option<u16>)] {
    match rng.below(100) {
        0..88 => &[("delivered", None, Some(200))],
        88..94 => &[
            ("retry_scheduled", Some("in_process"), Some(503)),
            ("delivered", None, Some(200)),
        ],
        94..97 => &[
            ("retry_scheduled", Some("30s"), Some(503)),
            ("dead_lettered", Some("rejected"), Some(400)),
        ],
        97..99 => &[("duplicate", None, None)],
        _ => &[("superseded", None, None)],
    }
}

/// Writes `n` entries into a new journal at `path`, made by the relay's own migrations, in
/// large transactions with the file's safety turned off (a fill, not a relay); the
/// per-minute counts are added as the writer adds them. Returns what to look up.
fn fill(path: &Path, n: u64, end: i64) -> anyhow::Result<Sample> {
    let mut conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "OFF")?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.pragma_update(None, "cache_size", -2_000_000i64)?;
    let mut rng = Rng(0x5eed ^ n);
    let start = end - 30 * DAY_MS;
    let every = (n / SAMPLES as u64).max(1);
    let mut sample = Sample::default();
    let mut counts: HashMap<(i64, &str, &str), (i64, f64, i64)> = HashMap::new();
    let mut recent_orders: Vec<String> = Vec::new();
    let mut written = 0u64;
    while written < n {
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO entries (event_id, order_id, event_type, destination, attempt, at,
                   outcome, detail, http_status, error_class, latency_ms, request, response,
                   recovery, body, first_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, ?10, ?11, ?12, NULL, ?13, ?14)",
            )?;
            let batch_end = (written + 100_000).min(n);
            while written < batch_end {
                let event_id = rng.uuid();
                let order_id = match (rng.below(10), recent_orders.is_empty()) {
                    (0..3, false) => {
                        recent_orders[rng.below(recent_orders.len() as u64) as usize].clone()
                    }
                    _ => {
                        let o = format!("{}", 10_000_000 + rng.below(90_000_000_000));
                        if recent_orders.len() < 1000 {
                            recent_orders.push(o.clone());
                        } else {
                            let i = rng.below(1000) as usize;
                            recent_orders[i] = o.clone();
                        }
                        o
                    }
                };
                let event_type = ["order", "order", "lead", "status"][rng.below(4) as usize];
                let mut at = start + ((written as i128 * 30 * DAY_MS as i128) / n as i128) as i64;
                let body = format!(
                    r#"{{"event_id":"{event_id}","event_type":"{event_type}","occurred_at":"{}","order":{{"id":"{order_id}","amount":"{}.{:02}","currency":"EUR","status":"approved","items":[{{"sku":"SKU-{}","qty":1}}]}},"attribution":{{"network":"powerspace","click_id":"{:016x}{:016x}","sub_id":"s{}"}},"customer":{{"country":"FR","new":true}}}}"#,
                    DateTime::<Utc>::from_timestamp_millis(at)
                        .unwrap_or_default()
                        .to_rfc3339(),
                    rng.below(500),
                    rng.below(100),
                    rng.below(100_000),
                    rng.next(),
                    rng.next(),
                    rng.below(1000),
                );
                let mut body = Some(body);
                let first_at = at;
                let fanout = if rng.below(10) < 3 { 2 } else { 1 };
                for _ in 0..fanout {
                    let dest = DESTINATIONS[rng.below(DESTINATIONS.len() as u64) as usize];
                    for (attempt, (outcome, detail, status)) in
                        delivery(&mut rng).iter().enumerate()
                    {
                        let call = status.is_some();
                        let latency = call.then(|| {
                            20.0 + rng.below(380) as f64 + rng.below(1000) as f64 / 1000.0
                        });
                        let request = call.then(|| format!(
                            r#"{{"destination":"{dest}","method":"GET","url":"https://trackerdomain.com/REDACTED/s2s?click_id={:016x}&order_id={order_id}&amount=20.00&currency=EUR&status=approved&ts={at}","headers":{{"user-agent":"postback-relay"}},"body":null}}"#,
                            rng.next()
                        ));
                        let response = call.then(|| match status {
                            Some(200) => format!(
                                r#"{{"status":"accepted","transaction":"{:016x}"}}"#,
                                rng.next()
                            ),
                            Some(503) => "Service Unavailable".to_owned(),
                            _ => r#"{"status":"error","message":"unknown click id"}"#.to_owned(),
                        });
                        insert.execute(rusqlite::params![
                            event_id,
                            order_id,
                            event_type,
                            dest,
                            attempt as i64 + 1,
                            at,
                            outcome,
                            detail,
                            status,
                            latency,
                            request,
                            response,
                            body,
                            body.as_ref().map(|_| first_at),
                        ])?;
                        body = None;
                        let c = counts.entry((at - at % 60_000, dest, outcome)).or_default();
                        c.0 += 1;
                        if let Some(l) = latency {
                            c.1 += l;
                            c.2 += 1;
                        }
                        if written.is_multiple_of(every) && sample.events.len() < SAMPLES {
                            sample.events.push(event_id.clone());
                            sample.orders.push(order_id.clone());
                            sample.moments.push((dest, at));
                        }
                        written += 1;
                        at += 1 + rng.below(200) as i64;
                    }
                }
            }
        }
        tx.commit()?;
    }
    let tx = conn.transaction()?;
    {
        let mut add = tx.prepare(
            "INSERT INTO per_minute (minute, destination, outcome, n, latency_ms_sum, latency_n)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for ((minute, dest, outcome), (count, sum, calls)) in &counts {
            add.execute(rusqlite::params![minute, dest, outcome, count, sum, calls])?;
        }
    }
    tx.commit()?;
    Ok(sample)
}

/// One look-up's figures at one size: median and largest time, and rows per call.
struct Timed {
    median_ms: f64,
    max_ms: f64,
    rows: f64,
}

/// Times `f` once per sample key; each call returns how many rows it read.
async fn time<F: AsyncFnMut(usize) -> anyhow::Result<usize>>(mut f: F) -> anyhow::Result<Timed> {
    let (mut times, mut rows) = (Vec::new(), 0usize);
    for i in 0..SAMPLES {
        let t = Instant::now();
        rows += f(i).await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(Timed {
        median_ms: times[SAMPLES / 2],
        max_ms: times[SAMPLES - 1],
        rows: rows as f64 / SAMPLES as f64,
    })
}

const LOOKUPS: [&str; 10] = [
    "deliveries --event-id",
    "deliveries --order-id",
    "event id, delivered only",
    "console search (event, then order)",
    "destination window of ~100 entries",
    "destination 1 h, dead_lettered",
    "destination 1 h, whole",
    "recover: destination 1 h (delivered)",
    "console overview (1 h and 24 h counts)",
    "console chart (24 h per hour)",
];

/// Every look-up at one size: (median, largest, rows) in [`LOOKUPS`]' order.
async fn measure(path: &Path, n: u64, sample: &Sample, end: i64) -> anyhow::Result<Vec<Timed>> {
    let config = JournalConfig {
        path: path.to_owned(),
        ..JournalConfig::default()
    };
    let reader = Reader::open(&config).await?;
    let recoveries = Recoveries::open(&config).await?;
    let t = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    let entries =
        async |f: Filter| -> anyhow::Result<usize> { Ok(reader.entries(&f).await?.len()) };
    let by = |event: Option<&String>, order: Option<&String>| Filter {
        event_id: event.cloned(),
        order_id: order.cloned(),
        limit: 10_000,
        ..Filter::default()
    };
    // A window holding about 100 of a destination's entries at this size.
    let hundred = (100 * 30 * DAY_MS * DESTINATIONS.len() as i64 / n.max(1) as i64).max(60_000);
    let window = |i: usize, len: i64, outcomes: &[&str], limit: usize| {
        let (dest, at) = sample.moments[i];
        Filter {
            destination: Some(dest.to_owned()),
            since: Some(t(at)),
            until: Some(t(at + len)),
            outcomes: outcomes.iter().map(|o| (*o).to_owned()).collect(),
            limit,
            ..Filter::default()
        }
    };
    let mut out = Vec::new();
    out.push(time(async |i| entries(by(Some(&sample.events[i]), None)).await).await?);
    out.push(time(async |i| entries(by(None, Some(&sample.orders[i]))).await).await?);
    out.push(
        time(async |i| {
            entries(Filter {
                outcomes: vec!["delivered".into()],
                ..by(Some(&sample.events[i]), None)
            })
            .await
        })
        .await?,
    );
    out.push(
        time(async |i| {
            let a = entries(by(Some(&sample.events[i]), None)).await?;
            Ok(a + entries(by(None, Some(&sample.events[i]))).await?)
        })
        .await?,
    );
    out.push(time(async |i| entries(window(i, hundred, &[], 10_000)).await).await?);
    out.push(time(async |i| entries(window(i, HOUR_MS, &["dead_lettered"], 10_000)).await).await?);
    out.push(time(async |i| entries(window(i, HOUR_MS, &[], 10_000)).await).await?);
    out.push(
        time(async |i| {
            let (dest, at) = sample.moments[i];
            let w = Window::new(
                dest.to_owned(),
                t(at),
                Some(t(at + HOUR_MS)),
                Which::Delivered,
            )?;
            Ok(recoveries.candidates(&w, "bench").await?.len())
        })
        .await?,
    );
    out.push(
        time(async |_| {
            let now = t(end);
            let h = reader.counts(now - chrono::Duration::hours(1)).await?;
            Ok(h.len() + reader.counts(now - chrono::Duration::days(1)).await?.len())
        })
        .await?,
    );
    out.push(
        time(async |i| {
            let dest = sample.moments[i].0;
            Ok(reader.per_hour(dest, t(end - 24 * HOUR_MS)).await?.len())
        })
        .await?,
    );
    Ok(out)
}

/// Fills a journal of each size in `sizes`, in `dir`, and prints the figures.
pub async fn run(sizes: &[u64], dir: &Path) -> anyhow::Result<()> {
    let end = Utc::now().timestamp_millis();
    let mut all: Vec<(u64, Vec<Timed>)> = Vec::new();
    for &n in sizes {
        let path: PathBuf = dir.join(format!("journal-{n}.db"));
        let _ = std::fs::remove_file(&path);
        // The relay's own schema: an empty file brought up to date by its migrations.
        std::fs::File::create(&path)?;
        let config = JournalConfig {
            path: path.clone(),
            ..JournalConfig::default()
        };
        drop(
            Recoveries::open(&config)
                .await
                .context("the journal's schema")?,
        );
        let started = Instant::now();
        let fill_path = path.clone();
        let sample = tokio::task::spawn_blocking(move || fill(&fill_path, n, end)).await??;
        // On disk before it is read: the kernel's writing back of the fill holds up no read.
        std::fs::File::open(&path)?.sync_all()?;
        let bytes = std::fs::metadata(&path)?.len();
        eprintln!(
            "journal of {n} entries filled in {:.1} s: {} bytes, {:.0} bytes per entry",
            started.elapsed().as_secs_f64(),
            bytes,
            bytes as f64 / n as f64
        );
        let timed = measure(&path, n, &sample, end).await?;
        println!(
            "\njournal of {n} entries: {:.0} bytes per entry ({bytes} bytes)",
            bytes as f64 / n as f64
        );
        println!(
            "{:<42} {:>10} {:>10} {:>8}",
            "look-up", "median ms", "max ms", "rows"
        );
        for (name, t) in LOOKUPS.iter().zip(&timed) {
            println!(
                "{name:<42} {:>10.2} {:>10.2} {:>8.1}",
                t.median_ms, t.max_ms, t.rows
            );
        }
        all.push((n, timed));
        let _ = std::fs::remove_file(&path);
        for side in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{side}", path.display()));
        }
    }
    let small = all.iter().find(|(n, _)| *n == 20_000);
    let large = all.iter().find(|(n, _)| *n == 2_000_000);
    if let (Some((_, a)), Some((_, b))) = (small, large) {
        println!(
            "\nfrom 20,000 to 2,000,000 entries (median over median; the 1 h look-ups read 100 times as many rows)"
        );
        for (name, (a, b)) in LOOKUPS.iter().zip(a.iter().zip(b)) {
            println!("{name:<42} {:>6.2}x", b.median_ms / a.median_ms.max(1e-6));
        }
    }
    Ok(())
}
