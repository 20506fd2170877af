//! A destination's circuit breaker: this process's own ([`super::circuit`]), or the fleet's
//! ([`super::fleet_circuit`]).

use std::time::{Duration, Instant};

use super::circuit::{Admit, Circuit, CircuitConfig, State};
use super::fleet::Fleet;
use super::fleet_circuit::FleetCircuit;

/// A destination's circuit breaker: this process's own, or the fleet's.
pub enum Breaker {
    Local(Circuit),
    Fleet(FleetCircuit),
}

impl Breaker {
    /// `timeout`: the longest a call (the probe) takes.
    pub fn new(
        config: &CircuitConfig,
        timeout: Duration,
        destination: &str,
        fleet: Option<&Fleet>,
    ) -> Breaker {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        match fleet {
            Some(fleet) if config.enabled => {
                Breaker::Fleet(FleetCircuit::new(config, timeout_ms, destination, fleet))
            }
            _ => Breaker::Local(Circuit::new(config.clone())),
        }
    }

    pub async fn admit(&self) -> Admit {
        match self {
            Breaker::Local(c) => c.admit(Instant::now()),
            Breaker::Fleet(c) => c.admit().await,
        }
    }

    pub async fn record(&self, healthy: bool, probe: bool) {
        match self {
            Breaker::Local(c) => c.record(healthy, Instant::now()),
            Breaker::Fleet(c) => c.record(healthy, probe).await,
        }
    }

    /// How much longer the circuit stays open, from what this replica knows (its own circuit,
    /// or its last reading of the fleet's); takes no probe and asks no one.
    pub fn waits(&self) -> Option<Duration> {
        let now = Instant::now();
        match self {
            Breaker::Local(c) => c.waits(now),
            Breaker::Fleet(c) => c.waits(now),
        }
    }

    pub fn state(&self) -> State {
        match self {
            Breaker::Local(c) => c.state(),
            Breaker::Fleet(c) => c.state(),
        }
    }

    /// Reads the fleet's circuit again without calling (no probe taken), so that a replica
    /// without traffic still shows what the others did to it. This process's own circuit
    /// changes only with its own calls: nothing to read.
    pub async fn refresh(&self) {
        if let Breaker::Fleet(c) = self {
            c.peek().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_replica_without_calls_reads_what_the_others_did_to_the_circuit() {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
        let conn = crate::shared::client::manager(&url, None).await.unwrap();
        let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
        let fleet = Fleet::new(conn.clone(), &prefix);
        let config = CircuitConfig {
            enabled: true,
            failure_threshold: 2,
            open_ms: 100,
        };
        let timeout = Duration::from_millis(10);
        let (calling, idle) = (
            Breaker::new(&config, timeout, "d", Some(&fleet)),
            Breaker::new(&config, timeout, "d", Some(&fleet)),
        );
        calling.record(false, false).await;
        calling.record(false, false).await;
        assert_eq!(calling.state(), State::Open);
        assert_eq!(idle.state(), State::Closed, "nothing read yet");
        idle.refresh().await;
        assert_eq!(idle.state(), State::Open);
        // The open period ends; the calling replica's probe succeeds and closes it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match calling.admit().await {
                Admit::Probe => break,
                Admit::Wait(d) => tokio::time::sleep(d.min(Duration::from_millis(50))).await,
                Admit::Call => panic!("an open circuit let a call through"),
            }
            assert!(Instant::now() < deadline, "no probe within 10 s");
        }
        calling.record(true, true).await;
        assert_eq!(calling.state(), State::Closed);
        assert_eq!(idle.state(), State::Open, "not read again yet");
        idle.refresh().await;
        assert_eq!(idle.state(), State::Closed);
        // An answer read before the one kept (the open circuit, come back late) is not kept.
        let Breaker::Fleet(c) = &idle else {
            panic!("a fleet circuit")
        };
        let kept = c.read_at();
        assert!(kept > 1_700_000_000_000_000, "Redis' clock in µs: {kept}");
        c.remember(kept - 1, 2, 2, 60_000);
        assert_eq!(idle.state(), State::Closed);
        c.remember(kept + 1, 2, 2, 60_000);
        assert_eq!(idle.state(), State::Open);
        let _: () = redis::cmd("DEL")
            .arg(fleet.key("circuit", "d"))
            .query_async(&mut conn.clone())
            .await
            .unwrap();
    }
}
