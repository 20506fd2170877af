//! Throughput with an instant partner: the baseline and the relay take turns for
//! `--rounds` rounds of `--events` each, and the medians are reported, with the CPU each
//! consumer, the broker, Redis and this process used per event.

use std::time::{Duration, Instant};

use crate::process::{CpuMark, spawn_baseline, start_relay};
use crate::results::{CpuShare, Results};
use crate::rig::{self, Rig, cleanup, partner_delay, publish_n, wait_for, wait_ready};

/// Runs the part: fills the throughput figures and the CPU shares.
pub async fn run(rig: &Rig<'_>, r: &mut Results) -> anyhow::Result<()> {
    let events = rig.cli.events;
    let (mut base_cpu, mut relay_cpu) = (Vec::new(), Vec::new());
    let (mut base_share, mut relay_share) = (Vec::new(), Vec::new());
    for round in 1..=rig.cli.rounds {
        let (rate, cpu, share) = baseline_throughput(rig, events).await?;
        base_share.push(share);
        r.baseline_runs.push(rate);
        base_cpu.push(cpu * 1e6 / events as f64);

        let (relay, cpu, share) = relay_throughput(rig, events, 0).await?;
        relay_share.push(share);
        r.relay_runs.push(relay);
        relay_cpu.push(cpu * 1e6 / events as f64);
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
    let paired: Vec<f64> = r
        .relay_runs
        .iter()
        .zip(&r.baseline_runs)
        .map(|(relay, base)| relay / base)
        .collect();
    r.relay_to_baseline_paired = median(&paired);
    r.baseline_share = median_share(&base_share);
    r.relay_share = median_share(&relay_share);
    Ok(())
}

/// The baseline over `n` events with an instant partner: events per second, the baseline's
/// CPU seconds, and the machine's CPU per event.
async fn baseline_throughput(rig: &Rig<'_>, n: usize) -> anyhow::Result<(f64, f64, CpuShare)> {
    let t = rig.fresh(&rig::prefix()).await?;
    let base = spawn_baseline(rig.cli, &t.events, &rig.baseline_url(), None)?;
    wait_ready(&rig.conn, &t).await?;
    let mark = CpuMark::now();
    let start = Instant::now();
    publish_n(&rig.publisher, &t.exchange, n, 0).await?;
    let end = wait_for(&rig.sb, n as u64, Duration::from_secs(600)).await?;
    let share = mark.per_event(CpuMark::now(), n);
    let rate = n as f64 / (end - start).as_secs_f64();
    let cpu = base.cpu_secs();
    drop(base);
    cleanup(&rig.conn, &t).await;
    Ok((rate, cpu, share))
}

/// The relay over `n` events, its partner answering after `delay_ms`: events per second, the
/// relay's CPU seconds, and the machine's CPU per event.
pub async fn relay_throughput(
    rig: &Rig<'_>,
    n: usize,
    delay_ms: u64,
) -> anyhow::Result<(f64, f64, CpuShare)> {
    let prefix = rig::prefix();
    let t = rig.fresh(&prefix).await?;
    if delay_ms > 0 {
        rig.sb.add_rule(&partner_delay(delay_ms)).await?;
    }
    let proc = start_relay(rig.cli, &prefix, rig.sb.base_url(), &rig.dir)?;
    wait_ready(&rig.conn, &t).await?;
    let mark = CpuMark::now();
    let start = Instant::now();
    publish_n(&rig.publisher, &t.exchange, n, 0).await?;
    let end = wait_for(&rig.sb, n as u64, Duration::from_secs(900)).await?;
    let share = mark.per_event(CpuMark::now(), n);
    let cpu = proc.cpu_secs();
    drop(proc);
    cleanup(&rig.conn, &t).await;
    Ok((n as f64 / (end - start).as_secs_f64(), cpu, share))
}

/// The median of each share over the rounds.
fn median_share(v: &[CpuShare]) -> CpuShare {
    let m = |f: fn(&CpuShare) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
    CpuShare {
        broker_us: m(|s| s.broker_us),
        redis_us: m(|s| s.redis_us),
        bench_us: m(|s| s.bench_us),
        idle_us: m(|s| s.idle_us),
    }
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
