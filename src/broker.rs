//! RabbitMQ: connecting, the relay's topology (declared idempotently at start), and publishing
//! with publisher confirms.
//!
//! Topology (names from the config, defaults shown):
//! - topic exchange `conversions`, routing key = event type;
//! - quorum queue `postback-relay.events`, bound with `#`: every event;
//! - quorum queue `postback-relay.deliveries`: one message per (event, destination) to retry;
//! - quorum queues `postback-relay.retry.{delay}`, one per delay tier: a retry waits there
//!   for the tier's `x-message-ttl`, then the broker dead-letters it to the deliveries queue;
//! - quorum queue `postback-relay.dead`: dead-letter envelopes, and messages the broker itself
//!   dead-letters (delivery limit reached) from the events and deliveries queues.

use lapin::PublisherConfirm;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::config::Config;

/// Names and limits of the relay's exchange and queues.
#[derive(Clone, Debug)]
pub struct Topology {
    pub exchange: String,
    pub events: String,
    pub deliveries: String,
    pub dead: String,
    /// Delay tiers, shortest first: (delay, queue name).
    pub tiers: Vec<(std::time::Duration, String)>,
    pub delivery_limit: u32,
}

/// Deliveries of one dead letter after which the broker would drop it: reading the
/// dead-letter queue (`dlq list`) redelivers its messages, so this is set out of reach.
const DEAD_DELIVERY_LIMIT: u32 = i32::MAX as u32;

impl Topology {
    /// The default topology under `queue_prefix`, for tools that need only the queue names.
    pub fn for_prefix(queue_prefix: &str) -> Topology {
        let defaults = crate::config::BrokerConfig::default();
        Topology {
            exchange: defaults.exchange,
            events: format!("{queue_prefix}.events"),
            deliveries: format!("{queue_prefix}.deliveries"),
            dead: format!("{queue_prefix}.dead"),
            tiers: Vec::new(),
            delivery_limit: defaults.delivery_limit,
        }
    }

    pub fn from_config(c: &Config) -> Topology {
        Topology {
            exchange: c.broker.exchange.clone(),
            events: c.events_queue(),
            deliveries: c.deliveries_queue(),
            dead: c.dead_queue(),
            tiers: c
                .broker
                .retry_tiers_ms
                .iter()
                .map(|ms| {
                    let d = std::time::Duration::from_millis(*ms);
                    (
                        d,
                        format!(
                            "{}.retry.{}",
                            c.broker.queue_prefix,
                            crate::retry::tier_label(d)
                        ),
                    )
                })
                .collect(),
            delivery_limit: c.broker.delivery_limit,
        }
    }

    /// Declares everything; safe to run again and from several replicas at once. A queue that
    /// exists with other arguments fails with the broker's PRECONDITION_FAILED message.
    pub async fn declare(&self, ch: &Channel) -> Result<(), lapin::Error> {
        ch.exchange_declare(
            self.exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let mut work_args = quorum_args();
        // Poison messages go to the dead queue instead of looping; at-least-once dead-lettering
        // (which needs reject-publish overflow) so the broker never drops one on the way.
        work_args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongUInt(self.delivery_limit),
        );
        work_args.insert("x-dead-letter-exchange".into(), long_string(""));
        work_args.insert("x-dead-letter-routing-key".into(), long_string(&self.dead));
        work_args.insert(
            "x-dead-letter-strategy".into(),
            long_string("at-least-once"),
        );
        work_args.insert("x-overflow".into(), long_string("reject-publish"));
        let mut dead_args = quorum_args();
        dead_args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongUInt(DEAD_DELIVERY_LIMIT),
        );
        ch.queue_declare(self.dead.as_str().into(), durable, dead_args)
            .await?;
        for (delay, name) in &self.tiers {
            let mut args = quorum_args();
            args.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(delay.as_millis() as i64),
            );
            args.insert("x-dead-letter-exchange".into(), long_string(""));
            args.insert(
                "x-dead-letter-routing-key".into(),
                long_string(&self.deliveries),
            );
            args.insert(
                "x-dead-letter-strategy".into(),
                long_string("at-least-once"),
            );
            args.insert("x-overflow".into(), long_string("reject-publish"));
            ch.queue_declare(name.as_str().into(), durable, args)
                .await?;
        }
        for q in [&self.events, &self.deliveries] {
            ch.queue_declare(q.as_str().into(), durable, work_args.clone())
                .await?;
        }
        ch.queue_bind(
            self.events.as_str().into(),
            self.exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        Ok(())
    }

    /// Every relay queue: events, deliveries, the retry tiers and the dead letters.
    pub fn queues(&self) -> Vec<&String> {
        let mut q = vec![&self.events, &self.deliveries];
        q.extend(self.tiers.iter().map(|(_, n)| n));
        q.push(&self.dead);
        q
    }

    /// The retry queue for a delay (see [`crate::retry::tier_for`]).
    pub fn tier(&self, delay: std::time::Duration) -> &(std::time::Duration, String) {
        let delays: Vec<_> = self.tiers.iter().map(|(d, _)| *d).collect();
        &self.tiers[crate::retry::tier_for(&delays, delay)]
    }

    /// Removes the queues and the exchange (the demo's and the tests' clean-up).
    pub async fn delete(&self, ch: &Channel) -> Result<(), lapin::Error> {
        for q in self.queues() {
            ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await?;
        }
        ch.exchange_delete(
            self.exchange.as_str().into(),
            ExchangeDeleteOptions::default(),
        )
        .await
    }
}

