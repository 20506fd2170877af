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
    /// The delivery's state ([`headline`]).
    pub outcome: String,
    /// The trace the delivery was in (its latest entry's that has one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Where the trace is shown (`console.trace_url` with the id), when the reader has one.
    #[serde(skip)]
    pub trace_link: Option<String>,
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
                outcome: headline(&entries),
                trace_id: entries.iter().rev().find_map(|e| e.trace_id.clone()),
                trace_link: None,
                entries,
            })
        })
        .collect()
}

/// A delivery's state, from its entries (oldest first): `delivered` once the partner accepted
/// it, whatever came after (the same event published again reads `duplicate` in its own
/// entry); otherwise its latest entry's outcome, as [`shown`] writes it.
pub fn headline(entries: &[Entry]) -> String {
    if entries.iter().any(|e| e.outcome == Outcome::Delivered) {
        return Outcome::Delivered.code().to_owned();
    }
    entries.last().map(shown).unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(outcome: Outcome) -> Entry {
        Entry {
            event_id: "e".into(),
            order_id: None,
            event_type: "lead".into(),
            destination: "d".into(),
            attempt: 1,
            at: chrono::Utc::now(),
            outcome,
            http_status: None,
            error_class: None,
            latency_ms: None,
            request: None,
            response: None,
            recovery: None,
            trace_id: None,
            event: None,
        }
    }

    #[test]
    fn a_delivery_is_headlined_by_its_state_not_its_last_entry() {
        let retry = || entry(Outcome::RetryScheduled("30s".into()));
        let delivered_then_again = [
            retry(),
            entry(Outcome::Delivered),
            entry(Outcome::Duplicate),
        ];
        assert_eq!(headline(&delivered_then_again), "delivered");
        assert_eq!(headline(&[retry()]), "retry_scheduled (30s)");
        let dead = [
            retry(),
            entry(Outcome::DeadLettered("retries_exhausted".into())),
        ];
        assert_eq!(headline(&dead), "dead_lettered (retries_exhausted)");
        assert_eq!(headline(&[entry(Outcome::Superseded)]), "superseded");
    }
}
