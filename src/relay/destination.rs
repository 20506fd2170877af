//! One destination at run time: its configuration, the protection its partner gets (a
//! concurrency limit, an optional rate limit, a circuit breaker: its own, or with the Redis store
//! the fleet's, see [`crate::shared`]) and its metric series, built once at start-up and found
//! by name.

use std::num::NonZeroU32;

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::config::{Config, DestinationConfig};
use crate::relay::metrics::{DestinationSeries, Metrics};
use crate::shared::circuit::Admit;
use crate::shared::{Breaker, Rate, Shared};

pub(crate) struct Destination {
    pub config: DestinationConfig,
    concurrency: Semaphore,
    rate: Option<Rate>,
    circuit: Breaker,
    pub series: DestinationSeries,
}

impl Destination {
    /// With the Redis store, the rate limit and the circuit are the fleet's.
    fn new(config: &DestinationConfig, metrics: &Metrics, shared: &Shared) -> Destination {
        let name = &config.name;
        let rate = config
            .rate_limit_per_sec
            .and_then(NonZeroU32::new)
            .map(|n| shared.rate(n, name));
        Destination {
            concurrency: Semaphore::new(config.concurrency),
            rate,
            circuit: shared.breaker(&config.circuit, config.timeout(), name),
            series: metrics.series(&config.name),
            config: config.clone(),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Waits for a concurrency slot, held until the returned value is dropped.
    pub async fn concurrency_slot(&self) -> SemaphorePermit<'_> {
        self.concurrency
            .acquire()
            .await
            .expect("the semaphore is never closed")
    }

    /// Waits for the rate limit's turn, if the destination has one.
    pub async fn rate_turn(&self) {
        if let Some(rate) = &self.rate {
            rate.until_ready().await;
        }
    }

    /// How much longer the circuit stays open, as this replica knows it without asking
    /// anyone; `None` when a call may be due (the circuit decides with [`Destination::admit`],
    /// right before the call).
    pub fn circuit_waits(&self) -> Option<std::time::Duration> {
        self.circuit.waits()
    }

    /// Whether the circuit lets a call through now.
    pub async fn admit(&self) -> Admit {
        let admit = self.circuit.admit().await;
        self.show_circuit();
        admit
    }

    /// Reports a call to the circuit: `healthy` unless the partner failed in a retryable way.
    /// `probe`: the call was the half-open probe, whose answer decides for the fleet.
    pub async fn report(&self, healthy: bool, probe: bool) {
        self.circuit.record(healthy, probe).await;
        self.show_circuit();
    }

    pub fn circuit_closed(&self) -> bool {
        self.circuit.state() == crate::shared::circuit::State::Closed
    }

    /// Shows the circuit's state as it is now, also when this replica has made no call
    /// (with the Redis store, another replica may have opened or closed it).
    pub async fn refresh_circuit(&self) {
        self.circuit.refresh().await;
        self.show_circuit();
    }

    fn show_circuit(&self) {
        self.series.circuit_state.set(self.circuit.state().code());
    }
}

/// Every configured destination.
pub(crate) struct Destinations(Vec<Destination>);

impl Destinations {
    pub fn new(config: &Config, metrics: &Metrics, shared: &Shared) -> Destinations {
        Destinations(
            config
                .destinations
                .iter()
                .map(|d| Destination::new(d, metrics, shared))
                .collect(),
        )
    }

    pub fn as_slice(&self) -> &[Destination] {
        &self.0
    }

    pub fn find(&self, name: &str) -> Option<&Destination> {
        self.0.iter().find(|d| d.name() == name)
    }
}
