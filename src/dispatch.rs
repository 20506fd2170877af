//! Sends rendered requests to partners: one pooled HTTP client, a concurrency limit per
//! destination, the destination's timeout, and a few short in-process retries with exponential
//! backoff and jitter (backon) for blips. Longer waits belong to the broker, not to a held
//! delivery.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;

use crate::classify::{CallResult, Verdict, parse_retry_after};
use crate::config::{Config, DestinationConfig};
use crate::deadletter::SNIPPET_MAX;
use crate::metrics::Metrics;
use crate::partner::{Method, Request};

/// Largest response body read (and then dropped) so the connection can be reused.
const DRAIN_MAX: usize = 64 * 1024;

/// What happened to one delivery after all its in-process attempts.
#[derive(Clone, Debug)]
pub struct Report {
    pub verdict: Verdict,
    pub attempts: u32,
    pub first_attempt_at: DateTime<Utc>,
    pub last_attempt_at: DateTime<Utc>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub response_snippet: Option<String>,
}

pub struct Dispatcher {
    client: reqwest::Client,
    limits: HashMap<String, Arc<Semaphore>>,
    metrics: Metrics,
}

impl Dispatcher {
    pub fn new(config: &Config, metrics: Metrics) -> anyhow::Result<Dispatcher> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("postback-relay/", env!("CARGO_PKG_VERSION")))
            // A redirect could carry a secret in the URL to another host; partners answer
            // directly, so a 3xx is reported, not followed.
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()?;
        let limits = config
            .destinations
            .iter()
            .map(|d| (d.name.clone(), Arc::new(Semaphore::new(d.concurrency))))
            .collect();
        Ok(Dispatcher {
            client,
            limits,
            metrics,
        })
    }

    /// Sends `req`, retrying retryable failures within the destination's in-process budget.
    pub async fn deliver(&self, dest: &DestinationConfig, req: &Request, event_id: &str) -> Report {
        let policy = &dest.retry;
        let max_delay = Duration::from_millis(policy.max_delay_ms);
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(policy.initial_delay_ms))
            .with_max_delay(max_delay)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(policy.attempts.saturating_sub(1) as usize)
            .build();
        let first_attempt_at = Utc::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let last_attempt_at = Utc::now();
            let (result, snippet) = self.call_once(dest, req, event_id, attempts).await;
            let verdict = result.classify(dest.kind);
            let (last_status, last_error) = match &result {
                CallResult::Response { status, .. } => (Some(*status), None),
                CallResult::Timeout => {
                    (None, Some(format!("timeout after {} ms", dest.timeout_ms)))
                }
                CallResult::ConnectError(e) => (None, Some(e.clone())),
            };
            let report = |verdict| Report {
                verdict,
                attempts,
                first_attempt_at,
                last_attempt_at,
                last_status,
                last_error: last_error.clone(),
                response_snippet: snippet.clone(),
            };
            let Verdict::Retry { retry_after, .. } = &verdict else {
                return report(verdict);
            };
            // A partner asking for more patience than the in-process budget allows is left
            // for later rather than held here.
            let next = delays
                .next()
                .filter(|_| retry_after.is_none_or(|ra| ra <= max_delay));
            match next {
                Some(d) => tokio::time::sleep(d.max(retry_after.unwrap_or_default())).await,
                None => return report(verdict),
            }
        }
    }

    async fn call_once(
        &self,
        dest: &DestinationConfig,
        req: &Request,
        event_id: &str,
        attempt: u32,
    ) -> (CallResult, Option<String>) {
        let _permit = match self.limits.get(&dest.name) {
            Some(s) => Some(s.acquire().await.expect("semaphore never closed")),
            None => None,
        };
        let in_flight = self.metrics.in_flight.with_label_values(&[&dest.name]);
        in_flight.inc();
        let start = Instant::now();
        let (result, snippet) = self.send(dest, req).await;
        let elapsed = start.elapsed();
        in_flight.dec();
        self.metrics
            .request_duration
            .with_label_values(&[&dest.name])
            .observe(elapsed.as_secs_f64());
        self.metrics
            .partner_requests
            .with_label_values(&[&dest.name, result.status_class()])
            .inc();
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        match &result {
            CallResult::Response { status, .. } if (200..300).contains(status) => tracing::info!(
                message = "partner call",
                destination = %dest.name,
                event_id,
                attempt,
                status,
                latency_ms
            ),
            CallResult::Response { status, .. } => tracing::warn!(
                message = "partner call failed",
                destination = %dest.name,
                event_id,
                attempt,
                status,
                latency_ms
            ),
            CallResult::Timeout | CallResult::ConnectError(_) => tracing::warn!(
                message = "partner call failed",
                destination = %dest.name,
                event_id,
                attempt,
                status_class = result.status_class(),
                latency_ms
            ),
        }
        (result, snippet)
    }

    async fn send(&self, dest: &DestinationConfig, req: &Request) -> (CallResult, Option<String>) {
        let mut rb = match req.method {
            Method::Get => self.client.get(&req.url),
            Method::Post => self.client.post(&req.url),
        };
        for (k, v) in &req.headers {
            rb = rb.header(k, v);
        }
        if let Some(body) = &req.body {
            rb = rb.body(body.clone());
        }
        let mut resp = match rb.timeout(dest.timeout()).send().await {
            Ok(r) => r,
            // URLs can hold secrets (an API key in the path): never copy them into errors.
            Err(e) => return (error_result(&e.without_url()), None),
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, Utc::now()));
        // Read the body (bounded) so the pooled connection can be reused; keep its start.
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) if body.len() < DRAIN_MAX => body.extend_from_slice(&chunk),
                Ok(Some(_)) => {}
                // The status is what counts; a body cut short does not change it.
                Ok(None) | Err(_) => break,
            }
            if body.len() >= DRAIN_MAX {
                break;
            }
        }
        body.truncate(SNIPPET_MAX);
        (
            CallResult::Response {
                status,
                retry_after,
            },
            crate::deadletter::snippet(&body),
        )
    }
}

fn error_result(e: &reqwest::Error) -> CallResult {
    if e.is_timeout() {
        return CallResult::Timeout;
    }
    // The outermost message is generic ("error sending request"); the cause says what broke.
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    CallResult::ConnectError(msg)
}
