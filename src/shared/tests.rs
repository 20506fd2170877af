//! Tests of `store`.

use super::*;

fn held(c: Claim) -> Held {
    match c {
        Claim::Acquired(h) => h,
        other => panic!("expected a claim, got {other:?}"),
    }
}

/// A Redis hold is let go by a task of its own once dropped: wait for it.
async fn claim_when_free(store: &Shared, key: &str, lease: Duration) -> Held {
    for _ in 0..100 {
        if let Claim::Acquired(h) = store.claim(key, lease).await.unwrap() {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{key} was never let go");
}

async fn lock_when_free(store: &Shared, key: &str, lease: Duration) -> Held {
    for _ in 0..100 {
        if let Some(h) = store.lock(key, lease).await.unwrap() {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{key} was never let go");
}

async fn exercise(store: Shared, unique: &str) {
    let key = keys::delivery("dest", unique);
    let lease = Duration::from_secs(30);
    let first = held(store.claim(&key, lease).await.unwrap());
    assert!(matches!(
        store.claim(&key, lease).await.unwrap(),
        Claim::Busy
    ));
    first.ensure(lease / 2).await.unwrap();
    drop(first);
    let mut again = claim_when_free(&store, &key, lease).await;
    again.delivered(None).await.unwrap();
    assert!(matches!(
        store.claim(&key, lease).await.unwrap(),
        Claim::Delivered
    ));

    let order = keys::conversion("dest", unique);
    assert_eq!(store.status(&order).await.unwrap(), None);
    store.record_status(&order, 2).await.unwrap();
    store.record_status(&order, 1).await.unwrap();
    assert_eq!(
        store.status(&order).await.unwrap(),
        Some(2),
        "never lowered"
    );
    store.record_status(&order, 3).await.unwrap();
    assert_eq!(store.status(&order).await.unwrap(), Some(3));
    // A delivery record can raise a status with it, atomically.
    let other = keys::conversion("dest2", unique);
    let second = format!("{key}-2");
    let mut claim = held(store.claim(&second, lease).await.unwrap());
    claim.delivered(Some((&other, 2))).await.unwrap();
    assert_eq!(store.status(&other).await.unwrap(), Some(2));
    assert!(matches!(
        store.claim(&second, lease).await.unwrap(),
        Claim::Delivered
    ));

    // A lock is let go when its guard is dropped, and kept when told to.
    let lock = keys::conversion_lock(&order);
    let l = store.lock(&lock, lease).await.unwrap().expect("free");
    assert!(store.lock(&lock, lease).await.unwrap().is_none());
    drop(l);
    let l = lock_when_free(&store, &lock, lease).await;
    l.keep_until_lease_ends();
    assert!(
        store.lock(&lock, lease).await.unwrap().is_none(),
        "kept until its lease ends"
    );
    let short = keys::conversion_lock(&format!("{order}-short"));
    store
        .lock(&short, Duration::from_millis(50))
        .await
        .unwrap()
        .expect("free")
        .keep_until_lease_ends();
    tokio::time::sleep(Duration::from_millis(60)).await;
    lock_when_free(&store, &short, lease).await;
}

#[tokio::test]
async fn embedded_store_and_its_persistence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let cfg = StoreConfig::Embedded {
        path: path.clone(),
        ttl_secs: 60,
    };
    exercise(Shared::open(&cfg).await.unwrap(), "e1").await;
    // A new process sees what the last one recorded.
    let again = Shared::open(&cfg).await.unwrap();
    assert!(matches!(
        again
            .claim(&keys::delivery("dest", "e1"), Duration::from_secs(1))
            .await
            .unwrap(),
        Claim::Delivered
    ));
}

#[tokio::test]
async fn an_embedded_store_serves_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig::Embedded {
        path: dir.path().join("s.db"),
        ttl_secs: 60,
    };
    let first = Shared::open(&cfg).await.unwrap();
    let second = Shared::open(&cfg).await.expect_err("the file is taken");
    assert!(
        second.to_string().contains("in use by another process"),
        "{second}"
    );
    // Records written together in one commit are each found.
    let keys: Vec<String> = (0..100)
        .map(|i| keys::delivery("d", &i.to_string()))
        .collect();
    let mut claims = Vec::new();
    for k in &keys {
        claims.push(held(first.claim(k, Duration::from_secs(1)).await.unwrap()));
    }
    futures_util::future::try_join_all(claims.iter_mut().map(|h| h.delivered(None)))
        .await
        .unwrap();
    for k in &keys {
        assert!(matches!(
            first.claim(k, Duration::from_secs(1)).await.unwrap(),
            Claim::Delivered
        ));
    }
}

#[tokio::test]
async fn a_hold_whose_lease_ran_out_cannot_free_its_successor() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Shared::open(&StoreConfig::Embedded {
        path: dir.path().join("s.db"),
        ttl_secs: 60,
    })
    .await
    .unwrap();
    for store in [embedded, redis_store().await] {
        let key = keys::conversion_lock(&uuid::Uuid::new_v4().to_string());
        let short = Duration::from_millis(50);
        let old = store.lock(&key, short).await.unwrap().expect("free");
        let old_token = old.token.clone();
        // The old holder's lease runs out (it stopped renewing)...
        old.keep_until_lease_ends();
        tokio::time::sleep(Duration::from_millis(120)).await;
        // ...a successor takes it...
        let successor = store
            .lock(&key, Duration::from_secs(30))
            .await
            .unwrap()
            .expect("free after the lease");
        // ...and the old holder letting go late leaves the successor's hold alone.
        store.release(&key, &old_token).await;
        assert!(store.lock(&key, short).await.unwrap().is_none());
        successor.ensure(Duration::from_secs(1)).await.unwrap();
    }
}

async fn redis_store() -> Shared {
    let cfg = StoreConfig::Redis {
        url: std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into()),
        key_prefix: format!("test-{}", uuid::Uuid::new_v4().simple()),
        ttl_secs: 60,
        tls: None,
    };
    Shared::open(&cfg)
        .await
        .expect("Redis must be running on 127.0.0.1:6379 (see README)")
}

