//! `dlq stats`, `dlq list` and `replay`, as an operator runs them, against the real RabbitMQ.

mod common;

use std::collections::HashMap;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::process::BIN;
use common::{Cli, Env, Event, RelayProcess, amqp_url, deliveries, event, eventually, until};
use postback_relay::relay::deadletter::{Envelope, Reason, Source};
use postback_relay::relay::delivery::Delivery;

/// A command on this test's queues; it must succeed.
fn cli(env: &Env, args: &[&str]) -> Output {
    Cli::new(args).on(env).ok()
}

/// The same, run off this test's runtime: a relay running in the test keeps every thread of
/// it while the command runs (the command may wait on that relay, for the reader lock).
async fn cli_beside_relay(env: &Env, args: &[&str]) -> Output {
    let cli = Cli::new(args).on(env);
    tokio::task::spawn_blocking(move || cli.ok()).await.unwrap()
}

/// Waits until `queue` holds `n` ready messages: messages a closed channel held come back
/// to the queue a moment after the command has exited.
async fn settles_at(env: &Env, queue: &str, n: u32) {
    eventually(
        Duration::from_secs(10),
        &format!("{queue} holds {n}"),
        || async move { env.ready(queue).await == n },
    )
    .await;
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Puts `n` dead letters in the queue: destinations `a` and `b` in turn, partner_rejected,
/// with one invalid event every fifth.
async fn fill(env: &Env, n: usize) -> Vec<String> {
    env.declare().await;
    let source = Source {
        queue: "events".into(),
        routing_key: "lead".into(),
        message_id: None,
        redelivered: false,
    };
    let mut ids = Vec::new();
    for i in 0..n {
        let body = event(&format!("e{i}"), "lead", &format!("c{i}"), None);
        let mut env_ = if i % 5 == 4 {
            Envelope::for_message(
                Reason::InvalidEvent,
                "bad".into(),
                b"{\"x\":1}",
                None,
                source.clone(),
            )
        } else {
            let mut e = Envelope::for_message(
                Reason::PartnerRejected,
                "HTTP 404".into(),
                &body,
                None,
                source.clone(),
            );
            e.destination = Some(if i % 2 == 0 { "a" } else { "b" }.into());
            e.attempts = 1;
            e
        };
        env_.dead_lettered_at = chrono::Utc::now();
        ids.push(env_.dead_letter_id.to_string());
        let bytes = serde_json::to_vec(&env_).unwrap();
        env.publisher
            .publish_json("", &env.topology().dead, &bytes, None, None)
            .await
            .unwrap();
    }
    ids
}

fn listed_ids(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["dead_letter_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Takes every delivery out of the deliveries queue.
async fn take_deliveries(env: &Env) -> Vec<Delivery> {
    env.drain(&env.topology().deliveries)
        .await
        .iter()
        .map(|m| serde_json::from_slice(&m.data).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_and_list_read_without_consuming() {
    let env = Env::new().await;
    let ids = fill(&env, 20).await;

    let stats = json(&cli(&env, &["dlq", "stats", "--format", "json"]));
    assert_eq!(stats["total"], 20);
    assert_eq!(stats["by_destination_reason"]["a"]["partner_rejected"], 8);
    assert_eq!(stats["by_destination_reason"]["b"]["partner_rejected"], 8);
    assert_eq!(stats["by_destination_reason"]["-"]["invalid_event"], 4);
    assert!(stats["oldest"].as_str().unwrap() <= stats["newest"].as_str().unwrap());

    settles_at(&env, &env.topology().dead, 20).await;
    let all = json(&cli(&env, &["dlq", "list", "--format", "json"]));
    assert_eq!(listed_ids(&all), ids, "every dead letter, in queue order");
    settles_at(&env, &env.topology().dead, 20).await;
    let b = json(&cli(
        &env,
        &[
            "dlq",
            "list",
            "--format",
            "json",
            "--destination",
            "b",
            "--limit",
            "3",
        ],
    ));
    assert_eq!(b.as_array().unwrap().len(), 3);
    assert!(
        b.as_array()
            .unwrap()
            .iter()
            .all(|e| e["destination"] == "b")
    );
    let text =
        String::from_utf8(cli(&env, &["dlq", "list", "--reason", "invalid_event"]).stdout).unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");

    // Nothing was consumed, and the order is unchanged.
    settles_at(&env, &env.topology().dead, 20).await;
    assert_eq!(
        listed_ids(&json(&cli(&env, &["dlq", "list", "--format", "json"]))),
        ids
    );
}

/// What a producer wrote is printed with its control characters escaped, so that a dead
/// letter cannot drive the operator's terminal; and a window that ends before it starts is
/// refused by `dlq list` and `replay` alike, the queue untouched.
#[tokio::test(flavor = "multi_thread")]
async fn listing_escapes_control_characters_and_a_backwards_window_is_refused() {
    let env = Env::new().await;
    env.declare().await;
    // An event id that would set the terminal's title and clear its screen.
    let body = br#"{"event_id":"x\u001b]0;PWNED\u0007\u001b[2J","type":"lead"}"#;
    publish_dead(&env, body, None).await;
    settles_at(&env, &env.topology().dead, 1).await;
    let text = String::from_utf8(cli(&env, &["dlq", "list"]).stdout).unwrap();
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
    assert!(text.contains(r"\u{1b}]0;PWNED\u{7}"), "{text}");
    settles_at(&env, &env.topology().dead, 1).await;
    let backwards = [
        "--since",
        "2026-11-20T16:00:00Z",
        "--until",
        "2026-11-20T14:00:00Z",
    ];
    for command in [&["dlq", "list"][..], &["replay"][..]] {
        let out = Cli::new(command).args(&backwards).on(&env).output();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {said}");
        assert!(said.contains("is before --since"), "{command:?}: {said}");
    }
    settles_at(&env, &env.topology().dead, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn filtered_replay_moves_exactly_the_matching_and_keeps_the_rest_in_order() {
    let env = Env::new().await;
    let ids = fill(&env, 20).await;
    let all = json(&cli(&env, &["dlq", "list", "--format", "json"]));
    let is_b = |e: &serde_json::Value| e["destination"] == "b";
    let b_ids: Vec<String> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| is_b(e))
        .map(|e| e["dead_letter_id"].as_str().unwrap().to_owned())
        .collect();
    let others: Vec<String> = ids
        .iter()
        .filter(|id| !b_ids.contains(id))
        .cloned()
        .collect();

    // A dry run changes nothing.
    let dry = cli(&env, &["replay", "--destination", "b", "--dry-run"]);
    assert!(
        String::from_utf8_lossy(&dry.stderr).contains("8 of 20 dead letters would be replayed")
    );
    settles_at(&env, &env.topology().dead, 20).await;
    settles_at(&env, &env.topology().deliveries, 0).await;

    let out = cli(
        &env,
        &[
            "replay",
            "--destination",
            "b",
            "--reason",
            "partner_rejected",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("replayed 8 dead letter(s)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    settles_at(&env, &env.topology().dead, 12).await;
    let left = json(&cli(&env, &["dlq", "list", "--format", "json"]));
    assert_eq!(listed_ids(&left), others, "the others stay, in their order");
    let replayed = take_deliveries(&env).await;
    assert_eq!(replayed.len(), 8);
    let mut replay_of: Vec<String> = replayed
        .iter()
        .map(|d| d.replay_of.unwrap().to_string())
        .collect();
    assert_eq!(replay_of, b_ids, "in order");
    replay_of.sort();
    replay_of.dedup();
    assert_eq!(replay_of.len(), 8);
    assert!(
        replayed
            .iter()
            .all(|d| d.destination == "b" && d.attempts == 0 && d.history.is_empty()),
        "a fresh budget"
    );

    // --limit takes the first N matching.
    let out = cli(
        &env,
        &["replay", "--reason", "invalid_event", "--limit", "2"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("replayed 2 dead letter(s)"));
    settles_at(&env, &env.topology().dead, 10).await;
    // Events that failed before routing go back through the events queue.
    settles_at(&env, &env.topology().events, 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replayed_dead_letters_are_delivered_by_the_relay() {
    let env = Env::new().await;
    env.sandbox
        .add_rule(&postback_relay::interfaces::sandbox::Rule::answer(404))
        .await
        .unwrap();
    let running = env.start(&env.default_config()).await;
    env.declare().await;
    for i in 0..3 {
        env.publish(&event(&format!("r{i}"), "lead", &format!("c{i}"), None))
            .await;
    }
    until(&running, "three dead letters", |m| {
        deliveries(m, "powerspace", "dead_lettered") == 3
    })
    .await;
    // The partner fixes its side; the operator replays.
    env.sandbox.clear_rules().await.unwrap();
    let replayed = cli_beside_relay(&env, &["replay", "--destination", "powerspace"]).await;
    let said = String::from_utf8_lossy(&replayed.stdout).into_owned();
    until(&running, &format!("three delivered after: {said}"), |m| {
        deliveries(m, "powerspace", "delivered") == 3
    })
    .await;
    let ok = env
        .sandbox
        .requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.status == 200)
        .count();
    assert_eq!(ok, 3);
    settles_at(&env, &env.topology().dead, 0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_killed_halfway_then_rerun_loses_nothing() {
    const N: usize = 3000;
    let env = Env::new().await;
    let ids = fill(&env, N).await;
    let deliveries = env.topology().deliveries;
    let events = env.topology().events;

    let replay = RelayProcess::spawn(
        &[
            "replay",
            "--amqp-url",
            &amqp_url(),
            "--queue-prefix",
            &env.prefix,
        ],
        &[],
        None,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let moved = env.ready(&deliveries).await + env.ready(&events).await;
        if moved as usize >= N / 3 {
            break;
        }
        assert!(Instant::now() < deadline, "replay made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(replay); // SIGKILL
    let moved_at_kill = env.ready(&deliveries).await + env.ready(&events).await;
    assert!(
        (moved_at_kill as usize) < N,
        "the kill must land halfway ({moved_at_kill} of {N})"
    );
    // The dead letters it held unacknowledged are back in the queue.
    eventually(Duration::from_secs(10), "the rest back in the dead-letter queue", || {
        let env = &env;
        async move { env.ready(&env.topology().dead).await as usize + moved_at_kill as usize >= N }
    })
    .await;

    cli(&env, &["replay"]);
    assert_eq!(
        env.ready(&env.topology().dead).await,
        0,
        "everything replayed"
    );

    // Each dead letter replayed once; only the one between its confirm and its ack at the
    // kill can have gone twice.
    let mut count: HashMap<String, usize> = HashMap::new();
    for d in take_deliveries(&env).await {
        *count.entry(d.replay_of.unwrap().to_string()).or_default() += 1;
    }
    // Events that failed before routing went back to the events queue as they were.
    env.drain(&events).await;
    let destination_ids: Vec<&String> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 5 != 4)
        .map(|(_, id)| id)
        .collect();
    let missing = destination_ids
        .iter()
        .filter(|id| !count.contains_key(**id))
        .count();
    let doubled: usize = destination_ids
        .iter()
        .filter_map(|id| count.get(*id))
        .filter(|c| **c > 1)
        .count();
    eprintln!(
        "replay killed after {moved_at_kill} of {N}; re-run: missing {missing}, replayed twice {doubled}"
    );
    assert_eq!(missing, 0, "no dead letter lost");
    assert!(
        doubled <= 1,
        "at most the one in flight at the kill: {doubled}"
    );
}

/// An envelope for destination `a`, dead-lettered `age_secs` ago.
fn aged_envelope(i: usize, age_secs: i64) -> Envelope {
    let source = Source {
        queue: "events".into(),
        routing_key: "lead".into(),
        message_id: None,
        redelivered: false,
    };
    let body = event(&format!("aged{i}"), "lead", &format!("c{i}"), None);
    let mut e = Envelope::for_message(
        Reason::PartnerRejected,
        "HTTP 404".into(),
        &body,
        None,
        source,
    );
    e.destination = Some("a".into());
    e.dead_lettered_at = chrono::Utc::now() - chrono::Duration::seconds(age_secs);
    e
}

async fn publish_dead(env: &Env, body: &[u8], headers: Option<lapin::types::FieldTable>) {
    env.publisher
        .publish_json("", &env.topology().dead, body, None, headers)
        .await
        .unwrap();
}

/// The headers the broker puts on a message it dead-letters itself, moved `age_secs` ago
/// from `queue` for `reason`.
fn x_death(queue: &str, reason: &str, age_secs: i64) -> lapin::types::FieldTable {
    use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString};
    let at = (chrono::Utc::now().timestamp() - age_secs) as u64;
    let mut death = FieldTable::default();
    death.insert(
        "queue".into(),
        AMQPValue::LongString(LongString::from(queue)),
    );
    death.insert(
        "reason".into(),
        AMQPValue::LongString(LongString::from(reason)),
    );
    death.insert("count".into(), AMQPValue::LongLongInt(1));
    death.insert("time".into(), AMQPValue::Timestamp(at));
    let mut h = FieldTable::default();
    h.insert(
        "x-death".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
    );
    h.insert(
        "x-first-death-reason".into(),
        AMQPValue::LongString(LongString::from(reason)),
    );
    h.insert(
        "x-first-death-queue".into(),
        AMQPValue::LongString(LongString::from(queue)),
    );
    h
}

/// A relay on this test's queues that samples them every second.
async fn sampling_relay(env: &Env) -> postback_relay::relay::Running {
    env.start(&env.default_config().queue_sample_secs(1)).await
}

/// Lets a relay sample its queues `n` times: the point is to give the sampler time to act.
async fn sample_periods(n: u64) {
    tokio::time::sleep(Duration::from_secs(n)).await;
}

fn close_to(age: i64, expected: i64) -> bool {
    (expected..expected + 30).contains(&age)
}

#[tokio::test(flavor = "multi_thread")]
async fn sampling_the_oldest_dead_letter_moves_none() {
    let env = Env::new().await;
    env.declare().await;
    // Oldest first, as the relay writes them.
    let ages = [5000, 4000, 3000, 2000, 1000, 500];
    let mut ids = Vec::new();
    for (i, age) in ages.iter().enumerate() {
        let e = aged_envelope(i, *age);
        ids.push(e.dead_letter_id.to_string());
        publish_dead(&env, &serde_json::to_vec(&e).unwrap(), None).await;
    }
    // An operator looked at them once.
    assert_eq!(
        listed_ids(&json(&cli(&env, &["dlq", "list", "--format", "json"]))),
        ids
    );
    settles_at(&env, &env.topology().dead, 6).await;

    let running = sampling_relay(&env).await;
    sample_periods(4).await;
    let age = running.metrics.oldest_dead_letter_age.get();
    assert!(
        close_to(age, 5000),
        "the oldest is 5000 s old; reported {age}"
    );
    settles_at(&env, &env.topology().dead, 6).await;
    assert_eq!(
        listed_ids(&json(
            &cli_beside_relay(&env, &["dlq", "list", "--format", "json"]).await
        )),
        ids,
        "still in their order, oldest first, after the relay sampled them"
    );
    sample_periods(3).await;
    settles_at(&env, &env.topology().dead, 6).await;
    assert_eq!(
        listed_ids(&json(
            &cli_beside_relay(&env, &["dlq", "list", "--format", "json"]).await
        )),
        ids
    );
    let age = running.metrics.oldest_dead_letter_age.get();
    assert!(close_to(age, 5000), "reported {age}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_oldest_dead_letter_is_found_wherever_it_is() {
    let env = Env::new().await;
    env.declare().await;
    // Not in time order: a newer one first, the oldest (moved by the broker) in the middle.
    let first = aged_envelope(0, 100);
    publish_dead(&env, &serde_json::to_vec(&first).unwrap(), None).await;
    let deliveries = env.topology().deliveries;
    publish_dead(
        &env,
        br#"{"not":"a delivery"}"#,
        Some(x_death(&deliveries, "delivery_limit", 9000)),
    )
    .await;
    let last = aged_envelope(2, 3000);
    publish_dead(&env, &serde_json::to_vec(&last).unwrap(), None).await;

    let running = sampling_relay(&env).await;
    let m = running.metrics.clone();
    eventually(Duration::from_secs(30), "the oldest one's age", || {
        let age = m.oldest_dead_letter_age.get();
        async move { close_to(age, 9000) }
    })
    .await;
    settles_at(&env, &env.topology().dead, 3).await;
    let listed = json(&cli_beside_relay(&env, &["dlq", "list", "--format", "json"]).await);
    let order: Vec<Option<&str>> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["dead_letter_id"].as_str())
        .collect();
    let (a, b) = (
        first.dead_letter_id.to_string(),
        last.dead_letter_id.to_string(),
    );
    assert_eq!(order, [Some(a.as_str()), None, Some(b.as_str())]);
}

/// An event nested `depth` levels deep, that no destination takes.
fn deep_event(depth: usize) -> Vec<u8> {
    let nested = (0..depth).fold(serde_json::json!(1), |v, _| serde_json::json!([v]));
    Event::attributed("deep", "order", "nobody", "c")
        .set("/extra", nested)
        .body()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_odd_dead_letter_does_not_break_the_listing() {
    let env = Env::new().await;
    let ids = fill(&env, 3).await;
    // The relay dead-letters the deep one as unroutable.
    let running = env.start(&env.default_config()).await;
    env.publish(&deep_event(200)).await;
    let m = running.metrics.clone();
    eventually(
        Duration::from_secs(30),
        "the deep event dead-lettered",
        || {
            let n = m
                .dead_letters
                .with_label_values(&["none", "unroutable"])
                .get();
            async move { n == 1 }
        },
    )
    .await;
    // And the same envelope, put in the queue by hand, straight after the first.
    let deep_env = format!(
        r#"{{"schema":"postback-relay.dead-letter.v1","dead_letter_id":"{}","event_id":"deep2","destination":null,"reason":"unroutable","detail":"x","attempts":0,"first_attempt_at":null,"last_attempt_at":null,"dead_lettered_at":"2026-11-22T10:00:00Z","last_status":null,"last_error":null,"response_snippet":null,"request":null,"event":{},"raw_body":null,"history":[],"source":{{"queue":"q","routing_key":"order","redelivered":false}}}}"#,
        uuid::Uuid::now_v7(),
        String::from_utf8(deep_event(200)).unwrap()
    );
    publish_dead(&env, deep_env.as_bytes(), None).await;
    settles_at(&env, &env.topology().dead, 5).await;

    let out = cli_beside_relay(&env, &["dlq", "list", "--format", "json"]).await;
    let all = json(&out);
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 5, "every dead letter is listed");
    let normal: Vec<String> = all[..3]
        .iter()
        .map(|e| e["dead_letter_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(normal, ids, "the others, whole");
    for odd in &all[3..] {
        assert!(
            odd["note"].as_str().is_some_and(|n| !n.is_empty()),
            "the odd one carries a note: {odd}"
        );
    }
    assert!(
        all[3]["event_id"] == "deep" && all[4]["event_id"] == "deep2",
        "{all:?}"
    );

    let text = String::from_utf8(cli(&env, &["dlq", "list"]).stdout).unwrap();
    assert_eq!(text.lines().count(), 5, "{text}");
    settles_at(&env, &env.topology().dead, 5).await;
    let stats = json(&cli(&env, &["dlq", "stats", "--format", "json"]));
    assert_eq!(stats["total"], 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn reading_ends_on_the_count_and_keeps_the_order() {
    // More than a quorum queue hands one consumer without a prefetch limit.
    const N: usize = 2600;
    let env = Env::new().await;
    let ids = fill(&env, N).await;
    for pass in 0..2 {
        let listed = listed_ids(&json(&cli(&env, &["dlq", "list", "--format", "json"])));
        assert_eq!(listed.len(), N, "exactly the {N}");
        let moved = listed.iter().zip(&ids).position(|(a, b)| a != b);
        assert_eq!(
            moved, None,
            "in their order (read {pass}): first out of place"
        );
        settles_at(&env, &env.topology().dead, N as u32).await;
    }
    let dry = cli(&env, &["replay", "--destination", "b", "--dry-run"]);
    let said = String::from_utf8_lossy(&dry.stderr).into_owned();
    assert!(
        said.contains(&format!("of {N} dead letters would be replayed")),
        "{said}"
    );
    settles_at(&env, &env.topology().dead, N as u32).await;
    assert_eq!(
        listed_ids(&json(&cli(&env, &["dlq", "list", "--format", "json"]))),
        ids,
        "a dry run keeps the order"
    );
    let stats = json(&cli(&env, &["dlq", "stats", "--format", "json"]));
    assert_eq!(stats["total"], N);
    // A limited replay reads on to the end, so the rest keep their order.
    settles_at(&env, &env.topology().dead, N as u32).await;
    cli(&env, &["replay", "--destination", "a", "--limit", "3"]);
    settles_at(&env, &env.topology().dead, N as u32 - 3).await;
    let replayed: Vec<String> = take_deliveries(&env)
        .await
        .iter()
        .map(|d| d.replay_of.unwrap().to_string())
        .collect();
    assert_eq!(replayed, [ids[0].clone(), ids[2].clone(), ids[6].clone()]);
    let rest: Vec<String> = ids
        .iter()
        .filter(|id| !replayed.contains(id))
        .cloned()
        .collect();
    assert_eq!(
        listed_ids(&json(&cli(&env, &["dlq", "list", "--format", "json"]))),
        rest
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_moved_by_the_broker_is_replayed_with_a_fresh_budget() {
    let env = Env::new().await;
    env.declare().await;
    let deliveries = env.topology().deliveries;
    let old = chrono::Utc::now() - chrono::Duration::hours(30);
    let ev = serde_json::value::RawValue::from_string(
        String::from_utf8(event("moved", "lead", "c1", None)).unwrap(),
    )
    .unwrap();
    let mut d = Delivery::new("moved".into(), "powerspace".into(), ev, old);
    d.attempts = 7;
    d.retries = 3;
    d.record([postback_relay::relay::delivery::AttemptRecord {
        at: old,
        result: "5xx".into(),
        status: Some(503),
        error: None,
    }]);
    publish_dead(
        &env,
        &serde_json::to_vec(&d).unwrap(),
        Some(x_death(&deliveries, "delivery_limit", 60)),
    )
    .await;
    let odd = br#"{"schema":"something else"}"#;
    publish_dead(&env, odd, Some(x_death(&deliveries, "delivery_limit", 60))).await;

    let out = cli(&env, &["replay"]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    let back = env.drain(&deliveries).await;
    assert_eq!(back.len(), 2);
    let fresh: Delivery = serde_json::from_slice(&back[0].data).unwrap();
    assert_eq!((fresh.attempts, fresh.retries), (0, 0), "a fresh budget");
    assert!(fresh.history.is_empty());
    assert!(chrono::Utc::now() - fresh.first_attempt_at < chrono::Duration::minutes(5));
    assert_eq!(fresh.event.get(), d.event.get());
    assert_eq!(
        (fresh.event_id.as_str(), fresh.destination.as_str()),
        ("moved", "powerspace")
    );
    assert_eq!(
        &back[1].data[..],
        &odd[..],
        "not a delivery: sent back as it was"
    );
    assert!(said.contains("replayed 2 dead letter(s)"), "{said}");
    assert!(
        said.contains("1 sent back as it was"),
        "says which went back unchanged: {said}"
    );
}

/// A benchmark more than a test: `cargo test --test dlq -- --ignored large --nocapture`.
/// Reads a large dead-letter queue twice and reports the peak memory of `dlq list`, which
/// holds one batch at a time, not the queue.
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn a_large_queue_is_read_in_order_in_bounded_memory() {
    const N: usize = 60_000;
    let env = Env::new().await;
    env.declare().await;
    let dead = env.topology().dead;
    let mut pending = std::collections::VecDeque::new();
    for i in 0..N {
        let mut e = aged_envelope(i, 0);
        e.event_id = Some(format!("big{i:06}"));
        let body = serde_json::to_vec(&e).unwrap();
        pending.push_back(
            env.publisher
                .send_json("", &dead, &body, None, None)
                .await
                .unwrap(),
        );
        if pending.len() >= 500 {
            postback_relay::relay::broker::confirmed(pending.pop_front().unwrap(), &dead)
                .await
                .unwrap();
        }
    }
    for p in pending {
        postback_relay::relay::broker::confirmed(p, &dead)
            .await
            .unwrap();
    }
    let expected: Vec<String> = (0..N).map(|i| format!("big{i:06}")).collect();
    for read in 0..2 {
        let rss = std::env::temp_dir().join(format!("{}.rss", env.prefix));
        let started = Instant::now();
        let out = Command::new("/usr/bin/time")
            .args(["-f", "%M", "-o"])
            .arg(&rss)
            .arg(BIN)
            .args([
                "dlq",
                "list",
                "--amqp-url",
                &amqp_url(),
                "--queue-prefix",
                &env.prefix,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let took = started.elapsed();
        let peak_kb: u64 = std::fs::read_to_string(&rss)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let _ = std::fs::remove_file(&rss);
        let listed: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.split_whitespace().nth(3).unwrap().to_owned())
            .collect();
        eprintln!(
            "read {read}: {} dead letters in {took:?}, peak memory {} MB",
            listed.len(),
            peak_kb / 1024
        );
        assert_eq!(listed.len(), N);
        let moved = listed.iter().zip(&expected).position(|(a, b)| a != b);
        assert_eq!(
            moved, None,
            "in their order (read {read}): first out of place"
        );
        assert!(peak_kb < 100 * 1024, "bounded: {peak_kb} kB");
        settles_at(&env, &dead, N as u32).await;
    }
}
