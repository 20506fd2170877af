use super::*;

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

#[tokio::test]
async fn entries_are_read_back_by_event_order_destination_time_and_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::new();
    let (journal, writer) = Journal::open(&config(&dir, 100), &registry).await.unwrap();
    let retry = Outcome::RetryScheduled("30s".into());
    let mut second = entry(
        "e1",
        "powerspace",
        "2026-11-20T10:00:05Z",
        Outcome::Delivered,
    );
    second.attempt = 2;
    second.event = Some(r#"{"event_id":"e1","changed":true}"#.into());
    for e in [
        entry("e1", "powerspace", "2026-11-20T10:00:00Z", retry.clone()),
        second,
        entry("e1", "hoqu", "2026-11-20T10:00:01Z", Outcome::Delivered),
        entry(
            "e2",
            "hoqu",
            "2026-11-20T12:00:00Z",
            Outcome::DeadLettered("rejected".into()),
        ),
    ] {
        journal.record(e).unwrap();
    }
    drop(journal);
    writer
        .close(tokio::time::Instant::now() + std::time::Duration::from_secs(30))
        .await;
    assert_eq!(
        counter(&registry, "postback_relay_journal_written_total", None),
        4
    );

    let reader = sqlite::FileReader::open(&dir.path().join("journal.db")).unwrap();
    let all = |f: Filter| {
        reader
            .entries(&Filter { limit: 100, ..f })
            .unwrap()
            .into_iter()
            .map(|e| (e.event_id, e.destination, e.outcome))
            .collect::<Vec<_>>()
    };
    let e1 = all(Filter {
        event_id: Some("e1".into()),
        ..Filter::default()
    });
    assert_eq!(
        e1,
        vec![
            ("e1".into(), "powerspace".into(), retry),
            ("e1".into(), "hoqu".into(), Outcome::Delivered),
            ("e1".into(), "powerspace".into(), Outcome::Delivered),
        ],
        "a timeline, oldest first"
    );
    let by_order = all(Filter {
        order_id: Some("order-e2".into()),
        ..Filter::default()
    });
    assert_eq!(by_order.len(), 1);
    let hoqu_window = all(Filter {
        destination: Some("hoqu".into()),
        since: Some("2026-11-20T11:00:00Z".parse().unwrap()),
        until: Some("2026-11-20T13:00:00Z".parse().unwrap()),
        ..Filter::default()
    });
    assert_eq!(
        hoqu_window,
        vec![(
            "e2".into(),
            "hoqu".into(),
            Outcome::DeadLettered("rejected".into())
        )]
    );
    let delivered = all(Filter {
        outcomes: vec!["delivered".into()],
        ..Filter::default()
    });
    assert_eq!(delivered.len(), 2);
    assert_eq!(
        reader.event("e1").unwrap().as_deref(),
        Some(r#"{"event_id":"e1"}"#),
        "the event is kept once, as first seen"
    );
    let first = &reader
        .entries(&Filter {
            limit: 1,
            ..Filter::default()
        })
        .unwrap()[0];
    assert_eq!(first.http_status, Some(200));
    assert_eq!(first.latency_ms, Some(3.5));
    assert_eq!(first.response.as_deref(), Some("OK"));
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_buffer_drops_and_counts_instead_of_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::new();
    let (journal, writer) = Journal::open(&config(&dir, 2), &registry).await.unwrap();
    // On one thread the writer cannot run until this test awaits: the buffer fills.
    let results: Vec<_> = (0..5)
        .map(|i| {
            journal.record(entry(
                &format!("e{i}"),
                "d",
                "2026-11-20T10:00:00Z",
                Outcome::Delivered,
            ))
        })
        .collect();
    assert_eq!(
        results,
        vec![
            Ok(()),
            Ok(()),
            Err(Dropped::BufferFull),
            Err(Dropped::BufferFull),
            Err(Dropped::BufferFull)
        ]
    );
    drop(journal);
    writer
        .close(tokio::time::Instant::now() + std::time::Duration::from_secs(30))
        .await;
    let dropped = "postback_relay_journal_dropped_total";
    assert_eq!(counter(&registry, dropped, Some("buffer_full")), 3);
    assert_eq!(
        counter(&registry, "postback_relay_journal_written_total", None),
        2
    );
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
    assert_eq!(gone, 1);
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
async fn migrations_run_once_and_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    drop(sqlite::Db::open(path.clone()).await.unwrap());
    drop(sqlite::Db::open(path.clone()).await.unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 6);
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = sqlite::Db::open(path.clone()).await.err().unwrap();
    assert!(
        matches!(
            err,
            JournalError::Schema {
                found: 99,
                known: 6,
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        sqlite::FileReader::open(&path),
        Err(JournalError::Schema { .. })
    ));
}

#[tokio::test]
async fn a_journal_of_an_older_version_is_brought_up_to_date_and_keeps_its_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("migrations/0001_deliveries.sql"))
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO entries (event_id, event_type, destination, attempt, at, outcome)
             VALUES ('old', 'order', 'hoqu', 1, 0, 'delivered')",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO events (event_id, order_id, event_type, body, first_at)
             VALUES ('old', '10045', 'order', '{\"event_id\":\"old\"}', 0)",
            [],
        )
        .unwrap();
    }
    drop(sqlite::Db::open(path.clone()).await.unwrap());
    let reader = sqlite::FileReader::open(&path).unwrap();
    let kept = reader
        .entries(&Filter {
            event_id: Some("old".into()),
            limit: 10,
            ..Filter::default()
        })
        .unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].recovery, None);
    // The event's body came through every move: to a rowid table (version 3), then onto
    // the entry that first told of it (version 5), once.
    assert_eq!(
        reader.event("old").unwrap().as_deref(),
        Some("{\"event_id\":\"old\"}")
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let bodies: i64 = conn
        .query_row(
            "SELECT count(*) FROM entries WHERE event_id = 'old' AND body IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(bodies, 1);
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!tables.iter().any(|t| t == "events"), "{tables:?}");
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
    assert_eq!(gone, 2);
    assert_eq!(bodies(), 1);
    let reader = sqlite::FileReader::open(&path).unwrap();
    assert_eq!(reader.event("e1").unwrap().as_deref(), Some("{\"v\":1}"));
    // Once its last entry goes, so does the event.
    let gone = db
        .prune_step("2026-12-01T00:00:00Z".parse().unwrap())
        .unwrap();
    assert_eq!(gone, 1);
    assert_eq!(reader.event("e1").unwrap(), None);
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

/// A file that cannot be opened (its directory missing, read-only, a full disk) holds up no
/// delivery: the journal opens without it, its entries wait in its buffer, and the writer
/// keeps trying; once the file can be made, they are written.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_that_cannot_be_opened_yet_is_tried_until_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-yet");
    let config = JournalConfig {
        path: missing.join("journal.db"),
        ..JournalConfig::default()
    };
    let registry = Registry::new();
    let (journal, writer) = Journal::open(&config, &registry).await.unwrap();
    for i in 0..3 {
        let e = entry(
            &format!("e{i}"),
            "d",
            "2026-11-20T10:00:00Z",
            Outcome::Delivered,
        );
        journal.record(e).unwrap();
    }
    until("the writer reports it fails", || {
        gauge(&registry, "postback_relay_journal_failing") == 1
    })
    .await;
    assert_eq!(gauge(&registry, "postback_relay_journal_buffered"), 3);
    std::fs::create_dir(&missing).unwrap();
    until("the entries written", || {
        counter(&registry, "postback_relay_journal_written_total", None) == 3
    })
    .await;
    assert_eq!(gauge(&registry, "postback_relay_journal_failing"), 0);
    drop(journal);
    writer
        .close(tokio::time::Instant::now() + std::time::Duration::from_secs(30))
        .await;
    let reader = sqlite::FileReader::open(&config.path).unwrap();
    let all = reader
        .entries(&Filter {
            limit: 10,
            ..Filter::default()
        })
        .unwrap();
    assert_eq!(all.len(), 3);
}

