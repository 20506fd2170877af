//! A circuit breaker per destination. While a partner keeps failing, the relay stops calling
//! it (its deliveries wait in the retry tiers instead, held, never discarded); after a pause,
//! one probe call decides whether it closes again.
//!
//! closed --(N retryable failures in a row)--> open --(pause over)--> half-open
//! half-open --(probe succeeds)--> closed;  half-open --(probe fails)--> open

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use crate::config::circuit::CircuitConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    /// The `postback_relay_circuit_state` gauge value.
    pub fn code(self) -> i64 {
        match self {
            State::Closed => 0,
            State::HalfOpen => 1,
            State::Open => 2,
        }
    }
}

/// Whether a call may go ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Call the partner.
    Call,
    /// Call the partner as the half-open probe; report with [`Circuit::record`].
    Probe,
    /// Do not call; try again after this long.
    Wait(Duration),
}

#[derive(Debug)]
enum Inner {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A probe call is out since `since`. A probe whose result never comes back (its task
    /// was cancelled with its session) stops counting after a pause: a new one may go.
    HalfOpen {
        since: Instant,
    },
}

#[derive(Debug)]
pub struct Circuit {
    config: CircuitConfig,
    inner: Mutex<Inner>,
}

impl Circuit {
    pub fn new(config: CircuitConfig) -> Circuit {
        Circuit {
            config,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
        }
    }

    fn open_for(&self) -> Duration {
        Duration::from_millis(self.config.open_ms)
    }

    pub fn state(&self) -> State {
        match *self.inner.lock().expect("circuit lock") {
            Inner::Closed { .. } => State::Closed,
            Inner::Open { .. } => State::Open,
            Inner::HalfOpen { .. } => State::HalfOpen,
        }
    }

    /// How much longer no call may go, without taking the probe; `None` when one may.
    pub fn waits(&self, now: Instant) -> Option<Duration> {
        if !self.config.enabled {
            return None;
        }
        self.left(&self.inner.lock().expect("circuit lock"), now)
    }

    /// How long `inner` holds calls back from `now`: an open circuit until its end; a probe
    /// out, about as long as a probe takes (one probe at a time).
    fn left(&self, inner: &Inner, now: Instant) -> Option<Duration> {
        let until = match *inner {
            Inner::Closed { .. } => return None,
            Inner::Open { until } => until,
            Inner::HalfOpen { since } => since + self.open_for(),
        };
        (now < until).then(|| until - now)
    }

    pub fn admit(&self, now: Instant) -> Admit {
        if !self.config.enabled {
            return Admit::Call;
        }
        let mut inner = self.inner.lock().expect("circuit lock");
        if let Inner::Closed { .. } = *inner {
            return Admit::Call;
        }
        match self.left(&inner, now) {
            Some(wait) => Admit::Wait(wait),
            None => {
                *inner = Inner::HalfOpen { since: now };
                Admit::Probe
            }
        }
    }

    /// Reports a call's result: `healthy` when the partner answered something other than a
    /// retryable failure (a 4xx means it is up).
    pub fn record(&self, healthy: bool, now: Instant) {
        if !self.config.enabled {
            return;
        }
        let mut inner = self.inner.lock().expect("circuit lock");
        *inner = match (&*inner, healthy) {
            (_, true) => Inner::Closed { failures: 0 },
            (Inner::Closed { failures }, false) if failures + 1 < self.config.failure_threshold => {
                Inner::Closed {
                    failures: failures + 1,
                }
            }
            // Threshold reached, a failed probe, or a late failure while open: (re)open.
            (_, false) => Inner::Open {
                until: now + self.open_for(),
            },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn circuit() -> Circuit {
        Circuit::new(CircuitConfig {
            enabled: true,
            failure_threshold: 3,
            open_ms: 1_000,
        })
    }

    #[test]
    fn opens_after_failures_in_a_row_and_probes_before_closing() {
        let c = circuit();
        let t = Instant::now();
        c.record(false, t);
        c.record(true, t);
        c.record(false, t);
        c.record(false, t);
        assert_eq!(c.state(), State::Closed, "a success resets the count");
        c.record(false, t);
        assert_eq!(c.state(), State::Open);
        assert_eq!(c.admit(t), Admit::Wait(Duration::from_secs(1)));
        let later = t + Duration::from_millis(1_001);
        assert_eq!(c.admit(later), Admit::Probe);
        assert!(
            matches!(c.admit(later), Admit::Wait(_)),
            "one probe at a time"
        );
        c.record(false, later);
        assert_eq!(c.state(), State::Open, "a failed probe opens it again");
        let again = later + Duration::from_millis(1_001);
        assert_eq!(c.admit(again), Admit::Probe);
        c.record(true, again);
        assert_eq!(c.state(), State::Closed);
        assert_eq!(c.admit(again), Admit::Call);
    }

    #[test]
    fn waits_tells_an_open_circuit_without_taking_the_probe() {
        let c = circuit();
        let t = Instant::now();
        assert_eq!(c.waits(t), None, "closed");
        for _ in 0..3 {
            c.record(false, t);
        }
        assert_eq!(c.waits(t), Some(Duration::from_secs(1)));
        let later = t + Duration::from_millis(1_001);
        assert_eq!(c.waits(later), None, "a probe is due");
        assert_eq!(c.waits(later), None, "and still is: asking took nothing");
        assert_eq!(c.admit(later), Admit::Probe);
        assert!(c.waits(later).is_some(), "the probe is out");
    }

    #[test]
    fn disabled_never_opens() {
        let c = Circuit::new(CircuitConfig {
            enabled: false,
            ..CircuitConfig::default()
        });
        for _ in 0..100 {
            c.record(false, Instant::now());
        }
        assert_eq!(c.admit(Instant::now()), Admit::Call);
    }
}
