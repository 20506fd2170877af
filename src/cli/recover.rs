//! `postback-relay recover`: the arguments checked, then [`postback_relay::operate::recover`] with a
//! progress bar on a terminal.

use std::path::Path;
use std::process::ExitCode;

use chrono::{DateTime, Utc};

use postback_relay::journal::{Recoveries, Which, Window};

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

pub async fn recover(config_path: &Path, ask: Ask) -> anyhow::Result<ExitCode> {
    let config = match super::load(config_path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let refuse = |why: String| {
        eprintln!("error: {why}");
        Ok(ExitCode::from(2))
    };
    if let Err(e) = config.destination(&ask.destination) {
        return refuse(e.to_string());
    }
    if !config.journal.enabled {
        return refuse("journal.enabled is false: no journal to recover from".into());
    }
    let window = match Window::new(ask.destination.clone(), ask.since, ask.until, ask.outcome) {
        Ok(w) => w,
        Err(e) => return refuse(e.to_string()),
    };
    let journal = Recoveries::open(&config.journal)
        .await
        .map_err(|e| anyhow::anyhow!("{}", config.secrets.scrub(&e.to_string())))?;
    let bar = super::progress_bar(0, "recovered");
    let report = postback_relay::operate::recover::recover(
        &config,
        journal,
        &window,
        &ask.by,
        ask.dry_run,
        |r| {
            bar.set_length(r.to_send);
            bar.set_position(r.sent);
        },
    )
    .await;
    let report = match report {
        Ok(r) => r,
        Err(e @ postback_relay::operate::recover::RecoverError::NotLoaded { .. }) => {
            bar.finish_and_clear();
            return refuse(config.secrets.scrub(&e.to_string()).into_owned());
        }
        Err(e) => anyhow::bail!("{}", config.secrets.scrub(&e.to_string())),
    };
    bar.finish_and_clear();
    eprintln!(
        "{}",
        postback_relay::operate::recover::said(&report, &window, ask.dry_run)
    );
    Ok(ExitCode::SUCCESS)
}
