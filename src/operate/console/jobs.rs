//! Replays and recoveries started from the console run as jobs: the page that started one
//! shows its progress, reloading itself, until it ends with its result.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Jobs kept for their pages at most; the oldest go first.
const KEPT: usize = 100;
/// Letters a job lists with what came of each, at most; the rest are counted.
pub const LISTED: usize = 1_000;

/// What came of one letter in a replay or a discard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Came {
    /// Published back for delivery.
    Republished,
    /// Removed from the queue (a discard).
    Discarded,
    /// Left in the queue, or not found there.
    Skipped,
    /// Could not be sent back; it stays in the queue.
    Failed,
}

impl Came {
    pub fn as_str(self) -> &'static str {
        match self {
            Came::Republished => "republished",
            Came::Discarded => "discarded",
            Came::Skipped => "skipped",
            Came::Failed => "failed",
        }
    }
}

/// One letter's line on a job's page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LetterResult {
    pub id: String,
    pub event_id: Option<String>,
    pub destination: Option<String>,
    pub came: Came,
    pub why: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Running,
    Done,
    Failed,
}

#[derive(Clone, Debug)]
pub struct Job {
    pub id: u64,
    /// What it does, in words.
    pub what: String,
    pub state: State,
    /// Items handled so far, of `total` (0: not known yet).
    pub done: u64,
    pub total: u64,
    /// How it ended, in words.
    pub result: Option<String>,
    /// Each letter the job took, and what came of it (the first [`LISTED`]).
    pub letters: Vec<LetterResult>,
    /// Letters past [`LISTED`], not listed.
    pub unlisted: u64,
}

impl Job {
    /// Adds a letter's line, or counts it past [`LISTED`].
    pub fn add(&mut self, r: LetterResult) {
        if self.letters.len() < LISTED {
            self.letters.push(r);
        } else {
            self.unlisted += 1;
        }
    }
}

#[derive(Default)]
pub struct Jobs {
    next: AtomicU64,
    all: Mutex<BTreeMap<u64, Job>>,
}

impl Jobs {
    pub fn start(&self, what: String, total: u64) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut all) = self.all.lock() {
            while all.len() >= KEPT {
                all.pop_first();
            }
            all.insert(
                id,
                Job {
                    id,
                    what,
                    state: State::Running,
                    done: 0,
                    total,
                    result: None,
                    letters: Vec::new(),
                    unlisted: 0,
                },
            );
        }
        id
    }

    pub fn update(&self, id: u64, f: impl FnOnce(&mut Job)) {
        if let Ok(mut all) = self.all.lock()
            && let Some(j) = all.get_mut(&id)
        {
            f(j);
        }
    }

    pub fn get(&self, id: u64) -> Option<Job> {
        self.all.lock().ok()?.get(&id).cloned()
    }
}
