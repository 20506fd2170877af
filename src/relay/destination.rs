//! One destination at run time: its configuration, the protection its partner gets (a
//! concurrency limit, an optional rate limit, a circuit breaker) and its metric series, built
//! once at start-up and found by name.

use std::num::NonZeroU32;
use std::time::Instant;

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::circuit::{Admit, Circuit};
use crate::config::{Config, DestinationConfig};
use crate::metrics::{DestinationSeries, Metrics};

type Limiter = governor::DefaultDirectRateLimiter;

pub(crate) struct Destination {
    pub config: DestinationConfig,
    concurrency: Semaphore,
    rate: Option<Limiter>,
    circuit: Circuit,
    pub series: DestinationSeries,
}

impl Destination {
    fn new(config: &DestinationConfig, metrics: &Metrics) -> Destination {
        let rate = config
            .rate_limit_per_sec
            .and_then(NonZeroU32::new)
            .map(|n| governor::RateLimiter::direct(governor::Quota::per_second(n)));
        Destination {
            concurrency: Semaphore::new(config.concurrency),
            rate,
            circuit: Circuit::new(config.circuit.clone()),
            series: metrics.series(&config.name),
            config: config.clone(),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Waits for a concurrency slot and, if the destination has one, the rate limit's permit.
    /// The slot is held until the returned value is dropped.
    pub async fn slot(&self) -> SemaphorePermit<'_> {
        let permit = self
            .concurrency
            .acquire()
            .await
            .expect("the semaphore is never closed");
        if let Some(rate) = &self.rate {
            rate.until_ready().await;
        }
        permit
    }

    /// Whether the circuit lets a call through now.
    pub fn admit(&self) -> Admit {
        let admit = self.circuit.admit(Instant::now());
        self.show_circuit();
        admit
    }

    /// Reports a call to the circuit: `healthy` unless the partner failed in a retryable way.
    pub fn report(&self, healthy: bool) {
        self.circuit.record(healthy, Instant::now());
        self.show_circuit();
    }

    pub fn circuit_closed(&self) -> bool {
        self.circuit.state() == crate::circuit::State::Closed
    }

    fn show_circuit(&self) {
        self.series.circuit_state.set(self.circuit.state().code());
    }
}

/// Every configured destination.
pub(crate) struct Destinations(Vec<Destination>);

impl Destinations {
    pub fn new(config: &Config, metrics: &Metrics) -> Destinations {
        Destinations(
            config
                .destinations
                .iter()
                .map(|d| Destination::new(d, metrics))
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
