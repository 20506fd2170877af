//! What the partner side (the sandbox) received, counted per click: Powerspace's `qci`.

use std::collections::HashMap;
use std::time::Duration;

use postback_relay::interfaces::sandbox::{Client, Recorded};

use super::wait::eventually;

/// Requests per click; with `accepted_only`, only those the partner answered 200.
pub fn per_click(requests: &[Recorded], accepted_only: bool) -> HashMap<String, usize> {
    let mut per = HashMap::new();
    for r in requests
        .iter()
        .filter(|r| !accepted_only || r.status == 200)
    {
        *per.entry(r.param("qci").expect("a Powerspace request has a qci"))
            .or_default() += 1;
    }
    per
}

/// Waits until the partner has received `n` requests or more.
pub async fn until_received(sandbox: &Client, n: u64, timeout: Duration, what: &str) {
    eventually(timeout, what, || {
        let s = sandbox.clone();
        async move { s.stats().await.map(|st| st.total >= n).unwrap_or(false) }
    })
    .await;
}

/// Waits until requests for `n` different clicks have reached the partner; with
/// `accepted_only`, requests it answered 200.
pub async fn until_clicks(
    sandbox: &Client,
    n: usize,
    accepted_only: bool,
    timeout: Duration,
    what: &str,
) {
    eventually(timeout, what, || {
        let s = sandbox.clone();
        async move {
            let clicks: std::collections::HashSet<String> = s
                .requests()
                .await
                .unwrap()
                .into_iter()
                .filter(|r| !accepted_only || r.status == 200)
                .filter_map(|r| r.param("qci"))
                .collect();
            clicks.len() == n
        }
    })
    .await;
}

/// Waits until the partner has accepted `n` clicks, and checks that it accepted none twice.
pub async fn each_accepted_once(sandbox: &Client, n: usize, timeout: Duration) {
    until_clicks(sandbox, n, true, timeout, "every event").await;
    let per = per_click(&sandbox.requests().await.unwrap(), true);
    let twice: Vec<_> = per.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "accepted twice: {twice:?}");
}
