//! The partner sandbox: an HTTP server on loopback that stands in for every partner. It accepts
//! any path, records each request, and answers 200 unless a rule says otherwise (a status, a
//! delay, a `Retry-After`, a number of times). Tests, the demo and benchmarks drive it over
//! HTTP under `/_sandbox/`:
//!
//! - `GET  /_sandbox/requests` — every recorded request, oldest first (`?path_prefix=/ord`);
//! - `GET  /_sandbox/stats` — counts by path and by answered status;
//! - `POST /_sandbox/rules` — add a rule (JSON [`Rule`]); rules are tried in order;
//! - `DELETE /_sandbox/rules` — remove every rule (the partner is healthy again);
//! - `POST /_sandbox/reset` — forget requests and rules.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod client;
mod rule;

pub use self::client::Client;
pub use self::rule::{Match, Rule};

/// One request the sandbox received.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Recorded {
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub content_type: Option<String>,
    /// Every header, names in lower case (a repeated header's values joined by `, `).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub body: String,
    /// The status the sandbox answered.
    pub status: u16,
    pub received_at: DateTime<Utc>,
}

impl Recorded {
    /// A decoded query parameter.
    pub fn param(&self, name: &str) -> Option<String> {
        let q = self.query.as_deref()?;
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    /// The requests counted by path and by status as they come, so that `/_sandbox/stats`
    /// (which a waiting test or benchmark asks often) reads two small maps, not every
    /// request, while it holds the lock the partner's answers wait for.
    by_path: BTreeMap<String, u64>,
    by_status: BTreeMap<u16, u64>,
    rules: Vec<Rule>,
    next_seq: u64,
}

#[derive(Clone, Default)]
struct Sandbox {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Stats {
    pub total: u64,
    pub by_path: BTreeMap<String, u64>,
    pub by_status: BTreeMap<u16, u64>,
}

pub fn router() -> Router {
    Router::new()
        .route("/_sandbox/requests", get(list))
        .route("/_sandbox/stats", get(stats))
        .route("/_sandbox/rules", post(add_rule).delete(clear_rules))
        .route("/_sandbox/reset", post(reset))
        .fallback(record)
        .with_state(Sandbox::default())
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, shutdown: CancellationToken) -> std::io::Result<()> {
    axum::serve(listener, router())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// Starts a sandbox on a free loopback port in the background.
pub async fn spawn(shutdown: CancellationToken) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener, shutdown));
    Ok(addr)
}

async fn record(
    State(s): State<Sandbox>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().map(str::to_owned);
    let rule = {
        let mut inner = s.inner.lock().expect("sandbox lock");
        let rule = inner
            .rules
            .iter_mut()
            .find(|r| {
                r.times != Some(0)
                    && r.matcher
                        .path_prefix
                        .as_ref()
                        .is_none_or(|p| path.starts_with(p))
                    && r.matcher
                        .query_contains
                        .as_ref()
                        .is_none_or(|q| query.as_deref().unwrap_or("").contains(q))
            })
            .map(|r| {
                if let Some(t) = r.times.as_mut() {
                    *t -= 1;
                }
                r.clone()
            });
        let status = rule.as_ref().map_or(200, |r| r.status);
        let seq = inner.next_seq;
        inner.next_seq += 1;
        match inner.by_path.get_mut(&path) {
            Some(n) => *n += 1,
            None => {
                inner.by_path.insert(path.clone(), 1);
            }
        }
        *inner.by_status.entry(status).or_default() += 1;
        inner.requests.push(Recorded {
            seq,
            method: method.to_string(),
            path,
            query,
            content_type: headers
                .get(axum::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            headers: headers
                .keys()
                .map(|k| {
                    let values: Vec<String> = headers
                        .get_all(k)
                        .iter()
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                        .collect();
                    (k.as_str().to_owned(), values.join(", "))
                })
                .collect(),
            body: String::from_utf8_lossy(&body).into_owned(),
            status,
            received_at: Utc::now(),
        });
        rule
    };
    let Some(rule) = rule else {
        return (StatusCode::OK, "OK").into_response();
    };
    if rule.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(rule.delay_ms)).await;
    }
    let status = StatusCode::from_u16(rule.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let text = if rule.echo {
        let mut e = format!("Cannot {method} {uri}\n");
        for (k, v) in &headers {
            e.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
        }
        e.push('\n');
        e.push_str(&String::from_utf8_lossy(&body));
        e
    } else {
        format!("sandbox answered {}", rule.status)
    };
    let mut resp = (status, text).into_response();
    if let Some(ra) = rule.retry_after.as_deref().and_then(|v| v.parse().ok()) {
        resp.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, ra);
    }
    resp
}

