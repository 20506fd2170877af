//! The broker session under hostile conditions: consumers cancelled by the broker, connections
//! closed or gone silent, and stops that must finish within the grace whatever the session is
//! doing.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::broker::close_connections;
use common::partner::{per_click, until_clicks};
use common::proxy::Proxy;
use common::{Env, RelayProcess, deliveries, event, eventually, until};
use lapin::options::QueueDeleteOptions;
use postback_relay::interfaces::sandbox::Rule;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

async fn delete_queue(env: &Env, queue: &str) {
    env.channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_consumer_cancelled_by_the_broker_is_noticed_and_consuming_resumes() {
    let env = Env::new().await;
    let running = env.start(&env.default_config()).await;
    let t = env.topology();
    let health = running.health.clone();
    // Watch readiness from the side: it must drop while the relay has no consumer.
    let was_unready = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (health, flag) = (health.clone(), was_unready.clone());
        tokio::spawn(async move {
            loop {
                if !health.is_ready() {
                    flag.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    for (i, queue) in [t.events.clone(), t.deliveries.clone()].iter().enumerate() {
        was_unready.store(false, Ordering::SeqCst);
        // What the relay's own precondition error tells an operator to do.
        delete_queue(&env, queue).await;
        eventually(
            WAIT,
            &format!("{queue} declared and consumed again"),
            || {
                let (env, queue) = (&env, queue.clone());
                async move { env.consumers(&queue).await == Some(1) }
            },
        )
        .await;
        assert!(
            was_unready.load(Ordering::SeqCst),
            "/readyz said ready while {queue} had no consumer"
        );
        let m = running.metrics.clone();
        eventually(WAIT, "ready again", || {
            let (m, h) = (m.clone(), health.clone());
            async move { h.is_ready() && m.broker_reconnects.get() > i as u64 }
        })
        .await;
    }
    env.publish(&event("after", "lead", "after", None)).await;
    until(&running, "the event published afterwards delivered", |m| {
        deliveries(m, "powerspace", "delivered") == 1
    })
    .await;
    watcher.abort();
}

/// The grace in the test configs (`worker.shutdown_grace_secs`), and what a stop may take on
/// top of it.
const GRACE: Duration = Duration::from_secs(5);
const STOP_MARGIN: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_stop_finishes_within_the_grace_while_the_broker_never_answers() {
    let env = Env::new().await;
    // A port that accepts connections and never says a word, like a broker stuck at start-up.
    let hole = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("amqp://guest:guest@{}/%2f", hole.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let holder = {
        let accepted = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = hole.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                held.push(s);
            }
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let mut relay = RelayProcess::run(&env.default_config().broker_url(&url).write(&dir));
    eventually(WAIT, "the relay is connecting", || {
        let a = accepted.clone();
        async move { a.load(Ordering::SeqCst) > 0 }
    })
    .await;
    relay.signal_term();
    let status = relay.exited_within(GRACE + STOP_MARGIN).await;
    assert!(
        status.is_some(),
        "still running {:?} after SIGTERM while connecting",
        GRACE + STOP_MARGIN
    );
    holder.abort();
}

#[tokio::test]
async fn a_stop_finishes_within_the_grace_when_the_broker_goes_silent() {
    let env = Env::new().await;
    env.declare().await;
    let proxy = Proxy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut relay = RelayProcess::run(&env.default_config().broker_url(&proxy.url()).write(&dir));
    env.until_consumed().await;
    env.publish(&event("before", "lead", "before", None)).await;
    eventually(WAIT, "the first event delivered", || {
        let s = env.sandbox.clone();
        async move { s.requests().await.unwrap().len() == 1 }
    })
    .await;
    proxy.silence();
    relay.signal_term();
    let started = Instant::now();
    let status = relay.exited_within(GRACE + STOP_MARGIN).await;
    assert!(
        status.is_some(),
        "still running {:?} after SIGTERM with a silent broker",
        started.elapsed()
    );
}

/// Two relays on a Redis store while events flow; before each SIGTERM the broker closes both
/// relays' connections. Every stop must finish within the grace, and nothing may be lost or
/// doubled.
#[tokio::test(flavor = "multi_thread")]
async fn closing_connections_before_each_stop_loses_nothing_and_every_stop_finishes() {
    const ROUNDS: usize = 16;
    const N: usize = 1600;
    let env = Env::new().await;
    env.declare().await;
    let dir = tempfile::tempdir().unwrap();
    let config = env.default_config().redis().write(&dir);
    let mut relays = [RelayProcess::run(&config), RelayProcess::run(&config)];
    let publishing = async {
        for i in 0..N {
            env.publish(&event(&format!("s{i}"), "lead", &format!("stop-{i}"), None))
                .await;
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let faults = async {
        let mut slow_stops = Vec::new();
        for round in 0..ROUNDS {
            let prefix = env.prefix.clone();
            tokio::task::spawn_blocking(move || close_connections(&prefix))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(200 + 97 * (round as u64 % 9))).await;
            let victim = &mut relays[round % 2];
            victim.signal_term();
            if victim.exited_within(GRACE + STOP_MARGIN).await.is_none() {
                slow_stops.push(round);
            }
            *victim = RelayProcess::run(&config);
        }
        slow_stops
    };
    let ((), slow_stops) = tokio::join!(publishing, faults);
    let every = Duration::from_secs(120);
    until_clicks(&env.sandbox, N, true, every, "every event accepted").await;
    drop(relays);
    let accepted = per_click(&env.sandbox.requests().await.unwrap(), false);
    let doubled = accepted.values().filter(|c| **c > 1).count();
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "session suite: rounds {ROUNDS}, events {N}, stops over the grace {}, doubled {doubled}",
        slow_stops.len()
    );
    assert!(
        slow_stops.is_empty(),
        "stops that did not finish within the grace: rounds {slow_stops:?}"
    );
    assert_eq!(doubled, 0, "events accepted twice");
}

/// A stop that comes while the relay sets up its next session (the broker gone) still lets
/// the lost session's partner call finish; otherwise the process would exit with the call cut
/// off midway, and the redelivery would send it again.
#[tokio::test]
async fn a_stop_while_reconnecting_still_waits_for_the_lost_sessions_calls() {
    let env = Env::new().await;
    env.declare().await;
    let proxy = Proxy::start().await;
    // A slow partner: the call is still in flight when the connection is cut.
    env.sandbox
        .add_rule(&Rule::answer(200).after_ms(4000))
        .await
        .unwrap();
    let config = env
        .config()
        .destination(env.powerspace().timeout_ms(10000))
        .broker_url(&proxy.url());
    let stop = CancellationToken::new();
    let running = env.start_until(config.load(), stop.clone()).await;
    let in_flight = running.metrics.in_flight.with_label_values(&["powerspace"]);
    env.publish(&event("orphan", "lead", "orphan", None)).await;
    eventually(WAIT, "the partner call is in flight", || {
        let s = env.sandbox.clone();
        async move { s.requests().await.unwrap().len() == 1 }
    })
    .await;
    // The broker goes away mid-call, and the relay's next session hangs in its set-up.
    proxy.cut();
    eventually(WAIT, "the relay tries a new session", || {
        let held = proxy.held();
        async move { held > 0 }
    })
    .await;
    assert_eq!(in_flight.get(), 1, "the lost session's call is still going");
    let stopped_at = Instant::now();
    stop.cancel();
    running.wait().await.unwrap();
    let took = stopped_at.elapsed();
    assert!(took <= GRACE + STOP_MARGIN, "the stop took {took:?}");
    assert_eq!(
        in_flight.get(),
        0,
        "stopped after {took:?} with the lost session's partner call still in flight"
    );
}

/// The node the relay is on goes away (its connections reset, its address then accepting
/// connections and answering nothing, as a dead host behind a load balancer): the relay moves
/// to the next broker address within its connect timeout, and every event is delivered once.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_node_gone_moves_the_relay_to_the_next_address() {
    const N: usize = 200;
    let env = Env::new().await;
    let (first, second) = (Proxy::start().await, Proxy::start().await);
    let config = env
        .default_config()
        .broker_nodes(&first.url(), &[second.url()], 2);
    let running = env.start(&config).await;
    until(&running, "consuming through the first address", |m| {
        m.broker_connected.get() == 1
    })
    .await;
    let publishing = async {
        for i in 0..N {
            env.publish(&event(&format!("n{i}"), "lead", &format!("node-{i}"), None))
                .await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let failing = async {
        eventually(WAIT, "a quarter delivered", || async {
            env.sandbox.requests().await.unwrap().len() >= N / 4
        })
        .await;
        first.cut();
        let cut_at = Instant::now();
        eventually(WAIT, "the relay reconnected", || async {
            first.held() > 0 && running.metrics.broker_connected.get() == 1
        })
        .await;
        cut_at.elapsed()
    };
    let ((), moved_in) = tokio::join!(publishing, failing);
    until_clicks(
        &env.sandbox,
        N,
        true,
        Duration::from_secs(60),
        "every event",
    )
    .await;
    let per = per_click(&env.sandbox.requests().await.unwrap(), true);
    let twice: Vec<_> = per.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "delivered twice: {twice:?}");
    assert!(
        running.metrics.broker_reconnects.get() >= 1,
        "the relay reconnected"
    );
    eprintln!("moved to the next broker address in {moved_in:?}");
}

/// The node the relay is on goes silent (a host gone without a word: no reset, no close), and
/// the relay finds its connections dead by their heartbeats. It moves to the next address
/// without first waiting on connections it knows are dead: from the moment it stops being
/// ready, the reconnect's pause (0.5 s) and the silent node's connect timeout (2 s) are all
/// it takes.
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_broker_node_is_left_without_waiting_on_its_dead_connections() {
    let env = Env::new().await;
    let (first, second) = (Proxy::start().await, Proxy::start().await);
    let config = env.default_config().broker_nodes(
        &format!("{}?heartbeat=1", first.url()),
        &[second.url()],
        2,
    );
    let running = env.start(&config).await;
    first.silence();
    let silent_at = Instant::now();
    let health = running.health.clone();
    eventually(WAIT, "the silent node noticed", || {
        let h = health.clone();
        async move { !h.is_ready() }
    })
    .await;
    let noticed = silent_at.elapsed();
    eventually(WAIT, "consuming through the next address", || {
        let h = health.clone();
        async move { h.is_ready() }
    })
    .await;
    let moved = silent_at.elapsed() - noticed;
    eprintln!("noticed the silent node in {noticed:?}, consuming again {moved:?} later");
    assert!(
        moved < Duration::from_millis(3_500),
        "{moved:?} from noticing the dead node to consuming again: more than the pause and one connect timeout"
    );
    env.publish(&event("after", "lead", "after", None)).await;
    until(&running, "delivered through the next address", |m| {
        deliveries(m, "powerspace", "delivered") == 1
    })
    .await;
}
