//! The Redis store goes away in the middle of a flow and comes back: no delivery is sent
//! without its claim, none is lost, none is sent twice, and `/readyz` says the relay is
//! degraded meanwhile. The test runs a redis-server of its own (on a free port, with its
//! append-only file in a temporary directory, as a production Redis keeps its data), so
//! stopping it touches no other test.

mod common;

use std::time::Duration;

use common::partner::{per_click, until_clicks};
use common::redis::{Persist, Redis};
use common::{Env, Retry, event, eventually};

/// Events the relay has taken off the events queue.
fn taken(running: &postback_relay::relay::Running) -> u64 {
    running
        .metrics
        .events_consumed
        .with_label_values(&["lead"])
        .get()
}

async fn readyz(addr: std::net::SocketAddr) -> (u16, String) {
    match reqwest::get(format!("http://{addr}/readyz")).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_stopped_and_restarted_mid_flow_loses_nothing_and_doubles_nothing() {
    const N: usize = 300;
    let Some(mut redis) = Redis::start(Persist::AppendOnly) else {
        return;
    };
    let env = Env::new().await;
    let config = env
        .config()
        .destination(
            env.powerspace().timeout_ms(1000).retry(
                Retry::durable(100, 800)
                    .max_attempts(1000)
                    .max_age_secs(600),
            ),
        )
        .redis_at(&redis.url());
    let running = env.start(&config).await;
    eventually(Duration::from_secs(20), "ready", || async {
        readyz(running.http_addr).await.0 == 200
    })
    .await;

    let publishing = async {
        for i in 0..N {
            env.publish(&event(
                &format!("s{i}"),
                "lead",
                &format!("store-{i}"),
                None,
            ))
            .await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let fault = async {
        // A third of the flow in, Redis goes away for a while.
        eventually(Duration::from_secs(30), "a third delivered", || async {
            env.sandbox.requests().await.unwrap().len() >= N / 3
        })
        .await;
        redis.down();
        eventually(Duration::from_secs(10), "/readyz degraded", || async {
            readyz(running.http_addr).await.0 == 503
        })
        .await;
        let degraded = readyz(running.http_addr).await.1;
        let sent_while_down = env.sandbox.requests().await.unwrap().len();
        let taken_while_down = taken(&running);
        // Longer than a claim's renewal, a record's retries and the readiness probe.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let sent_after = env.sandbox.requests().await.unwrap().len();
        let taken_after = taken(&running);
        assert_eq!(
            taken_after, taken_while_down,
            "the relay took events while the store did not answer"
        );
        redis.up();
        eventually(Duration::from_secs(20), "/readyz ready again", || async {
            readyz(running.http_addr).await.0 == 200
        })
        .await;
        (degraded, sent_after - sent_while_down, sent_while_down)
    };
    let ((), (degraded, sent_down, before)) = tokio::join!(publishing, fault);
    assert!(before < N, "the flow was over before the store went away");
    assert!(degraded.contains("store"), "{degraded}");
    assert!(
        sent_down <= 1,
        "{sent_down} requests went out while the store was down: sent without a claim"
    );

    until_clicks(
        &env.sandbox,
        N,
        true,
        Duration::from_secs(120),
        "every event",
    )
    .await;
    let t = env.topology();
    for q in t.queues() {
        env.until_holds(q, 0, Duration::from_secs(60), &format!("{q} empty"))
            .await;
    }
    let per = per_click(&env.sandbox.requests().await.unwrap(), true);
    let missing = (0..N)
        .filter(|i| !per.contains_key(&format!("store-{i}")))
        .count();
    let twice: Vec<_> = per.iter().filter(|(_, c)| **c > 1).collect();
    assert_eq!(missing, 0, "{missing} events never delivered");
    assert!(twice.is_empty(), "delivered twice: {twice:?}");
}
