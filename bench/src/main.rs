//! `bench`: measures the relay against the real RabbitMQ and the partner sandbox on loopback,
//! next to a minimal baseline consumer, and prints a table (and writes it as JSON).
//!
//! cargo build --release --workspace && ./target/release/bench
#![forbid(unsafe_code)]

mod journal;
mod letters;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use postback_relay::broker::{self, Publisher, Topology};
use postback_relay::config::DEFAULT_AMQP_URL;
use postback_relay::publish::{self, Outgoing};
use postback_relay::sandbox::{self, Rule};

#[derive(Parser)]
#[command(
    name = "bench",
    about = "Throughput, latency and memory of postback-relay, next to a minimal baseline."
)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    #[arg(long, env = "AMQP_URL", default_value = DEFAULT_AMQP_URL)]
    amqp_url: String,
    /// Events for the throughput runs with an instant partner.
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Events for the runs with a slow partner.
    #[arg(long, default_value_t = 20_000)]
    slow_events: usize,
    /// Rounds of baseline-then-relay with an instant partner; the medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Unacknowledged events per consumer, for the relay and the baseline alike.
    #[arg(long, default_value_t = 512)]
    prefetch: u16,
    /// Backlogs (events waiting in the queue) to measure the relay's peak memory with.
    #[arg(long, value_delimiter = ',', default_value = "10000,1000000")]
    backlogs: Vec<usize>,
    /// With the largest backlog, also read the peak after this many events (0: skip).
    #[arg(long, default_value_t = 50_000)]
    memory_long: usize,
    /// The relay's store: `embedded` (SQLite file) or a Redis URL.
    #[arg(long, default_value = "embedded")]
    store: String,
    /// The relay's delivery journal: `embedded` (a SQLite file), `off`, or a PostgreSQL URL.
    #[arg(long, default_value = "embedded")]
    journal: String,
    /// Events for the smaller of the two runs under callgrind (`--only instructions`); the
    /// larger run has three times as many.
    #[arg(long, default_value_t = 5_000)]
    instr_events: usize,
    /// Keep callgrind's output files in this folder (`callgrind_annotate FILE` shows where
    /// the instructions went); by default they are removed once counted.
    #[arg(long)]
    callgrind_dir: Option<PathBuf>,
    /// Run the consumers (the relay and the baseline) on these CPUs only, as `taskset -c`
    /// takes them (e.g. `1`), so that they do not share cores with the broker and this
    /// process; pin those with taskset too (docs/BENCHMARKS.md).
    #[arg(long)]
    consumer_cpus: Option<String>,
    /// Where to write the results as JSON.
    #[arg(long, default_value = "bench-results.json")]
    json: PathBuf,
    /// Entries in the journals `--only journal` fills and reads.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "20000,1000000,2000000,10000000"
    )]
    journal_sizes: Vec<u64>,
    /// Run only these parts (default: all). Latency needs throughput (its rate is half the
    /// measured maximum), so it runs throughput too.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    /// Baseline and relay with an instant partner.
    Throughput,
    /// The relay with 50 ms and 200 ms partners.
    Slow,
    /// Relay-added latency at half the maximum rate.
    Latency,
    /// Peak memory with backlogs waiting.
    Memory,
    /// Instructions per event of the baseline and the relay, counted by valgrind's callgrind:
    /// repeatable where throughput is not. Slow (minutes); runs only when asked for.
    Instructions,
    /// Journal look-ups, the overview and the recovery window at `--journal-sizes` entries.
    /// Slow (the fills take minutes); runs only when asked for.
    Journal,
    /// The console's dead-letter pages at 100,000 and 1,000,000 letters in the index. Fills
    /// a journal of 1M letters (minutes); runs only when asked for.
    Letters,
}

#[derive(Subcommand)]
enum Mode {
    /// The baseline: take each event, send one fixed GET, ack. Used by the benchmark itself.
    Baseline {
        #[arg(long)]
        amqp_url: String,
        #[arg(long)]
        queue: String,
        #[arg(long)]
        url: String,
        #[arg(long)]
        prefetch: u16,
    },
}

