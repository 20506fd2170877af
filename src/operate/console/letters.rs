//! The dead letters the pages show: from the journal's index of dead letters (a query per
//! page, whatever the queue's size), or, without an index (the journal turned off), from one
//! read of the queue in a task of its own. Either way the page says when the index and the
//! queue differ, and offers a reindex.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::Console;
use super::drift::{Agreement, drift};
use super::reading::{self, Connection};
use crate::config::Config;
use crate::journal::letters::{Indexed, LetterFilter, Letters};
use crate::operate::dlq::{self, DeadLetter, Filter, Summary};
use crate::relay::broker::Topology;

/// One group of dead letters.
pub struct Group {
    pub destination: String,
    pub reason: String,
    pub count: u64,
    pub oldest: Option<DateTime<Utc>>,
}

pub struct DeadPage {
    /// Letters waiting.
    pub total: u64,
    /// Letters the filter selects.
    pub matched: u64,
    pub groups: Vec<Group>,
    /// This page's letters.
    pub items: Vec<Summary>,
    pub page: u64,
    pub has_more: bool,
    /// What the page should say of where its letters come from.
    pub notes: Vec<String>,
    /// Whether a reindex is offered.
    pub offer_reindex: bool,
}

pub const PAGE: u64 = 50;

/// The matches page `page` shows: those after the first `skip`, up to the `end`th. Any page
/// number is taken, up to `u64::MAX`: a page past the end is empty, never an overflow.
pub fn page_bounds(page: u64) -> (u64, u64) {
    let skip = page.saturating_sub(1).saturating_mul(PAGE);
    (skip, skip.saturating_add(PAGE))
}

/// The index's filter for a dead-letter filter.
pub fn index_filter(f: &Filter) -> LetterFilter {
    LetterFilter {
        destination: f.destination.clone(),
        reason: f.reason.map(|r| r.as_str().to_owned()),
        since: f.since,
        until: f.until,
        event_id: f.event_id.clone(),
        ids: f.ids.clone(),
    }
}

/// The index of dead letters; `None` without a journal (turned off, or not made yet).
pub async fn index(c: &Console) -> Result<Option<Letters>, String> {
    if !c.config.journal.enabled {
        return Ok(None);
    }
    match Letters::open(&c.config.journal).await {
        Ok(l) => Ok(Some(l)),
        Err(crate::journal::JournalError::Missing(_)) => Ok(None),
        Err(e) => Err(c.scrubbed(&e)),
    }
}

/// Page `page` of the waiting letters `filter` selects, with their groups.
pub async fn dead_page(c: &Console, filter: &Filter, page: u64) -> Result<DeadPage, String> {
    let Some(letters) = index(c).await? else {
        let (config, topology, filter) = (c.config.clone(), c.topology.clone(), filter.clone());
        let mut p = reading::detached(queue_page(config, topology, filter, page)).await?;
        p.notes.push(
            "No index of dead letters (the journal is off, or the relay has not made it yet): \
             this page read the whole queue."
                .into(),
        );
        return Ok(p);
    };
    let f = index_filter(filter);
    let (skip, end) = page_bounds(page);
    let err = |e: crate::journal::JournalError| c.scrubbed(&e);
    let groups = letters.groups(&f).await.map_err(err)?;
    let total = letters.waiting().await.map_err(err)?;
    let matched = groups.iter().map(|g| g.count).sum();
    let items = letters.page(&f, skip, PAGE + 1).await.map_err(err)?;
    let has_more = items.len() as u64 > PAGE && end < u64::MAX;
    let mut out = DeadPage {
        total,
        matched,
        groups: groups
            .into_iter()
            .map(|g| Group {
                destination: shown_destination(&g.destination),
                reason: g.reason,
                count: g.count,
                oldest: g.oldest,
            })
            .collect(),
        items: items
            .iter()
            .take(PAGE as usize)
            .map(dlq::index::summary_of)
            .collect(),
        page: page.max(1),
        has_more,
        notes: Vec::new(),
        offer_reindex: false,
    };
    if let Some((a, note)) = drift(c, &letters).await {
        out.offer_reindex = matches!(a, Agreement::Differ { .. });
        out.notes.push(note);
    }
    Ok(out)
}

/// A destination as the pages show it: letters from before routing have none.
pub fn shown_destination(d: &str) -> String {
    if d == crate::journal::NO_DESTINATION {
        "-".into()
    } else {
        d.to_owned()
    }
}

/// One pass over the dead-letter queue, in order: the filter's groups, and page `page`.
async fn queue_page(
    config: Arc<Config>,
    topology: Topology,
    filter: Filter,
    page: u64,
) -> Result<DeadPage, String> {
    let scrub = |e: &dyn std::fmt::Display| config.secrets.scrub(&e.to_string()).into_owned();
    let conn = Connection::open(&config).await.map_err(|e| scrub(&e))?;
    let (skip, end) = page_bounds(page);
    let mut out = DeadPage {
        total: 0,
        matched: 0,
        groups: Vec::new(),
        items: Vec::new(),
        page: page.max(1),
        has_more: false,
        notes: Vec::new(),
        offer_reindex: false,
    };
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    let max = config.worker.max_event_bytes;
    let read = dlq::each(conn.get(), &topology, max, |l| {
        out.total += 1;
        let s = l.summary();
        if !filter.matches(&s) {
            return Ok(());
        }
        out.matched += 1;
        let destination = s.destination.clone().unwrap_or_else(|| "-".into());
        let reason = s.reason.as_str().to_owned();
        let g = groups
            .entry((destination.clone(), reason.clone()))
            .or_insert(Group {
                destination,
                reason,
                count: 0,
                oldest: None,
            });
        g.count += 1;
        if let Some(at) = s.dead_lettered_at {
            g.oldest = Some(g.oldest.map_or(at, |o| o.min(at)));
        }
        if out.matched > skip && out.matched <= end {
            out.items.push(s);
        } else if out.matched > end {
            out.has_more = true;
        }
        Ok(())
    })
    .await;
    conn.close().await;
    read.map_err(|e| scrub(&e))?;
    out.groups = groups.into_values().collect();
    Ok(out)
}

