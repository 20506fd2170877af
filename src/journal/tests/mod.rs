//! The journal in a SQLite file, written, pruned and migrated; helpers for entries and series.

use super::*;

mod file;
mod pruning;
mod writing;

fn entry(event_id: &str, destination: &str, at: &str, outcome: Outcome) -> Entry {
    Entry {
        event_id: event_id.into(),
        order_id: Some(format!("order-{event_id}")),
        event_type: "order".into(),
        destination: destination.into(),
        attempt: 1,
        at: at.parse().unwrap(),
        outcome,
        http_status: Some(200),
        error_class: None,
        latency_ms: Some(3.5),
        request: Some(r#"{"method":"GET","url":"https://p/x?k=REDACTED"}"#.into()),
        response: Some("OK".into()),
        recovery: None,
        trace_id: None,
        event: Some(format!(r#"{{"event_id":"{event_id}"}}"#)),
    }
}

fn config(dir: &tempfile::TempDir, buffer: usize) -> JournalConfig {
    JournalConfig {
        path: dir.path().join("journal.db"),
        retention_days: 30,
        buffer,
        ..JournalConfig::default()
    }
}

fn counter(registry: &Registry, name: &str, label: Option<&str>) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| label.is_none_or(|l| m.get_label().iter().any(|p| p.value() == l)))
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

/// Waits, with a deadline, until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "not within 30 s: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn gauge(registry: &Registry, name: &str) -> i64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .map(|m| m.get_gauge().get_value() as i64)
        .sum()
}

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const DAY: i64 = 86_400_000;

/// An entry at `at` (milliseconds), with the event's body if `body`.
fn ent(
    event: &str,
    dest: &str,
    at: i64,
    outcome: Outcome,
    body: bool,
    recovery: Option<&str>,
) -> Entry {
    Entry {
        event_id: event.into(),
        order_id: None,
        event_type: "order".into(),
        destination: dest.into(),
        attempt: 1,
        at: sqlite::from_ms(at),
        outcome,
        http_status: None,
        error_class: None,
        latency_ms: None,
        request: None,
        response: None,
        recovery: recovery.map(str::to_owned),
        trace_id: None,
        event: body.then(|| format!(r#"{{"event_id":"{event}"}}"#)),
    }
}
