//! `postback-relay recover` against the real RabbitMQ, a relay and the partner sandbox: a
//! window sent again once, a second run sending nothing, a run killed midway and run again
//! sending each event once more in all, a destination added since served from the journal,
//! and bad input refused.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::partner::per_click;
use common::process::stderr;
use common::{Cli, Dest, Env, RelayProcess, deliveries, event, eventually, until};
use postback_relay::journal::{Filter, Recoveries, Which, Window};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);

/// Publishes `n` Powerspace orders `{prefix}-{i}` and waits until each is delivered and
/// journaled.
async fn deliver(env: &Env, running: &postback_relay::relay::Running, prefix: &str, n: usize) {
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        env.publish(&event(&id, "order", &format!("clk-{id}"), Some("10.00")))
            .await;
    }
    until(running, &format!("{n} delivered"), |m| {
        deliveries(m, "powerspace", "delivered") >= n as u64
    })
    .await;
    journaled(env, n).await;
}

/// Waits until the journal holds `n` deliveries to powerspace (the writer is behind the acks).
async fn journaled(env: &Env, n: usize) {
    let filter = Filter {
        destination: Some("powerspace".into()),
        outcomes: vec!["delivered".into()],
        limit: 1_000_000,
        ..Filter::default()
    };
    env.until_journaled(&filter, n).await;
}

fn recover(path: &str, args: &[&str]) -> Cli {
    Cli::new(&["recover", "--config", path, "--destination"]).args(args)
}

#[tokio::test]
async fn a_window_is_sent_again_once_and_a_second_run_sends_nothing() {
    once_and_not_twice(Env::new().await).await;
}

#[tokio::test]
async fn a_window_is_sent_again_once_from_a_postgresql_journal() {
    once_and_not_twice(Env::with_postgres_journal().await).await;
}

