//! Pausing a destination at runtime: its deliveries wait in the retry tiers without a call,
//! without spending attempts or age budget, for every relay on the store; resumed, each is
//! delivered once, a failed first call retried as if the pause had not been.

mod common;

use std::time::Duration;

use common::partner::until_clicks;
use common::process::{metric, stderr};
use common::redis::{Persist, Redis};
use common::{
    Circuit, Cli, ConfigBuilder, Env, RelayProcess, Retry, deliveries, event, eventually, until,
};
use postback_relay::interfaces::sandbox::Rule;
use postback_relay::relay::metrics::Metrics;

fn destination(env: &Env) -> common::Dest {
    // An age budget far shorter than the pause: a pause that spent it would dead-letter all.
    env.powerspace()
        .timeout_ms(1000)
        .retry(Retry::durable(200, 400).max_attempts(3).max_age_secs(2))
        .circuit(Circuit::opens_after(100, 1000))
}

fn paused(m: &Metrics) -> i64 {
    m.destination_paused
        .with_label_values(&["powerspace"])
        .get()
}

fn cli(verb: &str, config: &str) -> Cli {
    Cli::new(&["destination", verb, "--config", config])
}

fn retried(m: &Metrics) -> u64 {
    ["100ms", "200ms", "400ms", "800ms", "1600ms"]
        .iter()
        .map(|t| {
            m.retries_scheduled
                .with_label_values(&["powerspace", t])
                .get()
        })
        .sum()
}

