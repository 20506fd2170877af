//! Configuration: a TOML file validated in full at start-up. Unknown keys are errors, secrets
//! come from the environment through `${VAR}`, and every error names the key and the problem.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::event::{ConversionEvent, EventType};
use crate::partner::template::Missing;
use crate::partner::{self, Kind, Partner, RenderError, Request, Spec};
use crate::retry::RetryPolicy;

pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Upper bounds of keys that nothing else bounds. Past them a value would overflow a time
/// computation, pin memory, or wait so long that the relay looks hung; none is near what a
/// working setup needs.
pub mod limits {
    /// `broker.reconnect_max_delay_secs`: an hour between reconnection attempts at most.
    pub const RECONNECT_MAX_DELAY_SECS: u64 = 3600;
    /// `broker.retry_tiers_ms`: each tier is a quorum queue.
    pub const RETRY_TIERS: usize = 64;
    /// `broker.retry_tiers_ms`: a year, the longest retry age.
    pub const RETRY_TIER_MS: u64 = 365 * 24 * 3600 * 1000;
    /// `worker.max_event_bytes`: 128 MiB, RabbitMQ's default largest message; up to
    /// `broker.prefetch` bodies are held at once.
    pub const MAX_EVENT_BYTES: usize = 128 * 1024 * 1024;
    /// `worker.shutdown_grace_secs`.
    pub const SHUTDOWN_GRACE_SECS: u64 = 3600;
    /// `worker.queue_sample_secs`: a sample older than this says nothing about the backlog.
    pub const QUEUE_SAMPLE_SECS: u64 = 3600;
    /// `destinations[].concurrency`: a partner's requests in flight at once, per relay. The
    /// largest `broker.prefetch`, so that `concurrency = prefetch` is always allowed; tokio's
    /// semaphore would panic far above it.
    pub const CONCURRENCY: usize = u16::MAX as usize;
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub broker: BrokerConfig,
    #[serde(default)]
    pub worker: WorkerConfig,
    #[serde(default)]
    pub http: HttpConfig,
    /// Where deliveries, claims and statuses are recorded.
    #[serde(default)]
    pub store: crate::store::StoreConfig,
    pub destinations: Vec<DestinationConfig>,
    /// Every secret the configuration holds, to keep out of what the relay writes.
    #[serde(skip)]
    pub secrets: crate::redact::Secrets,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// AMQP URL; the vhost is percent-encoded (`%2f` is `/`).
    pub url: String,
    /// The topic exchange producers publish to (routing key = event type).
    pub exchange: String,
    /// Prefix of the relay's queues: `{prefix}.events`, `{prefix}.deliveries`, `{prefix}.dead`.
    pub queue_prefix: String,
    /// Unacknowledged deliveries the broker may hand the relay at once; also the number of
    /// events processed concurrently.
    pub prefetch: u16,
    /// Redeliveries after which the broker dead-letters a message (quorum `x-delivery-limit`),
    /// so a message that crashes the relay cannot loop forever.
    pub delivery_limit: u32,
    /// Seconds between reconnection attempts grow up to this cap.
    pub reconnect_max_delay_secs: u64,
    /// The delay tiers durable retries wait in, in milliseconds, shortest first: one queue
    /// `{queue_prefix}.retry.{delay}` each. A retry waits in the shortest tier at least as
    /// long as its computed delay.
    pub retry_tiers_ms: Vec<u64>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            url: DEFAULT_AMQP_URL.into(),
            exchange: "conversions".into(),
            queue_prefix: "postback-relay".into(),
            prefetch: 64,
            delivery_limit: 20,
            reconnect_max_delay_secs: 30,
            retry_tiers_ms: crate::retry::DEFAULT_TIERS_MS.to_vec(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Bodies over this size are dead-lettered unread (`event_too_large`).
    pub max_event_bytes: usize,
    /// On SIGTERM/SIGINT, how long in-flight deliveries may take to finish.
    pub shutdown_grace_secs: u64,
    /// How often queue depths are sampled into `postback_relay_queue_messages`.
    pub queue_sample_secs: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            max_event_bytes: 1024 * 1024,
            shutdown_grace_secs: 30,
            queue_sample_secs: 15,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the `/metrics`, `/healthz` and `/readyz` listener.
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:9464".parse().expect("valid address"),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// Unique; used in metrics, logs and dead letters.
    pub name: String,
    pub kind: Kind,
    /// The partner's endpoint (powerspace, hoqu). Callbacks and trackers have URL templates.
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(rename = "match")]
    pub matcher: MatchRule,
    /// Event type -> what the partner is told (see [`Kind::conversions`]); merged over the
    /// kind's defaults.
    #[serde(default)]
    pub conversions: BTreeMap<EventType, String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Partner requests in flight at once for this destination.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default)]
    pub circuit: CircuitConfig,
    /// Requests per second at most to this destination (none when absent).
    #[serde(default)]
    pub rate_limit_per_sec: Option<u32>,
    /// A conversion whose click is older than this is dead-lettered `click_expired` without
    /// calling the partner (Powerspace: "expiration ~30 jours"; HOQU: "как правило 30 дней").
    #[serde(default = "default_click_lifetime_days")]
    pub click_lifetime_days: u32,
    /// A template placeholder with no value: rendered `empty`, or the delivery `fail`s.
    #[serde(default)]
    pub missing: Missing,
    #[serde(default)]
    pub powerspace: Option<crate::partner::powerspace::Options>,
    #[serde(default)]
    pub hoqu: Option<crate::partner::hoqu::Options>,
    #[serde(default)]
    pub callback: Option<crate::partner::callback::Options>,
    #[serde(default)]
    pub tracker: Option<crate::partner::tracker::Options>,
    /// The partner side, checked and compiled (templates parsed) at load.
    #[serde(skip)]
    pub partner: Partner,
}

