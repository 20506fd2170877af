//! The writer's transactions on the file: a batch's commit, and a pruning step.

use chrono::{DateTime, Utc};

use super::{Db, ms};
use crate::journal::Entry;
use crate::journal::writer::PRUNE_STEP;

impl Db {
    /// Commits `batch` in one transaction: every entry, each event's body once, on the
    /// first entry that brings it, and the batch added to the per-minute counts.
    pub(super) fn commit(&mut self, batch: &[Entry]) -> rusqlite::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            // Two statements, not one `INSERT ... SELECT`: SQLite copies a select that reads
            // the table it inserts into to a temporary table first.
            let mut has_body = tx.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM entries WHERE event_id = ?1 AND body IS NOT NULL)",
            )?;
            let mut entry = tx.prepare_cached(
                "INSERT INTO entries (event_id, order_id, event_type, destination, attempt, at,
                   outcome, detail, http_status, error_class, latency_ms, request, response,
                   recovery, body, first_at, trace_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                         CASE WHEN ?15 IS NOT NULL THEN ?6 END, ?16)",
            )?;
            for e in batch {
                let body = match &e.event {
                    Some(body)
                        if !has_body.query_row([&e.event_id], |r| r.get::<_, bool>(0))? =>
                    {
                        Some(body)
                    }
                    _ => None,
                };
                entry.execute(rusqlite::params![
                    e.event_id,
                    e.order_id,
                    e.event_type,
                    e.destination,
                    e.attempt,
                    ms(e.at),
                    e.outcome.code(),
                    e.outcome.detail(),
                    e.http_status,
                    e.error_class,
                    e.latency_ms,
                    e.request,
                    e.response,
                    e.recovery,
                    body,
                    e.trace_id,
                ])?;
            }
        }
        crate::journal::counts::add_in_file(&tx, batch)?;
        tx.commit()
    }

    /// Removes up to [`PRUNE_STEP`] rows older than `before`, in one transaction; returns
    /// how many went. Entries first: a body on one of them moves, with its time, to the newest
    /// other entry of its event, so that an event is kept as long as any entry tells of it.
    /// Then, with what the step has left, operator actions and recoveries asked before, with
    /// the events each recovery sent, and the per-minute counts of whole minutes before.
    pub(in crate::journal) fn prune_step(
        &mut self,
        before: DateTime<Utc>,
    ) -> rusqlite::Result<usize> {
        let before = ms(before);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let entries = Db::prune_entries(&tx, before)?;
        let others = Db::prune_records(&tx, before, PRUNE_STEP - entries)?;
        let counts =
            crate::journal::counts::prune_in_file(&tx, before, PRUNE_STEP - entries - others)?;
        let room = PRUNE_STEP - entries - others - counts;
        let letters = Db::prune_letters(&tx, before, room)?;
        tx.commit()?;
        Ok(entries + others + counts + letters)
    }

    /// Up to [`PRUNE_STEP`] entries before `before`, their bodies handed over.
    fn prune_entries(tx: &rusqlite::Transaction<'_>, before: i64) -> rusqlite::Result<usize> {
        let step: Vec<(i64, String)> = tx
            .prepare_cached("SELECT id, event_id FROM entries WHERE at < ?1 ORDER BY at LIMIT ?2")?
            .query_map(rusqlite::params![before, PRUNE_STEP], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?;
        {
            // The body is read as the entry goes: an earlier entry of this step may have
            // handed it one.
            let mut hand_over = tx.prepare_cached(
                "UPDATE entries SET (body, first_at) = (SELECT body, first_at FROM entries WHERE id = ?1)
                 WHERE id = (SELECT max(id) FROM entries WHERE event_id = ?2 AND id <> ?1)
                   AND (SELECT body FROM entries WHERE id = ?1) IS NOT NULL",
            )?;
            let mut remove = tx.prepare_cached("DELETE FROM entries WHERE id = ?1")?;
            for (id, event_id) in &step {
                hand_over.execute(rusqlite::params![id, event_id])?;
                remove.execute([id])?;
            }
        }
        Ok(step.len())
    }

    /// Up to `room` operator actions, and events sent by recoveries, from before `before`
    /// (how many: what counts against the step); a recovery goes with the last event it
    /// sent.
    /// Up to `room` rows of the dead letters' index that left the queue (replayed, discarded,
    /// gone) before `before`; a letter still waiting stays whatever its age, as it stays in
    /// the queue.
    fn prune_letters(
        tx: &rusqlite::Transaction<'_>,
        before: i64,
        room: usize,
    ) -> rusqlite::Result<usize> {
        if room == 0 {
            return Ok(0);
        }
        tx.prepare_cached(
            "DELETE FROM dead_letters WHERE seq IN
               (SELECT seq FROM dead_letters WHERE state <> 'waiting' AND changed_at < ?1
                ORDER BY changed_at LIMIT ?2)",
        )?
        .execute(rusqlite::params![before, room])
    }

    fn prune_records(
        tx: &rusqlite::Transaction<'_>,
        before: i64,
        room: usize,
    ) -> rusqlite::Result<usize> {
        if room == 0 {
            return Ok(0);
        }
        let actions = tx
            .prepare_cached(
                "DELETE FROM actions WHERE id IN
                   (SELECT id FROM actions WHERE at < ?1 ORDER BY at LIMIT ?2)",
            )?
            .execute(rusqlite::params![before, room])?;
        let room = room - actions;
        if room == 0 {
            return Ok(actions);
        }
        let recovered = tx
            .prepare_cached(
                "DELETE FROM recovered WHERE (recovery_id, event_id) IN
                   (SELECT r.recovery_id, r.event_id FROM recovered r
                      JOIN recoveries c ON c.id = r.recovery_id
                    WHERE c.asked_at < ?1 LIMIT ?2)",
            )?
            .execute(rusqlite::params![before, room])?;
        tx.prepare_cached(
            "DELETE FROM recoveries WHERE asked_at < ?1
               AND NOT EXISTS (SELECT 1 FROM recovered WHERE recovery_id = recoveries.id)",
        )?
        .execute([before])?;
        Ok(actions + recovered)
    }
}

#[cfg(test)]
impl Db {
    pub(in crate::journal) fn commit_for_test(&mut self, batch: &[Entry]) {
        self.commit(batch).expect("commit");
    }

    pub(in crate::journal) fn try_commit_for_test(
        &mut self,
        batch: &[Entry],
    ) -> rusqlite::Result<()> {
        self.commit(batch)
    }
}
