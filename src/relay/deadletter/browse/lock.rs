//! The lock of a queue's read: an exclusive queue named after it, which the broker gives to
//! one connection at a time, and the question whether a read is under way.

use std::time::{Duration, Instant};

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::FieldTable;

use super::ReadError;

/// How often a caller that waits for the lock tries again (each try costs a channel, which
/// the broker closes when it refuses).
const LOCK_RETRY: Duration = Duration::from_secs(1);

/// The name of the lock of `queue`.
pub fn lock_name(queue: &str) -> String {
    format!("{queue}.reader")
}

/// The lock of one queue, held by one connection at a time (see `browse`'s module doc). It
/// is given back when this value is dropped, and with its connection, however that goes.
pub struct Lock {
    channel: lapin::Channel,
    name: String,
}

impl Lock {
    /// Takes the lock of `queue` if it is free.
    pub async fn try_acquire(
        conn: &lapin::Connection,
        queue: &str,
    ) -> Result<Option<Lock>, lapin::Error> {
        let channel = conn.create_channel().await?;
        let name = lock_name(queue);
        let exclusive = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        };
        match channel
            .queue_declare(name.as_str().into(), exclusive, FieldTable::default())
            .await
        {
            Ok(_) => Ok(Some(Lock { channel, name })),
            // The broker closed that channel with the refusal.
            Err(e) if is_locked(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Takes the lock of `queue`, waiting up to `patience` for another reader to finish.
    /// `waiting` is called once if it has to wait.
    pub async fn acquire(
        conn: &lapin::Connection,
        queue: &str,
        patience: Duration,
        waiting: impl FnOnce(),
    ) -> Result<Lock, ReadError> {
        let deadline = Instant::now() + patience;
        let mut waiting = Some(waiting);
        loop {
            if let Some(lock) = Lock::try_acquire(conn, queue).await? {
                return Ok(lock);
            }
            if Instant::now() >= deadline {
                return Err(ReadError::Busy(queue.to_owned()));
            }
            if let Some(w) = waiting.take() {
                w();
            }
            tokio::time::sleep(LOCK_RETRY).await;
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let (channel, name) = (self.channel.clone(), std::mem::take(&mut self.name));
        // Outside a runtime, the connection's end gives it back.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = channel
                    .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                    .await;
                let _ = channel.close(200, "read done".into()).await;
            });
        }
    }
}

/// Whether a read of `queue` is under way (its lock is held), asked without taking the lock.
/// The question closes `ch` whatever the answer (the broker closes a channel that asks for
/// a queue that is missing, or that another connection owns).
pub async fn being_read(ch: lapin::Channel, queue: &str) -> Result<bool, lapin::Error> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let asked = ch
        .queue_declare(
            lock_name(queue).as_str().into(),
            passive,
            FieldTable::default(),
        )
        .await;
    let _ = ch.close(200, "asked".into()).await;
    match asked {
        // Declared by a reader that has let it go and not yet deleted it.
        Ok(_) => Ok(false),
        Err(e) if is_locked(&e) => Ok(true),
        Err(e)
            if matches!(e.kind(), lapin::ErrorKind::ProtocolError(p)
            if *p.kind() == AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Whether the broker refused an exclusive declaration because another connection owns it.
fn is_locked(e: &lapin::Error) -> bool {
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(p)
        if *p.kind() == AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_named_after_the_queue() {
        assert_eq!(lock_name("p.dead"), "p.dead.reader");
    }
}
