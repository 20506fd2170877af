//! Again or give up: the one decision for a delivery that could not be delivered now, on
//! its destination's [`RetryPolicy`] (whose schedule and delay tiers are in
//! [`crate::config::retry`]).

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::retry::RetryPolicy;

/// Why a delivery is to be tried again later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The partner failed in a way worth retrying, maybe asking for a delay (`Retry-After`).
    Failed { retry_after: Option<Duration> },
    /// The partner's circuit stays open this much longer: no call was made.
    CircuitOpen(Duration),
}

/// Again, after a delay, or give up (`retries_exhausted`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Retry(Duration),
    GiveUp,
}

/// The one decision "again or give up" for a delivery that could not be delivered now, given
/// a random `unit` in [0, 1) for the jitter. Failed calls back off by the retries made so far;
/// a wait for an open circuit lasts as long as the circuit stays open. Either way the
/// delivery gives up once its attempts or age budget would be spent.
pub fn next_step(
    policy: &RetryPolicy,
    delivery: &crate::relay::delivery::Delivery,
    cause: Cause,
    now: DateTime<Utc>,
    unit: f64,
) -> Step {
    let delay = match cause {
        Cause::Failed { retry_after } => {
            policy.delay(delivery.retries.saturating_add(1), unit, retry_after)
        }
        Cause::CircuitOpen(wait) => wait.max(policy.initial_delay()),
    };
    if policy.exhausted(delivery.attempts, delivery.budget_start(), now, delay) {
        Step::GiveUp
    } else {
        Step::Retry(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_step_backs_off_and_gives_up_on_budget() {
        let p = RetryPolicy::default();
        let t0 = Utc::now();
        let event = serde_json::value::RawValue::from_string("{}".into()).unwrap();
        let mut d = crate::relay::delivery::Delivery::new("e".into(), "d".into(), event, t0);
        let failed = Cause::Failed { retry_after: None };
        assert_eq!(
            next_step(&p, &d, failed, t0, 0.0),
            Step::Retry(p.initial_delay())
        );
        d.retries = 2;
        assert_eq!(
            next_step(&p, &d, failed, t0, 0.0),
            Step::Retry(Duration::from_secs(120))
        );
        // An open circuit holds the delivery as long as it stays open, never less than the
        // first delay, and costs no backoff step.
        let open = Cause::CircuitOpen(Duration::from_secs(1));
        assert_eq!(
            next_step(&p, &d, open, t0, 0.0),
            Step::Retry(p.initial_delay())
        );
        let open = Cause::CircuitOpen(Duration::from_secs(600));
        assert_eq!(
            next_step(&p, &d, open, t0, 0.0),
            Step::Retry(Duration::from_secs(600))
        );
        d.attempts = p.max_attempts;
        assert_eq!(next_step(&p, &d, failed, t0, 0.0), Step::GiveUp);
        d.attempts = 1;
        let late = t0 + chrono::Duration::hours(48);
        assert_eq!(next_step(&p, &d, open, late, 0.0), Step::GiveUp);
    }
}
