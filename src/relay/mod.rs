//! The worker: consumes events and deliveries, routes each event to its destinations, and
//! owns every outcome. An event is acknowledged only once each destination's outcome is
//! durably recorded: delivered, a retry confirmed into a delay tier, or a dead letter
//! confirmed by the broker.
//!
//! One message's way down, file by file:
//! - [`session`]: connects, declares the topology, consumes, reconnects; `drain` ends a
//!   session, on a stop or a lost connection;
//! - `handle`: decodes the message once and plans its deliveries (route and render);
//! - `attempt`: one delivery to one destination: click lifetime, the claim and the status
//!   order (held by guards), the circuit, and the decision;
//! - `call`: the partner calls, each one behind a concurrency slot, the rate limit and a
//!   check that the claim is still held;
//! - `record`: the outcome published (retry tier, dead letter) and counted;
//! - `journaled`: once recorded, every call and outcome told to the journal;
//! - [`settle`]: the acknowledgement, batched;
//! - `sample`: queue depths and the oldest dead letter's age, on the side.

mod attempt;
mod call;
mod destination;
mod drain;
mod handle;
mod journaled;
mod outcome;
mod record;
mod sample;
pub mod session;
pub mod settle;

use std::sync::{Arc, Mutex};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::broker::Topology;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;

pub use self::handle::{Plan, plan};

/// Why the relay cannot start or run; what retrying cannot fix.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot listen on {addr} (http.listen): {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the store ([store] in the config): {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot open the journal ([journal] in the config): {0}")]
    Journal(#[from] crate::journal::JournalError),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error(
        "the broker refuses the relay's topology: {0}. A queue or exchange already exists with \
         other arguments (for example another broker.delivery_limit or retry tiers); delete it \
         or choose another broker.queue_prefix"
    )]
    TopologyRefused(String),
    #[error("the relay's task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}
pub use crate::observe::Health;

use self::destination::Destinations;

pub struct Relay {
    config: Arc<Config>,
    topology: Topology,
    destinations: Destinations,
    client: crate::dispatch::Client,
    /// Claims, the idempotency record and status order.
    store: Store,
    metrics: Metrics,
    health: Arc<Health>,
    /// Which of the broker's addresses the last session connected to.
    broker_node: std::sync::atomic::AtomicUsize,
    /// The destinations an operator paused, as last read.
    paused: crate::pause::Board,
    /// What happened to each delivery, for people; `None` when `journal.enabled = false`.
    journal: Option<crate::journal::Journal>,
    /// The work of sessions that lost their broker connection: it finishes its partner calls
    /// and records them in the store (its acks are gone with the channel), and a stop waits
    /// for it as for the current session's.
    orphans: Mutex<Vec<JoinSet<()>>>,
}

impl Relay {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        metrics: Metrics,
        health: Arc<Health>,
        journal: Option<crate::journal::Journal>,
    ) -> Result<Relay, RelayError> {
        metrics.init_destinations(config.destinations.iter().map(|d| d.name.as_str()));
        let topology = Topology::from_config(&config);
        for d in &config.destinations {
            for (tier, _) in &topology.tiers {
                metrics
                    .retries_scheduled
                    .with_label_values(&[&d.name, &crate::retry::tier_label(*tier)]);
            }
        }
        Ok(Relay {
            destinations: Destinations::new(&config, &metrics, store.fleet().as_ref()),
            topology,
            client: crate::dispatch::Client::new()?,
            store,
            config,
            metrics,
            health,
            journal,
            paused: crate::pause::Board::default(),
            broker_node: std::sync::atomic::AtomicUsize::new(0),
            orphans: Mutex::default(),
        })
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
    task: tokio::task::JoinHandle<Result<(), RelayError>>,
}

impl Running {
    /// Waits for the relay to stop (after its shutdown token is cancelled).
    pub async fn wait(self) -> Result<(), RelayError> {
        self.task.await?
    }
}

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
    let store = Store::open(&config.store).await?;
    let (journal, writer) = match &config.journal {
        j if j.enabled => {
            let (journal, writer) = crate::journal::Journal::open(j, metrics.registry()).await?;
            (Some(journal), Some(writer))
        }
        _ => (None, None),
    };
    let pauses = crate::pause::Pauses::for_running(&config.store, store.fleet().as_ref());
    metrics.store_up.set(1);
    tokio::spawn(crate::observe::watch_store(
        store.clone(),
        health.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    let relay = Relay::new(config, store, metrics.clone(), health.clone(), journal)?;
    // Paused destinations are known before the first message is taken.
    let names = relay
        .config
        .destinations
        .iter()
        .map(|d| d.name.clone())
        .collect();
    let watching = crate::pause::Watch::new(
        pauses,
        relay.paused.clone(),
        metrics.clone(),
        names,
        shutdown.clone(),
    );
    let watching = watching.first_read().await;
    tokio::spawn(watching.run());
    let relay = Arc::new(relay);
    let http = tokio::spawn(crate::observe::serve(
        listener,
        metrics.clone(),
        health.clone(),
        shutdown.clone(),
    ));
    let task = tokio::spawn(async move {
        let result = relay.run(shutdown).await;
        if let Some(writer) = writer {
            // What the stopped relay recorded reaches the journal before the stop ends.
            writer.close().await;
        }
        // A scraper holding a keep-alive connection must not hold up the stop.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), http).await;
        result
    });
    Ok(Running {
        http_addr,
        metrics,
        health,
        task,
    })
}