#[derive(Debug, Default, Serialize)]
struct Results {
    machine: String,
    prefetch: u16,
    baseline_events_per_sec: f64,
    relay_events_per_sec: f64,
    relay_to_baseline: f64,
    /// The median of each round's relay / baseline (the figure above is the ratio of the
    /// medians).
    relay_to_baseline_paired: f64,
    /// Each round's figure, in order (the medians are above).
    baseline_runs: Vec<f64>,
    relay_runs: Vec<f64>,
    baseline_cpu_us_per_event: f64,
    relay_cpu_us_per_event: f64,
    /// Where the machine's CPU went while each consumer worked, per event (medians of rounds).
    baseline_share: CpuShare,
    relay_share: CpuShare,
    relay_50ms_events_per_sec: f64,
    relay_200ms_events_per_sec: f64,
    ideal_200ms_events_per_sec: f64,
    latency_rate_per_sec: f64,
    baseline_latency_p50_ms: f64,
    baseline_latency_p99_ms: f64,
    relay_latency_p50_ms: f64,
    relay_latency_p99_ms: f64,
    relay_added_p50_ms: f64,
    relay_added_p99_ms: f64,
    dispatch_delay_p50_ms: f64,
    dispatch_delay_p99_ms: f64,
    dispatch_delay_within_5ms: f64,
    peak_rss: Vec<PeakRss>,
    baseline_instructions_per_event: f64,
    relay_instructions_per_event: f64,
}

/// The machine's CPU over one throughput run, per event, in µs: the broker (RabbitMQ's
/// `beam.smp`), Redis (`redis-server`, when the relay's store is there), this process (the
/// publisher and the partner), and what no process used.
#[derive(Clone, Copy, Debug, Default, Serialize)]
struct CpuShare {
    broker_us: f64,
    redis_us: f64,
    bench_us: f64,
    idle_us: f64,
}

/// CPU seconds so far: the broker's, this process's, and the machine's idle time.
#[derive(Clone, Copy)]
struct CpuMark {
    broker: f64,
    redis: f64,
    bench: f64,
    idle: f64,
}

impl CpuMark {
    fn now() -> CpuMark {
        CpuMark {
            broker: pid_named("beam.smp").map_or(0.0, pid_cpu_secs),
            redis: pid_named("redis-server").map_or(0.0, pid_cpu_secs),
            bench: pid_cpu_secs(std::process::id()),
            idle: idle_secs(),
        }
    }

    fn per_event(self, later: CpuMark, n: usize) -> CpuShare {
        let us = |a: f64, b: f64| (b - a) * 1e6 / n as f64;
        CpuShare {
            broker_us: us(self.broker, later.broker),
            redis_us: us(self.redis, later.redis),
            bench_us: us(self.bench, later.bench),
            idle_us: us(self.idle, later.idle),
        }
    }
}

/// A process of this machine by its command name (`beam.smp`, RabbitMQ's Erlang VM), if
/// one runs here.
fn pid_named(name: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim() == name).then_some(pid)
    })
}

/// A process's CPU time so far (user and system), from `/proc/PID/stat`, whose clock ticks
/// are USER_HZ (100 per second on Linux).
fn pid_cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

/// The machine's idle time so far, over all cores (`/proc/stat`, USER_HZ).
fn idle_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |t| t / 100.0)
}

/// The relay's peak resident memory with `backlog` events waiting, once it has worked
/// through `processed` of them.
#[derive(Debug, Default, Serialize)]
struct PeakRss {
    backlog: usize,
    processed: usize,
    mb: f64,
}

/// Events each memory run works through before its peak is read, whatever the backlog, so
/// that the backlog is the only difference between runs.
const MEMORY_WORK: usize = 10_000;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.mode {
        Some(Mode::Baseline {
            amqp_url,
            queue,
            url,
            prefetch,
        }) => rt.block_on(baseline(&amqp_url, &queue, &url, prefetch)),
        None => rt.block_on(run(&cli)),
    }
}

/// The smallest consumer that does the job: consume, one GET, ack. The GET is `url` with the
/// message id appended, so that each request can be matched to its event.
async fn baseline(amqp_url: &str, queue: &str, url: &str, prefetch: u16) -> anyhow::Result<()> {
    let conn = broker::connect(amqp_url, "bench baseline").await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(prefetch, BasicQosOptions::default()).await?;
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "baseline".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let client = reqwest::Client::new();
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(d) = consumer.next().await {
        let d = d?;
        let id = d
            .properties
            .message_id()
            .as_ref()
            .map_or("", |s| s.as_str());
        let (client, url) = (client.clone(), format!("{url}{id}"));
        tasks.spawn(async move {
            if let Ok(r) = client.get(&url).send().await {
                let _ = r.bytes().await;
            }
            let _ = d.acker.ack(BasicAckOptions::default()).await;
        });
        while tasks.try_join_next().is_some() {}
    }
    Ok(())
}

