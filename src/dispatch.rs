//! Sends one rendered request to a partner over one pooled HTTP client, within a timeout, and
//! says what came back. Redirects are not followed, URLs never reach an error message (an API
//! key can sit in the path), and only the start of the answer is kept.

use std::time::Duration;

use chrono::Utc;

use crate::classify::{CallResult, parse_retry_after};
use crate::deadletter::SNIPPET_READ;
use crate::partner::{Method, Request};

/// Largest response body read (and then dropped) so the connection can be reused.
const DRAIN_MAX: usize = 64 * 1024;

/// What one call brought back: the result, and the start of the partner's answer.
#[derive(Clone, Debug)]
pub struct Answer {
    pub result: CallResult,
    pub snippet: Option<String>,
}

/// The HTTP client every partner call goes through.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
}

impl Client {
    pub fn new() -> Result<Client, reqwest::Error> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("postback-relay/", env!("CARGO_PKG_VERSION")))
            // A redirect could carry a secret in the URL to another host; partners answer
            // directly, so a 3xx is reported, not followed.
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()?;
        Ok(Client { http })
    }

    /// Sends `req` once and waits at most `timeout` for the answer.
    pub async fn send(&self, req: &Request, timeout: Duration) -> Answer {
        let method = match req.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
        };
        // The URL `render` parsed, when it still reads as the request's: parsed once.
        let mut rb = match req.parsed_url.as_ref().filter(|u| u.as_str() == req.url) {
            Some(url) => self.http.request(method, url.clone()),
            None => self.http.request(method, &req.url),
        };
        for (k, v) in &req.headers {
            rb = rb.header(k, v);
        }
        if let Some(body) = &req.body {
            rb = rb.body(body.clone());
        }
        let mut resp = match rb.timeout(timeout).send().await {
            Ok(r) => r,
            // URLs can hold secrets (an API key in the path): never copy them into errors.
            Err(e) => {
                return Answer {
                    result: error_result(&e.without_url()),
                    snippet: None,
                };
            }
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
        body.truncate(SNIPPET_READ);
        Answer {
            result: CallResult::Response {
                status,
                retry_after,
            },
            snippet: crate::deadletter::snippet(&body),
        }
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