fn default_timeout_ms() -> u64 {
    // Powerspace: "Gérez les timeouts (5 secondes max recommandé)".
    5_000
}

fn default_concurrency() -> usize {
    64
}

fn default_click_lifetime_days() -> u32 {
    30
}

impl DestinationConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// What `event` is sent as, when this destination must hear about it.
    pub fn route(&self, event: &crate::event::ConversionEvent) -> Option<&str> {
        let a = event.attribution.as_ref()?;
        let m = &self.matcher;
        let wanted = m.networks.iter().any(|n| n == &a.network)
            && (m.types.is_empty() || m.types.contains(&event.kind))
            && (m.publishers.is_empty()
                || a.publisher_id
                    .as_ref()
                    .is_some_and(|p| m.publishers.contains(p)));
        if wanted {
            self.partner.routes.get(&event.kind).map(String::as_str)
        } else {
            None
        }
    }

    /// Whether this destination must hear about `event`.
    pub fn matches(&self, event: &crate::event::ConversionEvent) -> bool {
        self.route(event).is_some()
    }

    /// Renders the request this destination sends for `event` (see [`Partner::render`]).
    pub fn render(&self, event: &ConversionEvent) -> Result<Request, RenderError> {
        self.partner.render(&self.name, event)
    }

    /// Checks the destination's partner side and compiles it. `at` names a key for errors.
    fn compile(&mut self, at: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        let spec = Spec {
            kind: self.kind,
            base_url: self.base_url.as_deref(),
            conversions: &self.conversions,
            missing: self.missing,
            powerspace: self.powerspace.as_ref(),
            hoqu: self.hoqu.as_ref(),
            callback: self.callback.as_ref(),
            tracker: self.tracker.as_ref(),
        };
        self.partner = partner::compile(&spec).map_err(|e| key_err(at(&e.key), e.message))?;
        let routes = &self.partner.routes;
        for t in &self.matcher.types {
            if !routes.contains_key(t) {
                let known: Vec<&str> = routes.keys().map(|t| t.as_str()).collect();
                return Err(key_err(
                    at("match.types"),
                    format!(
                        "{} has no request for `{t}` (it handles: {}; add `{t} = \"...\"` to [conversions] to send it as one of: {})",
                        self.kind,
                        known.join(", "),
                        self.kind.conversions().join(", ")
                    ),
                ));
            }
        }
        // An update waits for its conversion in the retry tiers, and the wait counts against
        // the delivery's retry age: past it, a failed call would get no retry. Bounded by the
        // age, the wait is also covered by the store's TTL (checked against the age) and far
        // from chrono's range.
        if let Some(h) = &self.hoqu
            && h.status_wait_secs > self.retry.max_age_secs
        {
            return Err(key_err(
                at("hoqu.status_wait_secs"),
                format!(
                    "{} s is longer than this destination's retry.max_age_secs ({} s): the wait \
                     counts against the retry age, so an update sent after it would get no retry \
                     if its call failed; lower it, or raise retry.max_age_secs",
                    h.status_wait_secs, self.retry.max_age_secs
                ),
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchRule {
    /// `attribution.network` values this destination serves.
    pub networks: Vec<String>,
    /// Event types; empty means every type the destination has a conversion for.
    #[serde(default)]
    pub types: BTreeSet<EventType>,
    /// `attribution.publisher_id` values; empty means any publisher.
    #[serde(default)]
    pub publishers: BTreeSet<String>,
}

/// A circuit breaker per destination: after `failure_threshold` retryable failures in a
/// row the partner is not called for `open_ms`; deliveries meanwhile wait in the retry tiers
/// (held, never discarded), then one probe decides whether it closes again.
#[derive(Clone, Debug, Deserialize)]
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

/// A configuration problem: the key and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config is not valid TOML: {0}")]
    Syntax(String),
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
}

pub(crate) fn key_err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.into(),
        message: message.into(),
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_toml(&text, &|name| std::env::var(name).ok())
    }

    /// Parses and validates a configuration; `env` resolves `${VAR}` references.
    pub fn from_toml(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        // Values from the environment are often secrets: no error message may repeat them.
        let secrets = std::cell::RefCell::new(Vec::new());
        let recording = |name: &str| {
            let v = env(name);
            if let Some(v) = v.as_ref().filter(|v| v.len() >= 4) {
                secrets.borrow_mut().push(v.clone());
            }
            v
        };
        for (k, v) in table.iter_mut() {
            expand_env(k, v, &recording)?;
        }
        let scrub = |e: ConfigError| match e {
            ConfigError::Key { key, mut message } => {
                for s in secrets.borrow().iter() {
                    message = message.replace(s.as_str(), "REDACTED");
                }
                ConfigError::Key { key, message }
            }
            other => other,
        };
        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let key = e.path().to_string();
                scrub(key_err(key, e.into_inner().to_string()))
            })?;
        config.validate().map_err(scrub)?;
        config.secrets = config.collect_secrets(secrets.into_inner());
        Ok(config)
    }

    /// The values read from the environment, and the secrets written in the file itself: API
    /// keys and the passwords in broker and store URLs.
    fn collect_secrets(&self, from_env: Vec<String>) -> crate::redact::Secrets {
        let mut all = crate::redact::Secrets::new(from_env);
        for d in &self.destinations {
            if let Some(h) = &d.hoqu {
                all.add(&h.api_key);
            }
        }
        let mut urls = vec![self.broker.url.as_str()];
        if let crate::store::StoreConfig::Redis { url, .. } = &self.store {
            urls.push(url);
        }
        for u in urls {
            if let Some(password) = url::Url::parse(u)
                .ok()
                .and_then(|u| u.password().map(str::to_owned))
            {
                let decoded = percent_encoding::percent_decode_str(&password).decode_utf8_lossy();
                all.add(&decoded);
            }
        }
        all
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        let b = &self.broker;
        b.url
            .parse::<lapin::uri::AMQPUri>()
            .map_err(|e| key_err("broker.url", format!("not an AMQP URL: {e}")))?;
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
        let tiers = &b.retry_tiers_ms;
        if tiers.is_empty() || tiers.contains(&0) || tiers.windows(2).any(|w| w[0] >= w[1]) {
            return Err(key_err(
                "broker.retry_tiers_ms",
                "must list at least one delay, in milliseconds, strictly increasing",
            ));
        }
        if tiers.len() > limits::RETRY_TIERS {
            return Err(key_err(
                "broker.retry_tiers_ms",
                format!(
                    "lists {} tiers, each a queue; at most {} are allowed",
                    tiers.len(),
                    limits::RETRY_TIERS
                ),
            ));
        }
        let longest_tier_ms = *tiers.last().expect("checked not empty");
        if longest_tier_ms > limits::RETRY_TIER_MS {
            return Err(key_err(
                "broker.retry_tiers_ms",
                format!(
                    "{longest_tier_ms} ms is longer than a year ({} ms), the longest retry age",
                    limits::RETRY_TIER_MS
                ),
            ));
        }
        let w = &self.worker;
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
        )?;
        self.store
            .check_ttl()
            .map_err(|m| key_err("store.ttl_secs", m))?;
        let ttl_secs = self.store.ttl().as_secs();
        if self.destinations.is_empty() {
            return Err(key_err(
                "destinations",
                "at least one destination is required",
            ));
        }
        let mut names = BTreeSet::new();
        for (i, d) in self.destinations.iter_mut().enumerate() {
            let at = |k: &str| format!("destinations[{i}].{k}");
            // The retry policy first: the kind's own checks (HOQU's status wait) rely on it.
            d.retry
                .validate()
                .map_err(|e| key_err(at(&format!("retry.{}", e.key)), e.message))?;
            d.compile(&at)?;
            check_name(&at("name"), &d.name)?;
            if !names.insert(d.name.clone()) {
                return Err(key_err(at("name"), format!("{:?} is used twice", d.name)));
            }
            if !(1..=120_000).contains(&d.timeout_ms) {
                return Err(key_err(at("timeout_ms"), "must be between 1 and 120000"));
            }
            in_range(&at("concurrency"), d.concurrency, 1, limits::CONCURRENCY)?;
            if d.matcher.networks.is_empty() {
                return Err(key_err(at("match.networks"), "name at least one network"));
            }
            // A delay longer than every tier would wait only the longest tier: retries, and
            // a partner's Retry-After, would come early.
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
            // A delivery's record must outlive every copy of it that can still arrive: its
            // last retry is scheduled within max_age_secs of the first try, and the tier it
            // waits in may round its delay up by as much as the longest tier.
            let needed = d
                .retry
                .max_age_secs
                .saturating_add(longest_tier_ms.div_ceil(1000));
            if ttl_secs < needed {
                return Err(key_err(
                    "store.ttl_secs",
                    format!(
                        "{ttl_secs} s is shorter than the retries of a delivery can last: \
                         destinations[{i}].retry.max_age_secs ({} s) plus the longest delay tier \
                         ({} s, broker.retry_tiers_ms). A retry or a redelivery arriving after the \
                         record of its delivery expired would be sent to the partner again; set \
                         store.ttl_secs to at least {needed}, or lower max_age_secs",
                        d.retry.max_age_secs,
                        longest_tier_ms.div_ceil(1000)
                    ),
                ));
            }
            if d.circuit.failure_threshold == 0 {
                return Err(key_err(
                    at("circuit.failure_threshold"),
                    "must be at least 1",
                ));
            }
            // An open circuit holds deliveries in the tiers on their retry age: open longer
            // than the age, it would dead-letter every delivery it holds without a call.
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
            if d.rate_limit_per_sec == Some(0) {
                return Err(key_err(
                    at("rate_limit_per_sec"),
                    "must be at least 1 (or absent)",
                ));
            }
            if d.click_lifetime_days == 0 {
                return Err(key_err(at("click_lifetime_days"), "must be at least 1"));
            }
        }
        Ok(())
    }

    /// The worker defaults, for tools that run without a config file.
    pub fn default_worker() -> WorkerConfig {
        WorkerConfig::default()
    }

    pub fn events_queue(&self) -> String {
        format!("{}.events", self.broker.queue_prefix)
    }

    pub fn deliveries_queue(&self) -> String {
        format!("{}.deliveries", self.broker.queue_prefix)
    }

    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.broker.queue_prefix)
    }
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

