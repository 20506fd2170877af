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

use std::num::NonZeroU32;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use crate::shared::circuit::{Admit, Circuit, CircuitConfig, State};

/// How long a replica trusts its snapshot of a closed circuit.
pub const REFRESH: Duration = Duration::from_millis(200);

type Limiter = governor::DefaultDirectRateLimiter;

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

    fn key(&self, kind: &str, destination: &str) -> String {
        format!("{}:{kind}:{destination}", self.prefix)
    }

    pub(crate) fn conn(&self) -> redis::aio::ConnectionManager {
        self.conn.clone()
    }

    /// The hash of paused destinations ([`crate::shared::pause`]).
    pub(crate) fn paused_key(&self) -> String {
        paused_key(&self.prefix)
    }

    /// The fleet's mark, which tells that Redis forgot ([`crate::shared::pause`]).
    pub(crate) fn mark_key(&self) -> String {
        mark_key(&self.prefix)
    }
}

/// A destination's rate limit: this process's own, or the fleet's.
pub enum Rate {
    Local(Limiter),
    Fleet {
        fleet: Fleet,
        key: String,
        /// One call per this many microseconds.
        interval_us: u64,
        /// Used while Redis cannot be reached.
        fallback: Limiter,
    },
}

/// The Redis hash of paused destinations under the store's prefix.
pub(crate) fn paused_key(prefix: &str) -> String {
    format!("{prefix}:paused")
}

/// The fleet's mark in Redis under the store's prefix: a Redis without it has forgotten the
/// fleet's state, or never held it.
pub(crate) fn mark_key(prefix: &str) -> String {
    format!("{prefix}:mark")
}

/// Reserves the next slot of the schedule and says how far away it is, in microseconds of
/// Redis' clock. No burst: slots are `interval` apart, so any one second holds at most
/// `rate + 1` of them.
static RESERVE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local t = redis.call('TIME')
         local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
         local interval = tonumber(ARGV[1])
         local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
         if tat < now then tat = now end
         local ttl = math.floor((tat + interval - now) / 1000) + 1000
         redis.call('SET', KEYS[1], string.format('%.0f', tat + interval), 'PX', ttl)
         return math.floor(tat - now)",
    )
});

impl Rate {
    pub fn new(per_sec: NonZeroU32, destination: &str, fleet: Option<&Fleet>) -> Rate {
        let local = || governor::RateLimiter::direct(governor::Quota::per_second(per_sec));
        match fleet {
            None => Rate::Local(local()),
            Some(fleet) => Rate::Fleet {
                key: fleet.key("rate", destination),
                fleet: fleet.clone(),
                interval_us: (1_000_000 / u64::from(per_sec.get())).max(1),
                fallback: local(),
            },
        }
    }

    /// Waits for this call's turn.
    pub async fn until_ready(&self) {
        match self {
            Rate::Local(limiter) => limiter.until_ready().await,
            Rate::Fleet {
                fleet,
                key,
                interval_us,
                fallback,
            } => {
                let reserved: Result<i64, _> = RESERVE
                    .key(key)
                    .arg(*interval_us)
                    .invoke_async(&mut fleet.conn())
                    .await;
                match reserved {
                    Ok(wait_us) if wait_us > 0 => {
                        tokio::time::sleep(Duration::from_micros(wait_us.unsigned_abs())).await
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(message = "the fleet's rate limit is unreachable; this replica's own applies", error = %e);
                        fallback.until_ready().await;
                    }
                }
            }
        }
    }
}

/// A destination's circuit breaker: this process's own, or the fleet's.
pub enum Breaker {
    Local(Circuit),
    Fleet(FleetCircuit),
}

impl Breaker {
    /// `timeout`: the longest a call (the probe) takes.
    pub fn new(
        config: &CircuitConfig,
        timeout: Duration,
        destination: &str,
        fleet: Option<&Fleet>,
    ) -> Breaker {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        match fleet {
            Some(fleet) if config.enabled => Breaker::Fleet(FleetCircuit {
                fleet: fleet.clone(),
                key: fleet.key("circuit", destination),
                // A probe counts as out until it could have answered: no second one before.
                probe_ms: config.open_ms.max(timeout_ms.saturating_add(1_000)),
                config: config.clone(),
                snapshot: Mutex::new(Snapshot::stale()),
                fallback: Circuit::new(config.clone()),
            }),
            _ => Breaker::Local(Circuit::new(config.clone())),
        }
    }

