//! The age of the oldest dead letter, for the relay's
//! `postback_relay_oldest_dead_letter_age_seconds`, measured without moving any.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::browse::{self, Choice, Lock};
use super::read::DeadLetter;
use crate::relay::broker::depth;

/// The last measure of one dead-letter queue.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Measured {
    pub oldest: Option<DateTime<Utc>>,
    /// When the read ended, and how long it took.
    pub at: Instant,
    pub took: Duration,
    /// Dead letters it read.
    pub seen: u32,
}

/// A read of the whole queue is repeated at most once per this many times its own duration.
const MEASURE_SPACING: u32 = 20;

/// Whether to read the queue again now, or go on from the last measure.
pub(crate) fn measure_due(last: Option<&Measured>, ready: u32, now: Instant) -> bool {
    match last {
        None => true,
        // Fewer than it read: some left, maybe the oldest.
        Some(m) if ready < m.seen => true,
        Some(m) => now.duration_since(m.at) >= m.took * MEASURE_SPACING,
    }
}

/// The age of the oldest dead letter in one queue, kept between samples by its owner (the
/// relay's sampler).
///
/// Position in the queue does not tell age (a broker-moved message carries the time it was
/// moved, a replica's clock may lag, and a read cut short puts its part at the end), so the
/// oldest is the earliest time among all of them: a full read ([`super::browse`]), which
/// moves none and hides none from the dead-letter commands (they wait for its lock). It runs
/// on a connection of its own, in a task of its own, so that a relay stopping midway through
/// does not cut it short. A large queue is not read every sample: between reads the oldest is
/// the one last found (new dead letters are newer), and a read comes again when the queue has
/// fewer than it read, or after 20 times the last read's duration. When a command holds the
/// queue, the last measure stands.
#[derive(Debug, Default)]
pub struct OldestAge {
    last: Option<Measured>,
}

impl OldestAge {
    /// The age in seconds of the oldest dead letter in `queue` (0 when there is none). `conn`
    /// counts the queue; a read, when one is due, connects to `url` with its TLS files.
    pub async fn sample(
        &mut self,
        conn: &lapin::Connection,
        (url, tls): (&str, Option<&crate::config::tls::TlsFiles>),
        queue: &str,
        max_event_bytes: usize,
    ) -> Result<i64, lapin::Error> {
        let probe = conn.create_channel().await?;
        let ready = depth(&probe, queue).await;
        let _ = probe.close(200, "sampled".into()).await;
        let ready = ready?;
        if measure_due(self.last.as_ref(), ready, Instant::now()) {
            let (url, tls, name) = (url.to_owned(), tls.cloned(), queue.to_owned());
            let measured =
                tokio::spawn(
                    async move { measure(&url, tls.as_ref(), &name, max_event_bytes).await },
                );
            match measured.await {
                Ok(Ok(Some(m))) => self.last = Some(m),
                // A command is reading the queue: the last measure stands.
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(message = "cannot read the dead-letter queue", queue, error = %e)
                }
                Err(e) => {
                    tracing::warn!(message = "dead-letter queue read failed", queue, error = %e)
                }
            }
        }
        let oldest = self.last.and_then(|m| m.oldest);
        Ok(oldest.map_or(0, |t| (Utc::now() - t).num_seconds().max(0)))
    }
}

/// Why the oldest dead letter could not be read.
#[derive(Debug, thiserror::Error)]
enum AgeError {
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    #[error(transparent)]
    Read(#[from] browse::ReadError),
}

/// Reads the whole queue for the earliest dead-letter time; `None` when another reader
/// holds it.
async fn measure(
    url: &str,
    tls: Option<&crate::config::tls::TlsFiles>,
    queue: &str,
    max_event_bytes: usize,
) -> Result<Option<Measured>, AgeError> {
    let conn = crate::relay::broker::connect(url, tls, "dead-letter age").await?;
    let result = async {
        let Some(_lock) = Lock::try_acquire(&conn, queue).await? else {
            return Ok(None);
        };
        let started = Instant::now();
        let mut oldest: Option<DateTime<Utc>> = None;
        let read = browse::read_all(&conn, queue, |m| {
            let at = DeadLetter::from_message(m, max_event_bytes)
                .summary()
                .dead_lettered_at;
            if let Some(at) = at {
                oldest = Some(oldest.map_or(at, |o| o.min(at)));
            }
            std::future::ready(Ok(Choice::Keep))
        })
        .await?;
        Ok(Some(Measured {
            oldest,
            at: Instant::now(),
            took: started.elapsed(),
            seen: read.seen,
        }))
    }
    .await;
    let _ = conn.close(200, "measured".into()).await;
    result
}
