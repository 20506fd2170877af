//! `postback-relay deliveries`: what the journal holds of deliveries, as a timeline per
//! delivery (an event at one destination): every call, what the partner answered, and the
//! outcome.

use std::process::ExitCode;

use chrono::{DateTime, Utc};

use super::RenderFormat;
use postback_relay::journal::timeline::{Timeline, answer, shown as shown_outcome, timelines};
use postback_relay::journal::{Filter, JournalConfig, Reader};

/// What to look up, as the command line gave it.
pub struct Query {
    pub event_id: Option<String>,
    pub order_id: Option<String>,
    pub destination: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub outcomes: Vec<String>,
    pub limit: usize,
}

/// Why a query cannot be run; nothing is read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("give --event-id, --order-id, or --destination with --since")]
    Unbounded,
    #[error("--until ({until}) is before --since ({since})")]
    Backwards {
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    },
    #[error("{0}")]
    BadId(String),
    #[error("destination {0:?} is not in the configuration (its destinations: {1})")]
    UnknownDestination(String, String),
}

impl Query {
    /// The journal's filter, or why this query is refused. `known`: the config's destinations.
    pub fn filter(&self, known: &[&str]) -> Result<Filter, QueryError> {
        if let (Some(since), Some(until)) = (self.since, self.until)
            && until < since
        {
            return Err(QueryError::Backwards { since, until });
        }
        for (flag, id) in [
            ("--event-id", &self.event_id),
            ("--order-id", &self.order_id),
        ] {
            if let Some(id) = id {
                postback_relay::event::check_id(flag, id)
                    .map_err(|e| QueryError::BadId(e.to_string()))?;
            }
        }
        if let Some(d) = &self.destination
            && !known.contains(&d.as_str())
        {
            return Err(QueryError::UnknownDestination(d.clone(), known.join(", ")));
        }
        let by_time = self.destination.is_some() && self.since.is_some();
        if self.event_id.is_none() && self.order_id.is_none() && !by_time {
            return Err(QueryError::Unbounded);
        }
        Ok(Filter {
            event_id: self.event_id.clone(),
            order_id: self.order_id.clone(),
            destination: self.destination.clone(),
            since: self.since,
            until: self.until,
            outcomes: self.outcomes.clone(),
            limit: self.limit,
        })
    }
}

/// Prints the timelines `query` selects from the journal.
pub async fn run(
    journal: &JournalConfig,
    query: &Query,
    known: &[&str],
    format: RenderFormat,
) -> anyhow::Result<ExitCode> {
    let filter = match query.filter(known) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let reader = Reader::open(journal).await?;
    let found = timelines(reader.entries(&filter).await?);
    match format {
        RenderFormat::Json => println!("{}", serde_json::to_string_pretty(&found)?),
        RenderFormat::Text => print_text(&found),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(found: &[Timeline]) {
    if found.is_empty() {
        println!("no deliveries match");
        return;
    }
    for t in found {
        let order = t.order_id.as_deref().unwrap_or("-");
        println!(
            "{} -> {}  ({}, order {order}): {}",
            t.event_id, t.destination, t.event_type, t.outcome
        );
        for e in &t.entries {
            let latency = e
                .latency_ms
                .map(|l| format!("  {l:.0} ms"))
                .unwrap_or_default();
            println!(
                "  {}  attempt {}  {:<28} {}{latency}",
                e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                e.attempt,
                shown_outcome(e),
                answer(e)
            );
            if let Some(r) = &e.request {
                println!("      request  {r}");
            }
            if let Some(r) = e.response.as_deref().filter(|r| !r.is_empty()) {
                println!("      answer   {}", r.replace('\n', " "));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query() -> Query {
        Query {
            event_id: None,
            order_id: None,
            destination: None,
            since: None,
            until: None,
            outcomes: Vec::new(),
            limit: 10,
        }
    }

    #[test]
    fn a_query_is_bounded_ordered_and_names_known_things() {
        let known = ["hoqu", "powerspace"];
        assert_eq!(query().filter(&known).unwrap_err(), QueryError::Unbounded);
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let by_time = Query {
            destination: Some("hoqu".into()),
            since: Some(t("2026-11-20T14:00:00Z")),
            ..query()
        };
        assert!(by_time.filter(&known).is_ok());
        let backwards = Query {
            until: Some(t("2026-11-20T13:00:00Z")),
            ..by_time
        };
        assert!(matches!(
            backwards.filter(&known),
            Err(QueryError::Backwards { .. })
        ));
        let unknown = Query {
            destination: Some("nope".into()),
            since: Some(t("2026-11-20T14:00:00Z")),
            ..query()
        };
        let e = unknown.filter(&known).unwrap_err().to_string();
        assert!(
            e.contains("\"nope\"") && e.contains("hoqu, powerspace"),
            "{e}"
        );
        let bad = Query {
            event_id: Some("a\u{7}b".into()),
            ..query()
        };
        assert!(matches!(bad.filter(&known), Err(QueryError::BadId(_))));
        let blank = Query {
            order_id: Some("  ".into()),
            ..query()
        };
        assert!(matches!(blank.filter(&known), Err(QueryError::BadId(_))));
    }
}
