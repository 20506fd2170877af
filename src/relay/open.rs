//! A broker session's set-up: the consuming and the publishing connection, to the same node,
//! the topology declared, a consumer on each queue, and the tasks that watch the connections,
//! sample the queues and settle the acknowledgements.

use std::sync::Arc;

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::Relay;
use super::session::{Queue, Recorder, Session, Taking};
use super::settle::Settler;
use crate::relay::broker::{self, Publisher};

impl Relay {
    /// Connects, declares the topology, and starts consuming both queues.
    pub(super) async fn open(self: &Arc<Self>) -> Result<Session, lapin::Error> {
        let b = &self.config.broker;
        let addresses = b.addresses();
        let prefix = &b.queue_prefix;
        // The node that worked last first; the next ones when it does not answer.
        let start = self.broker_node.load(std::sync::atomic::Ordering::Relaxed);
        let (conn, node) = broker::connect_any(
            &addresses,
            b.tls.as_ref(),
            start,
            b.connect_timeout(),
            &format!("worker {prefix}"),
        )
        .await?;
        self.broker_node
            .store(node, std::sync::atomic::Ordering::Relaxed);
        let conn = Arc::new(conn);
        // Publishing gets its own connection, to the same node: a broker that blocks
        // publishers (memory or disk alarm) must not also stall the acks of the consuming
        // connection.
        let role = format!("worker {prefix} publisher");
        let (pub_conn, _) =
            broker::connect_any(&addresses, b.tls.as_ref(), node, b.connect_timeout(), &role)
                .await?;
        let failed = CancellationToken::new();
        let mut watchers = self.watch(&[&*conn, &pub_conn], &failed);
        let setup = conn.create_channel().await?;
        self.topology.declare(&setup).await?;
        let recorder = Recorder {
            publisher: Publisher::new(&pub_conn).await?,
            broken: CancellationToken::new(),
        };
        let ch = conn.create_channel().await?;
        ch.basic_qos(self.config.broker.prefetch, BasicQosOptions::default())
            .await?;
        let consumers = [
            take(&ch, Queue::Events, &self.topology.events).await?,
            take(&ch, Queue::Deliveries, &self.topology.deliveries).await?,
        ];
        watchers.push(tokio::spawn(
            Arc::clone(self).sample_queues(Arc::clone(&conn), setup),
        ));
        let acked = self.metrics.events_acked.clone();
        let (settler, settling) =
            Settler::start(ch.clone(), self.config.broker.prefetch, move |n| {
                acked.inc_by(n)
            });
        Ok(Session {
            conn,
            pub_conn,
            ch,
            recorder,
            consumers,
            failed,
            watchers,
            settler,
            settling,
            tasks: JoinSet::new(),
        })
    }

    /// Cancels `failed` when a connection reports an error.
    fn watch(&self, conns: &[&Connection], failed: &CancellationToken) -> Vec<JoinHandle<()>> {
        conns
            .iter()
            .map(|c| {
                let (mut events, failed) = (c.events_listener(), failed.clone());
                let secrets = self.config.secrets.clone();
                tokio::spawn(async move {
                    while let Some(event) = events.next().await {
                        if let lapin::Event::Error(e) = event {
                            tracing::debug!(message = "broker connection error", error = %secrets.scrub(&e.to_string()));
                            failed.cancel();
                            return;
                        }
                    }
                })
            })
            .collect()
    }
}

/// Starts consuming `name` on `ch`.
async fn take(ch: &Channel, queue: Queue, name: &str) -> Result<Taking, lapin::Error> {
    let label = match queue {
        Queue::Events => "events",
        Queue::Deliveries => "deliveries",
    };
    let tag = format!(
        "postback-relay-{label}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    );
    let consumer = ch
        .basic_consume(
            name.into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(Taking {
        queue,
        tag,
        consumer,
    })
}
