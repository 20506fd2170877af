//! The file itself: its schema's versions, and another connection writing beside the writer.

use rusqlite::Connection;

use super::*;

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
    assert_eq!(version, sqlite::MIGRATIONS.len() as i64);
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = sqlite::Db::open(path.clone()).await.err().unwrap();
    assert!(
        matches!(
            err,
            JournalError::Schema {
                found: 99,
                known,
                ..
            } if known as usize == sqlite::MIGRATIONS.len()
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
        conn.execute_batch(include_str!("../migrations/0001_deliveries.sql"))
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

/// Another connection (the `recover` command marking events, the console writing an
/// action) commits while the writer commits: the writer waits its turn, it does not fail.
#[test]
fn a_concurrent_writer_does_not_make_commits_fail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let mut db = sqlite::Db::open_now(&path).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let other = {
        let (stop, path) = (stop.clone(), path.clone());
        std::thread::spawn(move || {
            let c = Connection::open(&path).unwrap();
            c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                c.execute("INSERT INTO recovered VALUES ('r', ?1, 0)", [i.to_string()])
                    .unwrap();
                i += 1;
                // Paced as the recover command writes (once per event it sends): a writer
                // that never lets go would starve any other past its busy timeout, since
                // SQLite's waiting is not fair.
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            i
        })
    };
    let mut failed = Vec::new();
    for i in 0..3000 {
        let b = [ent(
            &format!("e{i}"),
            "hoqu",
            T0 + i,
            Outcome::Delivered,
            true,
            None,
        )];
        if let Err(e) = db.try_commit_for_test(&b) {
            failed.push(e.to_string());
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = other.join().unwrap();
    assert!(writes > 0, "the other connection wrote meanwhile");
    assert!(
        failed.is_empty(),
        "{} of 3000 commits failed: {:?}",
        failed.len(),
        failed.first()
    );
}
