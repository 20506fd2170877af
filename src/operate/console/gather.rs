//! What the pages show, gathered from the journal (SQLite, read off the async threads), the
//! broker (queue depths) and the relay's `/metrics` (circuit states, the oldest dead letter).
//! The dead letters' pages gather in `letters`.

use std::collections::BTreeMap;

use chrono::Utc;

use super::Console;
use crate::journal::timeline::{Timeline, timelines};
use crate::journal::{self, Reader};
use crate::operate::dlq;

/// Final outcomes in a period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub delivered: u64,
    pub dead: u64,
}

impl Counts {
    /// Delivered among the final outcomes, in percent; `None` with none.
    pub fn rate(self) -> Option<f64> {
        let all = self.delivered + self.dead;
        (all > 0).then(|| self.delivered as f64 * 100.0 / all as f64)
    }
}

pub struct DestRow {
    pub name: String,
    pub kind: String,
    pub hour: Counts,
    pub day: Counts,
    /// 0 closed, 1 half-open, 2 open; `None` when the relay's metrics are out of reach.
    pub circuit: Option<f64>,
    /// Who paused it and when, if it is paused.
    pub paused: Option<crate::shared::pause::Paused>,
}

pub struct Overview {
    pub rows: Vec<DestRow>,
    /// Each queue and its depth (`None`: the broker did not say).
    pub queues: Vec<(String, Option<u32>)>,
    pub oldest_dead_age: Option<f64>,
    /// The dead letters waiting, from the index (by destination), when there is one.
    pub letters: Option<super::letters::Waiting>,
    /// Why a part is missing, in words.
    pub notes: Vec<String>,
}

impl Overview {
    /// The dead-letter queue's depth, when the broker said (it is the last queue).
    pub fn dead_depth(&self) -> Option<u32> {
        self.queues.last().and_then(|(_, n)| *n)
    }
}