    pub async fn admit(&self) -> Admit {
        match self {
            Breaker::Local(c) => c.admit(Instant::now()),
            Breaker::Fleet(c) => c.admit().await,
        }
    }

    pub async fn record(&self, healthy: bool, probe: bool) {
        match self {
            Breaker::Local(c) => c.record(healthy, Instant::now()),
            Breaker::Fleet(c) => c.record(healthy, probe).await,
        }
    }

    /// How much longer the circuit stays open, from what this replica knows (its own circuit,
    /// or its last reading of the fleet's); takes no probe and asks no one.
    pub fn waits(&self) -> Option<Duration> {
        let now = Instant::now();
        match self {
            Breaker::Local(c) => c.waits(now),
            Breaker::Fleet(c) => match c.snapshot.lock().expect("snapshot lock").decides(now) {
                Some(Admit::Wait(d)) => Some(d),
                _ => None,
            },
        }
    }

    pub fn state(&self) -> State {
        match self {
            Breaker::Local(c) => c.state(),
            Breaker::Fleet(c) => c.state(),
        }
    }

    /// Reads the fleet's circuit again without calling (no probe taken), so that a replica
    /// without traffic still shows what the others did to it. This process's own circuit
    /// changes only with its own calls: nothing to read.
    pub async fn refresh(&self) {
        if let Breaker::Fleet(c) = self {
            c.peek().await;
        }
    }
}

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
    async fn admit(&self) -> Admit {
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

    async fn record(&self, healthy: bool, probe: bool) {
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

    async fn peek(&self) {
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
    fn remember(&self, at: i64, state: i64, failures: i64, wait_ms: i64) {
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

    fn state(&self) -> State {
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

    #[tokio::test]
    async fn a_replica_without_calls_reads_what_the_others_did_to_the_circuit() {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
        let conn = redis::Client::open(url.as_str())
            .unwrap()
            .get_connection_manager()
            .await
            .unwrap();
        let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
        let fleet = Fleet::new(conn.clone(), &prefix);
        let config = CircuitConfig {
            enabled: true,
            failure_threshold: 2,
            open_ms: 100,
        };
        let timeout = Duration::from_millis(10);
        let (calling, idle) = (
            Breaker::new(&config, timeout, "d", Some(&fleet)),
            Breaker::new(&config, timeout, "d", Some(&fleet)),
        );
        calling.record(false, false).await;
        calling.record(false, false).await;
        assert_eq!(calling.state(), State::Open);
        assert_eq!(idle.state(), State::Closed, "nothing read yet");
        idle.refresh().await;
        assert_eq!(idle.state(), State::Open);
        // The open period ends; the calling replica's probe succeeds and closes it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match calling.admit().await {
                Admit::Probe => break,
                Admit::Wait(d) => tokio::time::sleep(d.min(Duration::from_millis(50))).await,
                Admit::Call => panic!("an open circuit let a call through"),
            }
            assert!(Instant::now() < deadline, "no probe within 10 s");
        }
        calling.record(true, true).await;
        assert_eq!(calling.state(), State::Closed);
        assert_eq!(idle.state(), State::Open, "not read again yet");
        idle.refresh().await;
        assert_eq!(idle.state(), State::Closed);
        // An answer read before the one kept (the open circuit, come back late) is not kept.
        let Breaker::Fleet(c) = &idle else {
            panic!("a fleet circuit")
        };
        let kept = c.snapshot.lock().unwrap().at;
        assert!(kept > 1_700_000_000_000_000, "Redis' clock in µs: {kept}");
        c.remember(kept - 1, 2, 2, 60_000);
        assert_eq!(idle.state(), State::Closed);
        c.remember(kept + 1, 2, 2, 60_000);
        assert_eq!(idle.state(), State::Open);
        let _: () = redis::cmd("DEL")
            .arg(fleet.key("circuit", "d"))
            .query_async(&mut conn.clone())
            .await
            .unwrap();
    }
}
