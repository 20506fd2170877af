//! The relay's topology: its exchange and queues, their names (built here and nowhere else)
//! and arguments, declared idempotently at start.

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

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

/// Deliveries of one dead letter after which the broker would drop it (the dead-letter queue
/// has no dead-letter exchange). Reading the queue (`dlq list`, `replay`, the age sample) gives
/// every message back, and the broker counts each return: on RabbitMQ 3.10 and 4.0 to 4.2
/// every return, and from 4.3 a channel closed with messages unacknowledged. RabbitMQ 4 gives
/// a quorum queue declared without a limit one of 20, so the limit is set here, out of reach,
/// rather than left to the broker. Not -1 (4.x's "unlimited"): 3.10 takes it as a limit of 0
/// and drops a dead letter the first time a read gives it back (measured); 4.0 to 4.2
/// put the messages returned to an unlimited queue at its back, behind dead letters that
/// arrived during the read, where a limited queue returns them near its head, ahead of
/// those; and every installation's queue holds this value, so another one would make the
/// broker refuse the declaration (`PRECONDITION_FAILED`, inequivalent arg).
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
        let named = Topology::for_prefix(&c.broker.queue_prefix);
        Topology {
            exchange: c.broker.exchange.clone(),
            events: named.events,
            deliveries: named.deliveries,
            dead: named.dead,
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
                            crate::config::retry::tier_label(d)
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
        // No delivery limit on the tiers: nothing consumes them, so no message there is ever
        // returned and RabbitMQ 4's default limit is never reached; what expires goes on
        // through the dead-letter exchange, which a limit would use too.
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

    /// The retry queue for a delay (see [`crate::config::retry::tier_for`]).
    pub fn tier(&self, delay: std::time::Duration) -> &(std::time::Duration, String) {
        let delays: Vec<_> = self.tiers.iter().map(|(d, _)| *d).collect();
        &self.tiers[crate::config::retry::tier_for(&delays, delay)]
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