/// A child process, and where its metrics are served (the relay's).
struct Proc(Child, Option<String>);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// CPU time used so far (user and system).
    fn cpu_secs(&self) -> f64 {
        pid_cpu_secs(self.0.id())
    }

    /// Stops the process with SIGTERM, as an operator would, and waits for it to exit: the
    /// relay drains, and callgrind writes its counts (a SIGKILL would lose them).
    fn stop(&mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(300);
        while self.0.try_wait()?.is_none() {
            anyhow::ensure!(Instant::now() < deadline, "the process did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Peak resident memory so far, in MB (VmHWM).
    fn peak_rss_mb(&self) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

/// The baseline consumer as its own process, like the relay.
fn spawn_baseline(
    cli: &Cli,
    queue: &str,
    url: &str,
    callgrind: Option<&Path>,
) -> anyhow::Result<Proc> {
    let child = command(cli, &std::env::current_exe()?, callgrind)
        .args([
            "baseline",
            "--amqp-url",
            &cli.amqp_url,
            "--queue",
            queue,
            "--url",
            url,
        ])
        .args(["--prefetch", &cli.prefetch.to_string()])
        .spawn()?;
    Ok(Proc(child, None))
}

/// `program`, or `program` under valgrind's callgrind writing its counts to `callgrind`;
/// on `--consumer-cpus` only, when given.
fn command(cli: &Cli, program: &Path, callgrind: Option<&Path>) -> Command {
    let mut argv: Vec<std::ffi::OsString> = Vec::new();
    if let Some(cpus) = &cli.consumer_cpus {
        argv.extend(["taskset".into(), "-c".into(), cpus.into()]);
    }
    if let Some(out) = callgrind {
        argv.extend([
            "valgrind".into(),
            "--tool=callgrind".into(),
            format!("--callgrind-out-file={}", out.display()).into(),
        ]);
    }
    argv.push(program.into());
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]);
    if callgrind.is_some() {
        c.stderr(Stdio::null());
    }
    c
}

fn relay_binary() -> anyhow::Result<PathBuf> {
    let p = std::env::current_exe()?.with_file_name("postback-relay");
    anyhow::ensure!(
        p.exists(),
        "{} is missing: run `cargo build --release --bins` first",
        p.display()
    );
    Ok(p)
}

/// A relay process on a fresh prefix, its partner at `base`.
fn start_relay(cli: &Cli, prefix: &str, base: &str, dir: &Path) -> anyhow::Result<Proc> {
    start_relay_as(cli, prefix, base, dir, None)
}

/// [`start_relay`], under callgrind when `callgrind` names its output file.
fn start_relay_as(
    cli: &Cli,
    prefix: &str,
    base: &str,
    dir: &Path,
    callgrind: Option<&Path>,
) -> anyhow::Result<Proc> {
    let config = dir.join(format!("{prefix}.toml"));
    // A port free now, for the relay's /metrics.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let journal = match cli.journal.as_str() {
        "off" => "[journal]\nenabled = false".to_owned(),
        "embedded" => format!(
            "[journal]\npath = \"{}\"",
            dir.join(format!("{prefix}.journal.db")).display()
        ),
        url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            format!("[journal]\nkind = \"postgres\"\nurl = \"{url}\"")
        }
        other => anyhow::bail!("--journal {other}: embedded, off, or a postgres:// URL"),
    };
    std::fs::write(
        &config,
        format!(
            r#"
            [broker]
            url = "{url}"
            exchange = "{prefix}.conversions"
            queue_prefix = "{prefix}"
            prefetch = {prefetch}

            [http]
            listen = "127.0.0.1:{port}"

            {store}

            [[destinations]]
            name = "powerspace"
            kind = "powerspace"
            base_url = "{base}"
            concurrency = {prefetch}
            match = {{ networks = ["powerspace"] }}
            "#,
            url = cli.amqp_url,
            prefetch = cli.prefetch,
            store = if cli.store == "embedded" {
                format!(
                    "[store]\nkind = \"embedded\"\npath = \"{}\"\n\n{journal}",
                    dir.join(format!("{prefix}.db")).display()
                )
            } else {
                format!(
                    "[store]\nkind = \"redis\"\nurl = \"{}\"\nkey_prefix = \"{prefix}\"\n\n{journal}",
                    cli.store
                )
            },
        ),
    )?;
    let child = command(cli, &relay_binary()?, callgrind)
        .args(["--log-format", "json", "run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Proc(
        child,
        Some(format!("http://127.0.0.1:{port}/metrics")),
    ))
}

