//! The per-minute counts in the file: kept with each batch, filled by the migration, pruned
//! by whole minutes, and read through their key.

use super::Outcome;
use super::counts::tests::entry;
use super::counts::{COUNTS_SQL, PER_HOUR_SQL};
use super::sqlite::{Db, FileReader, MIGRATIONS, from_ms};

/// The counts follow the batches (a key in two batches adds up), are read from the minute
/// holding `since`, per hour for a chart, and lose whole minutes only when pruned.
#[test]
fn counts_follow_the_batches_and_are_pruned_by_whole_minutes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let mut db = Db::open_now(&path).unwrap();
    let ok = Outcome::Delivered;
    let dead = Outcome::DeadLettered("rejected".into());
    db.commit_for_test(&[
        entry("hoqu", "2026-11-20T13:59:59Z", ok.clone(), Some(100.0)),
        entry("hoqu", "2026-11-20T14:00:10Z", ok.clone(), Some(10.0)),
        entry("hoqu", "2026-11-20T14:00:50Z", dead.clone(), Some(40.0)),
        entry("ps", "2026-11-20T14:30:00Z", ok.clone(), None),
    ]);
    db.commit_for_test(&[entry(
        "hoqu",
        "2026-11-20T14:00:20Z",
        ok.clone(),
        Some(20.0),
    )]);
    let reader = FileReader::open(&path).unwrap();
    let mut c = reader
        .counts("2026-11-20T14:00:30Z".parse().unwrap())
        .unwrap();
    c.sort();
    assert_eq!(
        c,
        vec![
            ("hoqu".into(), "dead_lettered".into(), 1),
            ("hoqu".into(), "delivered".into(), 2),
            ("ps".into(), "delivered".into(), 1),
        ]
    );
    let hours = reader
        .per_hour("hoqu", "2026-11-20T00:00:00Z".parse().unwrap())
        .unwrap();
    let shown: Vec<_> = hours
        .iter()
        .map(|h| (h.hour.format("%H").to_string(), h.outcome.as_str(), h.n))
        .collect();
    assert_eq!(
        shown,
        vec![
            ("13".into(), "delivered", 1),
            ("14".into(), "dead_lettered", 1),
            ("14".into(), "delivered", 2),
        ]
    );
    assert_eq!((hours[2].latency_ms_sum, hours[2].latency_n), (30.0, 2));
    assert!(reader.per_hour("nowhere", from_ms(0)).unwrap().is_empty());

    // Pruned at 14:00:40: the entries before it, and the count of 13:59; the count of the
    // minute holding the cut-off stays whole.
    let gone = db
        .prune_step("2026-11-20T14:00:40Z".parse().unwrap())
        .unwrap();
    assert_eq!(gone, 4, "three entries and one count");
    let c = reader.counts(from_ms(0)).unwrap();
    assert_eq!(c.iter().map(|r| r.2).sum::<u64>(), 4);
}

/// A journal of version 5 is given its counts from the entries it holds.
#[test]
fn an_older_journal_is_counted_when_brought_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..5] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 5).unwrap();
        conn.execute_batch(
            "INSERT INTO entries (event_id, event_type, destination, attempt, at, outcome,
               latency_ms)
             VALUES ('a', 'order', 'hoqu', 1, 1795701600000, 'delivered', 12),
                    ('b', 'order', 'hoqu', 1, 1795701659999, 'delivered', NULL),
                    ('c', 'order', 'hoqu', 1, 1795701660000, 'dead_lettered', 8);",
        )
        .unwrap();
    }
    drop(Db::open_now(&path).unwrap());
    let hours = FileReader::open(&path)
        .unwrap()
        .per_hour("hoqu", from_ms(0))
        .unwrap();
    let shown: Vec<_> = hours
        .iter()
        .map(|h| (h.outcome.as_str(), h.n, h.latency_ms_sum, h.latency_n))
        .collect();
    assert_eq!(
        shown,
        vec![("dead_lettered", 1, 8.0, 1), ("delivered", 2, 12.0, 1)]
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM per_minute", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 2, "one row per minute, destination and outcome");
}

/// The overview's and the chart's queries search the counts' key: never a scan.
#[test]
fn the_counts_are_read_through_their_key_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let conn = Db::open_now(&dir.path().join("journal.db"))
        .unwrap()
        .into_conn();
    let plan = |sql: &str, params: &[&dyn rusqlite::ToSql]| -> Vec<String> {
        conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(params, |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    for p in [
        plan(COUNTS_SQL, &[&0i64]),
        plan(PER_HOUR_SQL, &[&"hoqu", &0i64]),
    ] {
        let on_counts: Vec<&String> = p.iter().filter(|l| l.contains("per_minute")).collect();
        assert!(
            !on_counts.is_empty()
                && on_counts
                    .iter()
                    .all(|l| l.starts_with("SEARCH per_minute USING PRIMARY KEY (minute>?")),
            "{p:?}"
        );
    }
}
