//! An attempt's outcome made durable and counted: a retry confirmed into its delay tier, a dead
//! letter confirmed into the dead-letter queue, or (delivered, duplicate, superseded) nothing to
//! publish. The message is acknowledged only when every outcome of it is recorded.

use super::Relay;
use super::destination::Destination;
use super::outcome::Outcome;
use super::session::Recorder;
use super::settle::Fate;
use crate::relay::broker::{PublishError, Publisher};
use crate::relay::deadletter::Envelope;
use crate::relay::delivery::Delivery;
use crate::relay::metrics::attempt_bucket;

impl Relay {
    /// Records every outcome. If one cannot be recorded the session is ending: the message is
    /// abandoned for redelivery rather than acknowledged.
    pub(super) async fn record_all(
        &self,
        outcomes: Vec<(Option<&Destination>, Outcome)>,
        recorder: &Recorder,
    ) -> Fate {
        for (dest, outcome) in outcomes {
            if let Err(e) = self.record(dest, outcome, &recorder.publisher).await {
                tracing::error!(message = "cannot record an outcome; reconnecting", error = %self.shown(&e));
                recorder.broken.cancel();
                return Fate::Abandon;
            }
        }
        Fate::Ack
    }

    async fn record(
        &self,
        dest: Option<&Destination>,
        outcome: Outcome,
        publisher: &Publisher,
    ) -> Result<(), PublishError> {
        let name = dest.map_or("none", Destination::name);
        let count = |outcome: &str| {
            self.metrics
                .deliveries
                .with_label_values(&[name, outcome])
                .inc()
        };
        match outcome {
            Outcome::Delivered {
                attempts,
                occurred_at,
            } => {
                if let Some(d) = dest {
                    delivered(d, attempts, occurred_at);
                }
            }
            Outcome::Duplicate { event_id } => {
                count("duplicate");
                tracing::info!(
                    message = "duplicate suppressed",
                    destination = name,
                    event_id
                );
            }
            Outcome::Superseded { event_id, status } => {
                count("superseded");
                tracing::info!(
                    message = "superseded status not sent",
                    destination = name,
                    event_id,
                    status
                );
            }
            Outcome::Retry { delivery, delay } => self.retry(delivery, delay, publisher).await?,
            Outcome::Dead(env) => self.dead_letter(*env, publisher).await?,
        }
        Ok(())
    }

    /// Publishes a delivery to the delay tier of `delay`, confirmed.
    async fn retry(
        &self,
        delivery: Delivery,
        delay: std::time::Duration,
        publisher: &Publisher,
    ) -> Result<(), PublishError> {
        let (tier, queue) = self.topology.tier(delay);
        let body = serde_json::to_vec(&delivery).expect("deliveries serialize");
        // With tracing on, the retry goes on in the trace it came in (through the tier's
        // dead-lettering, which keeps a message's headers).
        let headers = self.trace_headers_now();
        publisher
            .publish_json("", queue, &body, None, headers)
            .await?;
        let label = crate::config::retry::tier_label(*tier);
        self.metrics
            .retries_scheduled
            .with_label_values(&[&delivery.destination, &label])
            .inc();
        tracing::info!(
            message = "retry scheduled",
            destination = %delivery.destination,
            event_id = %delivery.event_id,
            attempts = delivery.attempts,
            tier = %label
        );
        Ok(())
    }

    /// Publishes a dead letter, scrubbed of every secret, confirmed.
    async fn dead_letter(
        &self,
        mut env: Envelope,
        publisher: &Publisher,
    ) -> Result<(), PublishError> {
        // A partner's answer can echo a secret back (an API key in the path).
        env.scrub(&self.config.secrets);
        if env.trace_id.is_none() {
            env.trace_id = self.trace_id_now();
        }
        let body = serde_json::to_vec(&env).expect("envelopes serialize");
        let id = env.dead_letter_id.to_string();
        publisher
            .publish_json("", &self.topology.dead, &body, Some(&id), None)
            .await?;
        // In the queue now: the index is told (whatever becomes of the message it came from,
        // this letter stays in the queue). A full buffer drops it, counted.
        if let Some(journal) = &self.journal {
            let _ = journal.record_letter(crate::relay::deadletter::envelope_row(&env));
        }
        let destination = env.destination.as_deref().unwrap_or("none");
        self.metrics
            .dead_letters
            .with_label_values(&[destination, env.reason.as_str()])
            .inc();
        if env.destination.is_some() {
            self.metrics
                .deliveries
                .with_label_values(&[destination, "dead_lettered"])
                .inc();
        }
        tracing::warn!(
            message = "dead-lettered",
            event_id = env.event_id.as_deref().unwrap_or(""),
            destination,
            reason = %env.reason,
            detail = %env.detail
        );
        Ok(())
    }
}

/// Counts a delivery the partner accepted.
fn delivered(d: &Destination, attempts: u32, occurred_at: chrono::DateTime<chrono::Utc>) {
    let series = &d.series;
    series.delivered.inc();
    let since = (chrono::Utc::now() - occurred_at)
        .to_std()
        .unwrap_or_default();
    series.end_to_end.observe(since.as_secs_f64());
    if let Some(c) = series.on_attempt.get(attempt_bucket(attempts)) {
        c.inc();
    }
}
