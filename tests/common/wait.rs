//! Waiting on conditions with deadlines, never on the clock alone.

use std::future::Future;
use std::time::{Duration, Instant};

/// Waits until `cond` holds, polling; fails the test with `what` after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        // A condition that never answers (a broker call on a connection gone quiet) fails
        // the wait at its deadline, as one that answers no does.
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left.max(Duration::from_millis(100)), cond())
            .await
            .unwrap_or(false)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `f` holds for a relay's metrics.
pub async fn until(
    running: &postback_relay::relay::Running,
    what: &str,
    f: impl Fn(&postback_relay::relay::metrics::Metrics) -> bool,
) {
    let m = running.metrics.clone();
    eventually(Duration::from_secs(30), what, || {
        let ok = f(&m);
        async move { ok }
    })
    .await;
}

/// How many of `destination`'s deliveries a relay ended with `outcome` (`delivered`,
/// `dead_lettered`, `duplicate`, `superseded`...).
pub fn deliveries(
    m: &postback_relay::relay::metrics::Metrics,
    destination: &str,
    outcome: &str,
) -> u64 {
    m.deliveries
        .with_label_values(&[destination, outcome])
        .get()
}
