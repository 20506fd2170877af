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

mod connect;
mod topology;

pub use connect::{connect, connect_any, connect_to};

pub use topology::Topology;

use lapin::PublisherConfirm;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection};

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

/// Messages ready in the dead-letter queue.
pub async fn depth(ch: &lapin::Channel, queue: &str) -> Result<u32, lapin::Error> {
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    Ok(ch
        .queue_declare(queue.into(), passive, lapin::types::FieldTable::default())
        .await?
        .message_count())
}

#[cfg(test)]
mod tests;
