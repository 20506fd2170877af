//! A destination's `[destinations.circuit]`: when its partner stops being called.

use serde::Deserialize;

/// A circuit breaker per destination: after `failure_threshold` retryable failures in a
/// row the partner is not called for `open_ms`; deliveries meanwhile wait in the retry tiers
/// (held, never discarded), then one probe decides whether it closes again.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitConfig {
    pub enabled: bool,
    pub failure_threshold: u32,
    pub open_ms: u64,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        CircuitConfig {
            enabled: true,
            failure_threshold: 5,
            open_ms: 30_000,
        }
    }
}
