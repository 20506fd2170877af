//! `postback-relay deliveries`: what the journal holds of deliveries, as a timeline per
//! delivery (an event at one destination): every call, what the partner answered, and the
//! outcome.

use std::process::ExitCode;

use super::RenderFormat;
use postback_relay::config::UnknownDestination;
use postback_relay::journal::timeline::{Timeline, answer, shown as shown_outcome, timelines};
use postback_relay::journal::{Filter, JournalConfig, Reader, WindowError, in_order};

/// Why a query cannot be run; nothing is read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("give --event-id, --order-id, or --destination with --since")]
    Unbounded,
    #[error(transparent)]
    Backwards(#[from] WindowError),
    #[error("{0}")]
    BadId(String),
    #[error(transparent)]
    UnknownDestination(#[from] UnknownDestination),
}

/// Whether `f` is a query the command runs: bounded, in order, with well-formed ids and a
/// destination of the configuration (`known`).
pub fn check(f: &Filter, known: &[&str]) -> Result<(), QueryError> {
    in_order(f.since, f.until)?;
    for (flag, id) in [("--event-id", &f.event_id), ("--order-id", &f.order_id)] {
        if let Some(id) = id {
            postback_relay::contract::event::check_id(flag, id)
                .map_err(|e| QueryError::BadId(e.to_string()))?;
        }
    }
    if let Some(d) = &f.destination {
        UnknownDestination::check(d, known.iter().copied())?;
    }
    let by_time = f.destination.is_some() && f.since.is_some();
    if f.event_id.is_none() && f.order_id.is_none() && !by_time {
        return Err(QueryError::Unbounded);
    }
    Ok(())
}

/// Prints the timelines `filter` selects from the journal.
pub async fn run(
    journal: &JournalConfig,
    filter: &Filter,
    known: &[&str],
    format: RenderFormat,
) -> anyhow::Result<ExitCode> {
    if let Err(e) = check(filter, known) {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(2));
    }
    let reader = Reader::open(journal).await?;
    let entries = reader.entries(filter).await?;
    let cut = (entries.len() >= filter.limit)
        .then(|| entries.last().map(|e| e.at))
        .flatten();
    let found = timelines(entries);
    match format {
        RenderFormat::Json => println!("{}", serde_json::to_string_pretty(&found)?),
        RenderFormat::Text => print_text(&found),
    }
    if let Some(last) = cut {
        eprintln!("{}", cut_short(filter.limit, last));
    }
    Ok(ExitCode::SUCCESS)
}

/// What is said when a query stopped at its limit: how to read on.
fn cut_short(limit: usize, last: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "note: only the first {limit} entries are shown (--limit); there may be more. To read on, run again with --since {} (the entries of that very millisecond show again), or a higher --limit",
        last.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    )
}

fn print_text(found: &[Timeline]) {
    if found.is_empty() {
        println!("no deliveries match");
        return;
    }
    for t in found {
        let order = t.order_id.as_deref().unwrap_or("-");
        let destination = match t.destination.as_str() {
            postback_relay::journal::NO_DESTINATION => "(no destination)",
            d => d,
        };
        // Every line quotes what came from outside (ids, partners' answers): printable.
        let trace = t
            .trace_id
            .as_deref()
            .map(|id| format!("  trace {id}"))
            .unwrap_or_default();
        let line = format!(
            "{} -> {destination}  ({}, order {order}): {}{trace}",
            t.event_id, t.event_type, t.outcome
        );
        println!("{}", super::printable(&line));
        for e in &t.entries {
            let latency = e
                .latency_ms
                .map(|l| format!("  {l:.0} ms"))
                .unwrap_or_default();
            let line = format!(
                "  {}  attempt {}  {:<28} {}{latency}",
                e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                e.attempt,
                shown_outcome(e),
                answer(e)
            );
            println!("{}", super::printable(&line));
            if let Some(r) = &e.request {
                println!("      request  {}", super::printable(r));
            }
            if let Some(r) = e.response.as_deref().filter(|r| !r.is_empty()) {
                println!("      answer   {}", super::printable(&r.replace('\n', " ")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn query() -> Filter {
        Filter {
            limit: 10,
            ..Filter::default()
        }
    }

    #[test]
    fn a_query_is_bounded_ordered_and_names_known_things() {
        let known = ["hoqu", "powerspace"];
        assert_eq!(check(&query(), &known).unwrap_err(), QueryError::Unbounded);
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let by_time = Filter {
            destination: Some("hoqu".into()),
            since: Some(t("2026-11-20T14:00:00Z")),
            ..query()
        };
        assert!(check(&by_time, &known).is_ok());
        let backwards = Filter {
            until: Some(t("2026-11-20T13:00:00Z")),
            ..by_time
        };
        assert!(matches!(
            check(&backwards, &known),
            Err(QueryError::Backwards { .. })
        ));
        let unknown = Filter {
            destination: Some("nope".into()),
            since: Some(t("2026-11-20T14:00:00Z")),
            ..query()
        };
        let e = check(&unknown, &known).unwrap_err().to_string();
        assert!(
            e.contains("\"nope\"") && e.contains("hoqu, powerspace"),
            "{e}"
        );
        let bad = Filter {
            event_id: Some("a\u{7}b".into()),
            ..query()
        };
        assert!(matches!(check(&bad, &known), Err(QueryError::BadId(_))));
        let blank = Filter {
            order_id: Some("  ".into()),
            ..query()
        };
        assert!(matches!(check(&blank, &known), Err(QueryError::BadId(_))));
    }
}
