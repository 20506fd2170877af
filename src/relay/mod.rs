//! The worker: consumes events and deliveries, routes each event to its destinations, and
//! owns every outcome. An event is acknowledged only once each destination's outcome is
//! durably recorded: delivered, a retry confirmed into a delay tier, or a dead letter
//! confirmed by the broker.
//!
//! One message's way down, file by file:
//! - `session`: consumes, reconnects; `drain` ends a session, on a stop or a lost
//!   connection;
//! - `open`: sets a session up: connects, declares the topology, starts the consumers;
//! - `handle`: decodes the message once and plans its deliveries (route and render);
//! - `attempt`: one delivery to one destination: click lifetime, the claim and the status
//!   order (held by guards), the circuit, and the decision;
//! - `call`: the partner calls of one attempt, and what they came to;
//! - `tries`: those calls in a row, in-process, each one behind a concurrency slot and the
//!   rate limit;
//! - `send`: one call, behind a check that the claim is still held (and the pause, the
//!   circuit);
//! - `record`: the outcome published (retry tier, dead letter) and counted;
//! - `journaled`: once recorded, every call and outcome told to the journal;
//! - `settle`: the acknowledgement, batched;
//! - `sample`: queue depths and the oldest dead letter's age, on the side;
//! - `trace`: with tracing on, the spans of all the above and their export (`traced` puts
//!   each destination's pass in its span);
//! - `reload`: a new configuration (SIGHUP) ends one generation of all the above and starts
//!   the next on the same store, journal, metrics and listener.

mod attempt;
pub mod broker;
mod call;
pub mod deadletter;
pub mod delivery;
mod destination;
pub mod dispatch;
mod drain;
mod handle;
mod journaled;
pub mod metrics;
pub(crate) mod observe;
mod open;
mod outcome;
mod record;
mod reload;
pub mod retry;
mod sample;
mod send;
mod session;
mod settle;
pub mod trace;
mod traced;
mod tries;

use std::sync::{Arc, Mutex};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::relay::broker::Topology;
use crate::relay::metrics::Metrics;
use crate::shared::Shared;

pub use self::handle::{Plan, plan};
pub use self::reload::{ReloadRefused, Reloaded, Reloader, compare, needs_restart};

