use chrono::{Duration, Utc};

use super::*;
use crate::journal::letter::insert;
use crate::journal::letter_query::{self as query, tests::every_filter};
use crate::journal::query::Dialect;

fn letter(i: usize, destination: &str, reason: &str) -> Letter {
    Letter {
        id: format!("l-{i}"),
        at: "2026-11-20T14:00:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::seconds(i as i64),
        destination: destination.into(),
        reason: reason.into(),
        event_id: Some(format!("e-{i}")),
        attempts: 1,
        detail: "HTTP 404".into(),
        letter: format!("{{\"n\":{i}}}"),
    }
}

fn file() -> (tempfile::TempDir, FileLetters) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let letters = FileLetters::open(&path).unwrap();
    (dir, letters)
}

#[test]
fn letters_are_counted_listed_marked_and_reindexed() {
    let (_dir, f) = file();
    let all: Vec<Letter> = (0..10)
        .map(|i| match i % 3 {
            0 => letter(i, "hoqu", "partner_rejected"),
            1 => letter(i, "ps", "retries_exhausted"),
            _ => letter(i, crate::journal::NO_DESTINATION, "not_json"),
        })
        .collect();
    insert(f.conn_for_test(), &all).unwrap();
    insert(f.conn_for_test(), &all[..2]).unwrap();
    assert_eq!(f.waiting().unwrap(), 10, "a letter written twice is one");
    let groups = f.groups(&LetterFilter::default()).unwrap();
    let hoqu = groups.iter().find(|g| g.destination == "hoqu").unwrap();
    assert_eq!((hoqu.count, hoqu.oldest), (4, Some(all[0].at)));
    let page = f
        .page(
            &LetterFilter {
                destination: Some("ps".into()),
                ..LetterFilter::default()
            },
            1,
            2,
        )
        .unwrap();
    let ids: Vec<&str> = page.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(ids, ["l-4", "l-7"], "oldest first, after the first skipped");

    let marks = vec![Mark {
        id: "l-0".into(),
        state: State::Discarded,
        result: "junk".into(),
    }];
    assert_eq!(f.mark(&marks, "ops", Utc::now()).unwrap(), 1);
    assert_eq!(f.waiting().unwrap(), 9);
    let one = f.get("l-0").unwrap().unwrap();
    assert_eq!(
        (one.state, one.changed_by.as_deref(), one.result.as_deref()),
        (State::Discarded, Some("ops"), Some("junk"))
    );
    assert_eq!(one.letter.letter, "{\"n\":0}");
    let timed = LetterFilter {
        since: Some(all[0].at),
        ..LetterFilter::default()
    };
    let counted: u64 = f.groups(&timed).unwrap().iter().map(|g| g.count).sum();
    assert_eq!(counted, 9, "a marked letter is not listed");

    // A reindex that finds l-0 (discarded, yet in the queue) and l-1..l-4 only.
    let began = all[9].at + Duration::seconds(1);
    f.seen(&all[..5], 7).unwrap();
    assert_eq!(f.reindexed(7, began, "ops", Utc::now()).unwrap(), 5);
    assert_eq!(f.waiting().unwrap(), 5);
    assert_eq!(f.get("l-0").unwrap().unwrap().state, State::Waiting);
    assert_eq!(f.get("l-9").unwrap().unwrap().state, State::Gone);
}

/// The writer commits the letters the relay hands over into the file's index, once each.
#[tokio::test]
async fn the_writer_commits_letters_into_the_file() {
    use crate::journal::writer::Sink as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let mut sink = crate::journal::sqlite::FileSink::open(
        path.clone(),
        prometheus::IntCounter::new("replaced", "replaced").unwrap(),
    )
    .await;
    let written = vec![
        letter(1, "ps", "poison"),
        letter(1, "ps", "poison"),
        letter(2, "", "not_json"),
    ];
    let (back, committed) = sink.commit_letters(written).await;
    committed.unwrap();
    assert_eq!(back.len(), 3);
    let f = FileLetters::open(&path).unwrap();
    assert_eq!(f.waiting().unwrap(), 2);
    assert_eq!(f.get("l-2").unwrap().unwrap().letter.destination, "");
}

