//! Reading a whole quorum queue without consuming it and without changing its order, with a
//! bounded number of messages in flight: what `dlq list`, `dlq stats`, `replay` and the
//! relay's dead-letter age sample are built on.
//!
//! What the broker allows (RabbitMQ 3.10, quorum queues, as measured against it):
//! - A message taken and not acknowledged goes back when it is nacked or its channel closes,
//!   but not to where it was: returned messages wait in a queue of their own that is served
//!   before the messages never delivered, and a message returned joins the *end* of it. So
//!   once a queue has been read (everything returned), taking its head and giving it back
//!   moves that message to the end; so does giving back any part of it while the rest waits.
//!   The only read that leaves the order as it was takes *every* message ready and gives them
//!   all back, in the order they came.
//! - A consumer without a prefetch limit is sent at most 2000 messages, and a prefetch is at
//!   most 65,535; `basic.get` takes one message per round trip through the queue's log (a few
//!   hundred a second), so neither reads a large queue.
//! - Messages given back together by one consumer go back in their order. Messages of
//!   several consumers given back at once (one channel closing, a connection dropping, nacks
//!   queued up by the broker's client) go back in an order of its own.
//! - The broker counts every message given back against the queue's delivery limit (from
//!   RabbitMQ 4.3, every one given back by a closing channel), and drops a message over it
//!   from a queue without a dead-letter exchange. The dead-letter queue's limit is set out of
//!   reach at its declaration, rather than left to RabbitMQ 4's default of 20.
//!
//! RabbitMQ 4's documents describe the same order for a queue with a delivery limit: returned
//! messages near the head (4.0 to 4.2; an unlimited queue returns them to its back), or in a
//! queue of their own in the order they came back (4.3). Only 3.10 has been measured.
//!
//! So a read takes the number of messages ready at its start from a passive declare, and
//! takes exactly that many: in batches, one consumer per channel, each with the batch as its
//! prefetch. A consumer whose batch is all held has no credit left and gets nothing more;
//! the next batch goes to a new one, so at most one batch is ever in flight, whatever the
//! queue's size, and the caller handles each message as it comes (prints it, counts it) and
//! keeps nothing. When all are read, the channels are closed one at a time, in order, each
//! only once the broker has counted its consumer gone, which it does in the same step as
//! putting that consumer's messages back: batch after batch, the queue ends as it began.
//! Messages that arrived meanwhile were never returned and stay behind them.
//!
//! Two reads at once would give back interleaved parts and mix the order, and a message held
//! by one is not counted by the other; so a read first takes a lock: an exclusive queue named
//! after the queue read, which the broker gives to one connection at a time and removes when
//! that connection goes, however it goes.
//!
//! A read stopped midway (`kill -9`, a lost connection) loses nothing: the broker returns
//! every message it held. They may then come back in another order, behind the ones not yet
//! read.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;

mod lock;

pub use self::lock::{Lock, being_read, lock_name};

/// Messages in flight for a read: the prefetch of each batch.
pub const PREFETCH: u16 = 256;
/// Channels one read opens at most (a broker allows 2047 per connection by default): past
/// `PREFETCH` times this, the batches grow instead.
pub const MAX_CHANNELS: u32 = 1000;
/// Without a delivery for this long, the queue is asked whether anything is left to read.
const STALL: Duration = Duration::from_secs(5);
/// Stalls in a row, with messages still ready, after which a read gives up.
const STALLS_MAX: u32 = 12;
/// How long to wait for the broker to put one batch back before giving back the next anyway.
const RETURN_WAIT: Duration = Duration::from_secs(30);

/// What to do with a message once it has been read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Leave it in the queue, in its place.
    Keep,
    /// Acknowledge it: it leaves the queue (a replay has published it elsewhere).
    Remove,
}

