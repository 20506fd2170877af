//! A RabbitMQ node goes away under a flow of 10,000 events: the node that leads the events
//! queue of a 3-node cluster (deploy/cluster/rabbitmq.sh) is killed with SIGKILL. The relay
//! moves to another node through `broker.failover_urls`; nothing is missing, and what arrives
//! twice is counted. Starting the cluster takes about 40 s, so the test is left out of
//! `cargo test`; run it with
//! `cargo test --test cluster -- --ignored --nocapture` (figures in docs/BENCHMARKS.md).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::partner::per_click;
use common::{Env, event, eventually};

const N: usize = 10_000;
const SCRIPT: &str = "deploy/cluster/rabbitmq.sh";

fn cluster(args: &[&str]) -> String {
    let out = Command::new(SCRIPT).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{SCRIPT} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stops the cluster when the test ends, whatever happens.
struct Cluster;

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(SCRIPT).arg("stop").status();
    }
}

/// The node (1, 2 or 3) leading quorum queue `queue`.
fn leader(queue: &str) -> Option<u8> {
    let listed: serde_json::Value = serde_json::from_str(&cluster(&["leader"])).ok()?;
    let leader = listed.as_array()?.iter().find(|q| q["name"] == queue)?["leader"]
        .as_str()?
        .to_owned();
    leader
        .strip_prefix("pbr-")?
        .chars()
        .next()?
        .to_digit(10)
        .map(|d| d as u8)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "starts a 3-node RabbitMQ cluster (about 40 s)"]
async fn the_node_leading_the_events_queue_killed_mid_flow_loses_nothing() {
    let _ = Command::new(SCRIPT).arg("stop").status();
    let _cluster = Cluster;
    let started = Instant::now();
    cluster(&["start"]);
    eprintln!("cluster started in {:?}", started.elapsed());
    let urls: Vec<String> = cluster(&["urls"]).lines().map(str::to_owned).collect();
    // The test publishes through node 2; the relay starts on node 1 and declares its queues
    // there, so that node 1 leads them (RabbitMQ places a quorum queue's leader on the
    // declaring node).
    // SAFETY: set before any thread of this test binary reads the environment.
    unsafe { std::env::set_var("AMQP_URL", &urls[1]) };
    let env = Env::new().await;
    let config = env.default_config().broker_nodes(&urls[0], &urls[1..], 3);
    let running = env.start(&config).await;
    env.until_consumed().await;
    let events = env.topology().events.clone();
    let lead = leader(&events).expect("the events queue has a leader");
    assert_ne!(lead, 2, "the publisher's node must not be the one killed");

    let publishing = async {
        for i in 0..N {
            env.publish(&event(&format!("k{i}"), "lead", &format!("kill-{i}"), None))
                .await;
        }
    };
    let killing = async {
        eventually(Duration::from_secs(120), "a third delivered", || async {
            env.sandbox.stats().await.unwrap().total >= (N / 3) as u64
        })
        .await;
        cluster(&["kill", &lead.to_string()]);
        let killed = Instant::now();
        let before = env.sandbox.stats().await.unwrap().total;
        eventually(Duration::from_secs(120), "deliveries again", || async {
            env.sandbox.stats().await.unwrap().total > before + 10
                && running.metrics.broker_connected.get() == 1
        })
        .await;
        killed.elapsed()
    };
    let ((), recovered_in) = tokio::join!(publishing, killing);
    eventually(
        Duration::from_secs(300),
        "every event delivered",
        || async {
            let per = per_click(&env.sandbox.requests().await.unwrap(), true);
            per.len() >= N
        },
    )
    .await;
    let per = per_click(&env.sandbox.requests().await.unwrap(), true);
    let missing = (0..N)
        .filter(|i| !per.contains_key(&format!("kill-{i}")))
        .count();
    let twice = per.values().filter(|c| **c > 1).count();
    eprintln!(
        "killed node {lead} (leader of the events queue) at a third of {N} events: \
         missing {missing}, delivered twice {twice}, deliveries again {recovered_in:?} after the kill, \
         reconnects {}",
        running.metrics.broker_reconnects.get()
    );
    assert_eq!(missing, 0, "events never delivered");
}