#[derive(Deserialize)]
struct ListQuery {
    path_prefix: Option<String>,
}

async fn list(State(s): State<Sandbox>, Query(q): Query<ListQuery>) -> Json<Vec<Recorded>> {
    let inner = s.inner.lock().expect("sandbox lock");
    Json(
        inner
            .requests
            .iter()
            .filter(|r| q.path_prefix.as_ref().is_none_or(|p| r.path.starts_with(p)))
            .cloned()
            .collect(),
    )
}

async fn stats(State(s): State<Sandbox>) -> Json<Stats> {
    let inner = s.inner.lock().expect("sandbox lock");
    Json(Stats {
        total: inner.requests.len() as u64,
        by_path: inner.by_path.clone(),
        by_status: inner.by_status.clone(),
    })
}

async fn add_rule(State(s): State<Sandbox>, Json(rule): Json<Rule>) -> StatusCode {
    s.inner.lock().expect("sandbox lock").rules.push(rule);
    StatusCode::CREATED
}

async fn clear_rules(State(s): State<Sandbox>) -> StatusCode {
    s.inner.lock().expect("sandbox lock").rules.clear();
    StatusCode::NO_CONTENT
}

async fn reset(State(s): State<Sandbox>) -> StatusCode {
    let mut inner = s.inner.lock().expect("sandbox lock");
    inner.requests.clear();
    inner.by_path.clear();
    inner.by_status.clear();
    inner.rules.clear();
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stats_count_every_request_by_path_and_status_until_a_reset() {
        let shutdown = CancellationToken::new();
        let _stop = shutdown.clone().drop_guard();
        let sb = Client::new(spawn(shutdown).await.unwrap());
        sb.add_rule(&Rule::answer(503).on_path("/x").times(1).echoing())
            .await
            .unwrap();
        let http = reqwest::Client::new();
        let mut answers = Vec::new();
        for path in ["/x?a=1", "/x", "/y"] {
            let r = http
                .get(format!("{}{path}", sb.base_url()))
                .header("x-probe", "yes")
                .send()
                .await
                .unwrap();
            answers.push((r.status().as_u16(), r.text().await.unwrap()));
        }
        assert_eq!(answers[0].0, 503);
        assert!(
            answers[0].1.starts_with("Cannot GET /x?a=1\n"),
            "{}",
            answers[0].1
        );
        assert!(answers[0].1.contains("x-probe: yes\n"), "{}", answers[0].1);
        assert_eq!(answers[1], (200, "OK".into()));

        let st = sb.stats().await.unwrap();
        assert_eq!(st.total, 3);
        assert_eq!(
            st.by_path.into_iter().collect::<Vec<_>>(),
            [("/x".to_owned(), 2), ("/y".to_owned(), 1)]
        );
        assert_eq!(
            st.by_status.into_iter().collect::<Vec<_>>(),
            [(200, 2), (503, 1)]
        );
        assert_eq!(sb.requests().await.unwrap().len(), 3);

        sb.reset().await.unwrap();
        let st = sb.stats().await.unwrap();
        assert_eq!(st.total, 0);
        assert!(st.by_path.is_empty() && st.by_status.is_empty());
    }
}
