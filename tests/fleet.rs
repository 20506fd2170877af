//! A fleet of relay processes sharing the Redis store behaves as one relay towards a partner:
//! one rate limit for all, one circuit for all, and one probe at a time when it is open.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::partner::{per_click, until_clicks};
use common::process::metric;
use common::{Circuit, Env, RelayProcess as Process, Retry, event, eventually, free_port};
use postback_relay::interfaces::sandbox::Rule;

const REPLICAS: usize = 3;

/// Three relay processes on `config`, each with its own metrics port.
fn fleet(config: common::ConfigBuilder, dir: &tempfile::TempDir) -> Vec<(Process, u16)> {
    (0..REPLICAS)
        .map(|i| {
            let port = free_port();
            let file = config
                .clone()
                .listen(&format!("127.0.0.1:{port}"))
                .write(dir);
            let mine = dir.path().join(format!("relay-{i}.toml"));
            std::fs::rename(&file, &mine).unwrap();
            (Process::run(mine.to_str().unwrap()), port)
        })
        .collect()
}

/// Until every replica consumes the events queue, so that each gets its share.
async fn until_all_consume(env: &Env) {
    let events = env.topology().events.clone();
    eventually(
        Duration::from_secs(30),
        "every replica consuming",
        || async { env.consumers(&events).await.unwrap_or(0) >= REPLICAS as u32 },
    )
    .await;
}

