//! Tests of the paused destinations.

use super::watch::{Marked, marked};

use super::*;

fn who() -> Paused {
    Paused {
        by: "ops".into(),
        at: Utc::now(),
    }
}

#[test]
fn the_board_says_what_changed() {
    let read = |paused: BTreeMap<String, Paused>| Read { paused, mark: None };
    let board = Board::default();
    let changed = board.update(read(BTreeMap::from([("a".into(), who())])));
    assert_eq!(changed.len(), 1);
    assert!(board.is_paused("a") && !board.is_paused("b"));
    assert!(
        board
            .update(read(BTreeMap::from([("a".into(), who())])))
            .is_empty()
    );
    let changed = board.update(read(BTreeMap::new()));
    assert_eq!(changed, vec![("a".to_owned(), None)]);
    assert!(!board.is_paused("a"));
}

#[test]
fn a_mark_gone_or_changed_says_redis_forgot() {
    assert_eq!(marked(Some("a"), Some("a")), Marked::Same);
    assert_eq!(marked(Some("a"), None), Marked::Forgotten);
    assert_eq!(marked(Some("a"), Some("b")), Marked::Forgotten);
    assert_eq!(marked(None, Some("b")), Marked::First);
    assert_eq!(marked(None, None), Marked::Unmarked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_at_once_never_undo_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let pauses = Pauses::File(beside(&dir.path().join("relay.db")));
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let p = pauses.clone();
            tokio::spawn(async move { p.pause(&format!("d{i}"), who()).await.unwrap() })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap());
    }
    assert_eq!(pauses.list().await.unwrap().len(), 40, "every pause kept");
}

#[tokio::test]
async fn the_file_beside_the_embedded_store_pauses_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("relay.db");
    let pauses = Pauses::File(beside(&store));
    assert!(
        pauses.list().await.unwrap().is_empty(),
        "no file, none paused"
    );
    assert!(pauses.pause("hoqu", who()).await.unwrap());
    assert!(
        !pauses.pause("hoqu", who()).await.unwrap(),
        "already paused"
    );
    assert!(dir.path().join("relay.db.paused.json").exists());
    assert_eq!(
        pauses.list().await.unwrap().keys().collect::<Vec<_>>(),
        ["hoqu"]
    );
    assert!(pauses.resume("hoqu").await.unwrap());
    assert!(!pauses.resume("hoqu").await.unwrap());
    assert!(pauses.list().await.unwrap().is_empty());

    std::fs::write(beside(&store), "{not json").unwrap();
    let err = pauses.list().await.unwrap_err().to_string();
    assert!(err.contains("relay.db.paused.json"), "{err}");
}
