//! The checks a configuration passes at load, beyond what its types say: names, bounds, and
//! the rules that tie keys together (retry delays and the delay tiers, the store's TTL and the
//! retry age, the circuit and the retry age). Every error names the key.

use std::collections::BTreeSet;
use std::fmt;

use super::{BrokerConfig, Config, ConfigError, DestinationConfig, WorkerConfig, key_err, limits};

impl Config {
    /// Checks what the types cannot, and compiles each destination's partner side.
    pub(super) fn validate(&mut self) -> Result<(), ConfigError> {
        check_broker(&self.broker)?;
        check_worker(&self.worker)?;
        check_journal(&self.journal)?;
        self.tracing
            .check()
            .map_err(|(key, message)| key_err(key, message))?;
        if let Some(t) = &self.console.trace_url {
            super::tracing::check_trace_url(t).map_err(|m| key_err("console.trace_url", m))?;
        }
        super::operators::check(
            self.console.token.as_deref(),
            &self.console.operators,
            self.console.operator_header.as_deref(),
        )?;
        self.store.check_tls()?;
        self.store
            .check_ttl()
            .map_err(|m| key_err("store.ttl_secs", m))?;
        if self.destinations.is_empty() {
            return Err(key_err(
                "destinations",
                "at least one destination is required",
            ));
        }
        let longest_tier_ms = *self
            .broker
            .retry_tiers_ms
            .last()
            .expect("checked not empty");
        let ttl_secs = self.store.ttl().as_secs();
        let mut names = BTreeSet::new();
        for (i, d) in self.destinations.iter_mut().enumerate() {
            let at = |k: &str| format!("destinations[{i}].{k}");
            check_destination(d, &at)?;
            if !names.insert(d.name.clone()) {
                return Err(key_err(at("name"), format!("{:?} is used twice", d.name)));
            }
            if d.send_traceparent && !self.tracing.enabled() {
                return Err(key_err(
                    at("send_traceparent"),
                    "a call carries its span's traceparent only with tracing on: set [tracing] otlp_endpoint",
                ));
            }
            check_against_tiers(d, &at, longest_tier_ms)?;
            check_record_outlives_retries(d, i, longest_tier_ms, ttl_secs)?;
        }
        Ok(())
    }
}

fn check_broker(b: &BrokerConfig) -> Result<(), ConfigError> {
    b.url
        .parse::<lapin::uri::AMQPUri>()
        .map_err(|e| key_err("broker.url", format!("not an AMQP URL: {e}")))?;
    for (i, u) in b.failover_urls.iter().enumerate() {
        u.parse::<lapin::uri::AMQPUri>().map_err(|e| {
            key_err(
                format!("broker.failover_urls[{i}]"),
                format!("not an AMQP URL: {e}"),
            )
        })?;
    }
    // Every address is tried within one session set-up's bound (30 s).
    let n = b.addresses().len() as u64;
    if b.connect_timeout_secs == 0 || b.connect_timeout_secs.saturating_mul(n) >= 30 {
        return Err(key_err(
            "broker.connect_timeout_secs",
            format!(
                "must be at least 1, and times the {n} broker address(es) under 30 s (a session's set-up bound)"
            ),
        ));
    }
    b.check_tls()?;
    check_name("broker.exchange", &b.exchange)?;
    check_name("broker.queue_prefix", &b.queue_prefix)?;
    if b.prefetch == 0 {
        return Err(key_err("broker.prefetch", "must be at least 1"));
    }
    if b.delivery_limit == 0 {
        return Err(key_err("broker.delivery_limit", "must be at least 1"));
    }
    in_range(
        "broker.reconnect_max_delay_secs",
        b.reconnect_max_delay_secs,
        1,
        limits::RECONNECT_MAX_DELAY_SECS,
    )?;
    check_tiers(&b.retry_tiers_ms)
}

fn check_tiers(tiers: &[u64]) -> Result<(), ConfigError> {
    let key = "broker.retry_tiers_ms";
    if tiers.is_empty() || tiers.contains(&0) || tiers.windows(2).any(|w| w[0] >= w[1]) {
        return Err(key_err(
            key,
            "must list at least one delay, in milliseconds, strictly increasing",
        ));
    }
    if tiers.len() > limits::RETRY_TIERS {
        return Err(key_err(
            key,
            format!(
                "lists {} tiers, each a queue; at most {} are allowed",
                tiers.len(),
                limits::RETRY_TIERS
            ),
        ));
    }
    let longest = *tiers.last().expect("checked not empty");
    if longest > limits::RETRY_TIER_MS {
        return Err(key_err(
            key,
            format!(
                "{longest} ms is longer than a year ({} ms), the longest retry age",
                limits::RETRY_TIER_MS
            ),
        ));
    }
    Ok(())
}

fn check_worker(w: &WorkerConfig) -> Result<(), ConfigError> {
    in_range(
        "worker.max_event_bytes",
        w.max_event_bytes,
        1024,
        limits::MAX_EVENT_BYTES,
    )?;
    in_range(
        "worker.shutdown_grace_secs",
        w.shutdown_grace_secs,
        0,
        limits::SHUTDOWN_GRACE_SECS,
    )?;
    in_range(
        "worker.queue_sample_secs",
        w.queue_sample_secs,
        1,
        limits::QUEUE_SAMPLE_SECS,
    )
}