/// The most requests the partner saw in any one second.
fn busiest_second(times: &[DateTime<Utc>]) -> usize {
    let mut times = times.to_vec();
    times.sort();
    let mut most = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= chrono::Duration::seconds(1) {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_share_the_partners_rate_limit() {
    const N: usize = 60;
    const LIMIT: u32 = 10;
    let env = Env::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = env
        .config()
        .destination(
            env.powerspace()
                .timeout_ms(2000)
                .retry(Retry::durable(100, 400).max_age_secs(600))
                .rate_limit(LIMIT),
        )
        .redis();
    env.declare().await;
    let relays = fleet(config, &dir);
    until_all_consume(&env).await;
    for i in 0..N {
        env.publish(&event(&format!("r{i}"), "lead", &format!("rate-{i}"), None))
            .await;
    }
    until_clicks(
        &env.sandbox,
        N,
        true,
        Duration::from_secs(60),
        "every event",
    )
    .await;

    let requests = env.sandbox.requests().await.unwrap();
    let per = per_click(&requests, true);
    assert!(per.values().all(|c| *c == 1), "none twice");
    let times: Vec<_> = requests.iter().map(|r| r.received_at).collect();
    let busiest = busiest_second(&times);
    // The schedule has no burst: `LIMIT` slots a second, plus the one that starts the
    // window; one more for the partner's and the replicas' clocks.
    assert!(
        busiest <= LIMIT as usize + 2,
        "the partner saw {busiest} requests in one second; the fleet's limit is {LIMIT}"
    );
    let span = times
        .iter()
        .max()
        .unwrap()
        .signed_duration_since(*times.iter().min().unwrap());
    assert!(
        span >= chrono::Duration::milliseconds(((N as i64 - 1) * 1000 / LIMIT as i64) - 300),
        "{N} requests in {span}: faster than the limit"
    );

    // Every replica had its turns.
    let mut sent = Vec::new();
    for (_, port) in &relays {
        let n = metric(
            *port,
            "postback_relay_partner_requests_total",
            &["powerspace"],
        )
        .await
        .unwrap_or(0.0);
        sent.push(n);
    }
    assert_eq!(sent.iter().sum::<f64>() as usize, N, "{sent:?}");
    assert!(
        sent.iter().all(|n| *n >= 5.0),
        "each replica sends some of the fleet's requests: {sent:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_opens_the_circuit_for_the_whole_fleet_and_one_probe_at_a_time_closes_it() {
    const N: usize = 30;
    const OPEN_MS: u64 = 1_000;
    let env = Env::new().await;
    env.sandbox.add_rule(&Rule::answer(503)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = env
        .config()
        .destination(
            env.powerspace()
                .timeout_ms(2000)
                .retry(
                    Retry::durable(100, 400)
                        .max_attempts(1000)
                        .max_age_secs(600),
                )
                .circuit(Circuit::opens_after(3, OPEN_MS).enabled()),
        )
        .redis();
    env.declare().await;
    let relays = fleet(config, &dir);
    until_all_consume(&env).await;
    for i in 0..N {
        env.publish(&event(
            &format!("o{i}"),
            "lead",
            &format!("outage-{i}"),
            None,
        ))
        .await;
    }

    // Every replica sees the fleet's circuit open (or probing), having called or not.
    let ports: Vec<u16> = relays.iter().map(|(_, p)| *p).collect();
    eventually(
        Duration::from_secs(30),
        "the circuit open on every replica",
        || {
            let ports = ports.clone();
            async move {
                for p in ports {
                    let state = metric(p, "postback_relay_circuit_state", &["powerspace"]).await;
                    if !state.is_some_and(|s| s >= 1.0) {
                        return false;
                    }
                }
                true
            }
        },
    )
    .await;

    // While it stays down, the fleet sends one probe per pause, not one per replica.
    let before = env.sandbox.requests().await.unwrap().len();
    tokio::time::sleep(Duration::from_millis(3 * OPEN_MS)).await;
    let during = env.sandbox.requests().await.unwrap().len() - before;
    assert!(
        during <= 4,
        "{during} requests in {} pauses of an open circuit: more than one probe each",
        3
    );
    // The partner comes back: the next probe closes it, and everything is delivered once.
    env.sandbox.clear_rules().await.unwrap();
    until_clicks(
        &env.sandbox,
        N,
        true,
        Duration::from_secs(60),
        "every event",
    )
    .await;
    let per = per_click(&env.sandbox.requests().await.unwrap(), true);
    assert!(per.values().all(|c| *c == 1), "none twice");
    // The replicas that called since see it closed.
    let mut closed = 0;
    for p in &ports {
        if metric(*p, "postback_relay_circuit_state", &["powerspace"]).await == Some(0.0) {
            closed += 1;
        }
    }
    assert!(closed >= 1, "no replica saw the circuit close");
}

/// A partner that starts failing mid-flow gets, from the first failure on, no more calls than
/// the failures that open the circuit, the calls in flight when it opens (replicas ×
/// concurrency) and one probe per open interval: every delivery asks the fleet's circuit
/// right before its call, after its waits for a concurrency slot and the rate limit.
#[tokio::test(flavor = "multi_thread")]
async fn an_outage_gets_no_calls_past_the_opening_but_those_in_flight_and_the_probes() {
    const N: usize = 240;
    const THRESHOLD: usize = 3;
    const CONCURRENCY: usize = 2;
    const OPEN_MS: i64 = 1_000;
    let env = Env::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = env
        .config()
        .destination(
            env.powerspace()
                .timeout_ms(2000)
                .concurrency(CONCURRENCY)
                .rate_limit(40)
                .retry(
                    Retry::durable(100, 400)
                        .max_attempts(1000)
                        .max_age_secs(600),
                )
                .circuit(Circuit::opens_after(THRESHOLD as u32, OPEN_MS as u64).enabled()),
        )
        .redis();
    env.declare().await;
    let relays = fleet(config, &dir);
    until_all_consume(&env).await;
    for i in 0..N {
        env.publish(&event(&format!("m{i}"), "lead", &format!("mid-{i}"), None))
            .await;
    }
    // Mid-flow, with every replica's slots busy and deliveries queued behind the rate limit,
    // the partner starts failing, and stays down for three open intervals.
    common::partner::until_received(&env.sandbox, 30, Duration::from_secs(30), "the flow").await;
    env.sandbox.add_rule(&Rule::answer(503)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3 * OPEN_MS as u64)).await;
    env.sandbox.clear_rules().await.unwrap();

    common::partner::each_accepted_once(&env.sandbox, N, Duration::from_secs(90)).await;
    let requests = env.sandbox.requests().await.unwrap();
    let failed: Vec<_> = requests.iter().filter(|r| r.status == 503).collect();
    let (first, last) = (failed[0].received_at, failed[failed.len() - 1].received_at);
    // Counted from the first failure: every call up to the last one the outage answered.
    let during = requests
        .iter()
        .filter(|r| r.received_at >= first && r.received_at <= last)
        .count();
    let intervals = (last - first).num_milliseconds() / OPEN_MS + 1;
    let most = THRESHOLD + REPLICAS * CONCURRENCY + intervals as usize;
    eprintln!(
        "outage: {during} calls from the first failure to the last, over {} ms (at most {most})",
        (last - first).num_milliseconds()
    );
    assert!(
        during <= most,
        "{during} calls reached the partner during its outage of {} ms: at most {THRESHOLD} \
         failures to open the circuit, {} in flight and {intervals} probes may",
        (last - first).num_milliseconds(),
        REPLICAS * CONCURRENCY
    );
    drop(relays);
}
