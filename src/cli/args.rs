//! The arguments several commands share, as clap reads them: the output format, the relay a
//! command works on (its config, or a broker URL and queue prefix), and a dead-letter filter.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::load;
use postback_relay::config::tls::TlsFiles;
use postback_relay::config::{Config, DEFAULT_AMQP_URL};
use postback_relay::contract::reason::Reason;
use postback_relay::contract::redact::Secrets;
use postback_relay::relay::broker::Topology;

/// How `render`, `dlq stats` and `dlq list` print.
#[derive(Clone, Copy, ValueEnum)]
pub enum RenderFormat {
    Text,
    Json,
}

/// Which relay's queues: its config, or a broker URL and queue prefix.
#[derive(Args)]
pub struct Target {
    #[arg(long, env = "POSTBACK_RELAY_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Broker URL, when no config is given [default: amqp://guest:guest@127.0.0.1:5672/%2f].
    #[arg(long, env = "AMQP_URL")]
    amqp_url: Option<String>,
    /// Queue prefix, when no config is given [default: postback-relay].
    #[arg(long)]
    queue_prefix: Option<String>,
}

/// A relay's queues as a command reaches them.
pub struct Resolved {
    pub url: String,
    /// `[broker.tls]` of the config; none without a config (an `amqps://` URL then trusts
    /// the system's roots and presents no client certificate).
    pub tls: Option<TlsFiles>,
    pub topology: Topology,
    /// Tells a dead letter refused as too large from one that crashed the relay.
    pub max_event_bytes: usize,
    /// The config's secrets, kept out of what the command prints (dead letters written by
    /// older versions of the relay may hold them); none without a config.
    pub secrets: Secrets,
}

impl Target {
    /// The broker URL (the flag wins over the config's), the queues, the event size limit and
    /// the secrets; or the exit code of a config that cannot be used (the error is printed).
    pub fn resolve(self) -> Result<Resolved, ExitCode> {
        let url_flag = self.amqp_url;
        match self.config {
            Some(path) => {
                let c = load(&path)?;
                Ok(Resolved {
                    url: url_flag.unwrap_or(c.broker.url.clone()),
                    tls: c.broker.tls.clone(),
                    topology: Topology::from_config(&c),
                    max_event_bytes: c.worker.max_event_bytes,
                    secrets: c.secrets,
                })
            }
            None => Ok(Resolved {
                url: url_flag.unwrap_or_else(|| DEFAULT_AMQP_URL.into()),
                tls: None,
                topology: Topology::for_prefix(
                    self.queue_prefix.as_deref().unwrap_or("postback-relay"),
                ),
                max_event_bytes: Config::default_worker().max_event_bytes,
                secrets: Secrets::default(),
            }),
        }
    }
}

impl Resolved {
    /// `e` for `main` to print, its message scrubbed of the secrets.
    pub fn scrubbed(&self, e: anyhow::Error) -> anyhow::Error {
        if self.secrets.is_empty() {
            return e;
        }
        anyhow::anyhow!("{}", self.secrets.scrub(&format!("{e:#}")))
    }
}

#[derive(Args)]
pub struct FilterArgs {
    /// Only this destination's dead letters.
    #[arg(long)]
    destination: Option<String>,
    /// Only this reason (not_json, invalid_event, partner_rejected, retries_exhausted...).
    #[arg(long)]
    reason: Option<Reason>,
    /// Dead-lettered at or after this time (RFC 3339).
    #[arg(long)]
    since: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// Dead-lettered before this time (RFC 3339).
    #[arg(long)]
    until: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// Only this event.
    #[arg(long)]
    event_id: Option<String>,
}

impl FilterArgs {
    /// The filter; or, for a window whose `--until` is before its `--since` (which would match
    /// nothing, and replay would read the whole queue for it), the error printed and exit 2.
    pub fn filter(self) -> Result<postback_relay::operate::dlq::Filter, ExitCode> {
        let since = self.since.map(|t| t.with_timezone(&chrono::Utc));
        let until = self.until.map(|t| t.with_timezone(&chrono::Utc));
        if let Err(e) = postback_relay::journal::in_order(since, until) {
            eprintln!("error: {e}");
            return Err(ExitCode::from(2));
        }
        Ok(postback_relay::operate::dlq::Filter {
            destination: self.destination,
            reason: self.reason,
            since,
            until,
            event_id: self.event_id,
            ids: Vec::new(),
        })
    }
}
