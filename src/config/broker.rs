//! `[broker]`: the RabbitMQ the relay consumes from and publishes to, and how it connects.

use serde::Deserialize;

use super::DEFAULT_AMQP_URL;
use super::tls::TlsFiles;

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// AMQP URL; the vhost is percent-encoded (`%2f` is `/`).
    pub url: String,
    /// The other nodes of the same RabbitMQ cluster: when the node the relay is on goes away
    /// (or `url` does not answer), it connects to the next address that does.
    pub failover_urls: Vec<String>,
    /// How long one address may take to accept a connection before the next is tried.
    pub connect_timeout_secs: u64,
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
    /// `[broker.tls]`: the CA and client certificate for `amqps://` addresses (all of them).
    pub tls: Option<TlsFiles>,
}

impl BrokerConfig {
    /// Every address of the broker: `url` first, then `failover_urls`.
    pub fn addresses(&self) -> Vec<&str> {
        std::iter::once(self.url.as_str())
            .chain(self.failover_urls.iter().map(String::as_str))
            .collect()
    }

    pub fn connect_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.connect_timeout_secs)
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            url: DEFAULT_AMQP_URL.into(),
            failover_urls: Vec::new(),
            connect_timeout_secs: 5,
            exchange: "conversions".into(),
            queue_prefix: "postback-relay".into(),
            prefetch: 64,
            delivery_limit: 20,
            reconnect_max_delay_secs: 30,
            retry_tiers_ms: crate::config::retry::DEFAULT_TIERS_MS.to_vec(),
            tls: None,
        }
    }
}

/// Whether an AMQP address asks for TLS (`amqps://`); `None` when it is not an AMQP URL.
pub fn is_tls(url: &str) -> Option<bool> {
    let uri = url.parse::<lapin::uri::AMQPUri>().ok()?;
    Some(uri.scheme == lapin::uri::AMQPScheme::AMQPS)
}

impl BrokerConfig {
    /// Every address with the key it was given under (`broker.failover_urls[1]`).
    fn keyed_addresses(&self) -> Vec<(String, &str)> {
        std::iter::once(("broker.url".to_owned(), self.url.as_str()))
            .chain(
                self.failover_urls
                    .iter()
                    .enumerate()
                    .map(|(i, u)| (format!("broker.failover_urls[{i}]"), u.as_str())),
            )
            .collect()
    }

    /// What TLS asks that the relay cannot do: `[broker.tls]` beside an `amqp://` address,
    /// `amqp://` and `amqps://` addresses mixed (a failover to a plain one would send the
    /// credentials in the clear), files that cannot be read or used, or no root to check the
    /// servers' certificates against.
    pub(super) fn check_tls(&self) -> Result<(), super::ConfigError> {
        let keyed = self.keyed_addresses();
        let tls: Vec<bool> = keyed
            .iter()
            .map(|(_, u)| is_tls(u).unwrap_or(false))
            .collect();
        let plain = keyed.iter().zip(&tls).find(|(_, t)| !**t).map(|(k, _)| k);
        if let (Some(_), Some((key, _))) = (&self.tls, plain) {
            return Err(super::key_err(
                key,
                "[broker.tls] is set, but this address is amqp:// (no TLS): use amqps://",
            ));
        }
        if !tls.iter().any(|t| *t) {
            return Ok(());
        }
        if let Some((key, _)) = plain {
            return Err(super::key_err(
                key,
                "is amqp:// where the other broker addresses are amqps://: a failover to it \
                 would send the credentials in the clear; use amqps:// for every address",
            ));
        }
        let files = self.tls.clone().unwrap_or_default();
        let material = files
            .load("broker.tls")
            .map_err(|e| super::key_err("broker.tls", e.to_string()))?;
        super::tls::client_config(&material, super::tls::Verify::Full, "broker.tls")
            .map_err(|e| super::key_err("broker.tls", e.to_string()))?;
        Ok(())
    }
}
