//! `postback-relay replay`: dead letters back for delivery with a fresh attempt budget.
//! What it prints is scrubbed of the config's secrets.

use std::process::ExitCode;

use postback_relay::journal::letters::{Letters, Mark, State};
use postback_relay::operate::dlq::{self, Filter, ReplayReport};
use postback_relay::relay::broker::Topology;

use super::{Resolved, Target, summary_line};

/// Replays the dead letters matching `filter`, at most `limit`; with `dry_run`, prints them
/// and changes nothing. What it prints is scrubbed of the config's secrets.
pub async fn replay(
    target: Target,
    filter: Filter,
    limit: Option<u64>,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let config = target.config.clone();
    let t = match target.resolve() {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let marks = std::sync::Mutex::new(Vec::new());
    let report = send_back(&t, &filter, limit, dry_run, &marks).await;
    // What was sent back before a failure is marked too.
    mark(config.as_deref(), marks.into_inner().unwrap_or_default()).await;
    let report = report.map_err(|e| t.scrubbed(e))?;
    let outcome = outcome(&report, &t.topology, dry_run);
    eprintln!("{}", t.secrets.scrub(&outcome));
    Ok(ExitCode::SUCCESS)
}

async fn send_back(
    t: &Resolved,
    filter: &Filter,
    limit: Option<u64>,
    dry_run: bool,
    marks: &std::sync::Mutex<Vec<Mark>>,
) -> anyhow::Result<ReplayReport> {
    let conn = super::connect(&t.url, t.tls.as_ref(), "replay").await?;
    let total = dlq::depth(&conn.create_channel().await?, &t.topology.dead).await?;
    let bar = super::progress_bar(u64::from(total), "examined");
    let sent = |s: &dlq::Summary, sent: &dlq::Sent| {
        if let (dlq::Sent::Republished { queue, .. }, Some(id), Ok(mut m)) =
            (sent, &s.dead_letter_id, marks.lock())
        {
            m.push(Mark {
                id: id.clone(),
                state: State::Replayed,
                result: format!("republished to {queue}"),
            });
        }
    };
    let report = dlq::replay_telling(
        &conn,
        &t.topology,
        t.max_event_bytes,
        (filter, limit, dry_run),
        |s, chosen| {
            bar.inc(1);
            if dry_run && chosen {
                bar.suspend(|| println!("{}", t.secrets.scrub(&summary_line(s))));
            }
        },
        sent,
    )
    .await?;
    bar.finish_and_clear();
    let _ = conn.close(200, "done".into()).await;
    Ok(report)
}

/// Marks the letters sent back as replayed in the journal's index, when the config has a
/// journal; an index that cannot take it is said, and differs from the queue until a
/// reindex.
async fn mark(config: Option<&std::path::Path>, marks: Vec<Mark>) {
    let Some(path) = config else {
        return;
    };
    if marks.is_empty() {
        return;
    }
    let Ok(c) = postback_relay::config::Config::load(path) else {
        return;
    };
    if !c.journal.enabled {
        return;
    }
    let marked = async { Letters::open(&c.journal).await?.mark(&marks, "cli").await }.await;
    if let Err(e) = marked {
        eprintln!(
            "warning: the journal's index of dead letters is not marked ({}); `dlq reindex` brings it up to date",
            c.secrets.scrub(&e.to_string())
        );
    }
}

/// What the replay did, in words.
fn outcome(report: &ReplayReport, topology: &Topology, dry_run: bool) -> String {
    if dry_run {
        return format!(
            "dry run: {} of {} dead letters would be replayed; nothing changed",
            report.matched, report.examined
        );
    }
    let as_it_was = match report.as_it_was {
        0 => String::new(),
        n => format!(
            "; {n} sent back as it was (from {}, but not a valid delivery)",
            topology.deliveries
        ),
    };
    format!(
        "replayed {} dead letter(s) of {} examined{as_it_was}; the other {} stay in {}",
        report.replayed,
        report.examined,
        report.examined.saturating_sub(report.replayed),
        topology.dead
    )
}
