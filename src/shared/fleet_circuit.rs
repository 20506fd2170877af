//! The fleet's circuit: a hash in Redis (`{prefix}:circuit:{destination}`) every replica
//! counts its failures into, with a snapshot each replica trusts for [`REFRESH`].

use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use super::circuit::{Admit, Circuit, CircuitConfig, State};
use super::fleet::{Fleet, REFRESH};

/// What a replica last read of the fleet's circuit.
#[derive(Clone, Copy, Debug)]
struct Snapshot {
    state: State,
    failures: u32,
    /// Open: until when no call goes; half-open: until when the probe out counts.
    until: Instant,
    read: Instant,
    /// Redis' clock when it answered (µs): answers to concurrent calls come back in any
    /// order, and the later reading wins.
    at: i64,
}

impl Snapshot {
    fn stale() -> Snapshot {
        let long_ago = Instant::now()
            .checked_sub(REFRESH * 2)
            .unwrap_or_else(Instant::now);
        Snapshot {
            state: State::Closed,
            failures: 0,
            until: long_ago,
            read: long_ago,
            at: 0,
        }
    }

    /// Whether an answer Redis gave at `at` (its clock, µs) replaces this snapshot: one read
    /// later than the snapshot's does; an earlier one came back after a later one and is
    /// out of date. A snapshot past [`REFRESH`] takes any answer, so that Redis' clock
    /// stepping back (a failover to another server) holds nothing up for longer than that.
    fn replaced_by(&self, at: i64, now: Instant) -> bool {
        at >= self.at || now.duration_since(self.read) >= REFRESH
    }

    /// The decision the snapshot makes alone, without asking Redis; `None` to ask. A
    /// snapshot older than [`REFRESH`] is asked again in every state, so that a probe's
    /// success reaches every replica as fast as an opening does.
    fn decides(&self, now: Instant) -> Option<Admit> {
        if now.duration_since(self.read) >= REFRESH {
            return None;
        }
        match self.state {
            State::Closed => Some(Admit::Call),
            State::Open | State::HalfOpen if now < self.until => {
                Some(Admit::Wait(self.until - now))
            }
            State::Open | State::HalfOpen => None,
        }
    }

    /// Whether a result must be told to Redis: a failure always, a success only when it
    /// changes something (failures to reset, or a circuit to close).
    fn must_tell(&self, healthy: bool) -> bool {
        !healthy || self.state != State::Closed || self.failures > 0
    }
}

pub struct FleetCircuit {
    fleet: Fleet,
    key: String,
    config: CircuitConfig,
    snapshot: Mutex<Snapshot>,
    fallback: Circuit,
    /// How long a probe counts as out: `open_ms`, or the call's timeout if longer.
    probe_ms: u64,
}

/// What every circuit script starts with: Redis' clock `now` in ms (and `at` in µs, which
/// each script answers last), and the circuit's state `s`, failures `f` and end of its open
/// or half-open period `u`.
const READ_CIRCUIT: &str = "local t = redis.call('TIME')
         local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
         local at = tonumber(t[1]) * 1000000 + tonumber(t[2])
         local s = tonumber(redis.call('HGET', KEYS[1], 's') or '0')
         local f = tonumber(redis.call('HGET', KEYS[1], 'f') or '0')
         local u = tonumber(redis.call('HGET', KEYS[1], 'u') or '0')
         local left = u - now
         if left < 0 then left = 0 end
";

/// `{decision, state, failures, ms, at}`: decision 0 call, 1 probe, 2 wait `ms`; state 0
/// closed, 1 half-open, 2 open. The probe is taken here, atomically: one caller gets it.
static ADMIT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{READ_CIRCUIT}
         if s == 0 then return {{0, 0, f, 0, at}} end
         if now < u then return {{2, s, f, u - now, at}} end
         redis.call('HSET', KEYS[1], 's', 1, 'u', string.format('%.0f', now + tonumber(ARGV[1])))
         return {{1, 1, f, tonumber(ARGV[1]), at}}"
    ))
});

