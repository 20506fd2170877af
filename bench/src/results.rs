//! The results of a run: the figures each part fills, the table printed at the end, and the
//! JSON written next to it.

use std::path::Path;

use serde::Serialize;

#[derive(Debug, Default, Serialize)]
pub struct Results {
    pub machine: String,
    pub prefetch: u16,
    pub baseline_events_per_sec: f64,
    pub relay_events_per_sec: f64,
    pub relay_to_baseline: f64,
    /// The median of each round's relay / baseline (the figure above is the ratio of the
    /// medians).
    pub relay_to_baseline_paired: f64,
    /// Each round's figure, in order (the medians are above).
    pub baseline_runs: Vec<f64>,
    pub relay_runs: Vec<f64>,
    pub baseline_cpu_us_per_event: f64,
    pub relay_cpu_us_per_event: f64,
    /// Where the machine's CPU went while each consumer worked, per event (medians of rounds).
    pub baseline_share: CpuShare,
    pub relay_share: CpuShare,
    pub relay_50ms_events_per_sec: f64,
    pub relay_200ms_events_per_sec: f64,
    pub ideal_200ms_events_per_sec: f64,
    pub latency_rate_per_sec: f64,
    pub baseline_latency_p50_ms: f64,
    pub baseline_latency_p99_ms: f64,
    pub relay_latency_p50_ms: f64,
    pub relay_latency_p99_ms: f64,
    pub relay_added_p50_ms: f64,
    pub relay_added_p99_ms: f64,
    pub dispatch_delay_p50_ms: f64,
    pub dispatch_delay_p99_ms: f64,
    pub dispatch_delay_within_5ms: f64,
    pub peak_rss: Vec<PeakRss>,
    pub baseline_instructions_per_event: f64,
    pub relay_instructions_per_event: f64,
}

/// The machine's CPU over one throughput run, per event, in µs: the broker (RabbitMQ's
/// `beam.smp`), Redis (`redis-server`, when the relay's store is there), this process (the
/// publisher and the partner), and what no process used.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct CpuShare {
    pub broker_us: f64,
    pub redis_us: f64,
    pub bench_us: f64,
    pub idle_us: f64,
}

/// The relay's peak resident memory with `backlog` events waiting, once it has worked
/// through `processed` of them.
#[derive(Debug, Default, Serialize)]
pub struct PeakRss {
    pub backlog: usize,
    pub processed: usize,
    pub mb: f64,
}

/// Events each memory run works through before its peak is read, whatever the backlog, so
/// that the backlog is the only difference between runs.
pub const MEMORY_WORK: usize = 10_000;

/// The machine the figures come from: its cores and CPU model.
pub fn machine() -> String {
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

/// Writes the results to `path` as JSON, and says so.
pub fn write_json(r: &Results, path: &Path) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(r)?)?;
    eprintln!("written to {}", path.display());
    Ok(())
}

/// Prints the table: a section for each part that ran.
pub fn print_table(r: &Results) {
    println!();
    println!("{:<60} {:>14}", "measure", "value");
    if r.baseline_events_per_sec > 0.0 {
        throughput_rows(r);
    }
    if r.relay_200ms_events_per_sec > 0.0 {
        slow_rows(r);
    }
    if r.relay_latency_p50_ms > 0.0 {
        latency_rows(r);
    }
    if r.relay_instructions_per_event > 0.0 {
        instruction_rows(r);
    }
    memory_rows(r);
}

fn row(k: &str, v: String) {
    println!("{k:<60} {v:>14}");
}

fn throughput_rows(r: &Results) {
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

fn slow_rows(r: &Results) {
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

fn latency_rows(r: &Results) {
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

fn instruction_rows(r: &Results) {
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

/// Each peak read, then how the largest backlog's peak compares with the smallest's.
fn memory_rows(r: &Results) {
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