fn check_journal(j: &super::journal::JournalConfig) -> Result<(), ConfigError> {
    in_range(
        "journal.retention_days",
        j.retention_days,
        1,
        limits::JOURNAL_RETENTION_DAYS,
    )?;
    in_range("journal.buffer", j.buffer, 1, limits::JOURNAL_BUFFER)?;
    j.check().map_err(|(key, message)| key_err(key, message))
}

/// One destination's own keys; compiles its partner side.
fn check_destination(
    d: &mut DestinationConfig,
    at: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    // The retry policy first: the kind's own checks (HOQU's status wait) rely on it.
    d.retry
        .validate()
        .map_err(|e| key_err(at(&format!("retry.{}", e.key)), e.message))?;
    d.compile(at)?;
    check_name(&at("name"), &d.name)?;
    if !(1..=120_000).contains(&d.timeout_ms) {
        return Err(key_err(at("timeout_ms"), "must be between 1 and 120000"));
    }
    in_range(&at("concurrency"), d.concurrency, 1, limits::CONCURRENCY)?;
    if d.matcher.networks.is_empty() {
        return Err(key_err(at("match.networks"), "name at least one network"));
    }
    check_circuit(d, at)?;
    if d.rate_limit_per_sec == Some(0) {
        return Err(key_err(
            at("rate_limit_per_sec"),
            "must be at least 1 (or absent)",
        ));
    }
    if d.click_lifetime_days == 0 {
        return Err(key_err(at("click_lifetime_days"), "must be at least 1"));
    }
    Ok(())
}

fn check_circuit(d: &DestinationConfig, at: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    if d.circuit.failure_threshold == 0 {
        return Err(key_err(
            at("circuit.failure_threshold"),
            "must be at least 1",
        ));
    }
    // An open circuit holds deliveries in the tiers on their retry age: open longer than the
    // age, it would dead-letter every delivery it holds without a call.
    if d.circuit.open_ms == 0 {
        return Err(key_err(at("circuit.open_ms"), "must be at least 1"));
    }
    if d.circuit.open_ms > d.retry.max_age_secs.saturating_mul(1000) {
        return Err(key_err(
            at("circuit.open_ms"),
            format!(
                "{} ms is longer than this destination's retry.max_age_secs ({} s): the \
                 deliveries an open circuit holds would be dead-lettered without a call",
                d.circuit.open_ms, d.retry.max_age_secs
            ),
        ));
    }
    Ok(())
}

/// A delay longer than every tier would wait only the longest tier: retries, and a partner's
/// Retry-After, would come early.
fn check_against_tiers(
    d: &DestinationConfig,
    at: &dyn Fn(&str) -> String,
    longest_tier_ms: u64,
) -> Result<(), ConfigError> {
    if d.retry.max_delay_ms > longest_tier_ms {
        return Err(key_err(
            at("retry.max_delay_ms"),
            format!(
                "{} ms is longer than the longest delay tier (broker.retry_tiers_ms: {longest_tier_ms} ms), \
                 so such a retry would wait only {longest_tier_ms} ms and come early; add a tier of at \
                 least {} ms to broker.retry_tiers_ms, or lower max_delay_ms to at most {longest_tier_ms}",
                d.retry.max_delay_ms, d.retry.max_delay_ms
            ),
        ));
    }
    Ok(())
}

/// A delivery's record must outlive every copy of it that can still arrive: its last retry is
/// scheduled within max_age_secs of the first try, and the tier it waits in may round its
/// delay up by as much as the longest tier.
fn check_record_outlives_retries(
    d: &DestinationConfig,
    i: usize,
    longest_tier_ms: u64,
    ttl_secs: u64,
) -> Result<(), ConfigError> {
    let longest_tier_secs = longest_tier_ms.div_ceil(1000);
    let needed = d.retry.max_age_secs.saturating_add(longest_tier_secs);
    if ttl_secs < needed {
        return Err(key_err(
            "store.ttl_secs",
            format!(
                "{ttl_secs} s is shorter than the retries of a delivery can last: \
                 destinations[{i}].retry.max_age_secs ({} s) plus the longest delay tier \
                 ({longest_tier_secs} s, broker.retry_tiers_ms). A retry or a redelivery arriving \
                 after the record of its delivery expired would be sent to the partner again; set \
                 store.ttl_secs to at least {needed}, or lower max_age_secs",
                d.retry.max_age_secs
            ),
        ));
    }
    Ok(())
}

/// `value` within `[min, max]`, or an error naming `key` and the bounds.
fn in_range<T: PartialOrd + fmt::Display>(
    key: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(key_err(
            key,
            format!("{value} must be between {min} and {max}"),
        ));
    }
    Ok(())
}

/// Names used as metric labels and AMQP names: short, and only `[A-Za-z0-9._-]`.
fn check_name(key: &str, v: &str) -> Result<(), ConfigError> {
    let ok = !v.is_empty()
        && v.len() <= 100
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(key_err(
            key,
            format!("{v:?} must be 1 to 100 characters among letters, digits, '-', '_' and '.'"),
        ))
    }
}