fn quorum_args() -> FieldTable {
    let mut t = FieldTable::default();
    t.insert("x-queue-type".into(), long_string("quorum"));
    t
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// Opens a connection named after the process role, shown in the management UI.
pub async fn connect(url: &str, role: &str) -> Result<Connection, lapin::Error> {
    let props = ConnectionProperties::default()
        .with_connection_name(format!("postback-relay {role} (pid {})", std::process::id()).into());
    Connection::connect(url, props).await
}

/// Why a publish was not confirmed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("no queue is bound for routing key {0:?}: the message was returned")]
    Unroutable(String),
    #[error("the broker did not confirm within {0:?}")]
    Timeout(std::time::Duration),
}

/// How long a publish may take, from its first frame to its confirm: a broker that blocks
/// publishers (memory or disk alarm) stops reading their frames and holds back confirms, and
/// must not hold deliveries until the consumer timeout closes the channel.
pub const CONFIRM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// `step` (a publish, or a part of one), or [`PublishError::Timeout`] once `deadline` has
/// passed.
async fn within<T>(
    deadline: std::time::Duration,
    step: impl std::future::Future<Output = Result<T, PublishError>>,
) -> Result<T, PublishError> {
    tokio::time::timeout(deadline, step)
        .await
        .map_err(|_| PublishError::Timeout(deadline))?
}

/// Whether the broker refused a declaration because the queue exists with other arguments:
/// a configuration problem that retrying cannot fix.
pub fn is_precondition_failed(e: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(
        e.kind(),
        lapin::ErrorKind::ProtocolError(p)
            if matches!(p.kind(), AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED))
    )
}

/// A channel in confirm mode: every publish waits for the broker's confirm.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
}

impl Publisher {
    pub async fn new(conn: &Connection) -> Result<Publisher, lapin::Error> {
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Publisher { channel })
    }

    /// Publishes a persistent JSON message and waits until the broker has taken responsibility
    /// for it (confirm), or says why not. Sending and confirming share one deadline,
    /// [`CONFIRM_TIMEOUT`].
    pub async fn publish_json(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        message_id: Option<&str>,
        headers: Option<FieldTable>,
    ) -> Result<(), PublishError> {
        within(CONFIRM_TIMEOUT, async {
            let pending = self
                .send(exchange, routing_key, body, message_id, headers)
                .await?;
            confirmation(pending.await?, routing_key)
        })
        .await
    }

    /// Publishes without waiting for the confirm, so many publishes can be in flight; pass the
    /// result to [`confirmed`]. The send itself has a deadline, [`CONFIRM_TIMEOUT`]: a
    /// blocked broker reads no frames. `mandatory`: a message no queue receives comes back as
    /// an error, not a silent drop.
    pub async fn send_json(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        message_id: Option<&str>,
        headers: Option<FieldTable>,
    ) -> Result<PublisherConfirm, PublishError> {
        within(CONFIRM_TIMEOUT, async {
            Ok(self
                .send(exchange, routing_key, body, message_id, headers)
                .await?)
        })
        .await
    }

    /// Writes the message's frames, however long that takes.
    async fn send(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        message_id: Option<&str>,
        headers: Option<FieldTable>,
    ) -> Result<PublisherConfirm, lapin::Error> {
        let mut props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2);
        // AMQP short strings hold 255 bytes at most.
        if let Some(id) = message_id.filter(|id| id.len() <= 255) {
            props = props.with_message_id(ShortString::from(id));
        }
        if let Some(h) = headers {
            props = props.with_headers(h);
        }
        self.channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                props,
            )
            .await
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }
}

/// Waits for a publish's confirm, at most [`CONFIRM_TIMEOUT`], and turns a nack or a return
/// into an error.
pub async fn confirmed(pending: PublisherConfirm, routing_key: &str) -> Result<(), PublishError> {
    within(CONFIRM_TIMEOUT, async {
        confirmation(pending.await?, routing_key)
    })
    .await
}

/// What a confirm says: taken, returned (no queue for the routing key), or refused.
fn confirmation(c: lapin::Confirmation, routing_key: &str) -> Result<(), PublishError> {
    match c {
        lapin::Confirmation::Ack(None) => Ok(()),
        lapin::Confirmation::Ack(Some(_)) => Err(PublishError::Unroutable(routing_key.to_owned())),
        _ => Err(PublishError::Nacked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_deadline_covers_the_whole_publish() {
        let deadline = Duration::from_millis(100);
        // A send that never ends: a connection the broker has blocked.
        let never = within(deadline, std::future::pending::<Result<(), PublishError>>()).await;
        assert!(
            matches!(never, Err(PublishError::Timeout(d)) if d == deadline),
            "{never:?}"
        );
        // Sending and confirming share the deadline: two steps of 60 ms overrun 100 ms,
        // though each alone is within it.
        let step = || tokio::time::sleep(Duration::from_millis(60));
        let slow = within(deadline, async {
            step().await;
            step().await;
            Ok(())
        })
        .await;
        assert!(matches!(slow, Err(PublishError::Timeout(_))), "{slow:?}");
        // In time, the publish's own outcome comes through.
        let nacked = within(deadline, async { Err::<(), _>(PublishError::Nacked) }).await;
        assert!(matches!(nacked, Err(PublishError::Nacked)), "{nacked:?}");
        assert!(within(deadline, async { Ok(()) }).await.is_ok());
    }
}
