//! Which deliveries this process has already made: a redelivered event (after a reconnect, or
//! a message whose ack was lost) is not sent to a destination that already accepted it.
//!
//! In memory, bounded in size and age: it covers redeliveries seen by the same process. A
//! record that survives restarts and is shared by replicas is a store's job.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

type Key = (String, String);

/// Recently delivered (destination, event id) pairs.
pub struct Recent {
    capacity: usize,
    ttl: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    seen: HashMap<Key, Instant>,
    order: VecDeque<(Key, Instant)>,
}

impl Recent {
    pub fn new(capacity: usize, ttl: Duration) -> Recent {
        Recent {
            capacity,
            ttl,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn contains(&self, destination: &str, event_id: &str, now: Instant) -> bool {
        let inner = self.inner.lock().expect("recent lock");
        let key = (destination.to_owned(), event_id.to_owned());
        inner
            .seen
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < self.ttl)
    }

    pub fn insert(&self, destination: &str, event_id: &str, now: Instant) {
        let mut inner = self.inner.lock().expect("recent lock");
        let key = (destination.to_owned(), event_id.to_owned());
        inner.seen.insert(key.clone(), now);
        inner.order.push_back((key, now));
        while inner.order.len() > self.capacity
            || inner
                .order
                .front()
                .is_some_and(|(_, at)| now.duration_since(*at) >= self.ttl)
        {
            let (old, at) = inner.order.pop_front().expect("not empty");
            // Only forget it if it was not recorded again since.
            if inner.seen.get(&old) == Some(&at) {
                inner.seen.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_capacity_and_age() {
        let r = Recent::new(2, Duration::from_secs(60));
        let t = Instant::now();
        r.insert("d", "e1", t);
        r.insert("d", "e2", t);
        assert!(r.contains("d", "e1", t) && r.contains("d", "e2", t));
        assert!(!r.contains("other", "e1", t));
        r.insert("d", "e3", t);
        assert!(!r.contains("d", "e1", t), "the oldest goes first");
        assert!(
            !r.contains("d", "e3", t + Duration::from_secs(61)),
            "and so does the expired"
        );
    }
}
