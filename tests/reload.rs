//! A new configuration while the relay runs: deliveries in flight finish under the old one and
//! the next follow the new; a removed destination's waiting deliveries are dead-lettered with
//! a reason; an invalid file, or one that changes what only a restart can change, is refused
//! and the running configuration stays. The last test does it all through SIGHUP.

mod common;

use std::time::Duration;

use common::partner::{per_click, until_received};
use common::{ConfigBuilder, Dest, Env, RelayProcess, Retry, deliveries, event, eventually};
use postback_relay::contract::reason::Reason;
use postback_relay::interfaces::sandbox::{self, Rule};
use postback_relay::relay::{Consuming, ReloadRefused};

/// A second partner, beside the `Env`'s own.
async fn other_partner(env: &Env) -> sandbox::Client {
    let addr = sandbox::spawn(env.shutdown.clone()).await.unwrap();
    sandbox::Client::new(addr)
}

fn at(base: &str) -> Dest {
    Dest::powerspace("powerspace", base)
        .timeout_ms(5000)
        .retry(Retry::fast())
}

fn refused(m: &postback_relay::relay::metrics::Metrics) -> u64 {
    m.config_reloads.with_label_values(&["refused"]).get()
}

#[tokio::test]
async fn in_flight_deliveries_finish_under_the_old_configuration_and_the_next_follow_the_new() {
    let env = Env::new().await;
    let new_partner = other_partner(&env).await;
    // The old partner holds its answer long enough for the reload to come in meanwhile.
    env.sandbox
        .add_rule(&Rule::answer(200).after_ms(1500))
        .await
        .unwrap();
    let relay = env
        .start(&env.config().destination(at(env.sandbox.base_url())))
        .await;
    env.publish(&event("before", "lead", "click-before", None))
        .await;
    until_received(&env.sandbox, 1, Duration::from_secs(10), "the first call").await;

    // /readyz, asked all through the reload: a relay changing configuration stays ready.
    let readyz = format!("http://{}/readyz", relay.http_addr);
    let polling = tokio_util::sync::CancellationToken::new();
    let poller = tokio::spawn({
        let polling = polling.clone();
        async move {
            let (mut asked, mut not_ready) = (0u32, Vec::new());
            while !polling.is_cancelled() {
                let status = reqwest::get(&readyz).await.map(|r| r.status().as_u16());
                asked += 1;
                if !matches!(status, Ok(200)) {
                    not_ready.push(format!("{status:?}"));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (asked, not_ready)
        }
    });
    let reloaded = relay
        .reloader
        .reload(env.config().destination(at(new_partner.base_url())).load())
        .await
        .expect("the new configuration is taken");
    assert_eq!(reloaded.changed, ["powerspace"]);
    common::until(&relay, "the new generation consumes", |m| {
        m.broker_connected.get() == 1
    })
    .await;
    polling.cancel();
    let (asked, not_ready) = poller.await.unwrap();
    assert!(
        asked >= 10,
        "/readyz was asked {asked} times during the reload"
    );
    assert!(
        not_ready.is_empty(),
        "/readyz during the reload: {not_ready:?}"
    );
    // The reload returns once the old generation is done: the call in flight was answered
    // and recorded under the old configuration, not cut off and sent again.
    assert_eq!(deliveries(&relay.metrics, "powerspace", "delivered"), 1);

    env.publish(&event("after", "lead", "click-after", None))
        .await;
    common::until(&relay, "the second delivery", |m| {
        deliveries(m, "powerspace", "delivered") == 2
    })
    .await;
    let old = per_click(&env.sandbox.requests().await.unwrap(), true);
    let new = per_click(&new_partner.requests().await.unwrap(), true);
    assert_eq!(old.len(), 1, "the old partner: {old:?}");
    assert_eq!(old.get("click-before"), Some(&1));
    assert_eq!(new.len(), 1, "the new partner: {new:?}");
    assert_eq!(new.get("click-after"), Some(&1));
    assert_eq!(
        relay
            .metrics
            .config_reloads
            .with_label_values(&["applied"])
            .get(),
        1
    );
}

#[tokio::test]
async fn a_removed_destinations_waiting_deliveries_are_dead_lettered_with_the_reason() {
    let env = Env::new().await;
    let failing = other_partner(&env).await;
    failing.add_rule(&Rule::answer(503)).await.unwrap();
    let gone = Dest::powerspace("gone", failing.base_url())
        .timeout_ms(2000)
        .retry(
            Retry::durable(100, 200)
                .max_attempts(10_000)
                .max_age_secs(3600),
        );
    let kept = at(env.sandbox.base_url());
    let relay = env
        .start(&env.config().destination(kept.clone()).destination(gone))
        .await;
    env.publish(&event("e1", "lead", "click-1", None)).await;
    // The delivery to `gone` has come back from a retry tier at least once: it waits there.
    until_received(&failing, 2, Duration::from_secs(20), "a durable retry").await;

    relay
        .reloader
        .reload(env.config().destination(kept).load())
        .await
        .expect("the new configuration is taken");
    let dead = env.topology().dead;
    env.until_holds(&dead, 1, Duration::from_secs(20), "the dead letter")
        .await;
    let letters = env.take_dead_letters().await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let l = &letters[0];
    assert_eq!(l.reason, Reason::Unroutable);
    assert_eq!(l.destination.as_deref(), Some("gone"));
    assert_eq!(l.event_id.as_deref(), Some("e1"));
    assert!(
        l.detail
            .contains("destination \"gone\" is not in the configuration any more"),
        "{}",
        l.detail
    );
    assert_eq!(
        per_click(&env.sandbox.requests().await.unwrap(), true).get("click-1"),
        Some(&1)
    );
    // The removed destination's gauges are gone with it.
    let text = relay.metrics.render();
    assert!(
        !text.contains("postback_relay_circuit_state{destination=\"gone\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn an_invalid_file_or_a_change_that_needs_a_restart_keeps_the_running_configuration() {
    let env = Env::new().await;
    let config = env.default_config();
    let relay = env.start(&config).await;
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[destinations]]\nname = \"x\"\nkind = \"nope\"\n").unwrap();
    match relay.reloader.reload_from(&bad).await {
        Err(ReloadRefused::Invalid(e)) => {
            assert!(e.to_string().contains("destinations"), "{e}")
        }
        other => panic!("an invalid file taken: {other:?}"),
    }
    let mut other_broker = config.load();
    other_broker.broker.prefetch = 7;
    match relay.reloader.reload(other_broker).await {
        Err(ReloadRefused::NeedsRestart(sections)) => assert_eq!(sections, ["broker"]),
        other => panic!("a broker change taken: {other:?}"),
    }
    assert_eq!(refused(&relay.metrics), 2);
    // Still running, on the configuration it had.
    assert!(relay.health.is_ready());
    env.publish(&event("e1", "lead", "click-1", None)).await;
    common::until(&relay, "the delivery", |m| {
        deliveries(m, "powerspace", "delivered") == 1
    })
    .await;
}

/// Until the relay's log holds `text`.
async fn until_logged(log: &std::path::Path, text: &str) {
    eventually(Duration::from_secs(30), text, || async {
        std::fs::read_to_string(log).is_ok_and(|l| l.contains(text))
    })
    .await;
}

fn hangup(relay: &RelayProcess) {
    let pid = relay.0.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
}

#[tokio::test]
async fn sighup_reloads_the_file_and_refuses_a_broken_one() {
    let env = Env::new().await;
    let new_partner = other_partner(&env).await;
    let dir = tempfile::tempdir().unwrap();
    let config = |base: &str| -> ConfigBuilder { env.config().destination(at(base)) };
    let file = config(env.sandbox.base_url()).write(&dir);
    let log = dir.path().join("relay.log");
    let mut relay = RelayProcess::run_with(&file, &[], Some(&log));
    env.until_consumed().await;

    std::fs::write(&file, config(new_partner.base_url()).toml()).unwrap();
    hangup(&relay);
    until_logged(&log, "configuration reloaded").await;
    env.publish(&event("e1", "lead", "click-1", None)).await;
    until_received(&new_partner, 1, Duration::from_secs(20), "the new partner").await;

    std::fs::write(&file, "this is not toml [").unwrap();
    hangup(&relay);
    until_logged(&log, "configuration not reloaded").await;
    env.publish(&event("e2", "lead", "click-2", None)).await;
    until_received(
        &new_partner,
        2,
        Duration::from_secs(20),
        "still the new partner",
    )
    .await;
    assert_eq!(env.sandbox.stats().await.unwrap().total, 0);
    let per = per_click(&new_partner.requests().await.unwrap(), true);
    assert_eq!(per.get("click-1"), Some(&1));
    assert_eq!(per.get("click-2"), Some(&1));

    relay.signal_term();
    let status = relay
        .exited_within(Duration::from_secs(30))
        .await
        .expect("the relay exits after SIGTERM");
    assert!(status.success());
}

/// Reloads that come faster than a generation can fail to connect do not pass readiness on
/// from one generation to the next: the broker is silent (a connection is accepted, nothing
/// answers), no generation consumes after the first reload, and `/readyz` must say so.
#[tokio::test]
async fn reloads_in_a_row_do_not_hold_a_relay_that_never_consumes_ready() {
    let env = Env::new().await;
    let proxy = common::proxy::Proxy::start().await;
    let config = env
        .config()
        .broker_nodes(&proxy.url(), &[], 1)
        .destination(at(env.sandbox.base_url()));
    let relay = env.start(&config).await;
    proxy.silence();
    // Reload 1: the old generation drains (its broker silent), the next cannot connect.
    relay.reloader.reload(config.load()).await.unwrap();
    assert_eq!(relay.metrics.broker_connected.get(), 0);
    // Another reload every 300 ms for 3 s (a tool touching the file, SIGHUPs in a row), each
    // before the last generation's connect timeout (1 s) is over.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        relay.reloader.reload(config.load()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(relay.metrics.broker_connected.get(), 0, "nothing consumes");
    }
    assert!(
        !relay.health.is_ready(),
        "/readyz answers 200 {:?} after the last generation that consumed",
        started.elapsed()
    );
}

/// A stop that comes while a reload waits for the old generation's calls is not ready: the
/// hold that kept `/readyz` at 200 for the reload is let go at once, not when the call ends.
#[tokio::test]
async fn a_stop_during_a_reload_is_not_ready_while_the_old_calls_finish() {
    let env = Env::new().await;
    env.sandbox
        .add_rule(&Rule::answer(200).after_ms(3000))
        .await
        .unwrap();
    let config = env.config().destination(at(env.sandbox.base_url()));
    let stop = tokio_util::sync::CancellationToken::new();
    let relay = env.start_until(config.load(), stop.clone()).await;
    env.publish(&event("held", "lead", "click-held", None))
        .await;
    until_received(&env.sandbox, 1, Duration::from_secs(10), "the held call").await;
    let reloading = tokio::spawn({
        let reloader = relay.reloader.clone();
        let new = config.load();
        async move { reloader.reload(new).await }
    });
    // The old generation has stopped consuming: the reload waits for its call.
    let health = relay.health.clone();
    eventually(
        Duration::from_secs(5),
        "the reload waits for the old call",
        || {
            let h = health.clone();
            async move { h.consuming() == Consuming::Reloading }
        },
    )
    .await;
    assert!(relay.health.is_ready(), "ready through the reload");
    stop.cancel();
    eventually(
        Duration::from_secs(2),
        "not ready once told to stop",
        || {
            let h = health.clone();
            async move { !h.is_ready() }
        },
    )
    .await;
    assert_eq!(
        deliveries(&relay.metrics, "powerspace", "delivered"),
        0,
        "the held call is still in flight"
    );
    let _ = reloading.await.unwrap();
    relay.wait().await.unwrap();
}
