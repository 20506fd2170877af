//! A delivery's timeline: its entries, oldest first, as `deliveries` and the console show them.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Entry, Outcome};

/// One delivery (an event at one destination) and what happened to it.
#[derive(Debug, Serialize)]
pub struct Timeline {
    pub event_id: String,
    pub destination: String,
    pub order_id: Option<String>,
    pub event_type: String,
    /// The latest entry's outcome, as [`shown`] writes it.
    pub outcome: String,
    pub entries: Vec<Entry>,
}

/// Entries grouped by delivery, each group oldest first, the groups in the order of their
/// first entry.
pub fn timelines(entries: Vec<Entry>) -> Vec<Timeline> {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut groups: BTreeMap<(String, String), Vec<Entry>> = BTreeMap::new();
    for e in entries {
        let key = (e.event_id.clone(), e.destination.clone());
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(e);
    }
    order
        .into_iter()
        .filter_map(|key| {
            let entries = groups.remove(&key)?;
            let last = entries.last()?;
            Some(Timeline {
                event_id: key.0,
                destination: key.1,
                order_id: last.order_id.clone(),
                event_type: last.event_type.clone(),
                outcome: shown(last),
                entries,
            })
        })
        .collect()
}

/// An entry's outcome with its tier or reason: `retry_scheduled (30s)`.
pub fn shown(e: &Entry) -> String {
    match &e.outcome {
        Outcome::RetryScheduled(tier) => format!("retry_scheduled ({tier})"),
        Outcome::DeadLettered(reason) => format!("dead_lettered ({reason})"),
        other => other.code().to_owned(),
    }
}

/// What the partner answered a call, in a few words.
pub fn answer(e: &Entry) -> String {
    match (e.http_status, &e.error_class) {
        (Some(s), _) => format!("HTTP {s}"),
        (None, Some(c)) => c.clone(),
        (None, None) => "no call".to_owned(),
    }
}
