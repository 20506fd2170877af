//! Pruning the file a step at a time, and the recovery windows an event stays in after it.

use super::*;
use crate::journal::recovery::FileRecoveries;

fn new_candidates(rec: &FileRecoveries, w: &Window, id: &str) -> Vec<(String, i64)> {
    rec.candidates(w, id)
        .unwrap()
        .into_iter()
        .map(|c| (c.event_id, sqlite::ms(c.first_at)))
        .collect()
}

#[tokio::test]
async fn pruning_removes_old_entries_and_the_events_left_without_any() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let mut db = sqlite::Db::open(path.clone()).await.unwrap();
    let old = entry("old", "d", "2026-01-01T00:00:00Z", Outcome::Delivered);
    let new = entry("new", "d", "2026-11-20T00:00:00Z", Outcome::Delivered);
    db.commit_for_test(&[old, new]);
    let gone = db
        .prune_step("2026-06-01T00:00:00Z".parse().unwrap())
        .unwrap();
    assert_eq!(gone, 2, "the old entry, and its minute's count");
    let reader = sqlite::FileReader::open(&path).unwrap();
    let left = reader
        .entries(&Filter {
            limit: 10,
            ..Filter::default()
        })
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].event_id, "new");
    assert_eq!(reader.event("old").unwrap(), None);
    assert!(reader.event("new").unwrap().is_some());
}

#[tokio::test]
async fn an_event_is_kept_once_for_all_its_entries_and_outlives_its_first_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let mut db = sqlite::Db::open(path.clone()).await.unwrap();
    let with_body = |mut e: Entry, body: &str| {
        e.event = Some(body.to_owned());
        e
    };
    // Two destinations in one batch, then a retry's entry in another: one body.
    db.commit_for_test(&[
        with_body(
            entry("e1", "hoqu", "2026-01-01T00:00:00Z", Outcome::Delivered),
            "{\"v\":1}",
        ),
        with_body(
            entry(
                "e1",
                "powerspace",
                "2026-01-01T00:00:01Z",
                Outcome::Delivered,
            ),
            "{\"v\":1}",
        ),
    ]);
    db.commit_for_test(&[with_body(
        entry("e1", "hoqu", "2026-11-20T00:00:00Z", Outcome::Delivered),
        "{\"v\":1}",
    )]);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let bodies = || -> i64 {
        conn.query_row(
            "SELECT count(*) FROM entries WHERE body IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(bodies(), 1);
    // The first two entries are pruned; the event stays with the entry that is left.
    let gone = db
        .prune_step("2026-06-01T00:00:00Z".parse().unwrap())
        .unwrap();
    assert_eq!(
        gone, 4,
        "two entries, and their minute's count at each destination"
    );
    assert_eq!(bodies(), 1);
    let reader = sqlite::FileReader::open(&path).unwrap();
    assert_eq!(reader.event("e1").unwrap().as_deref(), Some("{\"v\":1}"));
    // Once its last entry goes, so does the event.
    let gone = db
        .prune_step("2026-12-01T00:00:00Z".parse().unwrap())
        .unwrap();
    assert_eq!(gone, 2, "the old entry, and its minute's count");
    assert_eq!(reader.event("e1").unwrap(), None);
}

/// Operator actions and recoveries asked before the cut-off go with the entries, a step at a
/// time; the newer ones stay.
#[test]
fn pruning_removes_old_actions_and_recoveries_with_what_they_sent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let mut db = sqlite::Db::open_now(&path).unwrap();
    let old = sqlite::ms("2026-01-01T00:00:00Z".parse().unwrap());
    let new = sqlite::ms("2026-11-20T00:00:00Z".parse().unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        for (id, at) in [("r-old", old), ("r-new", new)] {
            conn.execute(
                "INSERT INTO recoveries (id, destination, since, until, outcome, asked_by, asked_at)
                 VALUES (?1, 'd', 0, NULL, 'delivered', 'ops', ?2)",
                rusqlite::params![id, at],
            )
            .unwrap();
            for i in 0..(writer::PRUNE_STEP + 10) {
                conn.execute(
                    "INSERT INTO recovered (recovery_id, event_id, sent_at) VALUES (?1, ?2, ?3)",
                    rusqlite::params![id, format!("e{i}"), at],
                )
                .unwrap();
            }
        }
        for at in [old, old, new] {
            conn.execute(
                "INSERT INTO actions (at, who, action, filter, count) VALUES (?1, 'ops', 'replay', '{}', 1)",
                [at],
            )
            .unwrap();
        }
    }
    let before = "2026-06-01T00:00:00Z".parse().unwrap();
    // A step takes as many rows as it may while more are left, then what remains.
    assert_eq!(db.prune_step(before).unwrap(), writer::PRUNE_STEP);
    assert!(db.prune_step(before).unwrap() < writer::PRUNE_STEP);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT count(*) FROM actions"), 1);
    assert_eq!(count("SELECT count(*) FROM recoveries"), 1);
    assert_eq!(
        count("SELECT count(*) FROM recovered WHERE recovery_id = 'r-old'"),
        0
    );
    assert_eq!(
        count("SELECT count(*) FROM recovered WHERE recovery_id = 'r-new'"),
        writer::PRUNE_STEP as i64 + 10
    );
}

