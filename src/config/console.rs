//! `[console]`: the operators' web console (`postback-relay console`).

use std::net::SocketAddr;

use serde::Deserialize;

use super::{Config, operators};

/// `[console]`: the operators' web console (`postback-relay console`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Where the console listens; off loopback it needs a `token`.
    pub listen: SocketAddr,
    /// The access token every request must carry, from the environment (`${CONSOLE_TOKEN}`);
    /// who logs in with it is named `operator`.
    pub token: Option<String>,
    /// More operators, each with a name and a token of their own: their actions are written
    /// to the journal with their name.
    pub operators: Vec<operators::Operator>,
    /// A header an authenticating proxy in front of the console names the operator in
    /// (`X-Forwarded-User`): believed only on a request that also carries a token or a
    /// session (or, without tokens, on loopback).
    pub operator_header: Option<String>,
    /// The relay's `/metrics`, for circuit states and the oldest dead letter [default: from
    /// `http.listen`].
    pub relay_metrics_url: Option<String>,
    /// A link to a trace in the operators' tracing UI, `{trace_id}` standing for the trace's
    /// id (`https://grafana.example/explore?traceId={trace_id}`): the console links each
    /// delivery's trace id with it.
    pub trace_url: Option<String>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            listen: "127.0.0.1:8081".parse().expect("valid address"),
            token: None,
            operators: Vec::new(),
            operator_header: None,
            relay_metrics_url: None,
            trace_url: None,
        }
    }
}

impl Config {
    /// The running relay's `/metrics`: `console.relay_metrics_url`, else `http.listen`'s
    /// (loopback for an unspecified address); `None` when `http.listen` takes any port.
    pub fn relay_metrics_url(&self) -> Option<String> {
        self.console.relay_metrics_url.clone().or_else(|| {
            let l = self.http.listen;
            (l.port() != 0).then(|| {
                let host = if l.ip().is_unspecified() {
                    "127.0.0.1".to_owned()
                } else {
                    l.ip().to_string()
                };
                format!("http://{host}:{}/metrics", l.port())
            })
        })
    }
}