/// Why the relay cannot start or run; what retrying cannot fix.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot listen on {addr} (http.listen): {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the store ([store] in the config): {0}")]
    Store(#[from] crate::shared::StoreError),
    #[error("cannot open the journal ([journal] in the config): {0}")]
    Journal(#[from] crate::journal::JournalError),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error(
        "the broker refuses the relay's topology: {0}. A queue or exchange already exists with \
         other arguments (for example another broker.delivery_limit or retry tiers); restore \
         the settings it was declared with, or empty it and delete it (replay what a \
         dead-letter queue holds first), or choose another broker.queue_prefix"
    )]
    TopologyRefused(String),
    #[error(transparent)]
    Tracing(#[from] crate::relay::trace::TracingError),
    #[error("the relay's task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}
pub use crate::relay::observe::{Consuming, Health};

use self::destination::Destinations;

pub struct Relay {
    config: Arc<Config>,
    topology: Topology,
    destinations: Destinations,
    client: crate::relay::dispatch::Client,
    /// Claims, the idempotency record and status order.
    store: Shared,
    metrics: Metrics,
    health: Arc<Health>,
    /// Which of the broker's addresses the last session connected to.
    broker_node: std::sync::atomic::AtomicUsize,
    /// The destinations an operator paused, as last read.
    paused: crate::shared::pause::Board,
    /// What happened to each delivery, for people; `None` when `journal.enabled = false`.
    journal: Option<crate::journal::Journal>,
    /// Spans and their export; `None` when tracing is off.
    trace: Option<crate::relay::trace::Tracing>,
    /// The work of sessions that lost their broker connection: it finishes its partner calls
    /// and records them in the store (its acks are gone with the channel), and a stop waits
    /// for it as for the current session's.
    orphans: Mutex<Vec<JoinSet<()>>>,
    /// The previous generation's readiness, held through a reload until this generation's
    /// first session consumes or fails.
    ready_hold: Mutex<Option<crate::relay::observe::ReadyHold>>,
}

impl Relay {
    /// One generation of the relay, on `config`, starting its broker sessions at address
    /// `broker_node` (the one the last generation was on).
    fn new(
        config: Arc<Config>,
        shared: &reload::Shared,
        broker_node: usize,
        ready_hold: Option<crate::relay::observe::ReadyHold>,
    ) -> Result<Relay, RelayError> {
        let metrics = shared.metrics.clone();
        metrics.init_destinations(config.destinations.iter().map(|d| d.name.as_str()));
        let topology = Topology::from_config(&config);
        for d in &config.destinations {
            for (tier, _) in &topology.tiers {
                metrics
                    .retries_scheduled
                    .with_label_values(&[&d.name, &crate::config::retry::tier_label(*tier)]);
            }
        }
        let proxy = &config.worker.partner_proxy;
        let client = crate::relay::dispatch::Client::with_proxy(proxy)?;
        tracing::info!(
            message = "partner calls' proxy",
            proxy = %crate::relay::dispatch::proxy_in_use(proxy)
        );
        Ok(Relay {
            destinations: Destinations::new(&config, &metrics, &shared.store),
            topology,
            client,
            store: shared.store.clone(),
            config,
            metrics,
            health: shared.health.clone(),
            journal: shared.journal.clone(),
            trace: shared.trace.clone(),
            paused: shared.paused.clone(),
            broker_node: std::sync::atomic::AtomicUsize::new(broker_node),
            orphans: Mutex::default(),
            ready_hold: Mutex::new(ready_hold),
        })
    }

    /// Lets go of the previous generation's readiness: this one consumes, or has failed to.
    fn release_ready_hold(&self) {
        drop(self.ready_hold.lock().expect("ready hold lock").take());
    }

    /// Which of the broker's addresses the last session connected to.
    fn broker_node(&self) -> usize {
        self.broker_node.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Relay {
    /// An error as the relay writes it: with every configured secret replaced.
    fn shown(&self, e: &dyn std::fmt::Display) -> String {
        self.config.secrets.scrub(&e.to_string()).into_owned()
    }
}

/// A relay started in the background with its operations listener.
pub struct Running {
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub http_addr: std::net::SocketAddr,
    pub metrics: Metrics,
    pub health: Arc<Health>,
    /// Where a new configuration is handed to the running relay.
    pub reloader: Reloader,
    task: tokio::task::JoinHandle<Result<(), RelayError>>,
}

impl Running {
    /// Waits for the relay to stop (after its shutdown token is cancelled).
    pub async fn wait(self) -> Result<(), RelayError> {
        self.task.await?
    }
}

/// What the journal's writer is given after the drain, however long the drain took: time to
/// commit the last batch to a journal that answers.
const JOURNAL_LAST_BATCH: std::time::Duration = std::time::Duration::from_secs(1);

/// What the trace exporter is given at the stop to send the last spans.
const TRACE_LAST_BATCH: std::time::Duration = std::time::Duration::from_secs(2);

/// Binds the operations listener and starts consuming; both stop when `shutdown` is cancelled.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Running, RelayError> {
    let config = Arc::new(config);
    let metrics = Metrics::new();
    let health = Arc::new(Health::default());
    let addr = config.http.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RelayError::Listen { addr, source })?;
    let http_addr = listener
        .local_addr()
        .map_err(|source| RelayError::Listen { addr, source })?;
    let store = Shared::open(&config.store).await?;
    let (journal, writer) = match &config.journal {
        j if j.enabled => {
            let (journal, writer) = crate::journal::Journal::open(j, metrics.registry()).await?;
            (Some(journal), Some(writer))
        }
        _ => (None, None),
    };
    let trace = crate::relay::trace::Tracing::start(&config.tracing, &metrics, &config.secrets)?;
    let pauses = store.pauses();
    metrics.store_up.set(1);
    tokio::spawn(crate::relay::observe::watch_store(
        store.clone(),
        health.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    let shared = reload::Shared {
        store,
        metrics: metrics.clone(),
        health: health.clone(),
        journal,
        pauses,
        paused: crate::shared::pause::Board::default(),
        trace: trace.clone(),
    };
    let http = tokio::spawn(crate::relay::observe::serve(
        listener,
        metrics.clone(),
        health.clone(),
        shutdown.clone(),
    ));
    let (asks, asked) = tokio::sync::mpsc::channel(1);
    let grace = std::time::Duration::from_secs(config.worker.shutdown_grace_secs);
    // When the stop was asked: the journal's writer has until the grace is over from then.
    let stop_asked = {
        let s = shutdown.clone();
        tokio::spawn(async move {
            s.cancelled().await;
            tokio::time::Instant::now()
        })
    };
    let task = tokio::spawn(async move {
        let stopping = shutdown.clone();
        let result = reload::supervise(shared, config, shutdown, asked).await;
        if let Some(writer) = writer {
            // What the stopped relay recorded reaches the journal before the stop ends, if
            // the journal takes it within the grace (and a moment for the last batch).
            let asked_at = match stopping.is_cancelled() {
                true => stop_asked
                    .await
                    .unwrap_or_else(|_| tokio::time::Instant::now()),
                false => {
                    stop_asked.abort();
                    tokio::time::Instant::now()
                }
            };
            let last_batch = tokio::time::Instant::now() + JOURNAL_LAST_BATCH;
            writer.close((asked_at + grace).max(last_batch)).await;
        }
        if let Some(trace) = trace {
            // The last spans go out if the collector takes them at once; a stop never waits
            // for one that does not answer.
            trace.shutdown(TRACE_LAST_BATCH).await;
        }
        // A scraper holding a keep-alive connection must not hold up the stop.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), http).await;
        result
    });
    Ok(Running {
        http_addr,
        metrics,
        health,
        reloader: Reloader(asks),
        task,
    })
}
