//! The operations listener: `/metrics` (Prometheus text), `/healthz` (the process is alive) and
//! `/readyz` (connected to the broker and consuming, with a store that answers).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::relay::metrics::Metrics;

/// Liveness and readiness, shared between the relay and the HTTP listener.
#[derive(Debug)]
pub struct Health {
    ready: AtomicBool,
    /// Whether the store answered its last check: while it does not (Redis away), the relay
    /// takes no messages, and nothing is sent.
    store: tokio::sync::watch::Sender<bool>,
    /// Reloads under way that keep the relay ready (see [`Health::hold_ready`]).
    held: AtomicUsize,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            ready: AtomicBool::new(false),
            store: tokio::sync::watch::Sender::new(true),
            held: AtomicUsize::new(0),
        }
    }
}

/// Keeps a ready relay ready while it changes configuration: the old generation finishing its
/// work and the new one connecting are one relay working, not an outage. Released on drop.
#[derive(Debug)]
pub struct ReadyHold(Arc<Health>);

impl Drop for ReadyHold {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Health {
    /// Whether the store answered its last check.
    pub fn store_reachable(&self) -> bool {
        *self.store.borrow()
    }

    pub fn set_store_reachable(&self, v: bool) {
        self.store
            .send_if_modified(|up| std::mem::replace(up, v) != v);
    }

    /// Whether the store answers, as it changes: the sessions take messages only while it does.
    pub fn store_watch(&self) -> tokio::sync::watch::Receiver<bool> {
        self.store.subscribe()
    }

    /// Ready: connected to the broker and consuming from every relay queue, or changing
    /// configuration after it was (a `ReadyHold` is out).
    pub fn is_ready(&self) -> bool {
        self.consuming() != Consuming::No
    }

    /// Whether the relay consumes, or changes configuration after it did.
    pub fn consuming(&self) -> Consuming {
        if self.ready.load(Ordering::Relaxed) {
            Consuming::Yes
        } else if self.held.load(Ordering::Relaxed) > 0 {
            Consuming::Reloading
        } else {
            Consuming::No
        }
    }

    /// Holds the relay ready until the hold is dropped, if it consumes now; `None` if not.
    /// Only consuming counts, not another hold: a reload that comes before the last one's
    /// generation consumed gets none, so that reloads in a row cannot keep a relay that has
    /// not consumed since the first of them ready.
    pub fn hold_ready(self: &Arc<Self>) -> Option<ReadyHold> {
        if self.consuming() != Consuming::Yes {
            return None;
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        Some(ReadyHold(self.clone()))
    }

    pub fn set_ready(&self, v: bool) {
        self.ready.store(v, Ordering::Relaxed);
    }
}

/// Whether the relay consumes, as `/readyz` tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consuming {
    /// Connected to the broker and consuming from every relay queue.
    Yes,
    /// Not now, but it did until a reload began: the next generation is starting.
    Reloading,
    No,
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    health: Arc<Health>,
}

pub fn router(metrics: Metrics, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_handler))
        .with_state(AppState { metrics, health })
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics, health))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn ready_handler(State(s): State<AppState>) -> impl IntoResponse {
    let (status, said) = readiness(s.health.consuming(), s.health.store_reachable());
    (status, said)
}

/// What `/readyz` answers: ready only while consuming with a store that answers.
fn readiness(consuming: Consuming, store: bool) -> (StatusCode, &'static str) {
    match (consuming, store) {
        (Consuming::Yes, true) => (StatusCode::OK, "ready\n"),
        (Consuming::Reloading, true) => (
            StatusCode::OK,
            "ready: changing configuration; the next generation is starting\n",
        ),
        (Consuming::No, _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: not consuming from the broker\n",
        ),
        (Consuming::Yes | Consuming::Reloading, false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "degraded: the store does not answer; the relay takes no messages and sends nothing (none is sent without its claim) until it is back\n",
        ),
    }
}

/// Asks the store every second whether it answers, until `stop`, for `/readyz` and
/// `postback_relay_store_up`.
pub async fn watch_store(
    store: crate::shared::Shared,
    health: Arc<Health>,
    metrics: Metrics,
    stop: CancellationToken,
) {
    loop {
        let up = store.ping().await;
        if up != health.store_reachable() {
            if up {
                tracing::info!(message = "the store answers again");
            } else {
                tracing::error!(
                    message =
                        "the store does not answer; the relay takes no messages until it is back"
                );
            }
        }
        health.set_store_reachable(up);
        metrics.store_up.set(i64::from(up));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_is_not_taken_on_the_strength_of_another_hold() {
        let health = Arc::new(Health::default());
        health.set_ready(true);
        let first = health.hold_ready(); // reload 1, while consuming
        health.set_ready(false); // the old generation drained; the new one not consuming yet
        let second = health.hold_ready(); // reload 2, before generation 2 consumed
        assert!(second.is_none());
        drop(first); // generation 2 stopped without ever consuming
        assert!(!health.is_ready());
    }

    #[test]
    fn a_hold_keeps_a_ready_relay_ready_until_it_is_dropped() {
        let health = Arc::new(Health::default());
        assert!(
            health.hold_ready().is_none(),
            "nothing to hold before it was ready"
        );
        health.set_ready(true);
        let hold = health.hold_ready();
        assert!(hold.is_some());
        health.set_ready(false);
        assert!(health.is_ready(), "held");
        drop(hold);
        assert!(!health.is_ready());
    }

    #[test]
    fn ready_only_while_consuming_with_a_store_that_answers() {
        assert_eq!(readiness(Consuming::Yes, true).0, StatusCode::OK);
        let (status, said) = readiness(Consuming::Reloading, true);
        assert_eq!(status, StatusCode::OK);
        assert!(said.contains("changing configuration"), "{said}");
        assert_eq!(
            readiness(Consuming::No, true).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        for c in [Consuming::Yes, Consuming::Reloading] {
            let (status, said) = readiness(c, false);
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(said.starts_with("degraded") && said.contains("store"));
        }
    }
}
