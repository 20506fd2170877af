//! Writing through [`Journal`]: entries read back, a full buffer, a file missing or removed.

use super::*;

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