/// A call's result. Healthy: forgets the failures of a closed circuit, and closes an open
/// one only when it was the probe (a call let through before the circuit opened does not
/// decide for the fleet). A failure counts, and opens the circuit at the threshold, or again
/// when it was not closed. `{state, failures, ms, at}`.
static RECORD: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{READ_CIRCUIT}
         if ARGV[1] == '1' then
           if s == 0 or ARGV[4] == '1' then redis.call('DEL', KEYS[1]) return {{0, 0, 0, at}} end
           return {{s, f, left, at}}
         end
         f = tonumber(redis.call('HINCRBY', KEYS[1], 'f', 1))
         if s == 0 and f < tonumber(ARGV[2]) then return {{0, f, 0, at}} end
         redis.call('HSET', KEYS[1], 's', 2, 'u', string.format('%.0f', now + tonumber(ARGV[3])))
         return {{2, f, tonumber(ARGV[3]), at}}"
    ))
});

/// `{state, failures, ms, at}` as they are: nothing changes.
static PEEK: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&format!("{READ_CIRCUIT} return {{s, f, left, at}}")));

fn state_of(code: i64) -> State {
    match code {
        1 => State::HalfOpen,
        2 => State::Open,
        _ => State::Closed,
    }
}

fn ms(n: i64) -> Duration {
    Duration::from_millis(n.max(0).unsigned_abs())
}

impl FleetCircuit {
    pub(super) fn new(
        config: &CircuitConfig,
        timeout_ms: u64,
        destination: &str,
        fleet: &Fleet,
    ) -> FleetCircuit {
        FleetCircuit {
            fleet: fleet.clone(),
            key: fleet.key("circuit", destination),
            // A probe counts as out until it could have answered: no second one before.
            probe_ms: config.open_ms.max(timeout_ms.saturating_add(1_000)),
            config: config.clone(),
            snapshot: Mutex::new(Snapshot::stale()),
            fallback: Circuit::new(config.clone()),
        }
    }

    /// How much longer the circuit stays open, from this replica's last reading.
    pub(super) fn waits(&self, now: Instant) -> Option<Duration> {
        match self.snapshot.lock().expect("snapshot lock").decides(now) {
            Some(Admit::Wait(d)) => Some(d),
            _ => None,
        }
    }

    /// Redis' clock (µs) when the reading kept was made.
    #[cfg(test)]
    pub(super) fn read_at(&self) -> i64 {
        self.snapshot.lock().expect("snapshot lock").at
    }

    pub(super) async fn admit(&self) -> Admit {
        let now = Instant::now();
        if let Some(admit) = self.snapshot.lock().expect("snapshot lock").decides(now) {
            return admit;
        }
        let asked: Result<(i64, i64, i64, i64, i64), _> = ADMIT
            .key(&self.key)
            .arg(self.probe_ms)
            .invoke_async(&mut self.fleet.conn())
            .await;
        match asked {
            Ok((decision, state, failures, wait, at)) => {
                self.remember(at, state, failures, wait);
                match decision {
                    1 => Admit::Probe,
                    2 => Admit::Wait(ms(wait)),
                    _ => Admit::Call,
                }
            }
            Err(e) => {
                tracing::warn!(message = "the fleet's circuit is unreachable; this replica's own applies", error = %e);
                self.fallback.admit(now)
            }
        }
    }

    pub(super) async fn record(&self, healthy: bool, probe: bool) {
        self.fallback.record(healthy, Instant::now());
        let tell = self
            .snapshot
            .lock()
            .expect("snapshot lock")
            .must_tell(healthy);
        if !probe && !tell {
            return;
        }
        let told: Result<(i64, i64, i64, i64), _> = RECORD
            .key(&self.key)
            .arg(if healthy { "1" } else { "0" })
            .arg(self.config.failure_threshold)
            .arg(self.config.open_ms)
            .arg(if probe { "1" } else { "0" })
            .invoke_async(&mut self.fleet.conn())
            .await;
        match told {
            Ok((state, failures, wait, at)) => {
                self.remember(at, state, failures, wait);
            }
            Err(e) => {
                tracing::warn!(message = "cannot tell the fleet's circuit of a call", error = %e)
            }
        }
    }

    pub(super) async fn peek(&self) {
        let read: Result<(i64, i64, i64, i64), _> = PEEK
            .key(&self.key)
            .invoke_async(&mut self.fleet.conn())
            .await;
        match read {
            Ok((state, failures, wait, at)) => self.remember(at, state, failures, wait),
            Err(e) => tracing::debug!(message = "cannot read the fleet's circuit", error = %e),
        }
    }