/// Why a read did not happen or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(
        "another reader holds {0}: a dlq command, a replay, or a relay measuring its oldest \
         dead letter"
    )]
    Busy(String),
    #[error("{queue} holds {ready} messages, more than one read can hold ({max})")]
    TooMany { queue: String, ready: u32, max: u64 },
    #[error("the broker cancelled the read of {0}")]
    Cancelled(String),
    #[error("{0} has messages ready but sends none to the read")]
    Stalled(String),
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    /// The caller stopped the read with an error of its own.
    #[error("{0}")]
    Stopped(Box<dyn std::error::Error + Send + Sync>),
}

/// How much a read covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Read {
    /// Messages ready when the read began.
    pub counted: u32,
    /// Messages read: `counted`, or fewer when others took some meanwhile.
    pub seen: u32,
    /// Of those, acknowledged (gone from the queue).
    pub removed: u32,
}

/// The batch size for reading `ready` messages: the prefetch, or more when that would need
/// more than `max_channels` channels. `None` when even the largest prefetch is not enough.
pub fn batch_size(ready: u32, prefetch: u16, max_channels: u32) -> Option<u16> {
    let per = ready
        .div_ceil(max_channels.max(1))
        .max(u32::from(prefetch))
        .max(1);
    u16::try_from(per).ok()
}

/// Messages ready in `queue`, and its consumers.
async fn passive(ch: &lapin::Channel, queue: &str) -> Result<(u32, u32), lapin::Error> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let q = ch
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await?;
    Ok((q.message_count(), q.consumer_count()))
}

/// Reads every message ready in `queue`, in order, calling `each` on each and awaiting the
/// future it returns for the verdict; the ones it keeps stay where they were. The caller
/// holds the queue's [`Lock`]. Whatever happens midway (an error from `each` included), what
/// was read is given back in order before returning.
pub async fn read_all<F>(
    conn: &lapin::Connection,
    queue: &str,
    mut each: impl FnMut(&Delivery) -> F,
) -> Result<Read, ReadError>
where
    F: std::future::Future<Output = Result<Choice, Box<dyn std::error::Error + Send + Sync>>>,
{
    let probe = conn.create_channel().await?;
    let (counted, _) = passive(&probe, queue).await?;
    let batch = batch_size(counted, PREFETCH, MAX_CHANNELS).ok_or_else(|| ReadError::TooMany {
        queue: queue.to_owned(),
        ready: counted,
        max: u64::from(u16::MAX) * u64::from(MAX_CHANNELS),
    })?;
    let mut read = Read {
        counted,
        ..Read::default()
    };
    let mut held = Held(Vec::new());
    let outcome: Result<(), ReadError> = async {
        let tag_base = format!("postback-relay-read-{}", uuid::Uuid::new_v4().simple());
        'batches: while read.seen < counted {
            let ch = conn.create_channel().await?;
            let left = u16::try_from(counted - read.seen).unwrap_or(u16::MAX);
            ch.basic_qos(batch.min(left), BasicQosOptions::default())
                .await?;
            let tag = format!("{tag_base}-{:06}", held.0.len());
            let consumer = ch
                .basic_consume(
                    queue.into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            // Not cancelled when full: a full consumer gets nothing more, and the broker
            // counting it is how the give-back below knows its batch is back.
            held.0.push((ch, consumer, tag));
            let consumer = &mut held.0.last_mut().expect("just pushed").1;
            let mut kept = 0u16;
            while kept < batch && read.seen < counted {
                let Some(m) = next(consumer, &probe, queue).await? else {
                    // Fewer than counted: another consumer took some.
                    break 'batches;
                };
                read.seen += 1;
                match each(&m).await.map_err(ReadError::Stopped)? {
                    Choice::Keep => kept += 1,
                    Choice::Remove => {
                        m.acker.ack(BasicAckOptions::default()).await?;
                        read.removed += 1;
                    }
                }
            }
        }
        Ok(())
    }
    .await;
    // The last consumer may still have credit (its batch not full, or freed by acks): it
    // would take back the first batches as they return. It goes first.
    if let Some((ch, _, tag)) = held.0.last() {
        let _ = ch
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await;
    }
    give_back(&probe, queue, std::mem::take(&mut held.0)).await;
    let _ = probe.close(200, "read done".into()).await;
    outcome.map(|()| read)
}