/// Each filter the pages use is served by an index in the file: the letters are searched,
/// never scanned.
#[test]
fn every_page_searches_an_index_in_the_file() {
    let (_dir, f) = file();
    let conn = f.conn_for_test();
    let plan = |sql: &str, params: &[crate::journal::query::Param]| -> Vec<String> {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        stmt.query_map(rusqlite::params_from_iter(params.iter()), |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    // The kept counts hold a row per destination and reason: read whole, they are small.
    let searched = |what: &str, plan: Vec<String>| {
        if plan.iter().all(|l| l.contains("dead_letter_counts")) {
            return;
        }
        let on: Vec<&String> = plan.iter().filter(|l| l.contains("dead_letters")).collect();
        assert!(
            !on.is_empty() && on.iter().all(|l| l.starts_with("SEARCH ")),
            "{what}: {plan:?}"
        );
    };
    for (what, filter) in every_filter() {
        let q = query::groups(&filter, Dialect::Sqlite);
        searched(&format!("groups of {what}"), plan(&q.sql, &q.params));
        let q = if query::narrow(&filter) {
            query::grouped(&filter, Dialect::Sqlite)
        } else {
            query::in_group(&filter, "hoqu", "poison", Dialect::Sqlite)
        };
        let p = plan(&q.sql, &q.params);
        assert!(
            !query::narrow(&filter)
                || p.iter()
                    .any(|l| l.contains("dead_letters_event") || l.contains("dead_letters_id")),
            "{what} is found by its own index: {p:?}"
        );
        searched(&format!("a group of {what}"), p);
        let q = query::page(&filter, 50, 50, Dialect::Sqlite);
        let p = plan(&q.sql, &q.params);
        assert!(
            !query::narrow(&filter)
                || p.iter()
                    .any(|l| l.contains("dead_letters_event") || l.contains("dead_letters_id")),
            "page of {what} is found by its own index: {p:?}"
        );
        assert!(
            filter.event_id.is_some()
                || !filter.ids.is_empty()
                || !p.iter().any(|l| l.contains("TEMP B-TREE FOR ORDER BY")),
            "page of {what} sorts every letter: {p:?}"
        );
        // Every letter, oldest first: the index by time walked in order, up to the page's
        // end (the limit stops it), never sorted.
        if what == "everything" {
            assert!(
                p.iter()
                    .all(|l| l.starts_with("SCAN dead_letters USING INDEX dead_letters_at")),
                "{p:?}"
            );
            continue;
        }
        searched(&format!("page of {what}"), p);
    }

    let q = query::oldest("hoqu", "poison", Dialect::Sqlite);
    searched("the oldest of a group", plan(&q.sql, &q.params));
    searched(
        "one letter",
        plan(
            "SELECT letter FROM dead_letters WHERE id = ?1",
            &[crate::journal::query::Param::Text("x".into())],
        ),
    );
}

/// The same in PostgreSQL: with sequential scans priced out, each plan searches an index by
/// a condition of the filter.
#[tokio::test]
async fn every_page_has_an_index_plan_in_postgres() {
    let admin = std::env::var("POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into());
    let Ok((client, conn)) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await else {
        assert!(std::env::var("CI").is_err(), "PostgreSQL is required in CI");
        return;
    };
    tokio::spawn(conn);
    let name = format!("j_letters_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_path(&name);
    let pg = crate::journal::postgres::Pg::connect(url.as_str())
        .await
        .unwrap();
    let (db, conn) = tokio_postgres::connect(url.as_str(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    db.batch_execute("SET enable_seqscan = off").await.unwrap();
    let explain = async |what: &str, q: crate::journal::query::Query| {
        let params: Vec<_> = q.params.iter().map(|p| p.pg()).collect();
        let plan: Vec<String> = db
            .query(&format!("EXPLAIN {}", q.sql), &params)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(
            !plan.iter().any(|l| l.contains("Seq Scan"))
                && plan.iter().any(|l| l.contains("Index Cond")
                    || l.contains("Index Only Scan")
                    || l.contains("Index Scan")),
            "{what}: {plan:#?}"
        );
    };
    for (what, filter) in every_filter() {
        let q = if query::narrow(&filter) {
            query::grouped(&filter, Dialect::Postgres)
        } else {
            query::in_group(&filter, "hoqu", "poison", Dialect::Postgres)
        };
        explain(&format!("a group of {what}"), q).await;
        explain(
            &format!("page of {what}"),
            query::page(&filter, 50, 50, Dialect::Postgres),
        )
        .await;
    }

    explain(
        "the oldest of a group",
        query::oldest("hoqu", "poison", Dialect::Postgres),
    )
    .await;

    // The writer's letters, committed as the relay hands them over.
    {
        use crate::journal::writer::Sink as _;
        let mut sink = crate::journal::postgres::PgSink::new(url.as_str());
        let written = vec![letter(100, "ps", "poison"), letter(100, "ps", "poison")];
        let (_, committed) = sink.commit_letters(written).await;
        committed.unwrap();
        let n: i64 = db
            .query_one(
                "SELECT waiting FROM dead_letter_counts WHERE destination = 'ps'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "a letter handed over twice is one");
        db.batch_execute("DELETE FROM dead_letters; UPDATE dead_letter_counts SET waiting = 0")
            .await
            .unwrap();
    }

    // The kept counts follow inserts, marks and reindexes, as in the file.
    let letters = Letters(crate::journal::access::Backend::Postgres(
        std::sync::Arc::new(pg),
    ));
    let all: Vec<Letter> = (0..6).map(|i| letter(i, "hoqu", "poison")).collect();
    {
        let Backend::Postgres(pg) = &letters.0 else {
            unreachable!()
        };
        pg.letters_seen(&all, 1).await.unwrap();
    }
    assert_eq!(letters.waiting().await.unwrap(), 6);
    let marks = vec![Mark {
        id: "l-1".into(),
        state: State::Replayed,
        result: "republished".into(),
    }];
    assert_eq!(letters.mark(&marks, "ops",).await.unwrap(), 1);
    assert_eq!(letters.waiting().await.unwrap(), 5);
    assert_eq!(
        letters.get("l-1").await.unwrap().unwrap().state,
        State::Replayed
    );
    letters.seen(&all[..2], 2).await.unwrap();
    assert_eq!(letters.reindexed(2, Utc::now(), "ops").await.unwrap(), 4);
    assert_eq!(letters.waiting().await.unwrap(), 2);
    let page = letters.page(&LetterFilter::default(), 0, 10).await.unwrap();
    assert_eq!(page.len(), 2);
    drop(letters);
    client
        .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .await
        .unwrap();
}
