//! The Redis store, shared by replicas: `{prefix}:claim:{key}` (a `SET NX PX` lease holding its
//! holder's token), `{prefix}:done:{key}` and `{prefix}:status:{key}`, each with a TTL.
//!
//! A claim's lease is what frees it if its replica dies. While the claim is held it is renewed
//! in the background, so a delivery that waits (for a concurrency slot, the partner's rate
//! limit, or a slow partner) keeps it; a renewal that finds the claim gone or someone else's
//! marks it lost, and the holder does not send.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use super::redis_batch::{Batcher, Op};
use super::{HoldError, StoreError, Taken, Token};

/// How often held leases are looked at; one that has less than half its length left is renewed.
const RENEW_TICK: Duration = Duration::from_millis(200);

#[derive(Clone)]
pub struct RedisStore {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    /// This process: the first part of every token it hands out.
    owner: String,
    next_token: Arc<AtomicU64>,
    ttl: Duration,
    renewals: Arc<Renewals>,
    /// Claims, renewals and records, sent in batches.
    batch: Batcher,
}

/// Leases held by this process, for the renewing task.
#[derive(Default)]
struct Renewals {
    held: Mutex<Vec<Weak<Lease>>>,
}

/// One held claim or lock in Redis.
#[derive(Debug)]
pub struct Lease {
    /// The full Redis key.
    key: String,
    token: String,
    length: Duration,
    /// Until when the store has confirmed it is ours, counted from before each request was sent.
    confirmed_until: Mutex<Instant>,
    lost: AtomicBool,
    stopped: AtomicBool,
}

impl Lease {
    /// Stops renewing: the lease runs out by itself.
    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    fn remaining(&self, now: Instant) -> Duration {
        self.confirmed_until
            .lock()
            .expect("lease lock")
            .saturating_duration_since(now)
    }

    fn confirm(&self, sent: Instant) {
        *self.confirmed_until.lock().expect("lease lock") = sent + self.length;
    }

    fn due(&self, now: Instant) -> bool {
        !self.stopped.load(Ordering::SeqCst)
            && !self.lost.load(Ordering::SeqCst)
            && self.remaining(now) < self.length / 2
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The scripts, hashed once (the hot ones are in [`super::redis_batch`]).
/// Only our own claim: one that lapsed and was taken by another holder stays.
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
    )
});
/// Raises a status rank, never lowers it.
static RAISE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
         if tonumber(ARGV[1]) > cur then cur = tonumber(ARGV[1]) end
         redis.call('SET', KEYS[1], cur, 'PX', ARGV[2])
         return cur",
    )
});

/// Redis' `maxmemory_policy`, from `INFO memory`'s text.
fn eviction_policy(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|l| l.strip_prefix("maxmemory_policy:"))
        .map(str::trim)
}

/// Warns when Redis may evict keys under memory pressure: claims and records would go
/// without a word (the fleet's mark, which has no expiry, survives a `volatile-*` policy).
/// A server that does not answer `INFO` (some managed services restrict it) is left alone.
async fn warn_if_evicting(conn: &mut redis::aio::ConnectionManager) {
    let info: Result<String, _> = redis::cmd("INFO").arg("memory").query_async(conn).await;
    if let Ok(info) = info
        && let Some(policy) = eviction_policy(&info)
        && policy != "noeviction"
    {
        tracing::warn!(
            message = "the store's Redis may evict keys under memory pressure, and with them claims and records of accepted deliveries: set maxmemory-policy noeviction",
            maxmemory_policy = policy
        );
    }
}