/// A dead letter found, and what the index says became of it.
pub struct Found {
    pub letter: DeadLetter,
    /// `None`: read from the queue, or still waiting there.
    pub changed: Option<Indexed>,
}

/// The dead letter `id`, from the index (whatever became of it), or without an index from
/// one read of the queue; `None` when neither has it.
pub async fn letter(c: &Console, id: &str) -> Result<Option<Found>, String> {
    let Some(letters) = index(c).await? else {
        let (config, topology, id) = (c.config.clone(), c.topology.clone(), id.to_owned());
        let found = reading::detached(queue_letter(config, topology, id)).await?;
        return Ok(found.map(|letter| Found {
            letter,
            changed: None,
        }));
    };
    let Some(indexed) = letters.get(id).await.map_err(|e| c.scrubbed(&e))? else {
        return Ok(None);
    };
    let Some(letter) = DeadLetter::from_kept(&indexed.letter.letter) else {
        return Err(format!(
            "the index holds dead letter {id} in a form this console cannot read"
        ));
    };
    let waiting = indexed.state == crate::journal::letters::State::Waiting;
    Ok(Some(Found {
        letter,
        changed: (!waiting).then_some(indexed),
    }))
}

async fn queue_letter(
    config: Arc<Config>,
    topology: Topology,
    id: String,
) -> Result<Option<DeadLetter>, String> {
    let scrub = |e: &dyn std::fmt::Display| config.secrets.scrub(&e.to_string()).into_owned();
    let conn = Connection::open(&config).await.map_err(|e| scrub(&e))?;
    let mut found = None;
    let max = config.worker.max_event_bytes;
    let read = dlq::each(conn.get(), &topology, max, |l| {
        if found.is_none() && l.summary().dead_letter_id.as_deref() == Some(id.as_str()) {
            found = Some(l);
        }
        Ok(())
    })
    .await;
    conn.close().await;
    read.map_err(|e| scrub(&e))?;
    Ok(found)
}

/// What a replay or a discard of `filter` would take, by destination ("(the events queue)"
/// for letters from before routing): from the index, or without one from a read of the
/// queue. `(matched, waiting, by destination)`.
pub async fn preview(
    c: &Console,
    filter: &Filter,
) -> Result<Option<(u64, u64, BTreeMap<String, u64>)>, String> {
    let Some(letters) = index(c).await? else {
        return Ok(None);
    };
    let err = |e: crate::journal::JournalError| c.scrubbed(&e);
    let groups = letters.groups(&index_filter(filter)).await.map_err(err)?;
    let waiting = letters.waiting().await.map_err(err)?;
    let mut to: BTreeMap<String, u64> = BTreeMap::new();
    for g in &groups {
        let d = match g.destination.as_str() {
            crate::journal::NO_DESTINATION => "(the events queue)".to_owned(),
            d => d.to_owned(),
        };
        *to.entry(d).or_default() += g.count;
    }
    Ok(Some((groups.iter().map(|g| g.count).sum(), waiting, to)))
}

/// The dead letters waiting, from the index: the overview's count, which stays as it is
/// while anything reads the queue.
pub struct Waiting {
    pub total: u64,
    /// By destination; `-` for the letters from before routing.
    pub by_destination: Vec<(String, u64)>,
}

/// The dead letters waiting, for the overview; a note when the index cannot be read or
/// differs from the queue.
pub async fn waiting(c: &Console, notes: &mut Vec<String>) -> Option<Waiting> {
    let letters = match index(c).await {
        Ok(Some(l)) => l,
        Ok(None) => return None,
        Err(e) => {
            notes.push(format!("The index of dead letters cannot be read: {e}"));
            return None;
        }
    };
    let groups = match letters.groups(&LetterFilter::default()).await {
        Ok(g) => g,
        Err(e) => {
            notes.push(format!(
                "The index of dead letters cannot be read: {}",
                c.scrubbed(&e)
            ));
            return None;
        }
    };
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    for g in &groups {
        *by.entry(shown_destination(&g.destination)).or_default() += g.count;
    }
    if let Some((_, note)) = drift(c, &letters).await {
        notes.push(note);
    }
    Some(Waiting {
        total: by.values().sum(),
        by_destination: by.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_page_number_has_bounds_and_a_page_past_the_end_is_empty() {
        assert_eq!(page_bounds(0), (0, PAGE));
        assert_eq!(page_bounds(1), (0, PAGE));
        assert_eq!(page_bounds(3), (2 * PAGE, 3 * PAGE));
        let (skip, end) = page_bounds(u64::MAX);
        assert_eq!((skip, end), (u64::MAX, u64::MAX));
    }
}
