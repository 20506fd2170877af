//! The operators' web console (`postback-relay console`): an overview per destination, the
//! dead letters grouped and filtered, one letter opened, replays, discards and recoveries
//! with a preview and a confirmation, and the journal's timeline of an event or an order.
//! Pages are rendered on the server (no script). The dead letters' pages query the journal's
//! index of dead letters, never the queue; without a journal they read the queue in a task
//! of their own (`reading`), which an aborted page load does not interrupt.
//!
//! Security: off loopback the console refuses to start without `console.token`. With a
//! token, every request carries it (`Authorization: Bearer`, or the session cookie that
//! `/login?token=` sets); actions are POSTs carrying a per-process form token, from this
//! origin only; every page is scrubbed of the configuration's secrets; every action is
//! written to the journal with its time, filter and count.

mod actions;
mod auth;
mod drift;
mod forms;
mod gather;
mod handlers;
mod jobs;
mod letter_actions;
mod letters;
mod reading;
mod reindex;
mod view;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use crate::broker::Topology;
use crate::config::Config;

/// Why the console cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(
        "console.listen {0} is not a loopback address: set console.token (from the environment, \
         token = \"${{CONSOLE_TOKEN}}\") so that every request must carry it"
    )]
    NoToken(SocketAddr),
    #[error("console.token is {0} characters long: use at least 16")]
    ShortToken(usize),
    #[error("cannot listen on {addr} (console.listen): {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What every handler shares.
pub(crate) struct Console {
    config: Arc<Config>,
    topology: Topology,
    auth: auth::Auth,
    jobs: jobs::Jobs,
    http: reqwest::Client,
    metrics_url: Option<String>,
    /// The paused destinations' place, opened at the first use.
    pauses: tokio::sync::OnceCell<crate::pause::Pauses>,
}

impl Console {
    /// Where the paused destinations are (the store's Redis, or the file beside it).
    async fn pauses(&self) -> Result<&crate::pause::Pauses, String> {
        self.pauses
            .get_or_try_init(|| crate::pause::Pauses::for_store(&self.config.store))
            .await
            .map_err(|e| self.config.secrets.scrub(&e.to_string()).into_owned())
    }
}

/// The console's own address, and its task.
pub struct Running {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Checks the console's configuration: off loopback, a token is required.
pub fn check(config: &Config) -> Result<(), ConsoleError> {
    let c = &config.console;
    match &c.token {
        None if !c.listen.ip().is_loopback() => Err(ConsoleError::NoToken(c.listen)),
        Some(t) if t.chars().count() < 16 => Err(ConsoleError::ShortToken(t.chars().count())),
        _ => Ok(()),
    }
}

/// Binds `console.listen` and serves until `shutdown`.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Running, ConsoleError> {
    check(&config)?;
    let addr = config.console.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ConsoleError::Listen { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ConsoleError::Listen { addr, source })?;
    let metrics_url = config.relay_metrics_url();
    let console = Arc::new(Console {
        topology: Topology::from_config(&config),
        auth: auth::Auth::new(config.console.token.clone()),
        jobs: jobs::Jobs::default(),
        http: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(2))
            .build()
            .unwrap_or_default(),
        metrics_url,
        pauses: tokio::sync::OnceCell::new(),
        config: Arc::new(config),
    });
    let app = router(console);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    });
    Ok(Running { addr, task })
}

fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(handlers::overview))
        .route("/dead", get(handlers::dead_letters))
        .route("/dead/{id}", get(handlers::letter))
        .route("/replay", post(actions::replay))
        .route("/discard", post(letter_actions::discard))
        .route("/dead/reindex", post(reindex::reindex))
        .route("/pause", post(actions::pause))
        .route("/search", get(handlers::search))
        .route(
            "/recover",
            get(handlers::recover_form).post(actions::recover),
        )
        .route("/jobs/{id}", get(handlers::job))
        .route("/console.css", get(handlers::css))
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            auth::guard,
        ))
        .route("/login", get(auth::login))
        .with_state(console)
}
