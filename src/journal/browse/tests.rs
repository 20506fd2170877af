use super::*;
use crate::journal::{Journal, JournalConfig};

fn entry(event_id: &str, destination: &str, at: &str, outcome: Outcome) -> Entry {
    Entry {
        event_id: event_id.into(),
        order_id: None,
        event_type: "order".into(),
        destination: destination.into(),
        attempt: 1,
        at: at.parse().unwrap(),
        outcome,
        http_status: Some(503),
        error_class: None,
        latency_ms: Some(3.0),
        request: None,
        response: None,
        recovery: None,
        trace_id: None,
        event: Some("{}".into()),
    }
}

fn retry(tier: &str) -> Outcome {
    Outcome::RetryScheduled(tier.into())
}

/// A journal file holding `entries`, written by the journal's own writer.
async fn file_with(entries: Vec<Entry>) -> (tempfile::TempDir, crate::journal::sqlite::FileReader) {
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig {
        path: dir.path().join("journal.db"),
        ..JournalConfig::default()
    };
    let (journal, writer) = Journal::open(&config, &prometheus::Registry::new())
        .await
        .unwrap();
    for e in entries {
        journal.record(e).unwrap();
    }
    drop(journal);
    writer
        .close(tokio::time::Instant::now() + Duration::from_secs(30))
        .await;
    let reader = crate::journal::sqlite::FileReader::open(&config.path).unwrap();
    (dir, reader)
}

#[tokio::test]
async fn pages_follow_each_other_newest_first_and_only_waiting_retries_wait() {
    let (_dir, r) = file_with(vec![
        entry("e1", "hoqu", "2026-11-20T10:00:00Z", retry("in_process")),
        entry("e1", "hoqu", "2026-11-20T10:00:01Z", retry("30s")),
        entry("e1", "hoqu", "2026-11-20T10:00:31Z", Outcome::Delivered),
        entry("e2", "hoqu", "2026-11-20T10:01:00Z", retry("5m")),
        entry("e2", "ps", "2026-11-20T10:01:00Z", Outcome::Delivered),
        entry("e3", "ps", "2026-11-20T10:02:00Z", retry("1h")),
        entry(
            "e4",
            "ps",
            "2026-11-20T10:03:00Z",
            Outcome::DeadLettered("x".into()),
        ),
    ])
    .await;
    let page = |b: Browse| deliveries_in_file(r.conn(), &b).unwrap();
    let ids = |p: &[Browsed]| -> Vec<String> {
        p.iter()
            .map(|b| format!("{}@{}", b.entry.event_id, b.entry.destination))
            .collect()
    };
    let first = page(Browse {
        limit: 3,
        ..Browse::default()
    });
    assert_eq!(ids(&first), ["e4@ps", "e3@ps", "e2@ps"]);
    let second = page(Browse {
        limit: 3,
        before: Some(first[2].cursor),
        ..Browse::default()
    });
    assert_eq!(
        ids(&second),
        ["e2@hoqu", "e1@hoqu", "e1@hoqu"],
        "the same time, the next id"
    );
    let cursor = Cursor::parse(&second[2].cursor.to_string()).unwrap();
    assert_eq!(cursor, second[2].cursor);
    let last = page(Browse {
        limit: 3,
        before: Some(cursor),
        ..Browse::default()
    });
    assert_eq!(ids(&last), ["e1@hoqu"]);

    let at_hoqu = page(Browse {
        destination: Some("hoqu".into()),
        outcome: Some("delivered".into()),
        limit: 10,
        ..Browse::default()
    });
    assert_eq!(ids(&at_hoqu), ["e1@hoqu"]);
    let window = page(Browse {
        since: Some("2026-11-20T10:01:00Z".parse().unwrap()),
        until: Some("2026-11-20T10:03:00Z".parse().unwrap()),
        limit: 10,
        ..Browse::default()
    });
    assert_eq!(ids(&window), ["e3@ps", "e2@ps", "e2@hoqu"]);

    let waiting = page(Browse {
        waiting: true,
        limit: 10,
        ..Browse::default()
    });
    assert_eq!(
        ids(&waiting),
        ["e3@ps", "e2@hoqu"],
        "e1 was delivered since"
    );
    let due: Vec<String> = waiting
        .iter()
        .map(|b| b.next_attempt().unwrap().to_rfc3339())
        .collect();
    assert_eq!(
        due,
        ["2026-11-20T11:02:00+00:00", "2026-11-20T10:06:00+00:00"]
    );
    assert_eq!(
        next_attempt(&entry(
            "e",
            "d",
            "2026-11-20T10:00:00Z",
            retry("in_process")
        )),
        None
    );
    assert_eq!(
        next_attempt(&entry("e", "d", "2026-11-20T10:00:00Z", Outcome::Delivered)),
        None
    );
    // A tier read back from the journal that names a delay past the calendar: no time, no
    // panic.
    assert_eq!(
        next_attempt(&entry(
            "e",
            "d",
            "2026-11-20T10:00:00Z",
            retry("2000000000000h")
        )),
        None
    );
}

#[test]
fn a_cursor_is_read_back_or_refused() {
    let c = Cursor {
        at: 1_763_632_800_000,
        id: 42,
    };
    assert_eq!(Cursor::parse(&c.to_string()), Some(c));
    for bad in ["", "12", "a.b", "1.2.3", "1.", ".2"] {
        assert_eq!(Cursor::parse(bad), None, "{bad:?}");
    }
}

