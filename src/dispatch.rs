//! Sends rendered requests to partners: one pooled HTTP client; per destination a concurrency
//! limit, an optional rate limit and a circuit breaker; the destination's timeout; and a few
//! short in-process tries with exponential backoff and jitter (backon) for blips. Longer waits
//! belong to the broker's retry tiers, not to a held delivery.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::Utc;
use tokio::sync::Semaphore;

use crate::circuit::{Admit, Circuit};
use crate::classify::{CallResult, Verdict, parse_retry_after};
use crate::config::{Config, DestinationConfig};
use crate::deadletter::SNIPPET_MAX;
use crate::delivery::AttemptRecord;
use crate::metrics::Metrics;
use crate::partner::{Method, Request};

/// Largest response body read (and then dropped) so the connection can be reused.
const DRAIN_MAX: usize = 64 * 1024;

/// What happened to one delivery after its in-process tries.
#[derive(Clone, Debug)]
pub struct Report {
    pub verdict: Verdict,
    /// Partner calls made.
    pub tries: u32,
    pub history: Vec<AttemptRecord>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub response_snippet: Option<String>,
    /// Set, with the client's reason, when the HTTP client refused to build the request
    /// ([`CallResult::Unsendable`]): nothing was sent and the circuit was not told. The
    /// verdict is a `Reject`; the delivery is a render error, not the partner's refusal.
    pub unsendable: Option<String>,
}

type Limiter = governor::DefaultDirectRateLimiter;

/// Per-destination protection (concurrency, rate and circuit) and its metric series.
struct Guard {
    concurrency: Semaphore,
    rate: Option<Limiter>,
    circuit: Circuit,
    series: crate::metrics::DestinationSeries,
}

pub struct Dispatcher {
    client: reqwest::Client,
    guards: HashMap<String, Guard>,
}

impl Dispatcher {
    pub fn new(config: &Config, metrics: &Metrics) -> anyhow::Result<Dispatcher> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("postback-relay/", env!("CARGO_PKG_VERSION")))
            // A redirect could carry a secret in the URL to another host; partners answer
            // directly, so a 3xx is reported, not followed.
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()?;
        let guards = config
            .destinations
            .iter()
            .map(|d| {
                let rate = d
                    .rate_limit_per_sec
                    .and_then(NonZeroU32::new)
                    .map(|n| governor::RateLimiter::direct(governor::Quota::per_second(n)));
                let guard = Guard {
                    concurrency: Semaphore::new(d.concurrency),
                    rate,
                    circuit: Circuit::new(d.circuit.clone()),
                    series: metrics.series(&d.name),
                };
                (d.name.clone(), guard)
            })
            .collect();
        Ok(Dispatcher { client, guards })
    }

    fn guard(&self, dest: &DestinationConfig) -> &Guard {
        self.guards
            .get(&dest.name)
            .expect("a guard per configured destination")
    }

    /// Whether the destination's circuit lets a call through now.
    pub fn admit(&self, dest: &DestinationConfig) -> Admit {
        let admit = self.guard(dest).circuit.admit(Instant::now());
        self.publish_state(dest);
        admit
    }

    fn publish_state(&self, dest: &DestinationConfig) {
        let guard = self.guard(dest);
        guard.series.circuit_state.set(guard.circuit.state().code());
    }

    /// Sends `req` up to `tries` times in a row while the answer is retryable, pausing with
    /// exponential backoff and jitter between tries. Reports every try to the circuit, and
    /// the time from `taken` (when the message came off the queue) to the first request.
    pub async fn deliver(
        &self,
        dest: &DestinationConfig,
        req: &Request,
        event_id: &str,
        tries: u32,
        taken: Instant,
    ) -> Report {
        let policy = &dest.retry;
        let pause_cap = Duration::from_millis(policy.immediate_delay_ms.saturating_mul(8).max(1));
        let mut pauses = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(policy.immediate_delay_ms))
            .with_max_delay(pause_cap)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(tries.saturating_sub(1) as usize)
            .build();
        let guard = self.guard(dest);
        let mut history = Vec::new();
        let mut made = 0;
        loop {
            made += 1;
            let at = Utc::now();
            let first = (made == 1).then_some(taken);
            let (result, snippet) = self.call_once(dest, req, event_id, made, first).await;
            let verdict = result.classify(dest.kind);
            if result.tells_of_partner() {
                guard
                    .circuit
                    .record(!matches!(verdict, Verdict::Retry { .. }), Instant::now());
            }
            self.publish_state(dest);
            let (last_status, last_error) = match &result {
                CallResult::Response { status, .. } => (Some(*status), None),
                CallResult::Timeout => {
                    (None, Some(format!("timeout after {} ms", dest.timeout_ms)))
                }
                CallResult::ConnectError(e) | CallResult::Unsendable(e) => (None, Some(e.clone())),
            };
            history.push(AttemptRecord {
                at,
                result: result.status_class().to_owned(),
                status: last_status,
                error: last_error.clone(),
            });
            // Not retryable; or a partner asking for more patience than an in-process pause,
            // or a circuit that just opened: the tries end here, the rest is the broker's.
            let next = match &verdict {
                Verdict::Retry { retry_after, .. } => pauses
                    .next()
                    .filter(|_| retry_after.is_none_or(|ra| ra <= pause_cap))
                    .filter(|_| guard.circuit.state() == crate::circuit::State::Closed)
                    .map(|d| d.max(retry_after.unwrap_or_default())),
                _ => None,
            };
            match next {
                Some(d) => tokio::time::sleep(d).await,
                None => {
                    return Report {
                        verdict,
                        tries: made,
                        history,
                        last_status,
                        last_error,
                        response_snippet: snippet,
                        unsendable: match result {
                            CallResult::Unsendable(e) => Some(e),
                            _ => None,
                        },
                    };
                }
            }
        }
    }

    async fn call_once(
        &self,
        dest: &DestinationConfig,
        req: &Request,
        event_id: &str,
        attempt: u32,
        taken: Option<Instant>,
    ) -> (CallResult, Option<String>) {
        let guard = self.guard(dest);
        let _permit = guard
            .concurrency
            .acquire()
            .await
            .expect("semaphore never closed");
        if let Some(rate) = &guard.rate {
            rate.until_ready().await;
        }
        let in_flight = InFlight::new(guard.series.in_flight.clone());
        let start = Instant::now();
        if let Some(taken) = taken {
            guard
                .series
                .dispatch_delay
                .observe((start - taken).as_secs_f64());
        }
        let (result, snippet) = self.send(dest, req).await;
        let elapsed = start.elapsed();
        drop(in_flight);
        guard.series.request_duration.observe(elapsed.as_secs_f64());
        if let Some(c) = guard.series.requests.get(result.status_class()) {
            c.inc();
        }
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
            _ => tracing::warn!(
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

/// Counts a call in flight until dropped, also when its task is cancelled mid-call.
struct InFlight(prometheus::IntGauge);

impl InFlight {
    fn new(g: prometheus::IntGauge) -> InFlight {
        g.inc();
        InFlight(g)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
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
    // The client would not build the request (a URL over its limit, an invalid header):
    // nothing left, and the same request never will.
    if e.is_builder() {
        return CallResult::Unsendable(msg);
    }
    CallResult::ConnectError(msg)
}
