//! The delivery journal against the real RabbitMQ and the partner sandbox: every call and
//! every outcome recorded, secrets redacted, and `postback-relay deliveries` reading it.

mod common;

use common::process::stderr;
use common::{Cli, Dest, Env, Event, Hoqu, Retry, until};
use postback_relay::interfaces::sandbox::Rule;
use postback_relay::journal::{Entry, Filter, Outcome};

const KEY: &str = "hq-s3cr3t-key";

fn hoqu(env: &Env) -> Dest {
    Dest::hoqu(
        "hoqu",
        &format!("{}/hoqu", env.sandbox.base_url()),
        Hoqu::new("${TEST_HOQU_KEY}", "fixed")
            .action("sale")
            .status_wait_secs(0),
    )
    .retry(Retry::fast())
}

/// The journal's entries for `filter`, once there are at least `n`.
async fn entries(env: &Env, filter: Filter, n: usize) -> Vec<Entry> {
    let filter = Filter {
        limit: 1000,
        ..filter
    };
    env.until_journaled(&filter, n).await
}

fn by_order(order: &str) -> Filter {
    Filter {
        order_id: Some(order.into()),
        ..Filter::default()
    }
}

#[tokio::test]
async fn every_call_and_outcome_is_journaled_with_its_secrets_redacted() {
    every_call_and_outcome(Env::new().await).await;
}

#[tokio::test]
async fn every_call_and_outcome_is_journaled_in_postgresql() {
    every_call_and_outcome(Env::with_postgres_journal().await).await;
}

