//! `postback-relay recover`: a destination's deliveries of a time window sent again from the
//! journal, each with a fresh budget, on purpose past the record of their acceptance (a
//! partner that lost them), or every event of the window the destination takes (a
//! destination added since). Each event is published to the deliveries queue, confirmed by
//! the broker, and then marked as sent by this recovery in the journal: a second run of the
//! same recovery sends only what the first did not, and a delivery published twice (killed
//! between the confirm and the mark) is accepted once, since the relay claims a recovery's
//! delivery under the recovery's own key.

use std::path::Path;
use std::process::ExitCode;

use chrono::{DateTime, Utc};

use postback_relay::broker::{Publisher, Topology};
use postback_relay::config::Config;
use postback_relay::delivery::Delivery;
use postback_relay::journal::{Action, Candidate, Recoveries, Which, Window};

/// What `recover` was asked, as the command line gave it.
pub struct Ask {
    pub destination: String,
    pub since: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
    pub outcome: Which,
    pub dry_run: bool,
    /// Who asked, as the journal keeps it.
    pub by: String,
}

/// What a recovery came to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Events of the window not yet sent by this recovery, that the destination takes.
    pub to_send: u64,
    /// Sent by an earlier run of the same recovery.
    pub sent_before: u64,
    pub sent: u64,
    /// In the window, but their event is no longer in the journal (pruned).
    pub gone: u64,
}

pub async fn recover(config_path: &Path, ask: Ask) -> anyhow::Result<ExitCode> {
    let config = match super::load(config_path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let refuse = |why: String| {
        eprintln!("error: {why}");
        Ok(ExitCode::from(2))
    };
    let Some(dest) = config
        .destinations
        .iter()
        .find(|d| d.name == ask.destination)
    else {
        let known: Vec<&str> = config
            .destinations
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        return refuse(format!(
            "destination {:?} is not in the configuration (its destinations: {})",
            ask.destination,
            known.join(", ")
        ));
    };
    if !config.journal.enabled {
        return refuse("journal.enabled is false: no journal to recover from".into());
    }
    let window = match Window::new(dest.name.clone(), ask.since, ask.until, ask.outcome) {
        Ok(w) => w,
        Err(e) => return refuse(e.to_string()),
    };
    let path = &config.journal.path;
    anyhow::ensure!(
        path.exists(),
        "no journal at {} (journal.path): has a relay with this configuration run?",
        path.display()
    );
    let journal = Recoveries::open(path)?;
    let report = run(&config, &journal, &window, &ask)
        .await
        .map_err(|e| anyhow::anyhow!("{}", config.secrets.scrub(&format!("{e:#}"))))?;
    eprintln!("{}", said(&report, &window, ask.dry_run));
    Ok(ExitCode::SUCCESS)
}

async fn run(
    config: &Config,
    journal: &Recoveries,
    window: &Window,
    ask: &Ask,
) -> anyhow::Result<Report> {
    let dest = config
        .destinations
        .iter()
        .find(|d| d.name == window.destination)
        .expect("checked");
    let id = window.id();
    let mut report = Report {
        sent_before: journal.sent(&id)?,
        ..Report::default()
    };
    // The events the destination takes, each read once to decide.
    let mut chosen: Vec<(Candidate, Box<serde_json::value::RawValue>)> = Vec::new();
    for c in journal.candidates(window)? {
        let Some(body) = journal.event(&c.event_id)? else {
            report.gone += 1;
            continue;
        };
        let Ok(raw) = serde_json::value::RawValue::from_string(body) else {
            report.gone += 1;
            continue;
        };
        let takes = postback_relay::event::from_raw(&raw).is_ok_and(|e| dest.matches(&e));
        if takes {
            chosen.push((c, raw));
        }
    }
    report.to_send = chosen.len() as u64;
    if ask.dry_run || chosen.is_empty() {
        return Ok(report);
    }
    journal.begin(window, &ask.by)?;
    journal.act(&Action {
        at: Utc::now(),
        who: ask.by.clone(),
        action: "recover".into(),
        filter: serde_json::json!({ "recovery": id, "window": window }).to_string(),
        count: report.to_send,
    })?;
    let topology = Topology::from_config(config);
    let conn = super::connect(&config.broker.url, "recover").await?;
    let publisher = Publisher::new(&conn).await?;
    let bar = super::progress_bar(report.to_send, "recovered");
    for (c, raw) in chosen {
        let mut delivery = Delivery::new(c.event_id.clone(), dest.name.clone(), raw, Utc::now());
        delivery.recovery = Some(id.clone());
        let body = serde_json::to_vec(&delivery)?;
        let message_id = format!("recovery:{id}:{}", c.event_id);
        publisher
            .publish_json("", &topology.deliveries, &body, Some(&message_id), None)
            .await?;
        journal.mark(&id, &c.event_id)?;
        report.sent += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let _ = conn.close(200, "done".into()).await;
    Ok(report)
}

/// What the recovery did, in words.
fn said(r: &Report, w: &Window, dry_run: bool) -> String {
    let until = w
        .until
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| "now".into());
    let window = format!(
        "{} deliveries ({}) from {} to {until}",
        w.destination,
        w.outcome.as_str(),
        w.since.to_rfc3339()
    );
    let before = match r.sent_before {
        0 => String::new(),
        n => format!("; {n} already sent by this recovery"),
    };
    let gone = match r.gone {
        0 => String::new(),
        n => format!("; {n} no longer in the journal"),
    };
    if dry_run {
        return format!(
            "dry run: {} event(s) would be sent again to {} ({window}){before}{gone}; nothing changed",
            r.to_send, w.destination
        );
    }
    if r.to_send == 0 {
        return format!("nothing to recover for {window}{before}{gone}");
    }
    format!(
        "recovered {} event(s) to {} ({window}), each a fresh delivery{before}{gone}; recovery {}",
        r.sent,
        w.destination,
        w.id()
    )
}
