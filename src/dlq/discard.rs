//! Discard: the dead letters an operator chose as junk removed from the queue (acknowledged),
//! the others left in their order. What they were stays in the journal's index.

use super::{DeadLetter, DlqError, Filter, Summary, lock_for_command};
use crate::broker::Topology;
use crate::browse::{self, Choice};

/// Removes the dead letters matching `filter` from the queue; `progress` is called with each
/// examined letter and whether it is removed (told once its removal is acknowledged, with
/// `removed`). Returns (examined, removed).
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
    let read = browse::read_all(conn, &topology.dead, |m| {
        examined += 1;
        let summary = DeadLetter::from_message(m, max_event_bytes).summary();
        let chosen = filter.matches(&summary);
        progress(&summary, chosen);
        std::future::ready(Ok(if chosen { Choice::Remove } else { Choice::Keep }))
    })
    .await?;
    Ok((examined, u64::from(read.removed)))
}