/// Every page the console asks for.
fn every_page() -> Vec<(&'static str, Query, Query)> {
    let t = |s: &str| Some(s.parse().unwrap());
    let c = Some(Cursor {
        at: 1_763_632_800_000,
        id: 42,
    });
    let b = |f: Browse| {
        let f = Browse { limit: 51, ..f };
        (
            deliveries(&f, Dialect::Sqlite),
            deliveries(&f, Dialect::Postgres),
        )
    };
    let dest = || Some("hoqu".to_owned());
    let mut all = vec![
        ("newest", b(Browse::default())),
        (
            "below a cursor",
            b(Browse {
                before: c,
                ..Browse::default()
            }),
        ),
        (
            "a destination",
            b(Browse {
                destination: dest(),
                before: c,
                ..Browse::default()
            }),
        ),
        (
            "an outcome",
            b(Browse {
                outcome: Some("delivered".into()),
                before: c,
                ..Browse::default()
            }),
        ),
        (
            "a destination's window and outcome",
            b(Browse {
                destination: dest(),
                outcome: Some("dead_lettered".into()),
                since: t("2026-11-20T14:00:00Z"),
                until: t("2026-11-20T16:00:00Z"),
                before: c,
                ..Browse::default()
            }),
        ),
        (
            "dead letters",
            b(Browse {
                outcome: Some("dead_lettered".into()),
                before: c,
                ..Browse::default()
            }),
        ),
        (
            "duplicates at a destination",
            b(Browse {
                outcome: Some("duplicate".into()),
                destination: dest(),
                ..Browse::default()
            }),
        ),
        (
            "superseded statuses",
            b(Browse {
                outcome: Some("superseded".into()),
                ..Browse::default()
            }),
        ),
        (
            "since",
            b(Browse {
                since: t("2026-11-20T14:00:00Z"),
                ..Browse::default()
            }),
        ),
        (
            "waiting",
            b(Browse {
                waiting: true,
                before: c,
                ..Browse::default()
            }),
        ),
        (
            "waiting at a destination",
            b(Browse {
                waiting: true,
                destination: dest(),
                ..Browse::default()
            }),
        ),
        (
            "retries at a destination",
            b(Browse {
                outcome: Some("retry_scheduled".into()),
                destination: dest(),
                before: c,
                ..Browse::default()
            }),
        ),
    ];
    all.push((
        "actions",
        (
            actions(None, 51, Dialect::Sqlite),
            actions(None, 51, Dialect::Postgres),
        ),
    ));
    all.push((
        "actions below a cursor",
        (
            actions(c, 51, Dialect::Sqlite),
            actions(c, 51, Dialect::Postgres),
        ),
    ));
    all.into_iter().map(|(w, (s, p))| (w, s, p)).collect()
}

/// Each page is read through an index, in the index's order: never the whole table, never
/// sorted whole before its first row.
#[test]
fn every_page_reads_an_index_in_its_order_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::journal::sqlite::Db::open_now(&dir.path().join("journal.db")).unwrap();
    let conn = db.into_conn();
    for (what, q, _) in every_page() {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", q.sql))
            .unwrap();
        let plan: Vec<String> = stmt
            .query_map(rusqlite::params_from_iter(q.params.iter()), |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let reads: Vec<&String> = plan
            .iter()
            .filter(|l| l.starts_with("SCAN") || l.starts_with("SEARCH"))
            .collect();
        assert!(
            !reads.is_empty()
                && reads
                    .iter()
                    .all(|l| l.contains(" USING ") && l.contains("INDEX"))
                && !plan.iter().any(|l| l.contains("TEMP B-TREE")),
            "{what}: {plan:?}"
        );
        // Retries through their own index; what came after each, by event.
        if what.contains("waiting") || what.contains("retries") {
            assert!(reads[0].contains("INDEX entries_retry"), "{what}: {plan:?}");
        }
        // Other rare outcomes through theirs.
        for (named, index) in [
            ("dead letters", "entries_dead_lettered"),
            ("outcome", "entries_dead_lettered"),
            ("duplicates", "entries_duplicate"),
            ("superseded", "entries_superseded"),
        ] {
            if what.contains(named) && !what.contains("an outcome") {
                assert!(reads[0].contains(index), "{what}: {plan:?}");
            }
        }
        if what.contains("waiting") {
            assert!(
                reads
                    .iter()
                    .any(|l| l.starts_with("SEARCH l USING INDEX entries_event")),
                "{what}: {plan:?}"
            );
        }
    }
}

/// The console's pages in PostgreSQL: with sequential scans priced out, each reads an
/// index (by a condition of the page, or in the page's order), none the whole table.
#[tokio::test]
async fn every_page_reads_an_index() {
    let Some((admin, name, url)) = crate::journal::postgres::tests::database().await else {
        return;
    };
    let pg = crate::journal::postgres::Pg::connect(&url).await.unwrap();
    let conn = pg.conn().await.unwrap();
    conn.batch_execute("SET enable_seqscan = off")
        .await
        .unwrap();
    for (what, _, q) in every_page() {
        let params: Vec<_> = q.params.iter().map(|p| p.pg()).collect();
        let plan: Vec<String> = conn
            .query(&format!("EXPLAIN {}", q.sql), &params)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(
            !plan.iter().any(|l| l.contains("Seq Scan"))
                && plan
                    .iter()
                    .any(|l| l.contains("Index Cond") || l.contains("Index Scan")),
            "{what}: {plan:#?}"
        );
    }
    drop(pg);
    admin
        .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .await
        .unwrap();
}
