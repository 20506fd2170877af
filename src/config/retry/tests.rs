//! Tests of the retry policy, its schedule and its tiers.

use super::*;
use proptest::prelude::*;

fn policy() -> impl Strategy<Value = RetryPolicy> {
    (1u64..100_000, 1.0f64..10.0, 0u64..10_000_000, 0.0f64..0.99).prop_map(
        |(initial, factor, extra, jitter)| RetryPolicy {
            initial_delay_ms: initial,
            max_delay_ms: initial + extra,
            factor,
            jitter,
            ..RetryPolicy::default()
        },
    )
}

proptest! {
    #[test]
    fn delays_stay_within_bounds(p in policy(), retry in 0u32..1000, unit in 0.0f64..1.0, ra in proptest::option::of(0u64..100_000_000)) {
        prop_assert!(p.validate().is_ok());
        let d = p.delay(retry, unit, ra.map(Duration::from_millis));
        prop_assert!(d >= p.initial_delay() && d <= p.max_delay(), "{d:?} for {p:?}");
        if let Some(ra) = ra {
            let asked = Duration::from_millis(ra).clamp(p.initial_delay(), p.max_delay());
            prop_assert!(d >= asked);
        }
    }

    #[test]
    fn delays_grow_until_the_cap(p in policy(), retry in 1u32..40) {
        // Without jitter, each delay is at least the one before.
        let p = RetryPolicy { jitter: 0.0, ..p };
        prop_assert!(p.delay(retry + 1, 0.5, None) >= p.delay(retry, 0.5, None));
    }

    #[test]
    fn tiers_never_shorten_a_delay(ms in 0u64..10_000_000) {
        let tiers: Vec<Duration> = DEFAULT_TIERS_MS.iter().map(|m| Duration::from_millis(*m)).collect();
        let d = Duration::from_millis(ms);
        let t = tier_for(&tiers, d);
        prop_assert!(tiers[t] >= d || t == tiers.len() - 1);
        prop_assert!(t == 0 || tiers[t - 1] < d);
    }
}

#[test]
fn the_default_schedule() {
    let p = RetryPolicy::default();
    p.validate().unwrap();
    let secs: Vec<u64> = (1..=9).map(|n| p.delay(n, 0.0, None).as_secs()).collect();
    assert_eq!(secs, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
    assert_eq!(
        p.delay(1, 1.0, None),
        Duration::from_secs(30),
        "never below the first delay"
    );
    assert_eq!(p.delay(2, 1.0, None), Duration::from_secs(48));
    // With the default tiers, every jittered delay waits in its step's tier.
    let tiers: Vec<Duration> = DEFAULT_TIERS_MS
        .iter()
        .map(|m| Duration::from_millis(*m))
        .collect();
    for n in 1..=9u32 {
        for unit in [0.0, 0.5, 0.999] {
            let t = tiers[tier_for(&tiers, p.delay(n, unit, None))];
            assert_eq!(t.as_secs(), secs[n as usize - 1], "retry {n}");
        }
    }
    assert_eq!(
        p.delay(1, 0.5, Some(Duration::from_secs(600))),
        Duration::from_secs(600)
    );
    assert_eq!(
        p.delay(1, 0.5, Some(Duration::from_secs(86_400))),
        Duration::from_secs(3600)
    );
}

#[test]
fn budget() {
    let p = RetryPolicy::default();
    let t0 = Utc::now();
    assert!(!p.exhausted(1, t0, t0, Duration::from_secs(30)));
    assert!(p.exhausted(60, t0, t0, Duration::from_secs(30)));
    let later = t0 + chrono::Duration::hours(47) + chrono::Duration::minutes(30);
    assert!(!p.exhausted(40, t0, later, Duration::from_secs(60)));
    assert!(p.exhausted(40, t0, later, Duration::from_secs(3600)));
}

#[test]
fn a_claim_lease_covers_the_in_process_tries() {
    let p = RetryPolicy::default();
    let timeout = Duration::from_secs(5);
    // Up to three calls of 5 s with the longest pauses, and a margin.
    assert_eq!(p.pause_cap(), Duration::from_millis(1600));
    assert_eq!(p.claim_lease(timeout), Duration::from_millis(29_600));
    assert!(
        RetryPolicy {
            immediate_attempts: u32::MAX,
            immediate_delay_ms: u64::MAX,
            ..p
        }
        .claim_lease(Duration::MAX)
            >= timeout,
        "never overflows"
    );
}

#[test]
fn bad_policies_are_refused() {
    let bad = [
        RetryPolicy {
            factor: 0.5,
            ..Default::default()
        },
        RetryPolicy {
            factor: f64::NAN,
            ..Default::default()
        },
        RetryPolicy {
            jitter: 1.0,
            ..Default::default()
        },
        RetryPolicy {
            initial_delay_ms: 0,
            ..Default::default()
        },
        RetryPolicy {
            initial_delay_ms: 10,
            max_delay_ms: 5,
            ..Default::default()
        },
        RetryPolicy {
            max_attempts: 0,
            ..Default::default()
        },
        RetryPolicy {
            immediate_attempts: 0,
            ..Default::default()
        },
        RetryPolicy {
            max_age_secs: MAX_AGE_SECS + 1,
            ..Default::default()
        },
    ];
    for p in bad {
        assert!(p.validate().is_err(), "{p:?}");
    }
}

#[test]
fn tier_labels() {
    assert_eq!(tier_label(Duration::from_secs(3600)), "1h");
    assert_eq!(tier_label(Duration::from_secs(300)), "5m");
    assert_eq!(tier_label(Duration::from_secs(30)), "30s");
    assert_eq!(tier_label(Duration::from_millis(250)), "250ms");
}

#[test]
fn a_tier_label_gives_its_delay_back() {
    for ms in [
        250, 1_000, 30_000, 90_000, 300_000, 3_600_000, 7_200_000, 86_400_000,
    ] {
        let d = Duration::from_millis(ms);
        assert_eq!(tier_delay(&tier_label(d)), Some(d), "{ms} ms");
    }
    for not in [
        "",
        "in_process",
        "s",
        "-5s",
        "5 s",
        "1.5h",
        "99999999999999999999h",
        "5d",
    ] {
        assert_eq!(tier_delay(not), None, "{not:?}");
    }
}
