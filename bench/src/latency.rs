//! Latency at half the relay's maximum rate, relay and baseline alike: from publish to the
//! partner receiving the request, and (the relay's own, from its /metrics) from consume to
//! the request sent.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use postback_relay::interfaces::sandbox;

use crate::process::{Proc, spawn_baseline, start_relay};
use crate::results::Results;
use crate::rig::{self, Rig, cleanup, publish_at_rate, wait_for, wait_ready};

/// The rate latency is measured at: half the relay's throughput, at least one per second.
pub fn rate(r: &Results) -> f64 {
    (r.relay_events_per_sec / 2.0).floor().max(1.0)
}

/// Runs the part at `r.latency_rate_per_sec`, ten seconds' worth of events (at least 1000):
/// fills the latencies, the relay's additions to them and its dispatch delay.
pub async fn run(rig: &Rig<'_>, r: &mut Results) -> anyhow::Result<()> {
    let n = ((r.latency_rate_per_sec * 10.0) as usize).max(1000);
    for relay in [false, true] {
        measure(rig, r, n, relay).await?;
    }
    r.relay_added_p50_ms = r.relay_latency_p50_ms - r.baseline_latency_p50_ms;
    r.relay_added_p99_ms = r.relay_latency_p99_ms - r.baseline_latency_p99_ms;
    eprintln!(
        "latency at {:.0}/s: relay p50 {:.2} ms p99 {:.2} ms; baseline p50 {:.2} ms p99 {:.2} ms",
        r.latency_rate_per_sec,
        r.relay_latency_p50_ms,
        r.relay_latency_p99_ms,
        r.baseline_latency_p50_ms,
        r.baseline_latency_p99_ms
    );
    Ok(())
}

/// One consumer (the relay, or the baseline) over `n` events at the rate.
async fn measure(rig: &Rig<'_>, r: &mut Results, n: usize, relay: bool) -> anyhow::Result<()> {
    let prefix = rig::prefix();
    let t = rig.fresh(&prefix).await?;
    let proc = if relay {
        start_relay(rig.cli, &prefix, rig.sb.base_url(), &rig.dir)?
    } else {
        spawn_baseline(rig.cli, &t.events, &rig.baseline_url(), None)?
    };
    wait_ready(&rig.conn, &t).await?;
    let sent = publish_at_rate(&rig.publisher, &t.exchange, n, r.latency_rate_per_sec).await?;
    wait_for(&rig.sb, n as u64, Duration::from_secs(600)).await?;
    let reqs = rig.sb.requests().await?;
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
    cleanup(&rig.conn, &t).await;
    Ok(())
}

/// `postback_relay_dispatch_delay_seconds` from the relay's /metrics, summed over
/// destinations: the cumulative count per bucket bound (seconds).
async fn dispatch_delay(proc: &Proc) -> anyhow::Result<Vec<(f64, f64)>> {
    let url = proc.metrics_url().context("not a relay")?;
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

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Latencies (ms) from each event's `occurred_at` (set at publish) to the partner receiving it.
fn latencies(
    requests: &[sandbox::Recorded],
    sent: &HashMap<String, chrono::DateTime<chrono::Utc>>,
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
