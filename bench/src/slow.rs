//! Slow partners: the relay with partners answering after 50 ms and 200 ms, where its
//! concurrency (up to the prefetch) is at work.

use crate::results::Results;
use crate::rig::Rig;
use crate::throughput::relay_throughput;

/// Runs the part: fills the 50 ms and 200 ms rates, and the 200 ms ideal (prefetch / 0.2 s).
pub async fn run(rig: &Rig<'_>, r: &mut Results) -> anyhow::Result<()> {
    let n = rig.cli.slow_events;
    r.relay_50ms_events_per_sec = relay_throughput(rig, n, 50).await?.0;
    eprintln!(
        "relay, 50 ms partner: {:.0} events/s",
        r.relay_50ms_events_per_sec
    );
    r.relay_200ms_events_per_sec = relay_throughput(rig, n, 200).await?.0;
    r.ideal_200ms_events_per_sec = f64::from(rig.cli.prefetch) / 0.2;
    eprintln!(
        "relay, 200 ms partner: {:.0} events/s",
        r.relay_200ms_events_per_sec
    );
    Ok(())
}