/// The file removed under a running writer (an operator's `rm`, a clean-up job): the writer
/// notices before its next commit, counts it, and makes a new file, rather than writing
/// where nobody can read.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_removed_under_the_writer_is_noticed_and_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(&dir, 100);
    let registry = Registry::new();
    let (journal, writer) = Journal::open(&config, &registry).await.unwrap();
    let record = |i: usize| {
        let e = entry(
            &format!("e{i}"),
            "d",
            "2026-11-20T10:00:00Z",
            Outcome::Delivered,
        );
        journal.record(e).unwrap();
    };
    record(0);
    until("the first entry written", || {
        counter(&registry, "postback_relay_journal_written_total", None) == 1
    })
    .await;
    for f in ["journal.db", "journal.db-wal", "journal.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    record(1);
    record(2);
    until("the later entries written", || {
        counter(&registry, "postback_relay_journal_written_total", None) == 3
    })
    .await;
    assert_eq!(
        counter(
            &registry,
            "postback_relay_journal_file_replaced_total",
            None
        ),
        1
    );
    drop(journal);
    writer
        .close(tokio::time::Instant::now() + std::time::Duration::from_secs(30))
        .await;
    let reader = sqlite::FileReader::open(&config.path).unwrap();
    let ids: Vec<String> = reader
        .entries(&Filter {
            limit: 10,
            ..Filter::default()
        })
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(ids, ["e1", "e2"], "the new file holds what came after");
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
