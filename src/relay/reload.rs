//! A new configuration while the relay runs (SIGHUP). The file is read and validated in full
//! first; an invalid one, or one that changes what only a start can change, is refused and the
//! running configuration stays. Taken, it ends the running generation as a stop does (no more
//! messages taken; what is in flight finishes under the old configuration, within the grace)
//! and starts the next on the same store, journal, metrics and listener. Messages the old
//! generation had taken but not started return to the queue and come to the new one; a
//! delivery waiting in a retry tier for a destination the new file no longer has is
//! dead-lettered as `unroutable` when it comes back, never dropped.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Relay, RelayError};
use crate::config::{Config, ConfigError};

/// Why a new configuration was not taken; the running one stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadRefused {
    #[error("the new configuration is invalid: {0}")]
    Invalid(#[from] ConfigError),
    #[error(
        "the new configuration changes [{}], which only a restart can change; restart the relay \
         to apply it",
        .0.join("], [")
    )]
    NeedsRestart(Vec<&'static str>),
    #[error("the relay is stopping")]
    Stopping,
}

/// What a reload changed, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Destinations in both files whose settings differ.
    pub changed: Vec<String>,
}

/// The sections `new` changes that the relay reads only once, at start: the broker (its
/// queues' arguments are fixed when declared), the store and the journal (opened once), and
/// the listener (bound once). Everything else (destinations, `[worker]`, `[console]`) is
/// taken by a reload.
pub fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.broker != new.broker {
        changed.push("broker");
    }
    if old.store != new.store {
        changed.push("store");
    }
    if old.journal != new.journal {
        changed.push("journal");
    }
    if old.http != new.http {
        changed.push("http");
    }
    if old.tracing != new.tracing {
        changed.push("tracing");
    }
    changed
}

/// Which destinations `new` adds, removes and changes, by name.
pub fn compare(old: &Config, new: &Config) -> Reloaded {
    let find = |c: &Config, name: &str| c.destinations.iter().position(|d| d.name == name);
    let mut r = Reloaded::default();
    for d in &new.destinations {
        match find(old, &d.name) {
            None => r.added.push(d.name.clone()),
            Some(i) if old.destinations[i] != *d => r.changed.push(d.name.clone()),
            Some(_) => {}
        }
    }
    for d in &old.destinations {
        if find(new, &d.name).is_none() {
            r.removed.push(d.name.clone());
        }
    }
    r
}

/// A reload asked of the running relay, with where to answer.
pub(super) struct Ask {
    config: Result<Config, ConfigError>,
    answer: oneshot::Sender<Result<Reloaded, ReloadRefused>>,
}

/// The handle a running relay is reloaded through.
#[derive(Clone)]
pub struct Reloader(pub(super) mpsc::Sender<Ask>);

impl Reloader {
    /// Reads and validates the file at `path`, and, if it may be taken, applies it: returns
    /// once the old generation has finished its work and the new one is started.
    pub async fn reload_from(&self, path: &Path) -> Result<Reloaded, ReloadRefused> {
        self.ask(Config::load(path)).await
    }

    /// Applies `config`, as [`Reloader::reload_from`] does.
    pub async fn reload(&self, config: Config) -> Result<Reloaded, ReloadRefused> {
        self.ask(Ok(config)).await
    }

    async fn ask(&self, config: Result<Config, ConfigError>) -> Result<Reloaded, ReloadRefused> {
        let (answer, answered) = oneshot::channel();
        self.0
            .send(Ask { config, answer })
            .await
            .map_err(|_| ReloadRefused::Stopping)?;
        answered.await.map_err(|_| ReloadRefused::Stopping)?
    }
}

/// What every generation of the relay shares.
pub(super) struct Shared {
    pub store: crate::shared::Shared,
    pub metrics: crate::relay::metrics::Metrics,
    pub health: Arc<super::Health>,
    pub journal: Option<crate::journal::Journal>,
    pub pauses: crate::shared::pause::Pauses,
    pub paused: crate::shared::pause::Board,
    pub trace: Option<crate::relay::trace::Tracing>,
}

