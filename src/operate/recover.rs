//! Recovery by time: a destination's deliveries of a window sent again from the journal, each
//! with a fresh budget, on purpose past the record of their acceptance (a partner that lost
//! them), or every event of the window the destination takes (a destination added since).
//! Each event is published to the deliveries queue, confirmed by the broker, and then marked
//! as sent by this recovery in the journal: a second run of the same recovery sends only what
//! the first did not, and a delivery published twice (killed between the confirm and the
//! mark) is accepted once, since the relay claims a recovery's delivery under the
//! recovery's own key. `postback-relay recover` and the console both run it.

use chrono::Utc;
use serde_json::value::RawValue;

use crate::config::{Config, DestinationConfig};
use crate::journal::{Action, Candidate, JournalError, Recoveries, Window};
use crate::relay::broker::{PublishError, Publisher, Topology};
use crate::relay::delivery::Delivery;

/// What a recovery came to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Events of the window not yet sent by this recovery, that the destination takes.
    pub to_send: u64,
    /// Sent by an earlier run of the same recovery.
    pub sent_before: u64,
    pub sent: u64,
    /// In the window, but their event is no longer in the journal (pruned) or unreadable.
    pub gone: u64,
    /// Why the running relay could not be asked whether it has loaded the destination.
    pub unasked: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error(transparent)]
    UnknownDestination(#[from] crate::config::UnknownDestination),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("cannot reach RabbitMQ: {0}")]
    Broker(#[from] lapin::Error),
    #[error("cannot publish a recovered delivery: {0}")]
    Publish(#[from] PublishError),
    #[error("cannot write a recovered delivery: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "the running relay ({url}) has not loaded destination {destination:?}: every recovered delivery would be dead-lettered unroutable. Reload it with this configuration (SIGHUP) or restart it, then recover"
    )]
    NotLoaded { destination: String, url: String },
}

/// Whether the running relay has loaded `destination`: `Ok(None)` when it has, `Ok(Some(why))`
/// when it cannot be asked (no address known, no answer), an error when it answers without
/// it. A relay exports each loaded destination's circuit state, and drops it when a reload
/// removes the destination.
pub async fn loaded_by_relay(
    config: &Config,
    destination: &str,
) -> Result<Option<String>, RecoverError> {
    let Some(url) = config.relay_metrics_url() else {
        return Ok(Some(
            "http.listen takes any port; set console.relay_metrics_url".into(),
        ));
    };
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(5))
        .build();
    let page = match client {
        Ok(c) => c.get(&url).send().await.and_then(|r| r.error_for_status()),
        Err(e) => return Ok(Some(e.to_string())),
    };
    let text = match page {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(e) => return Ok(Some(format!("{url}: {}", e.without_url()))),
    };
    let series = format!("postback_relay_circuit_state{{destination=\"{destination}\"}}");
    match text.lines().any(|l| l.starts_with(&series)) {
        true => Ok(None),
        false => Err(RecoverError::NotLoaded {
            destination: destination.to_owned(),
            url,
        }),
    }
}

/// The event `c` as the journal kept it, if the destination takes it; `None` when the
/// destination does not; an error when it is gone from the journal.
async fn taken(
    dest: &DestinationConfig,
    journal: &Recoveries,
    c: &Candidate,
) -> Result<Option<Box<RawValue>>, Gone> {
    let raw = journal
        .event(&c.event_id)
        .await
        .ok()
        .flatten()
        .and_then(|body| RawValue::from_string(body).ok())
        .ok_or(Gone)?;
    Ok(crate::contract::event::from_raw(&raw)
        .is_ok_and(|e| dest.matches(&e))
        .then_some(raw))
}

/// An event of the window no longer in the journal (pruned), or unreadable.
struct Gone;

/// Runs (or, with `dry_run`, counts) the recovery of `window`, asked by `by`. `progress` is
/// told of each event sent. An open-ended window ends where its first run began, on every
/// run. The window's events are read one at a time: counted in a first pass, sent in a
/// second.
pub async fn recover(
    config: &Config,
    journal: Recoveries,
    window: &Window,
    by: &str,
    dry_run: bool,
    mut progress: impl FnMut(&Report),
) -> Result<Report, RecoverError> {
    let dest = config.destination(&window.destination)?;
    let unasked = loaded_by_relay(config, &window.destination).await?;
    let id = window.id();
    let mut pinned = window.clone();
    if pinned.until.is_none() {
        pinned.until = Some(journal.pinned_until(window).await?.unwrap_or_else(Utc::now));
    }
    let mut report = Report {
        sent_before: journal.sent(&id).await?,
        unasked,
        ..Report::default()
    };
    let candidates = journal.candidates(&pinned, &id).await?;
    for c in &candidates {
        match taken(dest, &journal, c).await {
            Ok(Some(_)) => report.to_send += 1,
            Ok(None) => {}
            Err(Gone) => report.gone += 1,
        }
    }
    if dry_run || report.to_send == 0 {
        return Ok(report);
    }
    journal.begin(&id, &pinned, by).await?;
    journal
        .act(&Action {
            at: Utc::now(),
            who: by.to_owned(),
            action: "recover".into(),
            filter: serde_json::json!({ "recovery": id, "window": pinned }).to_string(),
            count: report.to_send,
        })
        .await?;
    let topology = Topology::from_config(config);
    let conn = crate::relay::broker::connect_to(&config.broker, "recover").await?;
    let publisher = Publisher::new(&conn).await?;
    for c in candidates {
        let Ok(Some(raw)) = taken(dest, &journal, &c).await else {
            continue;
        };
        let mut delivery = Delivery::new(c.event_id.clone(), dest.name.clone(), raw, Utc::now());
        delivery.recovery = Some(id.clone());
        let body = serde_json::to_vec(&delivery)?;
        let message_id = format!("recovery:{id}:{}", c.event_id);
        publisher
            .publish_json("", &topology.deliveries, &body, Some(&message_id), None)
            .await?;
        journal.mark(&id, &c.event_id).await?;
        report.sent += 1;
        progress(&report);
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(report)
}

/// What a recovery did, in words.
pub fn said(r: &Report, w: &Window, dry_run: bool) -> String {
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
    let gone = match &r.unasked {
        None => gone,
        Some(why) => format!(
            "{gone}. Note: the running relay could not be asked whether it has loaded {} ({why}); if it has not, every recovered delivery is dead-lettered unroutable",
            w.destination
        ),
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