/// The journal to read; `None` when there is none yet (or it is turned off).
pub(super) async fn reader(c: &Console) -> Result<Option<Reader>, String> {
    if !c.config.journal.enabled {
        return Ok(None);
    }
    match Reader::open(&c.config.journal).await {
        Ok(r) => Ok(Some(r)),
        Err(journal::JournalError::Missing(_)) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Per destination, the final outcomes of the journal's entries from `since` on.
fn by_destination(rows: &[(String, String, u64)]) -> BTreeMap<String, Counts> {
    let mut out: BTreeMap<String, Counts> = BTreeMap::new();
    for (dest, outcome, n) in rows {
        let c = out.entry(dest.clone()).or_default();
        match outcome.as_str() {
            "delivered" => c.delivered += n,
            "dead_lettered" => c.dead += n,
            _ => {}
        }
    }
    out
}

pub async fn overview(c: &Console) -> Overview {
    let mut notes = Vec::new();
    let now = Utc::now();
    // From the journal's per-minute counts, in whole minutes: the hour is the minute in
    // progress and the 60 before it (60 to 61 minutes), the day likewise.
    let counts = match reader(c).await {
        Ok(Some(r)) => async {
            Ok(Some((
                r.counts(now - chrono::Duration::hours(1)).await?,
                r.counts(now - chrono::Duration::days(1)).await?,
            )))
        }
        .await
        .map_err(|e: journal::JournalError| e.to_string()),
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    };
    let (hour, day) = match counts {
        Ok(Some((h, d))) => (by_destination(&h), by_destination(&d)),
        Ok(None) => {
            notes.push("No journal yet: the success rates fill in once the relay has run.".into());
            Default::default()
        }
        Err(e) => {
            notes.push(format!("The journal cannot be read: {e}"));
            Default::default()
        }
    };
    let scraped = scrape(c).await;
    if scraped.is_none() {
        notes.push(match &c.metrics_url {
            Some(u) => format!("The relay's metrics at {u} did not answer: circuit states are unknown."),
            None => "The relay's metrics address is unknown (http.listen uses port 0; set console.relay_metrics_url): circuit states are unknown.".into(),
        });
    }
    let mut paused = match c.pauses().await {
        Ok(p) => p.list().await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    }
    .unwrap_or_else(|e| {
        notes.push(format!("Which destinations are paused is unknown: {e}"));
        Default::default()
    });
    let rows = c
        .config
        .destinations
        .iter()
        .map(|d| DestRow {
            paused: paused.remove(&d.name),
            name: d.name.clone(),
            kind: format!("{:?}", d.kind).to_lowercase(),
            hour: hour.get(&d.name).copied().unwrap_or_default(),
            day: day.get(&d.name).copied().unwrap_or_default(),
            circuit: scraped
                .as_ref()
                .and_then(|m| m.circuits.get(&d.name).copied()),
        })
        .collect();
    let queues = match depths(c).await {
        Ok(q) => q,
        Err(e) => {
            notes.push(format!("RabbitMQ did not answer: {e}"));
            c.topology
                .queues()
                .into_iter()
                .map(|q| (q.clone(), None))
                .collect()
        }
    };
    let letters = super::letters::waiting(c, &mut notes).await;
    Overview {
        rows,
        queues,
        oldest_dead_age: scraped.and_then(|m| m.oldest_dead_age),
        letters,
        notes,
    }
}

async fn depths(c: &Console) -> Result<Vec<(String, Option<u32>)>, lapin::Error> {
    let conn = crate::relay::broker::connect_to(&c.config.broker, "console").await?;
    let mut out = Vec::new();
    for q in c.topology.queues() {
        // A passive declare of a missing queue (the relay has not run yet) closes its
        // channel: each queue is asked on a channel of its own.
        let depth = match conn.create_channel().await {
            Ok(ch) => dlq::depth(&ch, q).await.ok(),
            Err(_) => None,
        };
        out.push((q.clone(), depth));
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(out)
}

/// What the console reads of the relay's metrics.
#[derive(Debug, Default, PartialEq)]
pub struct Scraped {
    pub circuits: BTreeMap<String, f64>,
    pub oldest_dead_age: Option<f64>,
}

async fn scrape(c: &Console) -> Option<Scraped> {
    let url = c.metrics_url.as_ref()?;
    let res = c.http.get(url).send().await.ok()?;
    if !res.status().is_success() {
        return None;
    }
    // A metrics page is small; a huge one is not the relay's.
    let text = res.text().await.ok()?;
    (text.len() < 8 * 1024 * 1024).then(|| parse_metrics(&text))
}

/// The circuit states and the oldest dead letter's age from a Prometheus text page.
pub fn parse_metrics(text: &str) -> Scraped {
    let mut out = Scraped::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        if series == "postback_relay_oldest_dead_letter_age_seconds" {
            out.oldest_dead_age = Some(value);
        } else if let Some(labels) = series
            .strip_prefix("postback_relay_circuit_state{")
            .and_then(|l| l.strip_suffix('}'))
            && let Some(dest) = labels
                .split(',')
                .find_map(|kv| kv.strip_prefix("destination=\""))
                .and_then(|v| v.strip_suffix('"'))
        {
            out.circuits.insert(dest.to_owned(), value);
        }
    }
    out
}

/// `found` with the configuration's secrets replaced in what the journal quotes (the request,
/// the partner's answer, the outcome's detail), before it is rendered: once escaped as HTML,
/// a secret holding `&`, `<` or `"` would no longer match the page's last scrub. The journal
/// was scrubbed when written, with the secrets of its day; these are today's.
fn scrubbed(c: &Console, mut found: Vec<Timeline>) -> Vec<Timeline> {
    if let Some(template) = &c.config.console.trace_url {
        for t in &mut found {
            t.trace_link = t
                .trace_id
                .as_deref()
                .map(|id| crate::config::tracing::trace_link(template, id));
        }
    }
    let secrets = &c.config.secrets;
    if secrets.is_empty() {
        return found;
    }
    for t in &mut found {
        for e in &mut t.entries {
            for text in [&mut e.request, &mut e.response, &mut e.error_class]
                .into_iter()
                .flatten()
            {
                secrets.scrub_in_place(text);
            }
            if let journal::Outcome::RetryScheduled(d) | journal::Outcome::DeadLettered(d) =
                &mut e.outcome
            {
                secrets.scrub_in_place(d);
            }
        }
        for text in [&mut t.event_id, &mut t.outcome]
            .into_iter()
            .chain(t.order_id.as_mut())
        {
            secrets.scrub_in_place(text);
        }
    }
    found
}

/// The journal's timelines for an event id or an order id.
pub async fn search(c: &Console, q: &str) -> Result<Option<Vec<Timeline>>, String> {
    let Some(r) = reader(c).await? else {
        return Ok(None);
    };
    let by = |f: journal::Filter| {
        let r = r.clone();
        async move { r.entries(&journal::Filter { limit: 10_000, ..f }).await }
    };
    let found = async {
        let mut entries = by(journal::Filter {
            event_id: Some(q.to_owned()),
            ..Default::default()
        })
        .await?;
        let mut by_order = by(journal::Filter {
            order_id: Some(q.to_owned()),
            ..Default::default()
        })
        .await?;
        by_order.retain(|e| !entries.iter().any(|x| x.event_id == e.event_id));
        entries.append(&mut by_order);
        entries.sort_by_key(|e| e.at);
        Ok::<_, journal::JournalError>(scrubbed(c, timelines(entries)))
    }
    .await;
    found.map(Some).map_err(|e| e.to_string())
}

/// The journal's timelines of one event at one destination.
pub async fn timeline_of(
    c: &Console,
    event_id: &str,
    destination: Option<&str>,
) -> Result<Option<Vec<Timeline>>, String> {
    let Some(r) = reader(c).await? else {
        return Ok(None);
    };
    let filter = journal::Filter {
        event_id: Some(event_id.to_owned()),
        destination: destination.map(str::to_owned),
        limit: 1000,
        ..Default::default()
    };
    match r.entries(&filter).await {
        Ok(e) => Ok(Some(scrubbed(c, timelines(e)))),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuit_states_and_the_oldest_letter_are_read_from_a_scrape() {
        let text = "# HELP x\npostback_relay_circuit_state{destination=\"hoqu\"} 2\n\
                    postback_relay_circuit_state{destination=\"ps\"} 0\n\
                    postback_relay_oldest_dead_letter_age_seconds 42.5\nother 1\nbroken line\n";
        let m = parse_metrics(text);
        assert_eq!(m.circuits.get("hoqu"), Some(&2.0));
        assert_eq!(m.circuits.get("ps"), Some(&0.0));
        assert_eq!(m.oldest_dead_age, Some(42.5));
    }

    #[test]
    fn the_success_rate_counts_final_outcomes_only() {
        let rows = vec![
            ("ps".to_owned(), "delivered".to_owned(), 3),
            ("ps".to_owned(), "dead_lettered".to_owned(), 1),
            ("ps".to_owned(), "retry_scheduled".to_owned(), 7),
        ];
        let c = by_destination(&rows)["ps"];
        assert_eq!(
            c,
            Counts {
                delivered: 3,
                dead: 1
            }
        );
        assert_eq!(c.rate(), Some(75.0));
        assert_eq!(Counts::default().rate(), None);
    }
}
