//! Instructions per event, counted by valgrind's callgrind: only when asked for by name.
//! Each consumer runs twice, over N and 3N events; the difference, divided by 2N, leaves out
//! what starting and stopping cost.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use crate::process::{spawn_baseline, start_relay_as};
use crate::results::Results;
use crate::rig::{self, Rig, cleanup, publish_n, wait_for, wait_ready_within};

/// Fails unless valgrind runs here; checked before the other parts, so that a run does not
/// fail after them.
pub fn ensure_valgrind() -> anyhow::Result<()> {
    let valgrind = Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .status();
    anyhow::ensure!(
        valgrind.is_ok_and(|s| s.success()),
        "--only instructions runs under valgrind, which is not installed here \
         (Debian: apt-get install valgrind)"
    );
    Ok(())
}

/// Runs the part (N is `--instr-events`): fills the baseline's and the relay's instructions
/// per event.
pub async fn run(rig: &Rig<'_>, r: &mut Results) -> anyhow::Result<()> {
    let n = rig.cli.instr_events.max(1);
    let mut counts = [[0u64; 2]; 2];
    for (i, events) in [n, 3 * n].into_iter().enumerate() {
        for (who, relay) in [false, true].into_iter().enumerate() {
            counts[who][i] = instructions(rig, events, relay).await?;
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
    Ok(())
}

/// The instructions a consumer (the relay, or the baseline) ran from its start to its stop,
/// `n` events in between, as callgrind counted them.
async fn instructions(rig: &Rig<'_>, n: usize, relay: bool) -> anyhow::Result<u64> {
    let prefix = rig::prefix();
    let t = rig.fresh(&prefix).await?;
    let who = if relay { "relay" } else { "baseline" };
    let out = callgrind_out(rig, who, n, &prefix)?;
    let mut proc = if relay {
        start_relay_as(rig.cli, &prefix, rig.sb.base_url(), &rig.dir, Some(&out))?
    } else {
        spawn_baseline(rig.cli, &t.events, &rig.baseline_url(), Some(&out))?
    };
    // Under callgrind a process runs some 50 times slower, its start-up too.
    wait_ready_within(&rig.conn, &t, Duration::from_secs(300)).await?;
    publish_n(&rig.publisher, &t.exchange, n, 0).await?;
    wait_for(&rig.sb, n as u64, Duration::from_secs(3600)).await?;
    proc.stop()?;
    cleanup(&rig.conn, &t).await;
    let total = callgrind_total(&out)?;
    if rig.cli.callgrind_dir.is_none() {
        let _ = std::fs::remove_file(&out);
    }
    Ok(total)
}

/// Where callgrind writes a run's counts: in `--callgrind-dir`, named for the consumer and
/// its events, when given; in the working folder otherwise.
fn callgrind_out(rig: &Rig<'_>, who: &str, n: usize, prefix: &str) -> anyhow::Result<PathBuf> {
    Ok(match &rig.cli.callgrind_dir {
        Some(keep) => {
            std::fs::create_dir_all(keep)?;
            keep.join(format!("{who}-{n}-{prefix}.callgrind"))
        }
        None => rig.dir.join(format!("{prefix}.callgrind")),
    })
}

/// The total instructions in callgrind's output file.
fn callgrind_total(out: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(out)
        .with_context(|| format!("{}: is valgrind installed?", out.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("{}: no instruction count", out.display()))
}