#[tokio::test]
async fn the_redis_store() {
    let store = redis_store().await;
    exercise(store.clone(), "r1").await;
}

#[tokio::test]
async fn redis_claims_are_renewed_while_held_and_are_per_holder() {
    let store = redis_store().await;
    let other = store.clone();
    let key = keys::delivery("dest", "r2");
    let lease = Duration::from_millis(600);
    let mine = held(store.claim(&key, lease).await.unwrap());
    // Held for several leases: the renewals keep the other replica out.
    for _ in 0..4 {
        tokio::time::sleep(lease / 2).await;
        assert!(matches!(
            other.claim(&key, lease).await.unwrap(),
            Claim::Busy
        ));
    }
    mine.ensure(lease / 2).await.unwrap();
    drop(mine);
    claim_when_free(&other, &key, lease).await;
}

/// Redis can lose a key (a failover to a replica that had not received it, an eviction):
/// the old holder must not be cleared to send once another replica took the claim.
#[tokio::test]
async fn a_claim_redis_lost_is_not_ensured_for_its_old_holder() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let cfg = StoreConfig::Redis {
        url: url.clone(),
        key_prefix: prefix.clone(),
        ttl_secs: 60,
        tls: None,
    };
    let (a, b) = (
        Shared::open(&cfg).await.unwrap(),
        Shared::open(&cfg).await.unwrap(),
    );
    let key = keys::delivery("hoqu", "e1");
    let lease = Duration::from_secs(30);
    let first = held(a.claim(&key, lease).await.unwrap());
    let mut conn = crate::shared::client::client(&url, None)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let gone: i64 = ::redis::cmd("DEL")
        .arg(format!("{prefix}:claim:{key}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(gone, 1, "the claim's key as the store writes it");
    let second = held(b.claim(&key, lease).await.unwrap());
    let need = Duration::from_secs(7);
    second.ensure(need).await.unwrap();
    assert!(
        first.ensure(need).await.is_err(),
        "two replicas both hold the claim and are both cleared to send"
    );
}

/// Concurrent calls share batches: each caller still gets its own answer, in any mix of
/// claims, renewals and records.
#[tokio::test]
async fn concurrent_redis_calls_each_get_their_own_answer_from_a_shared_batch() {
    const KEYS: usize = 300;
    let store = redis_store().await;
    let lease = Duration::from_secs(30);
    let key = |i: usize| keys::delivery("dest", &format!("b{i}"));
    // Two claimers per key, all at once: exactly one of each pair holds it.
    let claims = futures_util::future::join_all((0..2 * KEYS).map(|n| {
        let store = store.clone();
        async move { (n % KEYS, store.claim(&key(n % KEYS), lease).await.unwrap()) }
    }))
    .await;
    let mut holds = Vec::new();
    let mut busy = vec![0; KEYS];
    for (i, c) in claims {
        match c {
            Claim::Acquired(h) => holds.push((i, h)),
            Claim::Busy => busy[i] += 1,
            Claim::Delivered => panic!("b{i} delivered before any record"),
        }
    }
    assert_eq!(holds.len(), KEYS);
    assert!(busy.iter().all(|b| *b == 1), "{busy:?}");
    // Ensures and records interleaved: even keys record a status with their delivery.
    let recorded = futures_util::future::join_all(holds.into_iter().map(|(i, mut h)| async move {
        h.ensure(lease / 2).await.unwrap();
        let order = keys::conversion("dest", &format!("o{i}"));
        let status = (i % 2 == 0).then_some((order.as_str(), (i % 7) as u8 + 1));
        h.delivered(status).await.unwrap();
        i
    }))
    .await;
    assert_eq!(recorded.len(), KEYS);
    for i in 0..KEYS {
        assert!(
            matches!(store.claim(&key(i), lease).await.unwrap(), Claim::Delivered),
            "b{i}"
        );
        let order = keys::conversion("dest", &format!("o{i}"));
        let expected = (i % 2 == 0).then_some((i % 7) as u8 + 1);
        assert_eq!(store.status(&order).await.unwrap(), expected, "o{i}");
    }
}