async fn once_and_not_twice(env: Env) {
    let config = env.default_config();
    let running = env.start(&config).await;
    let since = (Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
    deliver(&env, &running, "w", 20).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config.write(&dir);
    let args = ["powerspace", "--since", &since, "--by", "ops-test"];

    let dry = recover(&path, &args).args(&["--dry-run"]).ok();
    assert!(
        stderr(&dry).contains("dry run: 20 event(s) would be sent again to powerspace"),
        "{}",
        stderr(&dry)
    );
    let t = env.topology();
    assert_eq!(
        env.ready(&t.deliveries).await,
        0,
        "a dry run publishes nothing"
    );

    let out = recover(&path, &args).ok();
    assert!(
        stderr(&out).contains("recovered 20 event(s) to powerspace"),
        "{}",
        stderr(&out)
    );
    until(&running, "20 more delivered", |m| {
        deliveries(m, "powerspace", "delivered") >= 40
    })
    .await;
    let requests = env.sandbox.requests().await.unwrap();
    let per = per_click(&requests, true);
    assert_eq!(per.len(), 20);
    assert!(per.values().all(|&n| n == 2), "{per:?}");

    // The journal marks each recovered delivery, and keeps who asked for which window.
    journaled(&env, 40).await;
    let since_t = since.parse().unwrap();
    let w = Window::new("powerspace".into(), since_t, None, Which::Delivered).unwrap();
    let entries = env
        .journal_entries(&Filter {
            destination: Some("powerspace".into()),
            limit: 1000,
            ..Filter::default()
        })
        .await;
    let recovered: Vec<_> = entries.iter().filter(|e| e.recovery.is_some()).collect();
    assert_eq!(recovered.len(), 20);
    assert!(
        recovered
            .iter()
            .all(|e| e.recovery.as_deref() == Some(w.id().as_str()))
    );
    let actions = env.recoveries().await.actions(10).await.unwrap();
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(
        (actions[0].who.as_str(), actions[0].count),
        ("ops-test", 20)
    );
    assert!(actions[0].filter.contains(&w.id()), "{}", actions[0].filter);

    let again = recover(&path, &args).ok();
    assert!(
        stderr(&again).contains("nothing to recover") && stderr(&again).contains("20 already sent"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        env.ready(&t.deliveries).await,
        0,
        "the second run publishes nothing"
    );
    assert_eq!(env.sandbox.requests().await.unwrap().len(), 40);
}

// The relay and the partner run in this test's process: worker threads keep them answering
// while the test polls the journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_killed_midway_and_run_again_sends_each_event_once_more() {
    killed_midway(Env::new().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_from_postgresql_killed_midway_sends_each_event_once_more() {
    killed_midway(Env::with_postgres_journal().await).await;
}

async fn killed_midway(env: Env) {
    const N: usize = 1500;
    let config = env.default_config();
    let running = env.start(&config).await;
    let since = (Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
    deliver(&env, &running, "k", N).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config.write(&dir);
    let window = Window::new(
        "powerspace".into(),
        since.parse().unwrap(),
        None,
        Which::Delivered,
    )
    .unwrap();

    let mut first = RelayProcess::spawn(
        &[
            "recover",
            "--config",
            &path,
            "--destination",
            "powerspace",
            "--since",
            &since,
        ],
        &[],
        None,
    );
    let journal = env.journal_config();
    let sent = || async {
        match Recoveries::open(&journal).await {
            Ok(r) => r.sent(&window.id()).await.unwrap_or(0),
            Err(_) => 0,
        }
    };
    eventually(WAIT, "the recovery under way", || async {
        sent().await >= 50
    })
    .await;
    first.0.kill().unwrap();
    let _ = first.0.wait();
    let marked = sent().await;
    assert!(
        (marked as usize) < N,
        "the recovery finished ({marked} marked) before it could be killed"
    );

    let out = recover(&path, &["powerspace", "--since", &since]).ok();
    assert!(
        stderr(&out).contains("already sent by this recovery"),
        "{}",
        stderr(&out)
    );
    until(&running, "every event delivered twice", |m| {
        deliveries(m, "powerspace", "delivered") >= 2 * N as u64
    })
    .await;
    // Nothing is waiting, and no event went out a third time.
    let t = env.topology();
    eventually(WAIT, "the deliveries queue drained", || {
        let env = &env;
        let q = t.deliveries.clone();
        async move { env.ready(&q).await == 0 }
    })
    .await;
    let per = per_click(&env.sandbox.requests().await.unwrap(), true);
    assert_eq!(per.len(), N);
    let wrong: Vec<_> = per.iter().filter(|(_, n)| **n != 2).collect();
    if !wrong.is_empty() {
        for (click, _) in &wrong {
            let id = click.trim_start_matches("clk-");
            let entries = env
                .journal_entries(&Filter {
                    event_id: Some(id.to_owned()),
                    limit: 100,
                    ..Filter::default()
                })
                .await;
            eprintln!("{id}: {entries:#?}");
        }
    }
    assert!(wrong.is_empty(), "sent other than twice: {wrong:?}");
}

#[tokio::test]
async fn a_destination_added_since_is_served_from_the_journal() {
    let env = Env::new().await;
    let before = env.default_config();
    let first_stop = CancellationToken::new();
    let first = env.start_until(before.load(), first_stop.clone()).await;
    let since = (Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
    deliver(&env, &first, "b", 5).await;
    first_stop.cancel();
    first.wait().await.unwrap();

    let late = Dest::powerspace("late", &format!("{}/late", env.sandbox.base_url()))
        .retry(common::Retry::fast())
        .circuit(common::Circuit::disabled());
    let after = env.default_config().destination(late);
    let running = env.start(&after).await;
    let dir = tempfile::tempdir().unwrap();
    let path = after.write(&dir);
    let out = recover(&path, &["late", "--since", &since, "--outcome", "any"]).ok();
    assert!(
        stderr(&out).contains("recovered 5 event(s) to late"),
        "{}",
        stderr(&out)
    );
    until(&running, "the backfill delivered", |m| {
        deliveries(m, "late", "delivered") >= 5
    })
    .await;
    let late_calls = env
        .sandbox
        .requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.path.starts_with("/late/"))
        .count();
    assert_eq!(late_calls, 5);
    // powerspace's own deliveries were not sent again.
    assert_eq!(deliveries(&running.metrics, "powerspace", "delivered"), 0);
}

#[tokio::test]
async fn recover_refuses_bad_input_and_changes_nothing() {
    let env = Env::new().await;
    let dir = tempfile::tempdir().unwrap();
    let path = env.default_config().write(&dir);
    let refused = |args: &[&str], says: &str| {
        let out = recover(&path, args).output();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    };
    refused(
        &["nope", "--since", "2026-11-20T14:00:00Z"],
        "destination \"nope\" is not in the configuration",
    );
    refused(
        &[
            "powerspace",
            "--since",
            "2026-11-20T16:00:00Z",
            "--until",
            "2026-11-20T14:00:00Z",
        ],
        "is before --since",
    );
    let out = recover(&path, &["powerspace", "--since", "yesterday"]).output();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--since"), "{}", stderr(&out));
    assert!(!env.journal_path().exists(), "nothing created");
}

/// A recovery goes through the conversion's status order, as the relay's own deliveries do:
/// recovering the window that held the `hold`s of conversions approved since sends none of
/// them (it would take them back to hold at HOQU), and recovering the approvals sends each
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_never_takes_a_status_back() {
    const N: usize = 10;
    let env = Env::new().await;
    let base = env.sandbox.base_url().to_owned();
    let config = env.config().destination(
        Dest::hoqu(
            "hoqu",
            &format!("{base}/hoqu"),
            common::Hoqu::new("k3y-for-tests", "fixed")
                .action("lead")
                .status_wait_secs(0),
        )
        .retry(common::Retry::fast()),
    );
    let running = env.start(&config).await;
    let status = |kind: &str, id: &str, i: usize, status: &str| {
        common::Event::attributed(id, kind, "hoqu", &format!("clk-{i}"))
            .order(&format!("o-{i}"), "30")
            .status(Some(status))
            .body()
    };
    let holds_from = Utc::now() - chrono::Duration::seconds(1);
    for i in 0..N {
        env.publish(&status("order", &format!("h{i}"), i, "pending"))
            .await;
    }
    until(&running, "the holds sent", |m| {
        deliveries(m, "hoqu", "delivered") >= N as u64
    })
    .await;
    let approvals_from = Utc::now();
    for i in 0..N {
        env.publish(&status("order_status", &format!("a{i}"), i, "paid"))
            .await;
    }
    until(&running, "the approvals sent", |m| {
        deliveries(m, "hoqu", "delivered") >= 2 * N as u64
    })
    .await;
    let filter = Filter {
        destination: Some("hoqu".into()),
        outcomes: vec!["delivered".into()],
        limit: 1_000,
        ..Filter::default()
    };
    env.until_journaled(&filter, 2 * N).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config.write(&dir);
    let sent = |status: &'static str| {
        let env = &env;
        async move {
            env.sandbox
                .requests()
                .await
                .unwrap()
                .iter()
                .filter(|r| r.param("status").as_deref() == Some(status))
                .count()
        }
    };

    // The holds' window: each hold is superseded by the approval sent since.
    let (since, until_t) = (holds_from.to_rfc3339(), approvals_from.to_rfc3339());
    let out = recover(&path, &["hoqu", "--since", &since, "--until", &until_t]).ok();
    assert!(
        stderr(&out).contains(&format!("recovered {N} event(s)")),
        "{}",
        stderr(&out)
    );
    until(&running, "the recovered holds superseded", |m| {
        deliveries(m, "hoqu", "superseded") >= N as u64
    })
    .await;
    assert_eq!(
        sent("hold").await,
        N,
        "no hold sent again after its approval"
    );

    // The approvals' window: each approval is the last status sent, and goes again.
    let since = approvals_from.to_rfc3339();
    recover(&path, &["hoqu", "--since", &since]).ok();
    until(&running, "the approvals sent again", |m| {
        deliveries(m, "hoqu", "delivered") >= 3 * N as u64
    })
    .await;
    assert_eq!(sent("approved").await, 2 * N);
    assert_eq!(sent("hold").await, N);
}

/// Events that came when no destination took their network (dead-lettered `unroutable`) are
/// kept in the journal too: a destination added later for that network gets them with
/// `--outcome any`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_no_destination_took_are_backfilled_to_one_added_later() {
    const N: usize = 10;
    let env = Env::new().await;
    let first_stop = CancellationToken::new();
    let first = env
        .start_until(env.default_config().load(), first_stop.clone())
        .await;
    let since = (Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
    for i in 0..N {
        let e = common::Event::attributed(&format!("u{i}"), "lead", "newnet", &format!("u-{i}"));
        env.publish(&e.body()).await;
    }
    until(&first, "each dead-lettered unroutable", |m| {
        m.dead_letters
            .with_label_values(&["none", "unroutable"])
            .get()
            >= N as u64
    })
    .await;
    let kept = Filter {
        event_id: Some(format!("u{}", N - 1)),
        limit: 10,
        ..Filter::default()
    };
    env.until_journaled(&kept, 1).await;
    first_stop.cancel();
    first.wait().await.unwrap();

    let added = Dest::powerspace("newnet", &format!("{}/newnet", env.sandbox.base_url()))
        .networks(&["newnet"])
        .retry(common::Retry::fast())
        .circuit(common::Circuit::disabled());
    let after = env.default_config().destination(added);
    let running = env.start(&after).await;
    let dir = tempfile::tempdir().unwrap();
    let path = after.write(&dir);
    let out = recover(&path, &["newnet", "--since", &since, "--outcome", "any"]).ok();
    assert!(
        stderr(&out).contains(&format!("recovered {N} event(s) to newnet")),
        "{}",
        stderr(&out)
    );
    until(&running, "the backfill delivered", |m| {
        deliveries(m, "newnet", "delivered") >= N as u64
    })
    .await;
}

/// A recovery to a destination that the running relay has not loaded (its configuration
/// file has it, the relay was not reloaded since) is refused up front, naming it: every
/// delivery would be dead-lettered unroutable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_to_a_destination_the_running_relay_has_not_loaded_is_refused() {
    let env = Env::new().await;
    let listen = format!("127.0.0.1:{}", common::free_port());
    let running_config = env.default_config().listen(&listen);
    let running = env.start(&running_config).await;
    let since = (Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
    deliver(&env, &running, "n", 3).await;
    let late = Dest::powerspace("late", &format!("{}/late", env.sandbox.base_url()))
        .retry(common::Retry::fast());
    let edited = running_config.destination(late);
    let dir = tempfile::tempdir().unwrap();
    let path = edited.write(&dir);
    let out = recover(&path, &["late", "--since", &since, "--outcome", "any"]).output();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("has not loaded destination \"late\""),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        env.ready(&env.topology().deliveries).await,
        0,
        "nothing sent"
    );
    // The destination the relay has loaded is recovered as ever.
    let out = recover(&path, &["powerspace", "--since", &since]).ok();
    assert!(
        stderr(&out).contains("recovered 3 event(s)"),
        "{}",
        stderr(&out)
    );
}