async fn pause_hold_and_resume(env: &Env, config: ConfigBuilder, replicas: usize) {
    const N: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let file = config.write(&dir);
    let mut relays = Vec::new();
    for _ in 0..replicas {
        relays.push(env.start(&config).await);
    }
    let out = cli("pause", &file)
        .args(&["powerspace", "--by", "tester"])
        .ok();
    assert!(String::from_utf8_lossy(&out.stdout).contains("paused"));
    for r in &relays {
        until(r, "the pause seen", |m| paused(m) == 1).await;
    }
    let listed = String::from_utf8_lossy(&cli("list", &file).ok().stdout).into_owned();
    assert!(listed.contains("powerspace\tpaused by tester"), "{listed}");

    for i in 0..N {
        env.publish(&event(
            &format!("p{i}"),
            "lead",
            &format!("pause-{i}"),
            None,
        ))
        .await;
    }
    // Every delivery comes back and waits again, past its whole age budget (2 s).
    let metrics: Vec<Metrics> = relays.iter().map(|r| r.metrics.clone()).collect();
    let started = std::time::Instant::now();
    eventually(
        Duration::from_secs(30),
        "the deliveries held past their age budget",
        || {
            let total: u64 = metrics.iter().map(retried).sum();
            let done = total >= 4 * N as u64 && started.elapsed() > Duration::from_secs(3);
            async move { done }
        },
    )
    .await;
    let sent = env.sandbox.requests().await.unwrap();
    assert!(sent.is_empty(), "{} requests while paused", sent.len());

    // Once resumed, each event's first call fails: its retry is only scheduled if the pause
    // left its age budget (2 s, long spent on the clock) and its attempts (3) untouched.
    for i in 0..N {
        let fails_once = Rule::answer(503).on_query(&format!("pause-{i}")).times(1);
        env.sandbox.add_rule(&fails_once).await.unwrap();
    }
    let out = cli("resume", &file).args(&["powerspace"]).ok();
    assert!(String::from_utf8_lossy(&out.stdout).contains("resumed"));
    eventually(Duration::from_secs(30), "every delivery settled", || {
        let settled: u64 = metrics
            .iter()
            .map(|m| {
                deliveries(m, "powerspace", "delivered")
                    + deliveries(m, "powerspace", "dead_lettered")
            })
            .sum();
        async move { settled >= N as u64 }
    })
    .await;
    let dead = env.take_dead_letters().await;
    let why: Vec<_> = dead.iter().map(|d| d.detail.clone()).collect();
    assert!(dead.is_empty(), "the pause spent the budget: {why:?}");
    until_clicks(
        &env.sandbox,
        N,
        true,
        Duration::from_secs(30),
        "every event",
    )
    .await;
    let per = common::partner::per_click(&env.sandbox.requests().await.unwrap(), true);
    assert!(per.values().all(|c| *c == 1), "none twice");
    let second_try: u64 = metrics
        .iter()
        .map(|m| {
            m.delivered_on_attempt
                .with_label_values(&["powerspace", "2"])
                .get()
        })
        .sum();
    assert_eq!(second_try, N as u64, "the pause spent no attempt");
    for r in &relays {
        until(r, "the resume seen", |m| paused(m) == 0).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_destination_waits_and_resumes_with_the_embedded_store() {
    let env = Env::new().await;
    let config = env.config().destination(destination(&env));
    pause_hold_and_resume(&env, config, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pause_holds_the_whole_fleet_with_redis() {
    let env = Env::new().await;
    let config = env.config().destination(destination(&env)).redis();
    pause_hold_and_resume(&env, config, 2).await;
}

#[tokio::test]
async fn pausing_an_unknown_destination_is_refused_and_changes_nothing() {
    let env = Env::new().await;
    let dir = tempfile::tempdir().unwrap();
    let file = env.config().destination(destination(&env)).write(&dir);
    let out = cli("pause", &file).args(&["powrspace"]).output();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("\"powrspace\"") && err.contains("powerspace"),
        "{err}"
    );
    let listed = String::from_utf8_lossy(&cli("list", &file).ok().stdout).into_owned();
    assert!(listed.contains("no destination is paused"), "{listed}");
    let out = cli("resume", &file).args(&["powerspace"]).ok();
    assert!(String::from_utf8_lossy(&out.stdout).contains("was not paused"));
}

/// Redis comes back empty (a restart without its data): its hash of paused destinations is
/// gone, and an empty hash reads like nothing paused. Each relay finds the fleet's mark gone,
/// writes back the pause it knew, warns and counts it: the paused partner gets nothing, and
/// `destination list` still shows who paused it.
#[tokio::test(flavor = "multi_thread")]
async fn a_pause_outlives_a_redis_that_comes_back_empty() {
    const N: usize = 20;
    const REPLICAS: usize = 2;
    let Some(mut redis) = Redis::start(Persist::Nothing) else {
        return;
    };
    let env = Env::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = env
        .config()
        .destination(destination(&env))
        .redis_at(&redis.url());
    let relays: Vec<(RelayProcess, u16, std::path::PathBuf)> = (0..REPLICAS)
        .map(|i| {
            let port = common::free_port();
            let own = config
                .clone()
                .listen(&format!("127.0.0.1:{port}"))
                .write(&dir);
            let (mine, log) = (
                dir.path().join(format!("relay-{i}.toml")),
                dir.path().join(format!("relay-{i}.log")),
            );
            std::fs::rename(&own, &mine).unwrap();
            let process = RelayProcess::run_with(mine.to_str().unwrap(), &[], Some(&log));
            (process, port, log)
        })
        .collect();
    let file = dir.path().join("relay-0.toml").display().to_string();
    let on_every = |name: &'static str, want: f64| {
        let ports: Vec<u16> = relays.iter().map(|(_, p, _)| *p).collect();
        async move {
            for p in ports {
                if metric(p, name, &["powerspace"]).await != Some(want)
                    && metric(p, name, &[]).await != Some(want)
                {
                    return false;
                }
            }
            true
        }
    };
    eventually(Duration::from_secs(30), "every relay up", || {
        on_every("postback_relay_destination_paused", 0.0)
    })
    .await;
    cli("pause", &file)
        .args(&["powerspace", "--by", "tester"])
        .ok();
    eventually(Duration::from_secs(10), "the pause seen", || {
        on_every("postback_relay_destination_paused", 1.0)
    })
    .await;

    redis.down();
    redis.up();
    eventually(Duration::from_secs(30), "Redis' forgetting noticed", || {
        on_every("postback_relay_store_state_lost_total", 1.0)
    })
    .await;
    for i in 0..N {
        env.publish(&event(
            &format!("e{i}"),
            "lead",
            &format!("empty-{i}"),
            None,
        ))
        .await;
    }
    // Every event comes off the queue and waits, paused, for a few rounds.
    env.until_holds(
        &env.topology().events,
        0,
        Duration::from_secs(30),
        "events taken",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent = env.sandbox.requests().await.unwrap();
    assert!(
        sent.is_empty(),
        "{} requests to a paused partner",
        sent.len()
    );
    assert!(on_every("postback_relay_destination_paused", 1.0).await);
    let listed = String::from_utf8_lossy(&cli("list", &file).ok().stdout).into_owned();
    assert!(listed.contains("powerspace\tpaused by tester"), "{listed}");
    for (_, _, log) in &relays {
        let log = std::fs::read_to_string(log).unwrap();
        assert!(
            log.contains("forgot the fleet's state") && log.contains("\"WARN\""),
            "{log}"
        );
        assert!(!log.contains("destination resumed"), "{log}");
    }

    cli("resume", &file).args(&["powerspace"]).ok();
    common::partner::each_accepted_once(&env.sandbox, N, Duration::from_secs(30)).await;
}