    /// Keeps what Redis answered at `at` (its clock, µs): the state, the failures, and how
    /// long it lasts; unless a later answer is kept already.
    pub(super) fn remember(&self, at: i64, state: i64, failures: i64, wait_ms: i64) {
        let read = Instant::now();
        let mut snapshot = self.snapshot.lock().expect("snapshot lock");
        if !snapshot.replaced_by(at, read) {
            return;
        }
        *snapshot = Snapshot {
            state: state_of(state),
            failures: u32::try_from(failures).unwrap_or(u32::MAX),
            until: read + ms(wait_ms),
            read,
            at,
        };
    }

    pub(super) fn state(&self) -> State {
        self.snapshot.lock().expect("snapshot lock").state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(state: State, failures: u32, until_ms: i64, read_ago_ms: u64) -> Snapshot {
        let now = Instant::now();
        let read = now - Duration::from_millis(read_ago_ms);
        Snapshot {
            state,
            failures,
            until: if until_ms >= 0 {
                now + ms(until_ms)
            } else {
                now - ms(-until_ms)
            },
            read,
            at: 1_000,
        }
    }

    /// A snapshot whose reading came from a clock far ahead (a failover, then back) refuses
    /// answers only until REFRESH has passed since it was read, never for good.
    #[test]
    fn a_reading_from_a_clock_ahead_holds_answers_back_no_longer_than_refresh() {
        let now = Instant::now();
        let mut kept = snapshot(State::Open, 5, 60_000, 0);
        kept.at = 1_700_000_000_000_000 + 3_600_000_000; // an hour ahead
        let answer = 1_700_000_000_000_000;
        assert!(!kept.replaced_by(answer, now));
        assert!(!kept.replaced_by(answer, now + REFRESH / 2));
        assert!(kept.replaced_by(answer, now + REFRESH + Duration::from_millis(1)));
        // and the snapshot itself asks Redis again by then, so an answer does come
        assert!(
            kept.decides(now + REFRESH + Duration::from_millis(1))
                .is_none()
        );
    }

    #[test]
    fn an_answer_read_before_the_one_kept_does_not_replace_it() {
        let now = Instant::now();
        let fresh = snapshot(State::Closed, 0, 0, 10);
        assert!(fresh.replaced_by(1_001, now));
        assert!(
            fresh.replaced_by(1_000, now),
            "the same instant: the last applied"
        );
        assert!(
            !fresh.replaced_by(999, now),
            "an answer that came back late"
        );
        // Past REFRESH any answer is taken: Redis' clock may have stepped back.
        assert!(snapshot(State::Closed, 0, 0, 500).replaced_by(5, now));
        assert!(Snapshot::stale().replaced_by(0, now));
    }

    #[test]
    fn a_fresh_closed_snapshot_admits_without_asking_and_a_stale_one_asks() {
        let now = Instant::now();
        assert_eq!(
            snapshot(State::Closed, 0, 0, 10).decides(now),
            Some(Admit::Call)
        );
        assert_eq!(snapshot(State::Closed, 0, 0, 500).decides(now), None);
    }

    #[test]
    fn an_open_snapshot_waits_until_its_end_then_asks_for_the_probe() {
        let now = Instant::now();
        let open = snapshot(State::Open, 5, 1_000, 0);
        assert!(
            matches!(open.decides(now), Some(Admit::Wait(d)) if d > Duration::from_millis(900))
        );
        assert_eq!(snapshot(State::Open, 5, -1, 0).decides(now), None);
        let probing = snapshot(State::HalfOpen, 5, 1_000, 0);
        assert!(matches!(probing.decides(now), Some(Admit::Wait(_))));
        // An open snapshot older than REFRESH asks again: the probe may have closed it.
        assert_eq!(snapshot(State::Open, 5, 1_000, 500).decides(now), None);
    }

    #[test]
    fn only_results_that_change_something_go_to_redis() {
        assert!(!snapshot(State::Closed, 0, 0, 0).must_tell(true));
        assert!(snapshot(State::Closed, 0, 0, 0).must_tell(false));
        assert!(snapshot(State::Closed, 2, 0, 0).must_tell(true));
        assert!(snapshot(State::HalfOpen, 3, 0, 0).must_tell(true));
    }
}
