//! `bench`: measures the relay against the real RabbitMQ and the partner sandbox on loopback,
//! next to a minimal baseline consumer, and prints a table (and writes it as JSON).
//!
//! cargo build --release --workspace && ./target/release/bench
#![forbid(unsafe_code)]

mod baseline;
mod instructions;
mod journal;
mod latency;
mod letters;
mod memory;
mod process;
mod results;
mod rig;
mod slow;
mod throughput;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use postback_relay::config::DEFAULT_AMQP_URL;

use crate::results::Results;
use crate::rig::Rig;

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
    /// The relay with tracing on: its spans exported over OTLP to the bench's partner, which
    /// answers every request (so the cost of tracing is measured, not a collector's).
    #[arg(long)]
    tracing: bool,
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

impl Cli {
    /// Whether one of the parts that run by default (throughput, slow, latency, memory) runs:
    /// all do when `--only` names none, and latency brings throughput along. The others run
    /// only when named ([`Cli::named`]).
    fn runs(&self, part: Part) -> bool {
        self.only.is_empty()
            || self.only.contains(&part)
            || (part == Part::Throughput && self.only.contains(&Part::Latency))
    }

    /// Whether `--only` names `part`.
    fn named(&self, part: Part) -> bool {
        self.only.contains(&part)
    }
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
        }) => rt.block_on(baseline::consume(&amqp_url, &queue, &url, prefetch)),
        None => rt.block_on(run(&cli)),
    }
}

/// Runs the parts `--only` asks for, in order, then prints the table and writes the JSON.
async fn run(cli: &Cli) -> anyhow::Result<()> {
    if cli.named(Part::Journal) {
        journal::run(&cli.journal_sizes, &rig::tempfile_dir()?).await?;
        if cli.only.iter().all(|p| *p == Part::Journal) {
            return Ok(());
        }
    }
    let rig = Rig::start(cli).await?;
    // Checked first, so that a run does not fail after its other parts.
    if cli.named(Part::Instructions) {
        instructions::ensure_valgrind()?;
    }
    if cli.named(Part::Letters) {
        letters::run(&cli.amqp_url, &rig.conn, &rig.dir).await?;
        if cli.only == [Part::Letters] {
            rig.stop();
            return Ok(());
        }
    }
    let mut r = Results {
        machine: results::machine(),
        prefetch: cli.prefetch,
        ..Default::default()
    };
    if cli.runs(Part::Throughput) {
        throughput::run(&rig, &mut r).await?;
    }
    if cli.runs(Part::Slow) {
        slow::run(&rig, &mut r).await?;
    }
    // The results carry the latency's rate even when latency does not run.
    r.latency_rate_per_sec = latency::rate(&r);
    if cli.runs(Part::Latency) {
        latency::run(&rig, &mut r).await?;
    }
    if cli.runs(Part::Memory) {
        memory::run(&rig, &mut r).await?;
    }
    if cli.named(Part::Instructions) {
        instructions::run(&rig, &mut r).await?;
    }
    rig.stop();
    results::print_table(&r);
    results::write_json(&r, &cli.json)
}
