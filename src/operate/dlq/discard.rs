//! Discard: the dead letters an operator chose as junk removed from the queue (acknowledged),
//! the others left in their order. What they were stays in the journal's index.

use super::{DeadLetter, DlqError, Filter, Summary, lock_for_command};
use crate::relay::broker::Topology;
use crate::relay::deadletter::browse::{self, Choice};

/// Removes the dead letters matching `filter` from the queue; `progress` is called with each
/// examined letter and whether it is removed. A removed letter is told once its
/// acknowledgement has gone out: when the read goes on to the next letter, or ends without
/// an error; a read that fails right after choosing a letter does not tell it (it may be
/// back in the queue). Returns (examined, removed).
pub async fn discard(
    conn: &lapin::Connection,
    topology: &Topology,
    max_event_bytes: usize,
    filter: &Filter,
    mut progress: impl FnMut(&Summary, bool),
) -> Result<(u64, u64), DlqError> {
    // Only letters with an id are chosen by it; a filter without ids takes what it matches.
    let _lock = lock_for_command(conn, &topology.dead).await?;
    let mut examined = 0u64;
    // The letter chosen last, told once its acknowledgement is known to have gone out.
    let mut acking: Option<Summary> = None;
    let read = browse::read_all(conn, &topology.dead, |m| {
        examined += 1;
        if let Some(removed) = acking.take() {
            progress(&removed, true);
        }
        let summary = DeadLetter::from_message(m, max_event_bytes).summary();
        let chosen = filter.matches(&summary);
        if chosen {
            acking = Some(summary);
        } else {
            progress(&summary, false);
        }
        std::future::ready(Ok(if chosen { Choice::Remove } else { Choice::Keep }))
    })
    .await?;
    if let Some(removed) = acking {
        progress(&removed, true);
    }
    Ok((examined, u64::from(read.removed)))
}
