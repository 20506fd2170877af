//! The operators' web console (`postback-relay console`): an overview per destination, the
//! dead letters grouped and filtered, one letter opened, replays, discards and recoveries
//! with a preview and a confirmation, and the journal's timeline of an event or an order.
//! Pages are rendered on the server (no script). The dead letters' pages query the journal's
//! index of dead letters, never the queue; without a journal they read the queue in a task
//! of their own (`reading`), which an aborted page load does not interrupt.
//!
//! Security: off loopback the console refuses to start without `console.token` (or
//! `console.operators`). With tokens, every request carries one (`Authorization: Bearer`, or
//! the session cookie that the login form sets) and is made by the operator it names;
//! actions are POSTs carrying a per-process form token, from this origin only; every page is
//! scrubbed of the configuration's secrets; every action is written to the journal with its
//! operator, time, filter and count.

mod actions;
mod auth;
mod browse;
mod charts;
mod drift;
mod forms;
mod gather;
mod handlers;
mod jobs;
mod letter_actions;
mod letter_form;
mod letters;
mod login;
mod reading;
mod reindex;
mod sessions;
mod view;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::relay::broker::Topology;

/// Why the console cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(
        "console.listen {0} is not a loopback address: set console.token (from the environment, \
         token = \"${{CONSOLE_TOKEN}}\") or console.operators so that every request must carry \
         a token"
    )]
    NoToken(SocketAddr),
    #[error("{0} is {1} characters long: use at least 16")]
    ShortToken(String, usize),
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
    /// The configuration's secrets, also as a page writes them (escaped).
    page_secrets: crate::contract::redact::Secrets,
    /// The paused destinations' place, opened at the first use.
    pauses: tokio::sync::OnceCell<crate::shared::pause::Pauses>,
}

impl Console {
    /// Where the paused destinations are (the store's Redis, or the file beside it).
    async fn pauses(&self) -> Result<&crate::shared::pause::Pauses, String> {
        self.pauses
            .get_or_try_init(|| crate::shared::pause::Pauses::for_store(&self.config.store))
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
    let all = crate::config::operators::all(c.token.as_deref(), &c.operators);
    if all.is_empty() && !c.listen.ip().is_loopback() {
        return Err(ConsoleError::NoToken(c.listen));
    }
    for (key, _, token) in all {
        let n = token.chars().count();
        if n < crate::config::operators::MIN_TOKEN_CHARS {
            let key = match key.as_str() {
                "console.token" => key,
                _ => format!("{key}.token"),
            };
            return Err(ConsoleError::ShortToken(key, n));
        }
    }
    Ok(())
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
        auth: auth::Auth::new(&config.console),
        jobs: jobs::Jobs::default(),
        http: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(2))
            .build()
            .unwrap_or_default(),
        metrics_url,
        page_secrets: config.secrets.with_html_forms(),
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
        .route("/destinations/{name}", get(charts::destination))
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
        .route("/deliveries", get(browse::deliveries))
        .route("/actions", get(browse::actions))
        .route("/logout", post(login::logout))
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            auth::guard,
        ))
        .route("/login", get(login::show).post(login::submit))
        .route("/console.css", get(handlers::css))
        .with_state(console)
}
