//! `dlq stats`, `dlq list` and `replay`, as an operator runs them, against the real RabbitMQ.

mod common;

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Env, amqp_url, event, eventually};
use postback_relay::deadletter::{Envelope, Reason, Source};
use postback_relay::delivery::Delivery;

const BIN: &str = env!("CARGO_BIN_EXE_postback-relay");

fn cli(env: &Env, args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .args(["--amqp-url", &amqp_url(), "--queue-prefix", &env.prefix])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
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
    env.cleanup().await;
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
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replayed_dead_letters_are_delivered_by_the_relay() {
    let env = Env::new().await;
    env.sandbox
        .add_rule(&postback_relay::sandbox::Rule::answer(404))
        .await
        .unwrap();
    let config =
        postback_relay::config::Config::from_toml(&env.config_toml(""), &|_| None).unwrap();
    let running = postback_relay::relay::start(config, env.shutdown.clone())
        .await
        .unwrap();
    env.declare().await;
    for i in 0..3 {
        env.publish(&event(&format!("r{i}"), "lead", &format!("c{i}"), None))
            .await;
    }
    let m = running.metrics.clone();
    eventually(Duration::from_secs(30), "three dead letters", || {
        let m = m.clone();
        async move {
            m.deliveries
                .with_label_values(&["powerspace", "dead_lettered"])
                .get()
                == 3
        }
    })
    .await;
    // The partner fixes its side; the operator replays.
    env.sandbox.clear_rules().await.unwrap();
    cli(&env, &["replay", "--destination", "powerspace"]);
    eventually(Duration::from_secs(30), "three delivered", || {
        let m = m.clone();
        async move {
            m.deliveries
                .with_label_values(&["powerspace", "delivered"])
                .get()
                == 3
        }
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
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_killed_halfway_then_rerun_loses_nothing() {
    const N: usize = 3000;
    let env = Env::new().await;
    let ids = fill(&env, N).await;
    let deliveries = env.topology().deliveries;
    let events = env.topology().events;

    let mut child = Command::new(BIN)
        .args([
            "replay",
            "--amqp-url",
            &amqp_url(),
            "--queue-prefix",
            &env.prefix,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let moved = env.ready(&deliveries).await + env.ready(&events).await;
        if moved as usize >= N / 3 {
            break;
        }
        assert!(Instant::now() < deadline, "replay made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
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
    env.cleanup().await;
}
