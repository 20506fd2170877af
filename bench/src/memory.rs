//! Peak memory with a backlog waiting: for each of `--backlogs`, that many events are
//! published before the relay starts (its partner answering after 50 ms), and its peak
//! resident memory is read once it has worked through [`MEMORY_WORK`] of them (and, with
//! the largest backlog, through `--memory-long` too).

use std::time::Duration;

use crate::process::start_relay;
use crate::results::{MEMORY_WORK, PeakRss, Results};
use crate::rig::{self, Rig, cleanup, partner_delay, publish_n, wait_for};

/// Runs the part: adds a peak to the results for each backlog and checkpoint.
pub async fn run(rig: &Rig<'_>, r: &mut Results) -> anyhow::Result<()> {
    for &backlog in &rig.cli.backlogs {
        backlog_peaks(rig, r, backlog).await?;
    }
    Ok(())
}

/// The relay's peaks with `backlog` events waiting.
async fn backlog_peaks(rig: &Rig<'_>, r: &mut Results, backlog: usize) -> anyhow::Result<()> {
    let prefix = rig::prefix();
    let t = rig.fresh(&prefix).await?;
    rig.sb.add_rule(&partner_delay(50)).await?;
    publish_n(&rig.publisher, &t.exchange, backlog, 0).await?;
    let proc = start_relay(rig.cli, &prefix, rig.sb.base_url(), &rig.dir)?;
    for processed in checkpoints(rig.cli, backlog) {
        wait_for(&rig.sb, processed as u64, Duration::from_secs(300)).await?;
        let mb = proc.peak_rss_mb();
        eprintln!("peak RSS with {backlog} events waiting, after {processed} events: {mb:.1} MB");
        r.peak_rss.push(PeakRss {
            backlog,
            processed,
            mb,
        });
    }
    drop(proc);
    cleanup(&rig.conn, &t).await;
    Ok(())
}

/// After how many events the peak is read with `backlog` waiting: [`MEMORY_WORK`] (or the
/// whole backlog, if smaller), and `--memory-long` for the largest backlog if it holds that
/// many.
fn checkpoints(cli: &crate::Cli, backlog: usize) -> Vec<usize> {
    let mut checkpoints = vec![backlog.min(MEMORY_WORK)];
    if cli.memory_long > MEMORY_WORK
        && backlog >= cli.memory_long
        && Some(&backlog) == cli.backlogs.iter().max()
    {
        checkpoints.push(cli.memory_long);
    }
    checkpoints
}
