//! How the journal's index of dead letters stands against the queue: the index's waiting
//! letters against the queue's count (a passive declare), with whether a read of the queue
//! holds some out of that count for now; in words when they differ.

use super::Console;
use super::reading::Connection;
use crate::journal::letters::Letters;
use crate::operate::dlq;

/// How the index stands against the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agreement {
    /// Both count the same letters.
    Same,
    /// A read of the queue holds letters out of its count for now.
    BeingRead { ready: u32, indexed: u64 },
    /// They differ.
    Differ { ready: u32, indexed: u64 },
}

/// Compares the index's waiting letters with the queue's count of them.
pub fn agreement(indexed: u64, ready: u32, being_read: bool) -> Agreement {
    match (u64::from(ready) == indexed, being_read) {
        (true, _) => Agreement::Same,
        (false, true) => Agreement::BeingRead { ready, indexed },
        (false, false) => Agreement::Differ { ready, indexed },
    }
}

impl Agreement {
    pub fn note(self, queue: &str) -> Option<String> {
        match self {
            Agreement::Same => None,
            Agreement::BeingRead { ready, indexed } => Some(format!(
                "The index counts {indexed} dead letters waiting; {queue} shows {ready} ready \
                 while a read of it (a replay, a discard, a dlq command, a reindex) holds the \
                 others."
            )),
            Agreement::Differ { ready, indexed } => Some(format!(
                "The index counts {indexed} dead letters waiting, {queue} holds {ready}: they \
                 differ when the journal was off or full, or the broker dead-lettered messages \
                 itself. Reindex to read the queue once and bring the index up to date."
            )),
        }
    }
}

/// The queue's ready count and whether it is being read.
async fn queue_count(c: &Console) -> Result<(u32, bool), String> {
    let conn = Connection::open(&c.config)
        .await
        .map_err(|e| c.scrubbed(&e))?;
    let asked = async {
        let ready = dlq::depth(&conn.get().create_channel().await?, &c.topology.dead).await?;
        let read = crate::relay::deadletter::browse::being_read(
            conn.get().create_channel().await?,
            &c.topology.dead,
        )
        .await?;
        Ok::<_, lapin::Error>((ready, read))
    }
    .await;
    conn.close().await;
    asked.map_err(|e| c.scrubbed(&e))
}

/// The index against the queue, in words when they differ.
pub async fn drift(c: &Console, letters: &Letters) -> Option<(Agreement, String)> {
    let indexed = match letters.waiting().await {
        Ok(n) => n,
        Err(e) => {
            return Some((
                Agreement::Same,
                format!("The index cannot be read: {}", c.scrubbed(&e)),
            ));
        }
    };
    match queue_count(c).await {
        Ok((ready, read)) => {
            let a = agreement(indexed, ready, read);
            a.note(&c.topology.dead).map(|n| (a, n))
        }
        Err(e) => Some((
            Agreement::Same,
            format!(
                "RabbitMQ did not answer ({e}): the index's {indexed} letters are not checked against the queue."
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_and_the_queue_agree_differ_or_are_being_read() {
        assert_eq!(agreement(5, 5, false), Agreement::Same);
        assert_eq!(agreement(5, 5, true), Agreement::Same);
        assert_eq!(
            agreement(5, 3, true),
            Agreement::BeingRead {
                ready: 3,
                indexed: 5
            }
        );
        let d = agreement(5, 7, false);
        assert_eq!(
            d,
            Agreement::Differ {
                ready: 7,
                indexed: 5
            }
        );
        assert!(d.note("p.dead").unwrap().contains("Reindex"));
        assert_eq!(Agreement::Same.note("p.dead"), None);
    }
}
