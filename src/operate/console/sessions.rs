//! The console's sessions: made by a login, each for one operator, ended by a logout, after
//! [`SESSION_TTL`] from the login, or after [`SESSION_IDLE`] without a request. Kept in
//! memory, at most [`MAX_SESSIONS`] (the oldest goes first): a console that restarts asks
//! everyone to log in again.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sessions kept at most; the oldest goes first.
pub const MAX_SESSIONS: usize = 1000;
/// How long a session lasts from its login: a working day, then the token is asked again.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// How long a session lasts without a request.
pub const SESSION_IDLE: Duration = Duration::from_secs(3600);

struct Session {
    id: String,
    who: String,
    made: Instant,
    seen: Instant,
}

pub struct Sessions {
    /// In the order they were made.
    all: Mutex<VecDeque<Session>>,
    ttl: Duration,
    idle: Duration,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::lasting(SESSION_TTL, SESSION_IDLE)
    }
}

impl Sessions {
    pub fn lasting(ttl: Duration, idle: Duration) -> Sessions {
        Sessions {
            all: Mutex::default(),
            ttl,
            idle,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new session for `who`; its id goes in the cookie.
    pub fn start(&self, who: &str) -> String {
        self.start_at(who, Instant::now())
    }

    fn start_at(&self, who: &str, now: Instant) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        if let Ok(mut all) = self.all.lock() {
            if all.len() >= MAX_SESSIONS {
                all.pop_front();
            }
            all.push_back(Session {
                id: id.clone(),
                who: who.to_owned(),
                made: now,
                seen: now,
            });
        }
        id
    }

    /// Who the session `id` is for, if it is still on; it is seen now.
    pub fn who(&self, id: &str) -> Option<String> {
        self.who_at(id, Instant::now())
    }

    fn who_at(&self, id: &str, now: Instant) -> Option<String> {
        let mut all = self.all.lock().ok()?;
        let (ttl, idle) = (self.ttl, self.idle);
        all.retain(|s| now.duration_since(s.made) < ttl && now.duration_since(s.seen) < idle);
        let s = all.iter_mut().find(|s| same(&s.id, id))?;
        s.seen = now;
        Some(s.who.clone())
    }

    /// Ends the session `id`; whether it was on.
    pub fn end(&self, id: &str) -> bool {
        let Ok(mut all) = self.all.lock() else {
            return false;
        };
        let before = all.len();
        all.retain(|s| !same(&s.id, id));
        all.len() < before
    }
}

/// Compares without stopping at the first difference.
pub(super) fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_names_its_operator_until_it_ends() {
        let s = Sessions::default();
        let id = s.start("alice");
        assert_eq!(s.who(&id).as_deref(), Some("alice"));
        assert_eq!(s.who("forged"), None);
        assert!(s.end(&id));
        assert_eq!(s.who(&id), None, "logged out");
        assert!(!s.end(&id));
    }

    #[test]
    fn a_session_ends_at_its_time_to_live_even_when_in_use() {
        let s = Sessions::lasting(Duration::from_secs(60), Duration::from_secs(30));
        let t0 = Instant::now();
        let id = s.start_at("alice", t0);
        for secs in [20, 40, 59] {
            let at = t0 + Duration::from_secs(secs);
            assert!(s.who_at(&id, at).is_some(), "in use at {secs} s");
        }
        assert_eq!(s.who_at(&id, t0 + Duration::from_secs(60)), None);
        assert!(s.all.lock().unwrap().is_empty(), "and it is gone");
    }

    #[test]
    fn a_session_left_idle_ends() {
        let s = Sessions::lasting(Duration::from_secs(600), Duration::from_secs(30));
        let t0 = Instant::now();
        let id = s.start_at("bob", t0);
        assert!(s.who_at(&id, t0 + Duration::from_secs(29)).is_some());
        assert!(
            s.who_at(&id, t0 + Duration::from_secs(58)).is_some(),
            "seen at 29 s"
        );
        assert_eq!(
            s.who_at(&id, t0 + Duration::from_secs(88)),
            None,
            "idle 30 s"
        );
    }

    #[test]
    fn the_oldest_session_goes_when_there_are_too_many() {
        let s = Sessions::default();
        let first = s.start("a");
        for _ in 0..MAX_SESSIONS {
            s.start("b");
        }
        assert_eq!(s.who(&first), None);
        assert_eq!(s.all.lock().unwrap().len(), MAX_SESSIONS);
    }
}
