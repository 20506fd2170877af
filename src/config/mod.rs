//! Configuration: a TOML file validated in full at start-up. Unknown keys are errors, secrets
//! come from the environment through `${VAR}`, and every error names the key and the problem.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

use self::env::expand_env;

mod broker;
mod check;
pub mod circuit;
mod console;
mod destination;
mod env;
pub mod handshake;
pub mod journal;
pub mod operators;
mod proxy;
pub mod retry;
pub mod store;
#[cfg(test)]
mod tests;
pub mod tls;
pub mod tracing;

pub use broker::BrokerConfig;
pub use console::ConsoleConfig;
pub use destination::{CircuitConfig, DestinationConfig, MatchRule};
pub use proxy::{PartnerProxy, shown as shown_proxy};

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
    /// `worker.max_event_bytes`: 128 MiB, RabbitMQ 3's default largest message (RabbitMQ 4's
    /// is 16 MiB); up to `broker.prefetch` bodies are held at once.
    pub const MAX_EVENT_BYTES: usize = 128 * 1024 * 1024;
    /// `worker.shutdown_grace_secs`.
    pub const SHUTDOWN_GRACE_SECS: u64 = 3600;
    /// `worker.queue_sample_secs`: a sample older than this says nothing about the backlog.
    pub const QUEUE_SAMPLE_SECS: u64 = 3600;
    /// `destinations[].concurrency`: a partner's requests in flight at once, per relay. The
    /// largest `broker.prefetch`, so that `concurrency = prefetch` is always allowed; tokio's
    /// semaphore would panic far above it.
    pub const CONCURRENCY: usize = u16::MAX as usize;
    /// `journal.retention_days`: ten years.
    pub const JOURNAL_RETENTION_DAYS: u32 = 3650;
    /// `journal.buffer`: entries held in memory while the writer is behind.
    pub const JOURNAL_BUFFER: usize = 1_000_000;
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
    pub store: store::StoreConfig,
    /// What happened to each delivery, kept for people (`deliveries`, `recover`).
    #[serde(default)]
    pub journal: journal::JournalConfig,
    /// The operators' web console.
    #[serde(default)]
    pub console: ConsoleConfig,
    /// OpenTelemetry traces (off unless an OTLP endpoint is set).
    #[serde(default)]
    pub tracing: tracing::TracingConfig,
    pub destinations: Vec<DestinationConfig>,
    /// Every secret the configuration holds, to keep out of what the relay writes.
    #[serde(skip)]
    pub secrets: crate::contract::redact::Secrets,
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
    /// The HTTP proxy partner calls go through: the environment's (default), none, or a URL.
    pub partner_proxy: PartnerProxy,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            max_event_bytes: 1024 * 1024,
            shutdown_grace_secs: 30,
            queue_sample_secs: 15,
            partner_proxy: PartnerProxy::Environment,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
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

/// A destination name the configuration does not have: the commands and the console say so
/// in the same words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("destination {name:?} is not in the configuration (its destinations: {known})")]
pub struct UnknownDestination {
    pub name: String,
    pub known: String,
}

impl UnknownDestination {
    /// `name` among `known`, or the error that lists them.
    pub fn check<'a>(
        name: &str,
        known: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), UnknownDestination> {
        let known: Vec<&str> = known.into_iter().collect();
        if known.contains(&name) {
            return Ok(());
        }
        Err(UnknownDestination {
            name: name.to_owned(),
            known: known.join(", "),
        })
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
        // Every form a secret can be written in: a URL in an error is in its sent form.
        let scrub = |e: ConfigError| match e {
            ConfigError::Key { key, message } => {
                let forms = crate::contract::redact::Secrets::new(secrets.borrow().iter());
                let message = forms.scrub(&message).into_owned();
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
        // A `${VAR}` value is put into a template's text before the template is read: a
        // value holding the destination's macro syntax would be read as macros.
        for (i, d) in config.destinations.iter().enumerate() {
            if let (Some(o), crate::contract::partner::Format::Template(t)) =
                (&d.template, &d.partner.format)
            {
                let texts = o.texts();
                if secrets.borrow().iter().any(|s| {
                    t.syntax().opens_in(s) && texts.iter().any(|text| text.contains(s.as_str()))
                }) {
                    return Err(key_err(
                        format!("destinations[{i}].template"),
                        format!(
                            "a value from the environment holds {:?}, which this destination's syntax reads as a macro; choose another syntax, or keep the value out of the template",
                            t.syntax().open()
                        ),
                    ));
                }
            }
        }
        config.secrets = config.collect_secrets(secrets.into_inner());
        Ok(config)
    }

    /// The values read from the environment, and the secrets written in the file itself: API
    /// keys and the passwords in broker and store URLs.
    fn collect_secrets(&self, from_env: Vec<String>) -> crate::contract::redact::Secrets {
        let mut all = crate::contract::redact::Secrets::new(from_env);
        for d in &self.destinations {
            if let Some(h) = &d.hoqu {
                all.add(&h.api_key);
            }
            let signature = d
                .callback
                .as_ref()
                .and_then(|c| c.signature.as_ref())
                .or_else(|| d.template.as_ref().and_then(|t| t.signature.as_ref()));
            for s in signature.iter().flat_map(|s| &s.secrets) {
                all.add(s);
            }
        }
        for (_, _, token) in operators::all(self.console.token.as_deref(), &self.console.operators)
        {
            all.add(&token);
        }
        if let Some(password) = self.worker.partner_proxy.password() {
            all.add(&password);
        }
        let mut urls = self.broker.addresses();
        if let store::StoreConfig::Redis { url, .. } = &self.store {
            urls.push(url);
        }
        if let Some(url) = &self.journal.url {
            urls.push(url);
        }
        if let Some(url) = &self.tracing.otlp_endpoint {
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

    /// The destination called `name`.
    pub fn destination(&self, name: &str) -> Result<&DestinationConfig, UnknownDestination> {
        let names = || self.destinations.iter().map(|d| d.name.as_str());
        UnknownDestination::check(name, names())?;
        Ok(self
            .destinations
            .iter()
            .find(|d| d.name == name)
            .expect("checked"))
    }

    /// The worker defaults, for tools that run without a config file.
    pub fn default_worker() -> WorkerConfig {
        WorkerConfig::default()
    }
}