/// `postback_relay_dispatch_delay_seconds` from the relay's /metrics, summed over
/// destinations: the cumulative count per bucket bound (seconds).
async fn dispatch_delay(proc: &Proc) -> anyhow::Result<Vec<(f64, f64)>> {
    let url = proc.1.as_deref().context("not a relay")?;
    let text = reqwest::get(url).await?.text().await?;
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("postback_relay_dispatch_delay_seconds_bucket{") else {
            continue;
        };
        let le = rest
            .split("le=\"")
            .nth(1)
            .and_then(|v| v.split('"').next())
            .context("a bucket without le")?;
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse()?
        };
        let count: f64 = rest.rsplit(' ').next().unwrap_or("0").parse()?;
        match buckets.iter_mut().find(|(b, _)| *b == le) {
            Some((_, c)) => *c += count,
            None => buckets.push((le, count)),
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(buckets)
}

/// The `q` quantile of a cumulative histogram, interpolated within its bucket as Prometheus's
/// `histogram_quantile` does.
fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> f64 {
    let total = buckets.last().map_or(0.0, |b| b.1);
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return prev.0;
            }
            let within = if count > prev.1 {
                (rank - prev.1) / (count - prev.1)
            } else {
                0.0
            };
            return prev.0 + (le - prev.0) * within;
        }
        prev = (le, count);
    }
    prev.0
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
async fn wait_for(sb: &sandbox::Client, n: u64, limit: Duration) -> anyhow::Result<Instant> {
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

async fn wait_ready(conn: &lapin::Connection, t: &Topology) -> anyhow::Result<()> {
    wait_ready_within(conn, t, Duration::from_secs(30)).await
}

async fn wait_ready_within(
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

async fn cleanup(conn: &lapin::Connection, t: &Topology) {
    if let Ok(ch) = conn.create_channel().await {
        let _ = t.delete(&ch).await;
        let retry_queues: Vec<String> = postback_relay::retry::DEFAULT_TIERS_MS
            .iter()
            .map(|ms| {
                format!(
                    "{}.retry.{}",
                    t.events.trim_end_matches(".events"),
                    postback_relay::retry::tier_label(Duration::from_millis(*ms))
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
async fn publish_n(
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

fn partner_delay(ms: u64) -> Rule {
    Rule::answer(200).after_ms(ms)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Latencies (ms) from each event's `occurred_at` (set at publish) to the partner receiving it.
fn latencies(
    requests: &[sandbox::Recorded],
    sent: &std::collections::HashMap<String, chrono::DateTime<chrono::Utc>>,
) -> Vec<f64> {
    let mut v: Vec<f64> = requests
        .iter()
        .filter_map(|r| {
            let at = sent.get(&r.param("qci")?)?;
            Some((r.received_at - *at).num_microseconds()? as f64 / 1000.0)
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

/// Publishes `n` events at `rate` per second, remembering when each went out.
async fn publish_at_rate(
    publisher: &Publisher,
    exchange: &str,
    n: usize,
    rate: f64,
) -> anyhow::Result<std::collections::HashMap<String, chrono::DateTime<chrono::Utc>>> {
    let mut sent = std::collections::HashMap::new();
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

async fn run(cli: &Cli) -> anyhow::Result<()> {
    if cli.only.contains(&Part::Journal) {
        journal::run(&cli.journal_sizes, &tempfile_dir()?).await?;
        if cli.only.iter().all(|p| *p == Part::Journal) {
            return Ok(());
        }
    }
    let shutdown = CancellationToken::new();
    let addr = sandbox::spawn(shutdown.clone()).await?;
    let sb = sandbox::Client::new(addr);
    let conn = broker::connect(&cli.amqp_url, "bench")
        .await
        .with_context(|| format!("cannot reach RabbitMQ at {}", cli.amqp_url))?;
    let publisher = Publisher::new(&conn).await?;
    // Checked first, so that a run does not fail after its other parts.
    if cli.only.contains(&Part::Instructions) {
        let valgrind = Command::new("valgrind")
            .arg("--version")
            .stdout(Stdio::null())
            .status();
        anyhow::ensure!(
            valgrind.is_ok_and(|s| s.success()),
            "--only instructions runs under valgrind, which is not installed here \
             (Debian: apt-get install valgrind)"
        );
    }
    let dir = tempfile_dir()?;
    let mut r = Results {
        machine: machine(),
        prefetch: cli.prefetch,
        ..Default::default()
    };
    let id = || format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    if cli.only.contains(&Part::Letters) {
        letters::run(&cli.amqp_url, &conn, &dir).await?;
        if cli.only == [Part::Letters] {
            shutdown.cancel();
            return Ok(());
        }
    }
    let runs = |p: Part| {
        cli.only.is_empty()
            || cli.only.contains(&p)
            || (p == Part::Throughput && cli.only.contains(&Part::Latency))
    };

    // 1. Baseline and relay, instant partner, taking turns; the median of each.
    if runs(Part::Throughput) {
        let (mut base_cpu, mut relay_cpu) = (Vec::new(), Vec::new());
        let (mut base_share, mut relay_share) = (Vec::new(), Vec::new());
        for round in 1..=cli.rounds {
            let prefix = id();
            let t = topology(&prefix);
            t.declare(&conn.create_channel().await?).await?;
            sb.reset().await?;
            let base =
                spawn_baseline(cli, &t.events, &format!("{}/ord?qci=", sb.base_url()), None)?;
            wait_ready(&conn, &t).await?;
            let mark = CpuMark::now();
            let start = Instant::now();
            publish_n(&publisher, &t.exchange, cli.events, 0).await?;
            let end = wait_for(&sb, cli.events as u64, Duration::from_secs(600)).await?;
            base_share.push(mark.per_event(CpuMark::now(), cli.events));
            let rate = cli.events as f64 / (end - start).as_secs_f64();
            r.baseline_runs.push(rate);
            base_cpu.push(base.cpu_secs() * 1e6 / cli.events as f64);
            drop(base);
            cleanup(&conn, &t).await;

            let (relay, cpu, share) =
                relay_throughput(cli, &conn, &publisher, &sb, &dir, cli.events, 0).await?;
            relay_share.push(share);
            r.relay_runs.push(relay);
            relay_cpu.push(cpu * 1e6 / cli.events as f64);
            eprintln!(
                "round {round}: baseline {rate:.0} events/s, relay {relay:.0} events/s ({:.0}%)",
                100.0 * relay / rate
            );
        }
        r.baseline_events_per_sec = median(&r.baseline_runs);
        r.relay_events_per_sec = median(&r.relay_runs);
        r.relay_to_baseline = r.relay_events_per_sec / r.baseline_events_per_sec;
        r.baseline_cpu_us_per_event = median(&base_cpu);
        r.relay_cpu_us_per_event = median(&relay_cpu);
        let shares = |v: &[CpuShare]| {
            let m = |f: fn(&CpuShare) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
            CpuShare {
                broker_us: m(|s| s.broker_us),
                redis_us: m(|s| s.redis_us),
                bench_us: m(|s| s.bench_us),
                idle_us: m(|s| s.idle_us),
            }
        };
        let paired: Vec<f64> = r
            .relay_runs
            .iter()
            .zip(&r.baseline_runs)
            .map(|(relay, base)| relay / base)
            .collect();
        r.relay_to_baseline_paired = median(&paired);
        r.baseline_share = shares(&base_share);
        r.relay_share = shares(&relay_share);
    }

    // 2. Slow partners: concurrency at work.
    if runs(Part::Slow) {
        r.relay_50ms_events_per_sec =
            relay_throughput(cli, &conn, &publisher, &sb, &dir, cli.slow_events, 50)
                .await?
                .0;
        eprintln!(
            "relay, 50 ms partner: {:.0} events/s",
            r.relay_50ms_events_per_sec
        );
        r.relay_200ms_events_per_sec =
            relay_throughput(cli, &conn, &publisher, &sb, &dir, cli.slow_events, 200)
                .await?
                .0;
        r.ideal_200ms_events_per_sec = f64::from(cli.prefetch) / 0.2;
        eprintln!(
            "relay, 200 ms partner: {:.0} events/s",
            r.relay_200ms_events_per_sec
        );
    }

    // 3. Latency at half the relay's maximum rate, relay and baseline alike.
    r.latency_rate_per_sec = (r.relay_events_per_sec / 2.0).floor().max(1.0);
    let n = ((r.latency_rate_per_sec * 10.0) as usize).max(1000);
    for relay in [false, true] {
        if !runs(Part::Latency) {
            break;
        }
        let prefix = id();
        let t = topology(&prefix);
        t.declare(&conn.create_channel().await?).await?;
        sb.reset().await?;
        let proc = if relay {
            start_relay(cli, &prefix, sb.base_url(), &dir)?
        } else {
            spawn_baseline(cli, &t.events, &format!("{}/ord?qci=", sb.base_url()), None)?
        };
        wait_ready(&conn, &t).await?;
        let sent = publish_at_rate(&publisher, &t.exchange, n, r.latency_rate_per_sec).await?;
        wait_for(&sb, n as u64, Duration::from_secs(600)).await?;
        let reqs = sb.requests().await?;
        // Both send the event's id (the relay as the click id, the baseline from the
        // message id), so each request is matched to its event.
        let lat = latencies(&reqs, &sent);
        anyhow::ensure!(lat.len() == n, "{} of {n} requests matched", lat.len());
        let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
        if relay {
            (r.relay_latency_p50_ms, r.relay_latency_p99_ms) = (p50, p99);
            let h = dispatch_delay(&proc).await?;
            r.dispatch_delay_p50_ms = histogram_quantile(0.5, &h) * 1000.0;
            r.dispatch_delay_p99_ms = histogram_quantile(0.99, &h) * 1000.0;
            let total = h.last().map_or(0.0, |b| b.1);
            let within = h.iter().find(|b| b.0 == 0.005).map_or(0.0, |b| b.1);
            r.dispatch_delay_within_5ms = within / total.max(1.0);
        } else {
            (r.baseline_latency_p50_ms, r.baseline_latency_p99_ms) = (p50, p99);
        }
        drop(proc);
        cleanup(&conn, &t).await;
    }
    r.relay_added_p50_ms = r.relay_latency_p50_ms - r.baseline_latency_p50_ms;
    r.relay_added_p99_ms = r.relay_latency_p99_ms - r.baseline_latency_p99_ms;
    if runs(Part::Latency) {
        eprintln!(
            "latency at {:.0}/s: relay p50 {:.2} ms p99 {:.2} ms; baseline p50 {:.2} ms p99 {:.2} ms",
            r.latency_rate_per_sec,
            r.relay_latency_p50_ms,
            r.relay_latency_p99_ms,
            r.baseline_latency_p50_ms,
            r.baseline_latency_p99_ms
        );
    }

    // 4. Peak memory with a backlog waiting in the queue.
    for &backlog in &cli.backlogs {
        if !runs(Part::Memory) {
            break;
        }
        let prefix = id();
        let t = topology(&prefix);
        t.declare(&conn.create_channel().await?).await?;
        sb.reset().await?;
        sb.add_rule(&partner_delay(50)).await?;
        publish_n(&publisher, &t.exchange, backlog, 0).await?;
        let proc = start_relay(cli, &prefix, sb.base_url(), &dir)?;
        let mut checkpoints = vec![backlog.min(MEMORY_WORK)];
        if cli.memory_long > MEMORY_WORK
            && backlog >= cli.memory_long
            && Some(&backlog) == cli.backlogs.iter().max()
        {
            checkpoints.push(cli.memory_long);
        }
        for processed in checkpoints {
            wait_for(&sb, processed as u64, Duration::from_secs(300)).await?;
            let mb = proc.peak_rss_mb();
            eprintln!(
                "peak RSS with {backlog} events waiting, after {processed} events: {mb:.1} MB"
            );
            r.peak_rss.push(PeakRss {
                backlog,
                processed,
                mb,
            });
        }
        drop(proc);
        cleanup(&conn, &t).await;
    }

    // 5. Instructions per event, counted by callgrind: only when asked for by name. Each
    // consumer runs twice, over N and 3N events; the difference, divided by 2N, leaves out
    // what starting and stopping cost.
    if cli.only.contains(&Part::Instructions) {
        let n = cli.instr_events.max(1);
        let mut counts = [[0u64; 2]; 2];
        for (i, events) in [n, 3 * n].into_iter().enumerate() {
            for (who, relay) in [false, true].into_iter().enumerate() {
                counts[who][i] =
                    instructions(cli, &conn, &publisher, &sb, &dir, events, relay).await?;
                eprintln!(
                    "{} over {events} events: {} instructions",
                    if relay { "relay" } else { "baseline" },
                    counts[who][i]
                );
            }
        }
        let per_event = |c: [u64; 2]| c[1].saturating_sub(c[0]) as f64 / (2 * n) as f64;
        r.baseline_instructions_per_event = per_event(counts[0]);
        r.relay_instructions_per_event = per_event(counts[1]);
    }

    shutdown.cancel();
    print_table(&r);
    std::fs::write(&cli.json, serde_json::to_string_pretty(&r)?)?;
    eprintln!("written to {}", cli.json.display());
    Ok(())
}

async fn relay_throughput(
    cli: &Cli,
    conn: &lapin::Connection,
    publisher: &Publisher,
    sb: &sandbox::Client,
    dir: &std::path::Path,
    n: usize,
    delay_ms: u64,
) -> anyhow::Result<(f64, f64, CpuShare)> {
    let prefix = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let t = topology(&prefix);
    t.declare(&conn.create_channel().await?).await?;
    sb.reset().await?;
    if delay_ms > 0 {
        sb.add_rule(&partner_delay(delay_ms)).await?;
    }
    let proc = start_relay(cli, &prefix, sb.base_url(), dir)?;
    wait_ready(conn, &t).await?;
    let mark = CpuMark::now();
    let start = Instant::now();
    publish_n(publisher, &t.exchange, n, 0).await?;
    let end = wait_for(sb, n as u64, Duration::from_secs(900)).await?;
    let share = mark.per_event(CpuMark::now(), n);
    let cpu = proc.cpu_secs();
    drop(proc);
    cleanup(conn, &t).await;
    Ok((n as f64 / (end - start).as_secs_f64(), cpu, share))
}

/// The instructions a consumer (the relay, or the baseline) ran from its start to its stop,
/// `n` events in between, as callgrind counted them.
async fn instructions(
    cli: &Cli,
    conn: &lapin::Connection,
    publisher: &Publisher,
    sb: &sandbox::Client,
    dir: &Path,
    n: usize,
    relay: bool,
) -> anyhow::Result<u64> {
    let prefix = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let t = topology(&prefix);
    t.declare(&conn.create_channel().await?).await?;
    sb.reset().await?;
    let who = if relay { "relay" } else { "baseline" };
    let out = match &cli.callgrind_dir {
        Some(keep) => {
            std::fs::create_dir_all(keep)?;
            keep.join(format!("{who}-{n}-{prefix}.callgrind"))
        }
        None => dir.join(format!("{prefix}.callgrind")),
    };
    let mut proc = if relay {
        start_relay_as(cli, &prefix, sb.base_url(), dir, Some(&out))?
    } else {
        let url = format!("{}/ord?qci=", sb.base_url());
        spawn_baseline(cli, &t.events, &url, Some(&out))?
    };
    // Under callgrind a process runs some 50 times slower, its start-up too.
    wait_ready_within(conn, &t, Duration::from_secs(300)).await?;
    publish_n(publisher, &t.exchange, n, 0).await?;
    wait_for(sb, n as u64, Duration::from_secs(3600)).await?;
    proc.stop()?;
    cleanup(conn, &t).await;
    let text = std::fs::read_to_string(&out)
        .with_context(|| format!("{}: is valgrind installed?", out.display()))?;
    let total = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("{}: no instruction count", out.display()))?;
    if cli.callgrind_dir.is_none() {
        let _ = std::fs::remove_file(&out);
    }
    Ok(total)
}

fn print_table(r: &Results) {
    println!();
    println!("{:<60} {:>14}", "measure", "value");
    let row = |k: &str, v: String| println!("{k:<60} {v:>14}");
    if r.baseline_events_per_sec > 0.0 {
        row(
            "baseline, instant partner (events/s, median)",
            format!("{:.0}", r.baseline_events_per_sec),
        );
        row(
            "relay, instant partner (events/s, median)",
            format!("{:.0}", r.relay_events_per_sec),
        );
        row(
            "  relay / baseline (target >= 90%)",
            format!("{:.0}%", r.relay_to_baseline * 100.0),
        );
        row(
            "  median of each round's relay / baseline",
            format!("{:.0}%", r.relay_to_baseline_paired * 100.0),
        );
        row(
            "CPU per event, baseline / relay (us)",
            format!(
                "{:.0} / {:.0}",
                r.baseline_cpu_us_per_event, r.relay_cpu_us_per_event
            ),
        );
        let (b, l) = (r.baseline_share, r.relay_share);
        for (what, b, l) in [
            ("  broker's CPU per event", b.broker_us, l.broker_us),
            ("  Redis's CPU per event", b.redis_us, l.redis_us),
            ("  publisher's and partner's", b.bench_us, l.bench_us),
            ("  idle per event", b.idle_us, l.idle_us),
        ] {
            row(
                &format!("{what}, baseline / relay (us)"),
                format!("{b:.0} / {l:.0}"),
            );
        }
    }
    if r.relay_200ms_events_per_sec > 0.0 {
        row(
            "relay, 50 ms partner (events/s)",
            format!("{:.0}", r.relay_50ms_events_per_sec),
        );
        row(
            "relay, 200 ms partner (events/s)",
            format!("{:.0}", r.relay_200ms_events_per_sec),
        );
        row(
            "  of prefetch / 200 ms (target >= 90%)",
            format!(
                "{:.0}%",
                100.0 * r.relay_200ms_events_per_sec / r.ideal_200ms_events_per_sec
            ),
        );
    }
    if r.relay_latency_p50_ms > 0.0 {
        row(
            "latency rate (events/s, half the relay's maximum)",
            format!("{:.0}", r.latency_rate_per_sec),
        );
        row(
            "consume -> request sent, p50 / p99 (ms, target p99 < 5)",
            format!(
                "{:.2} / {:.2}",
                r.dispatch_delay_p50_ms, r.dispatch_delay_p99_ms
            ),
        );
        row(
            "  requests sent within 5 ms of consume",
            format!("{:.2}%", r.dispatch_delay_within_5ms * 100.0),
        );
        row(
            "publish -> partner, baseline p50 / p99 (ms)",
            format!(
                "{:.2} / {:.2}",
                r.baseline_latency_p50_ms, r.baseline_latency_p99_ms
            ),
        );
        row(
            "publish -> partner, relay p50 / p99 (ms)",
            format!(
                "{:.2} / {:.2}",
                r.relay_latency_p50_ms, r.relay_latency_p99_ms
            ),
        );
        row(
            "  difference, relay - baseline (ms)",
            format!("{:.2} / {:.2}", r.relay_added_p50_ms, r.relay_added_p99_ms),
        );
    }
    if r.relay_instructions_per_event > 0.0 {
        row(
            "instructions per event, baseline / relay (callgrind)",
            format!(
                "{:.0} / {:.0}",
                r.baseline_instructions_per_event, r.relay_instructions_per_event
            ),
        );
        row(
            "  relay / baseline",
            format!(
                "{:.2}",
                r.relay_instructions_per_event / r.baseline_instructions_per_event
            ),
        );
    }
    for p in &r.peak_rss {
        row(
            &format!(
                "peak RSS, {} waiting, after {} events (MB)",
                p.backlog, p.processed
            ),
            format!("{:.1}", p.mb),
        );
    }
    let first = r.peak_rss.iter().find(|p| p.processed == MEMORY_WORK);
    let largest = r
        .peak_rss
        .iter()
        .filter(|p| p.processed == MEMORY_WORK)
        .max_by_key(|p| p.backlog);
    if let (Some(a), Some(b)) = (first, largest)
        && a.backlog != b.backlog
    {
        row(
            &format!(
                "  {} vs {} waiting (target < 100 MB, within 10%)",
                b.backlog, a.backlog
            ),
            format!("{:+.1}%", 100.0 * (b.mb - a.mb) / a.mb),
        );
    }
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_default();
    format!("{cpus} cores, {model}")
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("postback-relay-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
