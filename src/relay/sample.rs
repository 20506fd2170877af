//! Samples, on the side of the work: the depth of every relay queue into
//! `postback_relay_queue_messages`, and the age of the oldest dead letter.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
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
            if let Ok(age) = self.oldest_dead_letter_age(&conn).await {
                self.metrics.oldest_dead_letter_age.set(age);
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Looks at the head of the dead-letter queue without taking it: a get without ack on a
    /// channel that is then closed, so the broker puts the message back where it was.
    async fn oldest_dead_letter_age(&self, conn: &lapin::Connection) -> Result<i64, lapin::Error> {
        let ch = conn.create_channel().await?;
        let head = ch
            .basic_get(
                self.topology.dead.as_str().into(),
                lapin::options::BasicGetOptions::default(),
            )
            .await?;
        let age = head.map_or(0, |m| {
            let at = crate::dlq::DeadLetter::from_message(
                &m.delivery,
                self.config.worker.max_event_bytes,
            )
            .summary()
            .dead_lettered_at;
            at.map_or(0, |t| (Utc::now() - t).num_seconds().max(0))
        });
        ch.close(200, "sampled".into()).await?;
        Ok(age)
    }
}
