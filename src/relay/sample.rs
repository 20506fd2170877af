//! Samples, on the side of the work: the depth of every relay queue into
//! `postback_relay_queue_messages`, the age of the oldest dead letter, and each
//! destination's circuit state (the fleet's, read again, with the Redis store).

use std::sync::Arc;
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

use super::Relay;

impl Relay {
    /// Samples every `worker.queue_sample_secs` until the session ends (the task is aborted).
    pub(super) async fn sample_queues(
        self: Arc<Self>,
        conn: Arc<lapin::Connection>,
        ch: lapin::Channel,
    ) {
        let every = Duration::from_secs(self.config.worker.queue_sample_secs);
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let mut oldest = crate::relay::deadletter::age::OldestAge::default();
        loop {
            for q in self.topology.queues() {
                if let Ok(info) = ch
                    .queue_declare(q.as_str().into(), passive, FieldTable::default())
                    .await
                {
                    self.metrics
                        .queue_messages
                        .with_label_values(&[q])
                        .set(i64::from(info.message_count()));
                }
            }
            let addresses = self.config.broker.addresses();
            let node = self.broker_node.load(std::sync::atomic::Ordering::Relaxed);
            let url = addresses
                .get(node)
                .copied()
                .unwrap_or(&self.config.broker.url);
            let dead = &self.topology.dead;
            let max = self.config.worker.max_event_bytes;
            if let Ok(age) = oldest
                .sample(&conn, (url, self.config.broker.tls.as_ref()), dead, max)
                .await
            {
                self.metrics.oldest_dead_letter_age.set(age);
            }
            for d in self.destinations.as_slice() {
                d.refresh_circuit().await;
            }
            tokio::time::sleep(every).await;
        }
    }
}
