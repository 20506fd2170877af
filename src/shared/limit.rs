//! A destination's rate limit (`rate_limit_per_sec`): this process's own, or the fleet's, a
//! GCRA schedule in Redis that every replica reserves its slots from ([`super::fleet`]).

use std::num::NonZeroU32;
use std::sync::LazyLock;
use std::time::Duration;

use super::fleet::Fleet;

type Limiter = governor::DefaultDirectRateLimiter;

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