/// An event's entries both older than the cut-off, split by a prune step's LIMIT.
#[test]
fn a_prune_step_that_cuts_through_an_event_keeps_its_body_while_an_entry_stays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let mut db = sqlite::Db::open_now(&path).unwrap();
    let mut batch = vec![ent("x", "hoqu", T0, Outcome::Delivered, true, None)];
    for i in 0..1000 {
        batch.push(ent(
            &format!("f{i}"),
            "hoqu",
            T0 + 1,
            Outcome::Delivered,
            true,
            None,
        ));
    }
    batch.push(ent(
        "x",
        "powerspace",
        T0 + 2,
        Outcome::Delivered,
        true,
        None,
    ));
    db.commit_for_test(&batch);
    let reader = sqlite::FileReader::open(&path).unwrap();
    assert!(reader.event("x").unwrap().is_some());
    assert_eq!(db.prune_step(sqlite::from_ms(T0 + DAY)).unwrap(), 1000);
    let left = reader
        .entries(&Filter {
            event_id: Some("x".into()),
            limit: 10,
            ..Filter::default()
        })
        .unwrap();
    assert_eq!(
        left.len(),
        1,
        "x's powerspace entry is still in the journal"
    );
    assert!(
        reader.event("x").unwrap().is_some(),
        "x has an entry left but its body is gone (the old journal kept the events row until no entry referred to it)"
    );
}

/// A pruned entry hands its body to a later entry of its event, with the time the journal
/// first had it: the event stays in the window it came in, and in no later one.
#[test]
fn pruning_does_not_move_an_event_into_a_later_window() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let mut db = sqlite::Db::open_now(&path).unwrap();
    // Received on day 0; sent again by a recovery on day 200.
    db.commit_for_test(&[ent("x", "hoqu", T0, Outcome::Delivered, true, None)]);
    db.commit_for_test(&[ent(
        "x",
        "hoqu",
        T0 + 200 * DAY,
        Outcome::Delivered,
        true,
        Some("rec"),
    )]);
    let rec = FileRecoveries::open(&path).unwrap();
    let w = |s, u| {
        Window::new(
            "new-dest".into(),
            sqlite::from_ms(T0 + s * DAY),
            Some(sqlite::from_ms(T0 + u * DAY)),
            Which::Any,
        )
        .unwrap()
    };
    assert_eq!(new_candidates(&rec, &w(0, 1), "a").len(), 1);
    assert_eq!(new_candidates(&rec, &w(190, 210), "a").len(), 0);
    db.prune_step(sqlite::from_ms(T0 + 100 * DAY)).unwrap();
    let early = new_candidates(&rec, &w(0, 1), "a");
    let late = new_candidates(&rec, &w(190, 210), "a");
    assert_eq!(early.len(), 1, "{early:?}");
    assert!(
        late.is_empty(),
        "an event received on day 0 is a backfill candidate of days 190..210: {late:?}"
    );
}