/// The channels of a read and the messages they hold unacknowledged. A read gives them back
/// in order when it ends; when it is dropped midway instead (the request it served went
/// away, its task was cancelled), this guard closes every channel it still owns, so that the
/// broker returns their messages at once rather than when the connection ends (which a
/// long-running process such as the console may never do). Their order is then the broker's.
struct Held(Vec<(lapin::Channel, lapin::Consumer, String)>);

impl Drop for Held {
    fn drop(&mut self) {
        let held = std::mem::take(&mut self.0);
        if held.is_empty() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // All at once: the order is the broker's anyway, and one close waiting on a busy
        // broker does not keep the other channels' letters held behind it.
        rt.spawn(futures_util::future::join_all(held.into_iter().map(
            |(ch, consumer, _)| async move {
                let _ = ch.close(200, "read dropped".into()).await;
                drop(consumer);
            },
        )));
    }
}

/// The next message of a batch, or `None` when the queue has nothing left to send.
async fn next(
    consumer: &mut lapin::Consumer,
    probe: &lapin::Channel,
    queue: &str,
) -> Result<Option<Delivery>, ReadError> {
    for _ in 0..STALLS_MAX {
        match tokio::time::timeout(STALL, consumer.next()).await {
            Ok(Some(m)) => return Ok(Some(m?)),
            Ok(None) => return Err(ReadError::Cancelled(queue.to_owned())),
            // Slow, or nothing left: the queue's own count tells.
            Err(_) if passive(probe, queue).await?.0 == 0 => return Ok(None),
            Err(_) => {}
        }
    }
    Err(ReadError::Stalled(queue.to_owned()))
}

/// Closes the read's channels in order, each once the broker has put the previous batch back:
/// it counts one consumer fewer in the same step.
async fn give_back(
    probe: &lapin::Channel,
    queue: &str,
    held: Vec<(lapin::Channel, lapin::Consumer, String)>,
) {
    let mut consumers = match passive(probe, queue).await {
        Ok((_, c)) => c,
        Err(e) => {
            tracing::warn!(message = "cannot follow the give-back", queue, error = %e);
            u32::MAX
        }
    };
    let total = held.len();
    for (i, (ch, consumer, _)) in held.into_iter().enumerate() {
        let _ = ch.close(200, "read, not consumed".into()).await;
        drop(consumer);
        if i + 1 == total || consumers == u32::MAX {
            continue;
        }
        consumers = consumers.saturating_sub(1);
        let deadline = Instant::now() + RETURN_WAIT;
        loop {
            match passive(probe, queue).await {
                Ok((_, now)) if now <= consumers => {
                    consumers = now;
                    break;
                }
                Ok(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Ok((_, now)) => {
                    tracing::warn!(
                        message = "the broker has not put a batch back in time; going on",
                        queue,
                        consumers = now
                    );
                    consumers = now.saturating_sub(1);
                    break;
                }
                Err(e) => {
                    tracing::warn!(message = "cannot follow the give-back", queue, error = %e);
                    consumers = u32::MAX;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_stay_at_the_prefetch_until_the_channels_run_out() {
        assert_eq!(batch_size(0, 256, 1000), Some(256));
        assert_eq!(batch_size(10, 256, 1000), Some(256));
        assert_eq!(batch_size(256_000, 256, 1000), Some(256));
        assert_eq!(batch_size(256_001, 256, 1000), Some(257));
        assert_eq!(batch_size(1_000_000, 256, 1000), Some(1000));
        assert_eq!(batch_size(65_535_000, 256, 1000), Some(u16::MAX));
        assert_eq!(batch_size(65_535_001, 256, 1000), None);
        assert_eq!(batch_size(5, 0, 0), Some(5));
    }
}
