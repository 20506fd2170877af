//! The journal under faults of its own, against a PostgreSQL server of each test's own: a
//! database away for longer than a few retries loses no entry the buffer could hold, and a
//! stop ends within the grace whether the database is down or frozen, counting and saying
//! what it could not write.

mod common;

use std::time::{Duration, Instant};

use common::pg_server::PgServer;
use common::process::metric;
use common::{Env, RelayProcess, deliveries, event, eventually, until};

const WAIT: Duration = Duration::from_secs(30);

/// A series of the relay's registry, summed over its labels (those that contain `label`).
fn series(m: &postback_relay::relay::metrics::Metrics, name: &str, label: Option<&str>) -> f64 {
    m.registry()
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .filter(|s| label.is_none_or(|l| s.get_label().iter().any(|p| p.value() == l)))
        .map(|s| s.get_counter().get_value() + s.get_gauge().get_value())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgresql_outage_longer_than_a_few_retries_loses_no_entry() {
    const N: usize = 100;
    const OUTAGE: Duration = Duration::from_secs(12);
    let Some(pg) = PgServer::start() else {
        return;
    };
    let env = Env::new().await;
    let config = env
        .config()
        .destination(env.powerspace())
        .journal_postgres(&pg.url());
    let running = env.start(&config).await;
    let written = |m: &postback_relay::relay::metrics::Metrics| {
        series(m, "postback_relay_journal_written_total", None) as usize
    };
    for i in 0..N {
        env.publish(&event(&format!("a{i}"), "lead", &format!("a-{i}"), None))
            .await;
    }
    until(&running, "the first entries written", |m| written(m) == N).await;

    pg.down();
    let down_at = Instant::now();
    for i in 0..N {
        env.publish(&event(&format!("b{i}"), "lead", &format!("b-{i}"), None))
            .await;
    }
    // Deliveries go on without the journal.
    until(&running, "every event delivered", |m| {
        deliveries(m, "powerspace", "delivered") == 2 * N as u64
    })
    .await;
    until(&running, "the writer reports it fails", |m| {
        series(m, "postback_relay_journal_failing", None) == 1.0
    })
    .await;
    tokio::time::sleep(OUTAGE.saturating_sub(down_at.elapsed())).await;
    pg.up();

    until(&running, "the entries of the outage written", |m| {
        written(m) == 2 * N
    })
    .await;
    let m = &running.metrics;
    assert_eq!(series(m, "postback_relay_journal_dropped_total", None), 0.0);
    assert_eq!(series(m, "postback_relay_journal_failing", None), 0.0);
    assert!(series(m, "postback_relay_journal_write_errors_total", None) >= 1.0);
    assert_eq!(pg.entries().await, Some(2 * N as i64));
}

/// One relay process on `config`, its log in `dir`, with its metrics port; waits until its
/// journal has written an entry (so that it is connected to the database).
async fn relay_with_a_journal(
    env: &Env,
    config: &common::ConfigBuilder,
    dir: &tempfile::TempDir,
    name: &str,
) -> (RelayProcess, u16, std::path::PathBuf) {
    let port = common::free_port();
    let file = config
        .clone()
        .listen(&format!("127.0.0.1:{port}"))
        .write(dir);
    let (mine, log) = (
        dir.path().join(format!("{name}.toml")),
        dir.path().join(format!("{name}.log")),
    );
    std::fs::rename(&file, &mine).unwrap();
    let relay = RelayProcess::run_with(mine.to_str().unwrap(), &[], Some(&log));
    env.publish(&event(&format!("{name}-first"), "lead", name, None))
        .await;
    eventually(WAIT, "the journal written", || async {
        metric(port, "postback_relay_journal_written_total", &[])
            .await
            .is_some_and(|n| n >= 1.0)
    })
    .await;
    (relay, port, log)
}

/// A stop while the database is down, then while it is frozen (its connections open, nothing
/// answered): the relay exits within the grace and a little more, and says how many entries
/// it could not write.
#[tokio::test(flavor = "multi_thread")]
async fn a_stop_ends_within_the_grace_while_postgresql_is_down_or_frozen() {
    const N: usize = 20;
    // The test configurations' grace (worker.shutdown_grace_secs), and what a stop may take
    // beyond it: the drain's own bounds.
    const GRACE: Duration = Duration::from_secs(5);
    const MARGIN: Duration = Duration::from_secs(3);
    let Some(pg) = PgServer::start() else {
        return;
    };
    let env = Env::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = env
        .config()
        .destination(env.powerspace())
        .journal_postgres(&pg.url());
    env.declare().await;
    for (phase, fault) in [("down", 0), ("frozen", 1)] {
        let (mut relay, port, log) = relay_with_a_journal(&env, &config, &dir, phase).await;
        if fault == 0 {
            pg.down();
        } else {
            pg.freeze();
        }
        for i in 0..N {
            env.publish(&event(&format!("{phase}{i}"), "lead", phase, None))
                .await;
        }
        eventually(WAIT, "every event delivered", || async {
            metric(port, "postback_relay_deliveries_total", &["delivered"])
                .await
                .is_some_and(|n| n >= 1.0 + N as f64)
        })
        .await;
        let asked = Instant::now();
        relay.signal_term();
        let status = relay.exited_within(GRACE + MARGIN + WAIT).await;
        let took = asked.elapsed();
        let log = std::fs::read_to_string(&log).unwrap();
        assert!(status.is_some_and(|s| s.success()), "{phase}: {status:?}");
        assert!(
            took <= GRACE + MARGIN,
            "{phase}: the stop took {took:?}, past the grace of {GRACE:?}"
        );
        assert!(
            log.contains("journal entries not written before the stop")
                && log.contains(&format!("\"entries\":{N}")),
            "{phase}: {log}"
        );
        eprintln!("{phase}: the stop took {took:?}");
        if fault == 0 {
            pg.up();
        } else {
            pg.thaw();
        }
    }
}

/// The readers (the console, the commands) share the pool's bounds: a statement a frozen
/// server never answers ends at the bound, as an error, and a reader opened before a restart
/// reads again once the server is back (its closed connections are made again).
#[tokio::test(flavor = "multi_thread")]
async fn a_reader_is_bounded_by_a_frozen_server_and_outlives_a_restart() {
    // The journal's bound on a statement (CALL_TIMEOUT), and what the test allows beyond it.
    const BOUND: Duration = Duration::from_secs(10);
    let Some(pg) = PgServer::start() else {
        return;
    };
    let config = postback_relay::journal::JournalConfig {
        kind: postback_relay::journal::JournalKind::Postgres,
        url: Some(pg.url()),
        ..Default::default()
    };
    let reader = postback_relay::journal::Reader::open(&config)
        .await
        .unwrap();
    let all = postback_relay::journal::Filter {
        limit: 10,
        ..Default::default()
    };
    reader.entries(&all).await.unwrap();

    pg.freeze();
    let asked = Instant::now();
    let frozen = reader.entries(&all).await;
    let took = asked.elapsed();
    pg.thaw();
    let e = frozen.err().unwrap().to_string();
    assert!(e.contains("no answer while reading"), "{e}");
    assert!(
        took >= BOUND && took < BOUND + Duration::from_secs(3),
        "{took:?}"
    );
    eprintln!("frozen: {e} after {took:?}");

    pg.down();
    pg.up();
    eventually(WAIT, "the reader reads again", || async {
        reader.entries(&all).await.is_ok()
    })
    .await;
}
