//! `postback-relay dlq reindex`, as an operator runs it: the journal's index of dead letters
//! rebuilt from one read of the real queue, letters the relay never wrote included (moved by
//! the broker, or not an envelope), nothing consumed.

mod common;

use common::{Cli, Env};
use postback_relay::journal::letters::{LetterFilter, Letters, State};
use postback_relay::relay::deadletter::{Envelope, Reason, Source};

#[tokio::test(flavor = "multi_thread")]
async fn reindex_reads_the_queue_once_and_the_index_holds_what_it_holds() {
    let env = Env::new().await;
    env.declare().await;
    let dead = env.topology().dead;
    let source = Source {
        queue: "events".into(),
        routing_key: "order".into(),
        message_id: None,
        redelivered: false,
    };
    let mut ids = Vec::new();
    for i in 0..3 {
        let mut e = Envelope::for_message(
            Reason::PartnerRejected,
            "HTTP 404".into(),
            format!("{{\"event_id\":\"r{i}\"}}").as_bytes(),
            None,
            source.clone(),
        );
        e.destination = Some("powerspace".into());
        ids.push(e.dead_letter_id.to_string());
        env.publisher
            .publish_json("", &dead, &serde_json::to_vec(&e).unwrap(), None, None)
            .await
            .unwrap();
    }
    // Two identical messages that are not envelopes: two letters.
    for _ in 0..2 {
        env.publisher
            .publish_json("", &dead, b"\xffnot an envelope", None, None)
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let config = env.default_config().write(&dir);
    // The journal made (as a relay would), with a letter the queue no longer holds.
    let registry = prometheus::Registry::new();
    let (journal, writer) =
        postback_relay::journal::Journal::open(&env.journal_config(), &registry)
            .await
            .unwrap();
    let mut gone = Envelope::for_message(Reason::Poison, "x".into(), b"{}", None, source);
    gone.dead_lettered_at = chrono::Utc::now() - chrono::Duration::minutes(5);
    journal
        .record_letter(postback_relay::relay::deadletter::envelope_row(&gone))
        .unwrap();
    drop(journal);
    writer
        .close(tokio::time::Instant::now() + std::time::Duration::from_secs(30))
        .await;
    let letters = Letters::open(&env.journal_config()).await.unwrap();
    assert_eq!(letters.waiting().await.unwrap(), 1);

    let out = Cli::new(&["dlq", "reindex", "--config", &config, "--by", "ops"]).ok();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!(
            "holds the 5 dead letter(s) of {dead}; 1 it had waiting"
        )),
        "{said}"
    );
    assert_eq!(env.ready(&dead).await, 5, "nothing consumed");
    assert_eq!(letters.waiting().await.unwrap(), 5);
    for id in &ids {
        assert_eq!(
            letters.get(id).await.unwrap().unwrap().state,
            State::Waiting
        );
    }
    let g = letters
        .get(&gone.dead_letter_id.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (g.state, g.changed_by.as_deref()),
        (State::Gone, Some("ops"))
    );
    let raw = letters
        .page(
            &LetterFilter {
                reason: Some("not_json".into()),
                ..LetterFilter::default()
            },
            0,
            10,
        )
        .await
        .unwrap();
    assert_eq!(raw.len(), 2, "identical letters are two: {raw:?}");
    assert_ne!(raw[0].id, raw[1].id);

    // Run again: the same letters, the same ids.
    Cli::new(&["dlq", "reindex", "--config", &config]).ok();
    assert_eq!(letters.waiting().await.unwrap(), 5);
    let actions = env.recoveries().await.actions(10).await.unwrap();
    assert!(
        actions
            .iter()
            .any(|a| a.action == "reindex" && a.who == "ops" && a.count == 5)
    );

    // A replay from the command line marks what it sent back.
    Cli::new(&["replay", "--config", &config, "--destination", "powerspace"]).ok();
    for id in &ids {
        let l = letters.get(id).await.unwrap().unwrap();
        assert_eq!(
            (l.state, l.changed_by.as_deref()),
            (State::Replayed, Some("cli"))
        );
    }
    assert_eq!(letters.waiting().await.unwrap(), 2);
}
