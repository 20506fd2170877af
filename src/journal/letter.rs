//! A dead letter as the journal's index keeps it, what became of it, and what the index is
//! asked; and the file's insert of the letters the relay hands to the journal's writer.

use chrono::{DateTime, Utc};

/// One dead letter as the index keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct Letter {
    /// The dead letter's id (the envelope's), or one the index gave a letter without any.
    pub id: String,
    pub at: DateTime<Utc>,
    /// [`super::NO_DESTINATION`] for a letter from before routing.
    pub destination: String,
    pub reason: String,
    pub event_id: Option<String>,
    pub attempts: u32,
    pub detail: String,
    /// The letter as it is in the queue, as JSON.
    pub letter: String,
}

/// Where a dead letter is, as the index knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// In the queue.
    Waiting,
    /// Sent back for delivery by a replay.
    Replayed,
    /// Removed from the queue by an operator; the index keeps it.
    Discarded,
    /// Not found in the queue by a reindex (taken by something else).
    Gone,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Waiting => "waiting",
            State::Replayed => "replayed",
            State::Discarded => "discarded",
            State::Gone => "gone",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        [
            State::Waiting,
            State::Replayed,
            State::Discarded,
            State::Gone,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// A letter and what became of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Indexed {
    pub letter: Letter,
    pub state: State,
    pub changed_at: Option<DateTime<Utc>>,
    pub changed_by: Option<String>,
    /// What came of the change, in words.
    pub result: Option<String>,
}

/// Which waiting letters a page asks for; every given criterion must hold.
#[derive(Clone, Debug, Default)]
pub struct LetterFilter {
    pub destination: Option<String>,
    pub reason: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub event_id: Option<String>,
    /// Only these letters; empty: any.
    pub ids: Vec<String>,
}

/// Waiting letters of one destination and reason.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub destination: String,
    pub reason: String,
    pub count: u64,
    pub oldest: Option<DateTime<Utc>>,
}

/// A change to one letter: its new state and what came of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Mark {
    pub id: String,
    pub state: State,
    pub result: String,
}

/// Writes letters the relay confirmed into the queue; one already there is left as it is.
pub(super) fn insert(conn: &rusqlite::Connection, letters: &[Letter]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO dead_letters (id, at, destination, reason, event_id, attempts, detail, letter)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING",
    )?;
    for l in letters {
        stmt.execute(rusqlite::params![
            l.id,
            l.at.timestamp_millis(),
            l.destination,
            l.reason,
            l.event_id,
            l.attempts,
            l.detail,
            l.letter
        ])?;
    }
    Ok(())
}
