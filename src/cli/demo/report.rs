//! What the demo shows at the end: per destination, what the relay counted next to what the
//! sandbox answered, the checks that the two agree, and a dead letter of each reason.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use postback_relay::config::Config;
use postback_relay::contract::reason::Reason;
use postback_relay::interfaces::sandbox;
use postback_relay::operate::dlq;
use postback_relay::relay::broker::Topology;
use postback_relay::relay::metrics::Metrics;

use super::sample::DESTINATIONS;

/// Events with their final outcome: each sample event has one destination, or none.
pub fn accounted(m: &Metrics) -> u64 {
    let outcomes: u64 = DESTINATIONS
        .iter()
        .flat_map(|d| {
            ["delivered", "dead_lettered", "duplicate", "superseded"]
                .map(|o| m.deliveries.with_label_values(&[d, o]).get())
        })
        .sum();
    let before_routing: u64 = Reason::ALL
        .iter()
        .map(|r| {
            m.dead_letters
                .with_label_values(&["none", r.as_str()])
                .get()
        })
        .sum();
    outcomes + before_routing + m.events_skipped.get()
}

/// What the sandbox answered, per destination (the first path segment) and status.
fn sandbox_counts(requests: &[sandbox::Recorded]) -> BTreeMap<(String, u16), u64> {
    let mut counts = BTreeMap::new();
    for r in requests {
        let dest = r
            .path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("")
            .to_owned();
        *counts.entry((dest, r.status)).or_default() += 1;
    }
    counts
}

/// A destination's dead letters by reason (`none`: before routing), those with any.
fn by_reason(m: &Metrics, dest: &str) -> BTreeMap<&'static str, u64> {
    Reason::ALL
        .iter()
        .map(|r| {
            (
                r.as_str(),
                m.dead_letters.with_label_values(&[dest, r.as_str()]).get(),
            )
        })
        .filter(|(_, c)| *c > 0)
        .collect()
}

/// `reason: count, ...`, or `-`.
fn list(map: &BTreeMap<&str, u64>) -> String {
    if map.is_empty() {
        "-".to_owned()
    } else {
        map.iter()
            .map(|(r, c)| format!("{r}: {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Prints the per-destination table and the checks; true when the relay's counts agree with
/// the sandbox's and with the dead-letter queue's.
pub fn report(
    m: &Metrics,
    requests: &[sandbox::Recorded],
    dead_in_queue: u64,
    n: usize,
    elapsed: Duration,
) -> bool {
    println!(
        "  settled           {n} events in {:.2} s",
        elapsed.as_secs_f64()
    );
    println!();
    println!(
        "  {:<11} {:>9} {:>13} {:>8} {:>8} {:>8}   dead letters by reason",
        "destination", "delivered", "dead-lettered", "success", "sandbox", "sandbox"
    );
    println!(
        "  {:<11} {:>9} {:>13} {:>8} {:>8} {:>8}",
        "", "", "", "rate", "2xx", "404"
    );
    let (mut checks, outcomes) = destination_rows(m, &sandbox_counts(requests));
    let unrouted = by_reason(m, "none");
    let before_routing: u64 = unrouted.values().sum();
    println!(
        "  {:<11} {:>9} {:>13} {:>8} {:>8} {:>8}   {}",
        "(unrouted)",
        "-",
        before_routing,
        "",
        "",
        "",
        list(&unrouted)
    );
    let skipped = m.events_skipped.get();
    println!("  skipped (no attribution): {skipped}");
    println!();
    let total_dead: u64 = DESTINATIONS
        .iter()
        .map(|d| m.deliveries.with_label_values(&[d, "dead_lettered"]).get())
        .sum::<u64>()
        + before_routing;
    checks.push((
        "the dead-letter queue holds every dead letter".into(),
        dead_in_queue == total_dead,
    ));
    // Each sample event is meant for exactly one destination.
    checks.push((
        "every event is accounted for".into(),
        outcomes + before_routing + skipped == n as u64,
    ));
    print_checks(checks)
}

/// Prints a row per destination; gives back the check of each against the sandbox, and the
/// number of outcomes (delivered or dead-lettered) of them all.
fn destination_rows(
    m: &Metrics,
    sandbox: &BTreeMap<(String, u16), u64>,
) -> (Vec<(String, bool)>, u64) {
    let answered = |dest: &str, ok: fn(u16) -> bool| -> u64 {
        sandbox
            .iter()
            .filter(|((d, s), _)| d == dest && ok(*s))
            .map(|(_, c)| c)
            .sum()
    };
    let mut checks = Vec::new();
    let mut outcomes = 0;
    for dest in DESTINATIONS {
        let delivered = m.deliveries.with_label_values(&[dest, "delivered"]).get();
        let dead = m
            .deliveries
            .with_label_values(&[dest, "dead_lettered"])
            .get();
        let rate = if delivered + dead == 0 {
            0.0
        } else {
            100.0 * delivered as f64 / (delivered + dead) as f64
        };
        let (ok, not_found) = (
            answered(dest, |s| (200..300).contains(&s)),
            answered(dest, |s| s == 404),
        );
        let reasons = by_reason(m, dest);
        println!(
            "  {dest:<11} {delivered:>9} {dead:>13} {rate:>7.1}% {ok:>8} {not_found:>8}   {}",
            list(&reasons)
        );
        checks.push((
            format!("{dest}: delivered = sandbox 2xx, partner_rejected = sandbox 404"),
            delivered == ok && reasons.get("partner_rejected").copied().unwrap_or(0) == not_found,
        ));
        outcomes += delivered + dead;
    }
    (checks, outcomes)
}

/// Prints each check, `[ok]` or `[MISMATCH]`; true when all pass.
fn print_checks(checks: Vec<(String, bool)>) -> bool {
    let mut all = true;
    for (what, pass) in checks {
        println!("  [{}] {what}", if pass { "ok" } else { "MISMATCH" });
        all &= pass;
    }
    println!();
    all
}

/// Prints one dead letter of each reason, as an operator reads them (`dlq list`).
pub async fn show_dead_letters(
    conn: &lapin::Connection,
    topology: &Topology,
) -> anyhow::Result<()> {
    let letters = dlq::browse(conn, topology, Config::default_worker().max_event_bytes).await?;
    let mut seen = BTreeSet::new();
    println!("  a dead letter of each reason (postback-relay dlq list):");
    for l in &letters {
        let s = l.summary();
        if seen.insert(s.reason.as_str()) {
            println!(
                "    {:<17} event {:<16} {}",
                s.reason.as_str(),
                s.event_id.as_deref().unwrap_or("(unreadable)"),
                s.detail.chars().take(90).collect::<String>()
            );
        }
    }
    println!();
    Ok(())
}
