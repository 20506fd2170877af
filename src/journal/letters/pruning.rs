//! The index of dead letters is pruned with the journal: a letter that left the queue
//! (replayed, discarded) is kept for the retention, then goes in the pruning's small steps; a
//! letter still waiting stays, as it stays in the queue.

use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::journal::letter::insert;
use crate::journal::writer::Sink as _;

fn letter(i: usize) -> Letter {
    Letter {
        id: format!("l-{i}"),
        at: "2026-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::seconds(i as i64),
        destination: "hoqu".into(),
        reason: "partner_rejected".into(),
        event_id: Some(format!("e-{i}")),
        attempts: 1,
        detail: "HTTP 400".into(),
        letter: format!("{{\"n\":{i}}}"),
    }
}

fn marks() -> Vec<Mark> {
    vec![
        Mark {
            id: "l-0".into(),
            state: State::Replayed,
            result: "republished".into(),
        },
        Mark {
            id: "l-1".into(),
            state: State::Discarded,
            result: "discarded".into(),
        },
    ]
}

#[tokio::test]
async fn letters_that_left_the_queue_are_pruned_and_waiting_ones_stay_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let f = file::FileLetters::open(&path).unwrap();
    insert(f.conn_for_test(), &(0..3).map(letter).collect::<Vec<_>>()).unwrap();
    let marked_at: DateTime<Utc> = "2026-02-01T00:00:00Z".parse().unwrap();
    f.mark(&marks(), "ops", marked_at).unwrap();

    let mut db = crate::journal::sqlite::Db::open_now(&path).unwrap();
    // Before the marks: nothing of the index goes.
    db.prune_step(marked_at - Duration::days(1)).unwrap();
    assert!(f.get("l-0").unwrap().is_some() && f.get("l-1").unwrap().is_some());
    // After them: the two that left go, the waiting one stays, and so does its count.
    let gone = db.prune_step(marked_at + Duration::days(1)).unwrap();
    assert_eq!(gone, 2);
    assert!(f.get("l-0").unwrap().is_none() && f.get("l-1").unwrap().is_none());
    assert!(f.get("l-2").unwrap().is_some());
    assert_eq!(f.waiting().unwrap(), 1);
}

#[tokio::test]
async fn letters_that_left_the_queue_are_pruned_and_waiting_ones_stay_in_postgres() {
    let Some((admin, name, url)) = crate::journal::postgres::tests::database().await else {
        return;
    };
    let mut sink = crate::journal::postgres::PgSink::new(&url);
    let (_, committed) = sink.commit_letters((0..3).map(letter).collect()).await;
    committed.unwrap();
    let pg = crate::journal::postgres::Pg::connect(&url).await.unwrap();
    let marked_at: DateTime<Utc> = "2026-02-01T00:00:00Z".parse().unwrap();
    pg.mark_letters(&marks(), "ops", marked_at).await.unwrap();
    let n = async |sql: &str| pg.count(sql).await;

    sink.prune_step(marked_at - Duration::days(1))
        .await
        .unwrap();
    assert_eq!(n("SELECT count(*) FROM dead_letters").await, 3);
    sink.prune_step(marked_at + Duration::days(1))
        .await
        .unwrap();
    assert_eq!(n("SELECT count(*) FROM dead_letters").await, 1);
    assert_eq!(
        n("SELECT count(*) FROM dead_letters WHERE id = 'l-2' AND state = 'waiting'").await,
        1
    );
    assert_eq!(
        n("SELECT coalesce(sum(waiting), 0)::bigint FROM dead_letter_counts").await,
        1
    );
    drop(pg);
    drop(sink);
    admin
        .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .await
        .unwrap();
}