/// Runs generation after generation of the relay until `shutdown`, taking each reload asked
/// through `asks` between two of them.
pub(super) async fn supervise(
    shared: Shared,
    mut config: Arc<Config>,
    shutdown: CancellationToken,
    mut asks: mpsc::Receiver<Ask>,
) -> Result<(), RelayError> {
    let mut broker_node = 0;
    let mut ready_hold = None;
    loop {
        let stop = shutdown.child_token();
        let relay = Arc::new(Relay::new(
            config.clone(),
            &shared,
            broker_node,
            ready_hold.take(),
        )?);
        // Paused destinations are known before the first message is taken.
        let names = config.destinations.iter().map(|d| d.name.clone()).collect();
        let watching = crate::shared::pause::Watch::new(
            shared.pauses.clone(),
            shared.paused.clone(),
            crate::shared::pause::Gauges {
                paused: shared.metrics.destination_paused.clone(),
                state_lost: shared.metrics.store_state_lost.clone(),
            },
            names,
            stop.clone(),
        );
        tokio::spawn(watching.first_read().await.run());
        let mut running = tokio::spawn(relay.clone().run(stop.clone()));
        let (next, answer, reloaded) = loop {
            tokio::select! {
                ended = &mut running => return ended?,
                Some(ask) = asks.recv() => {
                    let Ask { config: new, answer } = ask;
                    let taken = new.map_err(ReloadRefused::from).and_then(|new| {
                        let fixed = needs_restart(&config, &new);
                        match fixed.is_empty() {
                            true => Ok(new),
                            false => Err(ReloadRefused::NeedsRestart(fixed)),
                        }
                    });
                    let new = match taken {
                        Ok(new) => new,
                        Err(refused) => {
                        tracing::error!(message = "configuration not reloaded; the running one stays", error = %refused);
                        shared.metrics.config_reloads.with_label_values(&["refused"]).inc();
                        let _ = answer.send(Err(refused));
                        continue;
                        }
                    };
                    let reloaded = compare(&config, &new);
                    tracing::info!(message = "reloading the configuration: the work in flight finishes under the running one");
                    break (new, answer, reloaded);
                }
            }
        };
        // Ready through the change, if ready before it: until the next generation consumes,
        // or until the relay is told to stop, which is not ready, reloading or not.
        ready_hold = shared.health.hold_ready();
        stop.cancel();
        let ended = tokio::select! {
            ended = &mut running => ended,
            () = shutdown.cancelled() => {
                ready_hold = None;
                (&mut running).await
            }
        };
        ended??;
        if shutdown.is_cancelled() {
            let _ = answer.send(Err(ReloadRefused::Stopping));
            return Ok(());
        }
        broker_node = relay.broker_node();
        drop(relay);
        for name in &reloaded.removed {
            shared.metrics.forget_destination(name);
        }
        tracing::info!(
            message = "configuration reloaded",
            destinations = next.destinations.len(),
            added = ?reloaded.added,
            removed = ?reloaded.removed,
            changed = ?reloaded.changed,
        );
        shared
            .metrics
            .config_reloads
            .with_label_values(&["applied"])
            .inc();
        let _ = answer.send(Ok(reloaded));
        config = Arc::new(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str, destinations: &str) -> Config {
        let text = format!("{extra}\n{destinations}\n{}", destination("kept", ""));
        Config::from_toml(&text, &|_| None).unwrap()
    }

    fn destination(name: &str, extra: &str) -> String {
        format!(
            "[[destinations]]\nname = \"{name}\"\nkind = \"powerspace\"\n\
             base_url = \"https://a.pwspace.com\"\nmatch = {{ networks = [\"powerspace\"] }}\n\
             {extra}\n"
        )
    }

    #[test]
    fn destinations_and_the_worker_reload_while_the_broker_store_journal_and_listener_need_a_restart()
     {
        let old = config("", &destination("one", ""));
        assert!(needs_restart(&old, &config("", &destination("two", ""))).is_empty());
        assert!(
            needs_restart(
                &old,
                &config("[worker]\nshutdown_grace_secs = 5", &destination("one", ""))
            )
            .is_empty()
        );
        assert_eq!(
            needs_restart(
                &old,
                &config("[broker]\nprefetch = 8", &destination("one", ""))
            ),
            ["broker"]
        );
        assert_eq!(
            needs_restart(
                &old,
                &config(
                    "[http]\nlisten = \"127.0.0.1:1\"\n[journal]\nenabled = false\n\
                     [store]\nkind = \"embedded\"\npath = \"other.db\"",
                    &destination("one", "")
                )
            ),
            ["store", "journal", "http"]
        );
    }

    #[test]
    fn a_reload_names_the_destinations_it_adds_removes_and_changes() {
        let old = config("", &destination("one", ""));
        assert_eq!(
            compare(&old, &config("", &destination("two", ""))),
            Reloaded {
                added: vec!["two".into()],
                removed: vec!["one".into()],
                changed: vec![],
            }
        );
        assert_eq!(
            compare(&old, &config("", &destination("one", "timeout_ms = 9000"))),
            Reloaded {
                changed: vec!["one".into()],
                ..Reloaded::default()
            }
        );
        assert_eq!(
            compare(&old, &config("", &destination("one", ""))),
            Reloaded::default()
        );
    }

    #[test]
    fn a_refusal_says_what_to_do() {
        let why = ReloadRefused::NeedsRestart(vec!["broker", "store"]).to_string();
        assert_eq!(
            why,
            "the new configuration changes [broker], [store], which only a restart can change; \
             restart the relay to apply it"
        );
    }
}