impl RedisStore {
    pub(super) async fn open(
        (url, tls): (&str, Option<&crate::config::tls::TlsFiles>),
        prefix: &str,
        ttl: Duration,
    ) -> Result<RedisStore, StoreError> {
        let conn = super::client::manager(url, tls).await?;
        warn_if_evicting(&mut conn.clone()).await;
        let renewals = Arc::new(Renewals::default());
        let batch = Batcher::start(conn.clone());
        tokio::spawn(renew_held(Arc::downgrade(&renewals), batch.clone()));
        Ok(RedisStore {
            conn,
            prefix: prefix.to_owned(),
            owner: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4()),
            next_token: Arc::default(),
            ttl,
            renewals,
            batch,
        })
    }

    pub(super) fn fleet(&self) -> crate::shared::fleet::Fleet {
        crate::shared::fleet::Fleet::new(self.conn.clone(), &self.prefix)
    }

    pub(super) async fn ping(&self) -> bool {
        let mut c = self.conn.clone();
        let ping = redis::cmd("PING");
        let asked = ping.query_async::<String>(&mut c);
        matches!(
            tokio::time::timeout(Duration::from_secs(1), asked).await,
            Ok(Ok(_))
        )
    }

    fn k(&self, kind: &str, key: &str) -> String {
        format!("{}:{kind}:{key}", self.prefix)
    }

    /// A lease for `key`, not yet taken.
    fn lease(&self, key: &str, length: Duration) -> Lease {
        let n = self.next_token.fetch_add(1, Ordering::Relaxed);
        Lease {
            key: self.k("claim", key),
            token: format!("{}:{n}", self.owner),
            length,
            confirmed_until: Mutex::new(Instant::now()),
            lost: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        }
    }

    /// Starts renewing a lease just taken.
    fn hold(&self, lease: Lease, sent: Instant) -> Token {
        lease.confirm(sent);
        let lease = Arc::new(lease);
        self.renewals
            .held
            .lock()
            .expect("renewals lock")
            .push(Arc::downgrade(&lease));
        Token::Redis(lease)
    }

    pub(super) async fn claim(
        &self,
        key: &str,
        length: Duration,
    ) -> Result<Taken<Token>, StoreError> {
        let lease = self.lease(key, length);
        let sent = Instant::now();
        // Atomic: the record is looked for and the claim taken with no gap in which another
        // replica could record the delivery and let its claim go.
        let got = self
            .batch
            .run(Op::Claim {
                done: self.k("done", key),
                claim: lease.key.clone(),
                token: lease.token.clone(),
                px: millis(length),
            })
            .await?;
        Ok(match got {
            2 => Taken::Delivered,
            1 => Taken::Held(self.hold(lease, sent)),
            _ => Taken::Busy,
        })
    }

    pub(super) async fn lock(
        &self,
        key: &str,
        length: Duration,
    ) -> Result<Option<Token>, StoreError> {
        let lease = self.lease(key, length);
        let mut c = self.conn.clone();
        let sent = Instant::now();
        let set: Option<String> = redis::cmd("SET")
            .arg(&lease.key)
            .arg(&lease.token)
            .arg("NX")
            .arg("PX")
            .arg(millis(length))
            .query_async(&mut c)
            .await?;
        Ok(set.map(|_| self.hold(lease, sent)))
    }

    pub(super) async fn ensure(&self, lease: &Lease, need: Duration) -> Result<(), HoldError> {
        if lease.lost.load(Ordering::SeqCst) || lease.stopped.load(Ordering::SeqCst) {
            return Err(HoldError::Lost);
        }
        // Ask Redis, whatever the local clock says: Redis may have lost the key (a failover,
        // an eviction) and another replica taken the claim since the last renewal.
        renew(&self.batch, lease).await?;
        if lease.lost.load(Ordering::SeqCst) || lease.remaining(Instant::now()) < need {
            return Err(HoldError::Lost);
        }
        Ok(())
    }

    pub(super) async fn release_now(&self, lease: &Lease) {
        lease.stop();
        let mut c = self.conn.clone();
        let released: Result<i64, _> = RELEASE
            .key(&lease.key)
            .arg(&lease.token)
            .invoke_async(&mut c)
            .await;
        if let Err(e) = released {
            // Its lease frees it soon enough.
            tracing::debug!(message = "cannot release a claim; it lapses with its lease", error = %e);
        }
    }

    /// Lets a lease go from a place that cannot wait (a guard being dropped).
    pub(super) fn release_later(&self, lease: Arc<Lease>) {
        lease.stop();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let store = self.clone();
            rt.spawn(async move { store.release_now(&lease).await });
        }
    }

    pub(super) async fn delivered(
        &self,
        key: &str,
        lease: &Lease,
        status: Option<(&str, u8)>,
    ) -> Result<(), StoreError> {
        // The record and the status rank together (both or neither), then the claim let go.
        self.batch
            .run(Op::Delivered {
                done: self.k("done", key),
                status: status.map(|(k, rank)| (self.k("status", k), rank)),
                claim: lease.key.clone(),
                token: lease.token.clone(),
                px: millis(self.ttl),
            })
            .await?;
        Ok(())
    }

    pub(super) async fn status(&self, key: &str) -> Result<Option<u8>, StoreError> {
        let mut c = self.conn.clone();
        Ok(redis::cmd("GET")
            .arg(self.k("status", key))
            .query_async(&mut c)
            .await?)
    }

    pub(super) async fn record_status(&self, key: &str, rank: u8) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: i64 = RAISE
            .key(self.k("status", key))
            .arg(rank)
            .arg(millis(self.ttl))
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }
}

/// Extends one lease, and notes whether it is still ours.
async fn renew(batch: &Batcher, lease: &Lease) -> Result<(), StoreError> {
    let sent = Instant::now();
    let kept = batch
        .run(Op::Renew {
            claim: lease.key.clone(),
            token: lease.token.clone(),
            px: millis(lease.length),
        })
        .await?;
    if kept == 1 {
        lease.confirm(sent);
    } else {
        lease.lost.store(true, Ordering::SeqCst);
    }
    Ok(())
}

/// Renews every held lease that has used up half its length, until the store is gone.
async fn renew_held(renewals: Weak<Renewals>, batch: Batcher) {
    loop {
        tokio::time::sleep(RENEW_TICK).await;
        let Some(renewals) = renewals.upgrade() else {
            return;
        };
        let now = Instant::now();
        let due: Vec<Arc<Lease>> = {
            let mut held = renewals.held.lock().expect("renewals lock");
            held.retain(|w| {
                w.upgrade().is_some_and(|l| {
                    !l.stopped.load(Ordering::SeqCst) && !l.lost.load(Ordering::SeqCst)
                })
            });
            held.iter()
                .filter_map(Weak::upgrade)
                .filter(|l| l.due(now))
                .collect()
        };
        drop(renewals);
        let renewing = due.iter().map(|lease| {
            let batch = &batch;
            async move {
                if let Err(e) = renew(batch, lease).await {
                    // Not lost yet: the holder checks what is left before it sends.
                    tracing::warn!(message = "cannot renew a claim", error = %e);
                }
            }
        });
        futures_util::future::join_all(renewing).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_eviction_policy_is_read_from_info_memory() {
        let info = "# Memory\r\nused_memory:1\r\nmaxmemory_policy:allkeys-lru\r\nmem_fragmentation_ratio:1\r\n";
        assert_eq!(super::eviction_policy(info), Some("allkeys-lru"));
        assert_eq!(super::eviction_policy("# Memory\r\n"), None);
    }
}
