//! Per-minute counts of the journal's entries, by destination and outcome, with the latency
//! of their calls (`per_minute`): kept as entries are written, in the same transaction as
//! each batch (one row per minute, destination and outcome the batch touches, added to), so
//! that the console's overview and charts read a few rows a minute instead of every entry of
//! a day. Pruned with the entries, by whole minutes. The same terms for the file and for
//! PostgreSQL; `tests` checks each plan.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone as _, Utc};

use super::{Entry, JournalError};

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

/// A minute, in milliseconds.
pub(super) const MINUTE_MS: i64 = 60_000;

/// An hour, in milliseconds.
const HOUR_MS: i64 = 3_600_000;

/// The start of the minute holding `t` (milliseconds since the epoch).
pub(super) fn minute_of(t: i64) -> i64 {
    t.div_euclid(MINUTE_MS) * MINUTE_MS
}

/// What a batch adds to one row of the counts.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Tally<'a> {
    pub minute: i64,
    pub destination: &'a str,
    pub outcome: &'static str,
    pub n: i64,
    /// The latencies of the entries that have one, summed, and how many.
    pub latency_ms_sum: f64,
    pub latency_n: i64,
}

/// `batch` counted by minute, destination and outcome: one [`Tally`] per row it adds to, in
/// the order of the table's key.
pub(super) fn tally(batch: &[Entry]) -> Vec<Tally<'_>> {
    let mut rows: BTreeMap<(i64, &str, &'static str), Tally<'_>> = BTreeMap::new();
    for e in batch {
        let minute = minute_of(ms(e.at));
        let outcome = e.outcome.code();
        let t = rows
            .entry((minute, e.destination.as_str(), outcome))
            .or_insert(Tally {
                minute,
                destination: &e.destination,
                outcome,
                n: 0,
                latency_ms_sum: 0.0,
                latency_n: 0,
            });
        t.n += 1;
        if let Some(l) = e.latency_ms.filter(|l| l.is_finite()) {
            t.latency_ms_sum += l;
            t.latency_n += 1;
        }
    }
    rows.into_values().collect()
}

/// One hour of a destination's counts, for one outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct HourCount {
    pub hour: DateTime<Utc>,
    pub outcome: String,
    pub n: u64,
    /// The latencies of the hour's calls with this outcome, summed, and how many.
    pub latency_ms_sum: f64,
    pub latency_n: u64,
}

/// Per destination and outcome, the entries from the minute holding `since` on.
pub(super) const COUNTS_SQL: &str = "SELECT destination, outcome, sum(n) FROM per_minute \
    WHERE minute >= ?1 GROUP BY destination, outcome";

/// One destination's counts per hour (and outcome), from the minute holding `since` on.
pub(super) const PER_HOUR_SQL: &str = "SELECT minute - minute % 3600000, outcome, sum(n), \
    sum(latency_ms_sum), sum(latency_n) FROM per_minute \
    WHERE minute >= ?2 AND destination = ?1 GROUP BY 1, 2 ORDER BY 1, 2";

/// Adds `batch` to the file's counts, inside the batch's transaction.
pub(super) fn add_in_file(tx: &rusqlite::Transaction<'_>, batch: &[Entry]) -> rusqlite::Result<()> {
    let mut add = tx.prepare_cached(
        "INSERT INTO per_minute (minute, destination, outcome, n, latency_ms_sum, latency_n)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (minute, destination, outcome) DO UPDATE SET
           n = n + excluded.n,
           latency_ms_sum = latency_ms_sum + excluded.latency_ms_sum,
           latency_n = latency_n + excluded.latency_n",
    )?;
    for t in tally(batch) {
        add.execute(rusqlite::params![
            t.minute,
            t.destination,
            t.outcome,
            t.n,
            t.latency_ms_sum,
            t.latency_n
        ])?;
    }
    Ok(())
}

/// Removes up to `room` rows of whole minutes before `before`; how many went.
pub(super) fn prune_in_file(
    tx: &rusqlite::Transaction<'_>,
    before: i64,
    room: usize,
) -> rusqlite::Result<usize> {
    if room == 0 {
        return Ok(0);
    }
    tx.prepare_cached(
        "DELETE FROM per_minute WHERE (minute, destination, outcome) IN
           (SELECT minute, destination, outcome FROM per_minute WHERE minute < ?1
            ORDER BY minute LIMIT ?2)",
    )?
    .execute(rusqlite::params![minute_of(before), room])
}

/// Per destination and outcome, the file's entries from the minute holding `since` on.
pub(super) fn in_file(
    conn: &rusqlite::Connection,
    since: DateTime<Utc>,
) -> Result<Vec<(String, String, u64)>, JournalError> {
    let mut stmt = conn.prepare_cached(COUNTS_SQL)?;
    let rows = stmt.query_map([minute_of(ms(since))], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// `destination`'s counts per hour and outcome in the file, from the minute holding `since`
/// on, oldest first.
pub(super) fn per_hour_in_file(
    conn: &rusqlite::Connection,
    destination: &str,
    since: DateTime<Utc>,
) -> Result<Vec<HourCount>, JournalError> {
    let mut stmt = conn.prepare_cached(PER_HOUR_SQL)?;
    let rows = stmt.query_map(rusqlite::params![destination, minute_of(ms(since))], |r| {
        Ok(HourCount {
            hour: from_ms(r.get(0)?),
            outcome: r.get(1)?,
            n: r.get::<_, i64>(2)?.max(0) as u64,
            latency_ms_sum: r.get(3)?,
            latency_n: r.get::<_, i64>(4)?.max(0) as u64,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The start of the hour holding `t`.
pub fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    from_ms(ms(t).div_euclid(HOUR_MS) * HOUR_MS)
}

#[cfg(test)]
pub(super) mod tests;