async fn every_call_and_outcome(env: Env) {
    env.sandbox
        .add_rule(&Rule::answer(503).on_path("/hoqu").times(1))
        .await
        .unwrap();
    let config = env
        .config()
        .destination(hoqu(&env))
        .var("TEST_HOQU_KEY", KEY);
    let running = env.start(&config).await;
    let body = Event::attributed("j-1", "order", "hoqu", "clk-j1")
        .order("10045", "89.90")
        .body();
    env.publish(&body).await;
    until(&running, "the event acked", |m| m.events_acked.get() >= 1).await;

    let found = entries(&env, by_order("10045"), 2).await;
    assert_eq!(found.len(), 2, "{found:#?}");
    let (first, second) = (&found[0], &found[1]);
    assert_eq!(first.attempt, 1);
    assert_eq!(
        first.outcome,
        Outcome::RetryScheduled("in_process".into()),
        "a 503 followed by another try in-process"
    );
    assert_eq!(first.http_status, Some(503));
    assert_eq!(first.response.as_deref(), Some("sandbox answered 503"));
    assert_eq!(second.attempt, 2);
    assert_eq!(second.outcome, Outcome::Delivered);
    assert_eq!(second.http_status, Some(200));
    assert!(second.latency_ms.is_some_and(|l| l >= 0.0));
    for e in &found {
        assert_eq!(
            (e.event_id.as_str(), e.destination.as_str()),
            ("j-1", "hoqu")
        );
        assert_eq!(e.event_type, "order");
        let request = e.request.as_deref().expect("the request as sent");
        assert!(request.contains("REDACTED"), "{request}");
        assert!(!request.contains(KEY), "a secret in the journal: {request}");
    }
    let reader = postback_relay::journal::Reader::open(&env.journal_config())
        .await
        .unwrap();
    let kept = reader.event("j-1").await.unwrap().expect("the event kept");
    assert_eq!(
        kept.as_bytes(),
        body,
        "the event as published, to send again"
    );

    // The same event again: accepted before, a duplicate, no call.
    env.publish(&body).await;
    until(&running, "the second copy acked", |m| {
        m.events_acked.get() >= 2
    })
    .await;
    let found = entries(&env, by_order("10045"), 3).await;
    assert_eq!(found[2].outcome, Outcome::Duplicate);
    assert_eq!(found[2].http_status, None);
    assert_eq!(env.sandbox.requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_dead_letter_and_a_retry_tier_are_journaled_and_deliveries_shows_the_timeline() {
    let env = Env::new().await;
    env.sandbox
        .add_rule(&Rule::answer(404).on_query("clk-gone"))
        .await
        .unwrap();
    env.sandbox
        .add_rule(&Rule::answer(500).on_query("clk-late").times(3))
        .await
        .unwrap();
    let config = env
        .config()
        .destination(hoqu(&env))
        .var("TEST_HOQU_KEY", KEY);
    let running = env.start(&config).await;
    for (id, click, order) in [
        ("j-gone", "clk-gone", "o-gone"),
        ("j-late", "clk-late", "o-late"),
    ] {
        let e = Event::attributed(id, "order", "hoqu", click).order(order, "10");
        env.publish(&e.body()).await;
    }
    until(&running, "both delivered or dead", |m| {
        m.events_acked.get() >= 2
    })
    .await;

    let gone = entries(&env, by_order("o-gone"), 1).await;
    assert_eq!(gone.len(), 1, "{gone:#?}");
    assert_eq!(
        gone[0].outcome,
        Outcome::DeadLettered("partner_rejected".into())
    );
    assert_eq!(gone[0].http_status, Some(404));
    // Three 500s in-process, then a delay tier, then delivered from the deliveries queue.
    let late = entries(&env, by_order("o-late"), 4).await;
    let outcomes: Vec<_> = late
        .iter()
        .map(|e| (e.attempt, e.outcome.clone()))
        .collect();
    assert_eq!(
        outcomes[0],
        (1, Outcome::RetryScheduled("in_process".into()))
    );
    assert_eq!(
        outcomes[1],
        (2, Outcome::RetryScheduled("in_process".into()))
    );
    assert!(
        matches!(&outcomes[2], (3, Outcome::RetryScheduled(tier)) if tier != "in_process"),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[3], (4, Outcome::Delivered));

    let dir = tempfile::tempdir().unwrap();
    let path = config.write(&dir);
    let out = Cli::new(&["deliveries", "--config", &path, "--order-id", "o-late"])
        .env("TEST_HOQU_KEY", KEY)
        .ok();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("j-late -> hoqu  (order, order o-late): delivered"),
        "{text}"
    );
    assert_eq!(text.matches("HTTP 500").count(), 3, "{text}");
    assert!(!text.contains(KEY), "{text}");

    let out = Cli::new(&[
        "deliveries",
        "--config",
        &path,
        "--destination",
        "hoqu",
        "--since",
        "2000-01-01T00:00:00Z",
        "--outcome",
        "dead_lettered",
        "--format",
        "json",
    ])
    .env("TEST_HOQU_KEY", KEY)
    .ok();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let timelines = json.as_array().unwrap();
    assert_eq!(timelines.len(), 1, "{json:#}");
    assert_eq!(timelines[0]["event_id"], "j-gone");
    assert_eq!(timelines[0]["outcome"], "dead_lettered (partner_rejected)");
}

#[tokio::test]
async fn deliveries_refuses_bad_input_with_a_clear_message() {
    let env = Env::new().await;
    let dir = tempfile::tempdir().unwrap();
    let path = env.default_config().write(&dir);
    let refused = |args: &[&str], says: &str| {
        let out = Cli::new(&["deliveries", "--config", &path])
            .args(args)
            .output();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    };
    refused(
        &[],
        "give --event-id, --order-id, or --destination with --since",
    );
    refused(
        &["--destination", "nope", "--since", "2026-11-20T14:00:00Z"],
        "destination \"nope\" is not in the configuration",
    );
    refused(
        &[
            "--destination",
            "powerspace",
            "--since",
            "2026-11-20T16:00:00Z",
            "--until",
            "2026-11-20T14:00:00Z",
        ],
        "is before --since",
    );
    refused(&["--event-id", " "], "--event-id");
    // No relay has run: no journal yet, and none is created by asking.
    let out = Cli::new(&["deliveries", "--config", &path, "--event-id", "e"]).output();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no journal at"), "{}", stderr(&out));
    assert!(!env.journal_path().exists());
}

#[tokio::test]
async fn an_unreachable_postgresql_journal_holds_up_no_delivery() {
    let env = Env::new().await;
    // Nothing listens there: every commit fails, is tried again, and in the end is counted.
    let config = env
        .default_config()
        .journal_postgres("postgres://postgres:postgres@127.0.0.1:1/none");
    let running = env.start(&config).await;
    for i in 0..5 {
        env.publish(&common::event(
            &format!("u-{i}"),
            "order",
            &format!("c{i}"),
            Some("1.00"),
        ))
        .await;
    }
    until(&running, "5 events delivered and acked", |m| {
        m.events_acked.get() >= 5 && common::deliveries(m, "powerspace", "delivered") >= 5
    })
    .await;
    let scrape = reqwest::get(format!("http://{}/metrics", running.http_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        scrape.contains("postback_relay_journal_written_total 0"),
        "nothing could be written"
    );
}

/// What `deliveries` says of a delivery and of a query cut at its limit: an event published
/// again after it was delivered reads `delivered` (its second pass, `duplicate`, is in its
/// timeline); a query that stops at `--limit` says so and how to read on; a partner's answer
/// is kept as README says, its first 1 KiB; an event no destination took is kept too.
#[tokio::test]
async fn deliveries_headlines_the_state_says_when_it_stops_and_keeps_1_kib_of_an_answer() {
    let env = Env::new().await;
    // The partner echoes the request: a 3 KiB click id makes a 3 KiB answer.
    env.sandbox
        .add_rule(&Rule::answer(200).on_query("long-").echoing())
        .await
        .unwrap();
    let config = env.default_config();
    let running = env.start(&config).await;
    let again = common::event("twice", "lead", "clk-twice", None);
    env.publish(&again).await;
    until(&running, "delivered", |m| {
        common::deliveries(m, "powerspace", "delivered") == 1
    })
    .await;
    env.publish(&again).await;
    until(&running, "the duplicate", |m| {
        common::deliveries(m, "powerspace", "duplicate") == 1
    })
    .await;
    let long = format!("long-{}", "x".repeat(3000));
    env.publish(&common::event("long", "lead", &long, None))
        .await;
    for i in 0..4 {
        env.publish(&common::event(
            &format!("n{i}"),
            "lead",
            &format!("c{i}"),
            None,
        ))
        .await;
    }
    // No destination takes this network: dead-lettered unroutable, and kept in the journal.
    let nowhere = Event::attributed("nowhere", "lead", "no-such-network", "c-x").body();
    env.publish(&nowhere).await;
    until(&running, "every event settled", |m| {
        m.events_acked.get() >= 8
    })
    .await;

    let all = Filter {
        limit: 1000,
        ..Filter::default()
    };
    let journaled = env.until_journaled(&all, 8).await;
    let answer = journaled
        .iter()
        .find(|e| e.event_id == "long")
        .and_then(|e| e.response.clone())
        .unwrap();
    assert_eq!(answer.len(), 1024, "the first 1 KiB of the answer");
    let unroutable = journaled.iter().find(|e| e.event_id == "nowhere").unwrap();
    assert_eq!(unroutable.destination, "");
    assert_eq!(
        unroutable.outcome,
        Outcome::DeadLettered("unroutable".into())
    );

    let dir = tempfile::tempdir().unwrap();
    let path = config.write(&dir);
    let out = Cli::new(&["deliveries", "--config", &path, "--event-id", "twice"]).ok();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("twice -> powerspace  (lead, order -): delivered"),
        "{text}"
    );
    assert!(text.contains("duplicate"), "{text}");
    let out = Cli::new(&["deliveries", "--config", &path, "--event-id", "nowhere"]).ok();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(
            "nowhere -> (no destination)  (lead, order -): dead_lettered (unroutable)"
        ),
        "{text}"
    );
    let since = "2000-01-01T00:00:00Z";
    let args = [
        "deliveries",
        "--config",
        &path,
        "--destination",
        "powerspace",
    ];
    let out = Cli::new(&args)
        .args(&["--since", since, "--limit", "3"])
        .ok();
    let note = stderr(&out);
    assert!(
        note.contains("only the first 3 entries are shown") && note.contains("--since 20"),
        "{note}"
    );
    let out = Cli::new(&args).args(&["--since", since]).ok();
    assert!(!stderr(&out).contains("only the first"), "{}", stderr(&out));
}