/// Replaces `${VAR}` in every string value with the variable's value; an unset variable is an
/// error naming the key. `$${` stands for a literal `${`.
fn expand_env(
    key: &str,
    v: &mut toml::Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match v {
        toml::Value::String(s) if s.contains('$') => *s = expand_str(key, s, env)?,
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_env(&format!("{key}[{i}]"), item, env)?;
            }
        }
        toml::Value::Table(t) => {
            for (k, item) in t.iter_mut() {
                expand_env(&format!("{key}.{k}"), item, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand_str(
    key: &str,
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(r) = rest.strip_prefix("$${") {
            out.push_str("${");
            rest = r;
        } else if let Some(r) = rest.strip_prefix("${") {
            let end = r
                .find('}')
                .ok_or_else(|| key_err(key, "unclosed ${ in value"))?;
            let name = &r[..end];
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(key_err(key, format!("${{{name}}} is not a variable name")));
            }
            let value = env(name)
                .ok_or_else(|| key_err(key, format!("environment variable {name} is not set")))?;
            out.push_str(&value);
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::from_toml(text, &|n| (n == "SET").then(|| "value".to_owned()))
            .unwrap_err()
            .to_string()
    }

    const MINIMAL: &str = r#"
        [[destinations]]
        name = "ps"
        kind = "powerspace"
        base_url = "https://a.pwspace.com"
        match = { networks = ["powerspace"] }
    "#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::from_toml(MINIMAL, &|_| None).unwrap();
        assert_eq!(c.broker.url, DEFAULT_AMQP_URL);
        assert_eq!(c.events_queue(), "postback-relay.events");
        assert_eq!(c.destinations[0].timeout(), Duration::from_secs(5));
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = err(&format!("{MINIMAL}\ntimeout = 3"));
        assert!(
            e.contains("destinations[0]") && e.contains("unknown field `timeout`"),
            "{e}"
        );
        let e = err(&format!("[broker]\nprefech = 3\n{MINIMAL}"));
        assert!(e.contains("`broker") && e.contains("prefech"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = err(&MINIMAL.replace("https://a.pwspace.com", "ftp://x"));
        assert!(e.contains("destinations[0].base_url"), "{e}");
        let e = err(&MINIMAL.replace("powerspace\"\n", "hoqu\"\n"));
        assert!(
            e.contains("destinations[0].hoqu") && e.contains("required"),
            "{e}"
        );
        let e = err(&MINIMAL.replace("powerspace\"\n", "carrier-pigeon\"\n"));
        assert!(
            e.contains("destinations[0].kind") && e.contains("unknown variant"),
            "{e}"
        );
        let e = err(&format!(
            "{MINIMAL}\n[destinations.hoqu]\napi_key = \"k\"\npayout = \"fixed\""
        ));
        assert!(
            e.contains("destinations[0].hoqu") && e.contains("kind powerspace"),
            "{e}"
        );
        let e = err(&format!("{MINIMAL}\nconcurrency = 0"));
        assert!(e.contains("destinations[0].concurrency"), "{e}");
        let e = err(&MINIMAL.replace(
            "networks = [\"powerspace\"]",
            "networks = [\"p\"], types = [\"rebill\"]",
        ));
        assert!(e.contains("match.types") && e.contains("rebill"), "{e}");
        let e = err(&format!(
            "{MINIMAL}\n[[destinations]]\nname = \"ps\"\nkind = \"powerspace\"\nbase_url = \"http://x\"\nmatch = {{ networks = [\"a\"] }}"
        ));
        assert!(
            e.contains("destinations[1].name") && e.contains("twice"),
            "{e}"
        );
        assert!(err("").contains("destinations"));
    }

    #[test]
    fn a_longest_delay_beyond_every_tier_is_refused() {
        // The longest default tier is 1 h: a 2 h delay would wait 1 h and come early.
        let e = err(&format!("{MINIMAL}\nretry = {{ max_delay_ms = 7200000 }}"));
        assert!(
            e.contains("destinations[0].retry.max_delay_ms")
                && e.contains("7200000")
                && e.contains("3600000")
                && e.contains("broker.retry_tiers_ms"),
            "{e}"
        );
        // Equal to the longest tier is fine, and so is a tier added for it.
        Config::from_toml(
            &format!("{MINIMAL}\nretry = {{ max_delay_ms = 3600000 }}"),
            &|_| None,
        )
        .unwrap();
        Config::from_toml(
            &format!(
                "[broker]\nretry_tiers_ms = [30000, 7200000]\n{MINIMAL}\nretry = {{ max_delay_ms = 7200000 }}"
            ),
            &|_| None,
        )
        .unwrap();
        // Shorter tiers bring the check along: the default 1 h ceiling is above a 10 s tier.
        let e = err(&format!(
            "[broker]\nretry_tiers_ms = [1000, 10000]\n{MINIMAL}"
        ));
        assert!(e.contains("destinations[0].retry.max_delay_ms"), "{e}");
    }

    #[test]
    fn records_must_outlive_the_retries_of_their_delivery() {
        // Records kept 24 h while retries go on for 48 h (plus one 1 h tier): a retry or a
        // redelivery after the record expired would be sent to the partner again.
        let e = err(&format!(
            "[store]\nkind = \"embedded\"\nttl_secs = 86400\n{MINIMAL}"
        ));
        assert!(
            e.contains("store.ttl_secs")
                && e.contains("destinations[0].retry.max_age_secs")
                && e.contains("176400"),
            "{e}"
        );
        let e = err(&format!(
            "[store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1\"\nttl_secs = 60\n{MINIMAL}\nretry = {{ max_age_secs = 60 }}"
        ));
        assert!(e.contains("store.ttl_secs"), "{e}");
        // Exactly enough is fine.
        Config::from_toml(
            &format!("[store]\nkind = \"embedded\"\nttl_secs = 176400\n{MINIMAL}"),
            &|_| None,
        )
        .unwrap();
    }

    /// Every key, spelled out with its default, for the extreme-value test.
    const EVERY_KEY: &str = r#"
        [broker]
        prefetch = 64
        delivery_limit = 20
        reconnect_max_delay_secs = 30
        retry_tiers_ms = [1000, 30000, 3600000]
        [worker]
        max_event_bytes = 1048576
        shutdown_grace_secs = 30
        queue_sample_secs = 15
        [store]
        kind = "embedded"
        ttl_secs = 259200
        [[destinations]]
        name = "hoqu"
        kind = "hoqu"
        base_url = "https://trackerdomain.com"
        match = { networks = ["hoqu"] }
        timeout_ms = 5000
        concurrency = 64
        rate_limit_per_sec = 50
        click_lifetime_days = 30
        hoqu = { api_key = "k", payout = "percentage", status_wait_secs = 300 }
        [destinations.retry]
        immediate_attempts = 2
        immediate_delay_ms = 200
        initial_delay_ms = 30000
        factor = 2.0
        max_delay_ms = 3600000
        jitter = 0.2
        max_attempts = 60
        max_age_secs = 172800
        [destinations.circuit]
        failure_threshold = 5
        open_ms = 30000
    "#;

    /// Sets `path` (`a.b`, `destinations.0.c`) in a TOML document to `value` (TOML text).
    fn with_value(path: &str, value: &str) -> String {
        let mut doc: toml::Table = toml::from_str(EVERY_KEY).unwrap();
        let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .unwrap()
            .remove("v")
            .unwrap();
        let (parents, last) = path.rsplit_once('.').unwrap();
        let mut at = doc.get_mut(parents.split('.').next().unwrap()).unwrap();
        for seg in parents.split('.').skip(1) {
            at = match seg.parse::<usize>() {
                Ok(i) => &mut at.as_array_mut().unwrap()[i],
                Err(_) => at.get_mut(seg).unwrap(),
            };
        }
        at.as_table_mut().unwrap().insert(last.into(), value);
        toml::to_string(&doc).unwrap()
    }

    /// What the relay computes from a loaded config, where an extreme value could overflow.
    fn exercise(c: &Config) {
        let topology = crate::broker::Topology::from_config(c);
        let tiers: Vec<Duration> = topology.tiers.iter().map(|(d, _)| *d).collect();
        let now = chrono::Utc::now();
        for d in &c.destinations {
            let _ = tokio::sync::Semaphore::new(d.concurrency);
            let p = &d.retry;
            let _ = (p.claim_lease(d.timeout()), p.pause_cap());
            for retry in [0, 1, 64, u32::MAX] {
                for ra in [None, Some(Duration::ZERO), Some(Duration::MAX)] {
                    let delay = p.delay(retry, 0.999, ra);
                    assert!(delay <= tiers[crate::retry::tier_for(&tiers, delay)]);
                    let _ = p.exhausted(p.max_attempts, now, now, delay);
                }
            }
            let circuit = crate::circuit::Circuit::new(d.circuit.clone());
            let t = std::time::Instant::now();
            circuit.record(false, t);
            let _ = circuit.admit(t);
        }
    }

    #[test]
    fn extreme_values_are_refused_by_name_or_harmless() {
        Config::from_toml(EVERY_KEY, &|_| None).unwrap();
        let integers = [
            "broker.prefetch",
            "broker.delivery_limit",
            "broker.reconnect_max_delay_secs",
            "worker.max_event_bytes",
            "worker.shutdown_grace_secs",
            "worker.queue_sample_secs",
            "store.ttl_secs",
            "destinations.0.timeout_ms",
            "destinations.0.concurrency",
            "destinations.0.rate_limit_per_sec",
            "destinations.0.click_lifetime_days",
            "destinations.0.hoqu.status_wait_secs",
            "destinations.0.retry.immediate_attempts",
            "destinations.0.retry.immediate_delay_ms",
            "destinations.0.retry.initial_delay_ms",
            "destinations.0.retry.max_delay_ms",
            "destinations.0.retry.max_attempts",
            "destinations.0.retry.max_age_secs",
            "destinations.0.circuit.failure_threshold",
            "destinations.0.circuit.open_ms",
        ];
        let mut cases: Vec<(&str, String)> = Vec::new();
        for key in integers {
            for v in ["-1", "0", "65536", "4294967296", "9223372036854775807"] {
                cases.push((key, v.to_owned()));
            }
        }
        for key in ["destinations.0.retry.factor", "destinations.0.retry.jitter"] {
            for v in ["-1.0", "0.0", "1e308", "inf", "-inf", "nan"] {
                cases.push((key, v.to_owned()));
            }
        }
        let many: Vec<String> = (1..=1000u64).map(|i| (i * 3_600_000).to_string()).collect();
        for v in [
            "[]".to_owned(),
            "[0]".to_owned(),
            "[-1]".to_owned(),
            "[3600000, 4294967296000]".to_owned(),
            "[3600000, 9223372036854775807]".to_owned(),
            format!("[{}]", many.join(", ")),
        ] {
            cases.push(("broker.retry_tiers_ms", v));
        }
        for (key, value) in cases {
            let text = with_value(key, &value);
            let name = key.rsplit('.').next().unwrap();
            match Config::from_toml(&text, &|_| None) {
                Err(e @ ConfigError::Key { .. }) => {
                    let e = e.to_string();
                    assert!(e.contains(name), "{key} = {value}: {e}");
                }
                Err(e) => panic!("{key} = {value}: not a keyed error: {e}"),
                Ok(c) => exercise(&c),
            }
        }
        // Extremes that are refused rather than merely survived: they would hang, exhaust
        // memory, or overflow further on.
        for (key, value) in [
            ("broker.reconnect_max_delay_secs", "9223372036854775807"),
            ("worker.max_event_bytes", "9223372036854775807"),
            ("worker.shutdown_grace_secs", "9223372036854775807"),
            ("worker.queue_sample_secs", "9223372036854775807"),
            ("destinations.0.concurrency", "9223372036854775807"),
            ("destinations.0.retry.max_age_secs", "9223372036854775807"),
            ("destinations.0.circuit.open_ms", "9223372036854775807"),
            ("store.ttl_secs", "9223372036854775807"),
            ("broker.retry_tiers_ms", "[3600000, 9223372036854775807]"),
        ] {
            let e = Config::from_toml(&with_value(key, value), &|_| None)
                .expect_err(key)
                .to_string();
            assert!(e.contains(key.rsplit('.').next().unwrap()), "{e}");
        }
    }

    #[test]
    fn environment_references() {
        let text = MINIMAL.replace("a.pwspace.com", "${SET}.example");
        let c = Config::from_toml(&text, &|n| (n == "SET").then(|| "value".into())).unwrap();
        assert_eq!(
            c.destinations[0].base_url.as_deref(),
            Some("https://value.example")
        );
        let e = err(&MINIMAL.replace("a.pwspace.com", "${UNSET}"));
        assert!(
            e.contains("destinations[0].base_url") && e.contains("UNSET is not set"),
            "{e}"
        );
        assert_eq!(expand_str("k", "a$${b}$c", &|_| None).unwrap(), "a${b}$c");
        // A secret in the wrong place is not repeated in the error.
        let e = Config::from_toml(&format!("{MINIMAL}\ntimeout_ms = \"${{SET}}\""), &|n| {
            (n == "SET").then(|| "hunter2".into())
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("timeout_ms") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn a_status_wait_beyond_the_retry_age_is_refused() {
        let load = |wait: &str| {
            Config::from_toml(
                &format!(
                    r#"[[destinations]]
                    name = "hoqu"
                    kind = "hoqu"
                    base_url = "https://trackerdomain.com"
                    match = {{ networks = ["hoqu"] }}
                    hoqu = {{ api_key = "k", payout = "percentage", action = "lead", status_wait_secs = {wait} }}"#
                ),
                &|_| None,
            )
        };
        // An update waits in the retry tiers, on its delivery's retry age.
        for wait in ["172801", "10000000000000000", "9223372036854775807"] {
            let e = load(wait).unwrap_err().to_string();
            assert!(
                e.contains("destinations[0].hoqu.status_wait_secs")
                    && e.contains("retry.max_age_secs"),
                "{e}"
            );
        }
        load("172800").unwrap();
        load("0").unwrap();
    }
}
