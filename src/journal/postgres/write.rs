//! The writer's transactions in PostgreSQL: a batch's commit, and a pruning step.

use chrono::{DateTime, Utc};

use super::{Pg, counts};
use crate::journal::sqlite::ms;
use crate::journal::{CALL_TIMEOUT, Entry, JournalError};

impl Pg {
    /// Commits `batch` in one transaction, one statement per table (the per-minute counts
    /// included).
    pub(in crate::journal) async fn commit(&self, batch: &[Entry]) -> Result<(), JournalError> {
        let mut ev = (vec![], vec![], vec![], vec![], vec![]);
        for e in batch.iter().filter(|e| e.event.is_some()) {
            ev.0.push(e.event_id.as_str());
            ev.1.push(e.order_id.as_deref());
            ev.2.push(e.event_type.as_str());
            ev.3.push(e.event.as_deref().unwrap_or_default());
            ev.4.push(ms(e.at));
        }
        let mut conn = self.conn().await?;
        conn.transaction("committing", CALL_TIMEOUT, async |tx| {
            if !ev.0.is_empty() {
                tx.execute(
                    "INSERT INTO events (event_id, order_id, event_type, body, first_at)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])
                 ON CONFLICT (event_id) DO NOTHING",
                    &[&ev.0, &ev.1, &ev.2, &ev.3, &ev.4],
                )
                .await?;
            }
            let col = |f: fn(&Entry) -> Option<String>| batch.iter().map(f).collect::<Vec<_>>();
            let event_id = col(|e| Some(e.event_id.clone()));
            let order_id = col(|e| e.order_id.clone());
            let event_type = col(|e| Some(e.event_type.clone()));
            let destination = col(|e| Some(e.destination.clone()));
            let outcome = col(|e| Some(e.outcome.code().to_owned()));
            let detail = col(|e| e.outcome.detail().map(str::to_owned));
            let error_class = col(|e| e.error_class.clone());
            let request = col(|e| e.request.clone());
            let response = col(|e| e.response.clone());
            let recovery = col(|e| e.recovery.clone());
            let trace_id = col(|e| e.trace_id.clone());
            let attempt: Vec<i32> = batch
                .iter()
                .map(|e| i32::try_from(e.attempt).unwrap_or(i32::MAX))
                .collect();
            let at: Vec<i64> = batch.iter().map(|e| ms(e.at)).collect();
            let status: Vec<Option<i32>> =
                batch.iter().map(|e| e.http_status.map(i32::from)).collect();
            let latency: Vec<Option<f64>> = batch.iter().map(|e| e.latency_ms).collect();
            tx.execute(
                "INSERT INTO entries (event_id, order_id, event_type, destination, attempt, at,
               outcome, detail, http_status, error_class, latency_ms, request, response, recovery,
               trace_id)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int[],
               $6::bigint[], $7::text[], $8::text[], $9::int[], $10::text[], $11::float8[],
               $12::text[], $13::text[], $14::text[], $15::text[])",
                &[
                    &event_id,
                    &order_id,
                    &event_type,
                    &destination,
                    &attempt,
                    &at,
                    &outcome,
                    &detail,
                    &status,
                    &error_class,
                    &latency,
                    &request,
                    &response,
                    &recovery,
                    &trace_id,
                ],
            )
            .await?;
            counts::add(tx, batch).await?;
            Ok(())
        })
        .await
    }

    /// Removes up to `step` entries older than `before`, then the events no entry refers to;
    /// with what the step has left, operator actions and recoveries asked before, with the
    /// events each recovery sent, and the per-minute counts of whole minutes before. How many
    /// entries, actions, recovered events and counts went.
    pub(in crate::journal) async fn prune_step(
        &self,
        before: DateTime<Utc>,
        step: i64,
    ) -> Result<usize, JournalError> {
        let conn = self.conn().await?;
        let gone = conn
            .execute(
                "DELETE FROM entries WHERE id IN
                   (SELECT id FROM entries WHERE at < $1 ORDER BY at LIMIT $2)",
                &[&ms(before), &step],
            )
            .await?;
        conn.execute(
            "DELETE FROM events WHERE event_id IN
                   (SELECT e.event_id FROM events e WHERE first_at < $1
                      AND NOT EXISTS (SELECT 1 FROM entries x WHERE x.event_id = e.event_id)
                    LIMIT $2)",
            &[&ms(before), &step],
        )
        .await?;
        let room = step - gone as i64;
        if room <= 0 {
            return Ok(gone as usize);
        }
        let actions = conn
            .execute(
                "DELETE FROM actions WHERE id IN
                   (SELECT id FROM actions WHERE at < $1 ORDER BY at LIMIT $2)",
                &[&ms(before), &room],
            )
            .await?;
        let room = room - actions as i64;
        if room <= 0 {
            return Ok((gone + actions) as usize);
        }
        let recovered = conn
            .execute(
                "DELETE FROM recovered WHERE (recovery_id, event_id) IN
                   (SELECT r.recovery_id, r.event_id FROM recovered r
                      JOIN recoveries c ON c.id = r.recovery_id
                    WHERE c.asked_at < $1 LIMIT $2)",
                &[&ms(before), &room],
            )
            .await?;
        conn.execute(
            "DELETE FROM recoveries c WHERE asked_at < $1
                   AND NOT EXISTS (SELECT 1 FROM recovered r WHERE r.recovery_id = c.id)",
            &[&ms(before)],
        )
        .await?;
        let room = room - recovered as i64;
        let counts = counts::prune(&conn, before, room).await?;
        let room = room - counts as i64;
        if room <= 0 {
            return Ok((gone + actions + recovered + counts) as usize);
        }
        // The dead letters' index: those that left the queue before the cut-off; a letter
        // still waiting stays whatever its age, as it stays in the queue.
        let letters = conn
            .execute(
                "DELETE FROM dead_letters WHERE seq IN
                   (SELECT seq FROM dead_letters WHERE state <> 'waiting' AND changed_at < $1
                    ORDER BY changed_at LIMIT $2)",
                &[&ms(before), &room],
            )
            .await?;
        Ok((gone + actions + recovered + counts + letters) as usize)
    }
}
