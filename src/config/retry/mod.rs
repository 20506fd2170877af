//! The retry policy and its schedule, as pure functions: exponential backoff with jitter, `Retry-After`
//! clamped to the policy's bounds, the attempt and age budget, and the broker delay tier a
//! delay lands in.
//!
//! Durable retries wait in delay-tier queues (one queue per delay, `x-message-ttl` plus
//! dead-lettering back to the deliveries queue), so a retry never holds a broker delivery
//! open. A computed delay is rounded **up** to the next tier: a retry never comes earlier
//! than the policy (or the partner's `Retry-After`) asks, and at most one tier step later.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// How a destination retries. The defaults follow the best webhook senders: a first retry
/// within a minute, doubling up to an hour, and giving up after two days.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Tries in a row, in-process, on the first delivery (1 = no in-process retry); for blips.
    pub immediate_attempts: u32,
    /// Pause between in-process tries (doubling, with jitter).
    pub immediate_delay_ms: u64,
    /// Delay before the first durable retry.
    pub initial_delay_ms: u64,
    /// Each further retry waits this many times longer.
    pub factor: f64,
    /// Longest delay between two tries.
    pub max_delay_ms: u64,
    /// Random shortening of each delay, as a fraction (0.2 = up to 20% earlier), so retries
    /// of many events do not arrive together. Downward only: the delay tiers round a delay
    /// up, so a delay at a tier's length stays in that tier.
    pub jitter: f64,
    /// Partner calls in all before giving up (`retries_exhausted`).
    pub max_attempts: u32,
    /// Time from the first try after which no retry is scheduled (`retries_exhausted`).
    pub max_age_secs: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            immediate_attempts: 2,
            immediate_delay_ms: 200,
            initial_delay_ms: 30_000,
            factor: 2.0,
            max_delay_ms: 3_600_000,
            jitter: 0.2,
            max_attempts: 60,
            max_age_secs: 48 * 3600,
        }
    }
}

/// The longest `max_age_secs`: a year. It keeps every time computed from a delivery's age far
/// inside the range of dates and durations.
pub const MAX_AGE_SECS: u64 = 365 * 24 * 3600;

/// Why a policy cannot be used; the caller names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct PolicyError {
    pub key: &'static str,
    pub message: String,
}

impl RetryPolicy {
    /// Checks the bounds, so that every delay computed from the policy is meaningful.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let err = |key, message: &str| {
            Err(PolicyError {
                key,
                message: message.to_owned(),
            })
        };
        if !(1..=10).contains(&self.immediate_attempts) {
            return err("immediate_attempts", "must be between 1 and 10");
        }
        if self.immediate_delay_ms > 10_000 {
            return err(
                "immediate_delay_ms",
                "in-process pauses hold a delivery open: keep them under 10000 ms",
            );
        }
        if self.initial_delay_ms == 0 || self.initial_delay_ms > self.max_delay_ms {
            return err(
                "initial_delay_ms",
                "must be at least 1 and not above max_delay_ms",
            );
        }
        if !(self.factor.is_finite() && (1.0..=10.0).contains(&self.factor)) {
            return err("factor", "must be between 1 and 10");
        }
        if !(self.jitter.is_finite() && (0.0..1.0).contains(&self.jitter)) {
            return err("jitter", "must be at least 0 and below 1");
        }
        if self.max_attempts == 0 || self.max_attempts < self.immediate_attempts {
            return err("max_attempts", "must be at least immediate_attempts");
        }
        if !(1..=MAX_AGE_SECS).contains(&self.max_age_secs) {
            return err(
                "max_age_secs",
                "must be between 1 and 31536000 (a year): a delivery is not retried for longer",
            );
        }
        Ok(())
    }

    pub fn initial_delay(&self) -> Duration {
        Duration::from_millis(self.initial_delay_ms)
    }

    pub fn max_delay(&self) -> Duration {
        Duration::from_millis(self.max_delay_ms)
    }

    pub fn max_age(&self) -> Duration {
        Duration::from_secs(self.max_age_secs)
    }

    /// The delay before durable retry number `retry` (1 for the first), given a random
    /// `unit` in [0, 1) for the jitter and the partner's `Retry-After`, if any.
    ///
    /// Always within `[initial_delay, max_delay]`; a `Retry-After` raises the delay to what
    /// the partner asked, clamped to the same bounds.
    pub fn delay(&self, retry: u32, unit: f64, retry_after: Option<Duration>) -> Duration {
        let exp = retry.saturating_sub(1).min(64) as i32;
        let base = self.initial_delay_ms as f64 * self.factor.powi(exp);
        let spread = 1.0 - self.jitter * unit.clamp(0.0, 1.0);
        let ms = (base * spread).clamp(self.initial_delay_ms as f64, self.max_delay_ms as f64);
        let computed = Duration::from_millis(ms as u64);
        match retry_after {
            Some(ra) => computed.max(ra.clamp(self.initial_delay(), self.max_delay())),
            None => computed,
        }
    }

    /// The longest in-process pause between two tries: the pauses double from
    /// `immediate_delay_ms` up to this.
    pub fn pause_cap(&self) -> Duration {
        Duration::from_millis(self.immediate_delay_ms.saturating_mul(8).max(1))
    }

    /// How long a claim on a delivery outlives a holder that died holding it: every in-process
    /// try with its timeout and the longest pauses, plus a margin. A live holder keeps its
    /// claim for as long as it needs; this only bounds how long a dead one delays the delivery.
    pub fn claim_lease(&self, timeout: Duration) -> Duration {
        (timeout.saturating_add(self.pause_cap().saturating_mul(2)))
            .saturating_mul(self.immediate_attempts.saturating_add(1))
            .saturating_add(Duration::from_secs(5))
    }

    /// Whether to give up instead of scheduling a retry `next_delay` from `now`.
    pub fn exhausted(
        &self,
        attempts: u32,
        first_attempt_at: DateTime<Utc>,
        now: DateTime<Utc>,
        next_delay: Duration,
    ) -> bool {
        let age = (now - first_attempt_at).to_std().unwrap_or_default();
        attempts >= self.max_attempts || age + next_delay > self.max_age()
    }
}

/// The delay tiers, shortest first: the retry queues the broker holds messages in. From 30 s
/// on they are the default policy's steps, so the default schedule is kept exactly.
pub const DEFAULT_TIERS_MS: [u64; 11] = [
    1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 240_000, 480_000, 960_000, 1_920_000, 3_600_000,
];

/// The tier a delay waits in: the shortest tier at least as long as `delay`, or the longest
/// tier when `delay` is longer than all of them. `tiers` is sorted and not empty.
pub fn tier_for(tiers: &[Duration], delay: Duration) -> usize {
    tiers
        .iter()
        .position(|t| *t >= delay)
        .unwrap_or(tiers.len() - 1)
}

/// A tier's queue-name suffix: `1s`, `30s`, `5m`, `1h`, `250ms`.
pub fn tier_label(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

/// The delay a tier's label names ([`tier_label`]'s inverse); `None` for what is not one.
pub fn tier_delay(label: &str) -> Option<Duration> {
    let (digits, unit_ms) = if let Some(d) = label.strip_suffix("ms") {
        (d, 1)
    } else if let Some(d) = label.strip_suffix('h') {
        (d, 3_600_000)
    } else if let Some(d) = label.strip_suffix('m') {
        (d, 60_000)
    } else if let Some(d) = label.strip_suffix('s') {
        (d, 1_000)
    } else {
        return None;
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(Duration::from_millis(n.checked_mul(unit_ms)?))
}

#[cfg(test)]
mod tests;
