//! Partner protection shared by every replica through the Redis store, so that a fleet treats
//! a partner as one relay would:
//!
//! - the rate limit (`rate_limit_per_sec`) is the fleet's: each call reserves the next free
//!   slot of a GCRA schedule kept in Redis (`{prefix}:rate:{destination}`, the theoretical
//!   arrival time in microseconds of Redis' own clock), in one round trip, first come first
//!   served whichever replica asks; the caller waits until its slot;
//! - the circuit breaker is the fleet's: its state is a hash in Redis
//!   (`{prefix}:circuit:{destination}`: state, failures in a row, until when). Failures counted
//!   by every replica open it for all; once the pause is over, exactly one replica takes the
//!   probe; its answer closes the circuit or opens it again. Each replica keeps a snapshot it
//!   reads again at most [`REFRESH`] after the last, so that a closed circuit costs no round
//!   trip per call: an opening reaches the other replicas within that time.
//!
//! When Redis cannot be reached, each replica falls back on its own limiter and circuit (and
//! the claims, which need Redis too, keep anything from being sent meanwhile).

use std::time::Duration;

/// How long a replica trusts its snapshot of a closed circuit.
pub const REFRESH: Duration = Duration::from_millis(200);

/// Where the fleet's shared state lives: the store's Redis connection and key prefix.
#[derive(Clone)]
pub struct Fleet {
    conn: redis::aio::ConnectionManager,
    prefix: String,
}

impl Fleet {
    pub(crate) fn new(conn: redis::aio::ConnectionManager, prefix: &str) -> Fleet {
        Fleet {
            conn,
            prefix: prefix.to_owned(),
        }
    }

    pub(super) fn key(&self, kind: &str, destination: &str) -> String {
        format!("{}:{kind}:{destination}", self.prefix)
    }

    pub(crate) fn conn(&self) -> redis::aio::ConnectionManager {
        self.conn.clone()
    }

    /// The hash of paused destinations ([`crate::shared::pause`]).
    pub(crate) fn paused_key(&self) -> String {
        format!("{}:paused", self.prefix)
    }

    /// The fleet's mark ([`crate::shared::pause`]): a Redis without it has forgotten the
    /// fleet's state, or never held it.
    pub(crate) fn mark_key(&self) -> String {
        format!("{}:mark", self.prefix)
    }
}
