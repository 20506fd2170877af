//! Sends one rendered request to a partner over one pooled HTTP client, within a timeout, and
//! says what came back. Redirects are not followed, URLs never reach an error message (an API
//! key can sit in the path), and only the start of the answer is kept. The client takes the
//! proxy `worker.partner_proxy` says: the environment's by default, none, or its own.

use std::time::Duration;

use chrono::Utc;

use crate::config::{PartnerProxy, shown_proxy};
use crate::contract::classify::{CallResult, parse_retry_after};
use crate::contract::partner::{Method, Request};
use crate::relay::deadletter::SNIPPET_READ;

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
    /// A client that takes the proxy the environment names, as curl does.
    pub fn new() -> Result<Client, reqwest::Error> {
        Client::with_proxy(&PartnerProxy::Environment)
    }

    /// A client whose calls take `proxy`.
    pub fn with_proxy(proxy: &PartnerProxy) -> Result<Client, reqwest::Error> {
        let builder = reqwest::Client::builder()
            .user_agent(concat!("postback-relay/", env!("CARGO_PKG_VERSION")))
            // A redirect could carry a secret in the URL to another host; partners answer
            // directly, so a 3xx is reported, not followed.
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true);
        // Left alone, the client reads the environment's proxy variables when it is built.
        let builder = match proxy {
            PartnerProxy::Environment => builder,
            PartnerProxy::None => builder.no_proxy(),
            PartnerProxy::Url(url) => {
                builder.proxy(reqwest::Proxy::all(url.as_str()).map_err(|e| e.without_url())?)
            }
        };
        Ok(Client {
            http: builder.build()?,
        })
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
            snippet: crate::relay::deadletter::snippet(&body),
        }
    }
}

/// Which proxy partner calls take, as the relay says at start: schemes, hosts and ports,
/// never a user or password.
pub fn proxy_in_use(proxy: &PartnerProxy) -> String {
    match proxy {
        PartnerProxy::Environment => environment_proxy(&|name| std::env::var(name).ok()),
        other => other.to_string(),
    }
}

/// What the HTTP client reads from the environment, as curl does: `HTTP_PROXY` (or
/// `http_proxy`) for http:// partners, `HTTPS_PROXY` (`https_proxy`) for https://,
/// `ALL_PROXY` (`all_proxy`) for either without its own, a value without a scheme being
/// http://; except for the hosts `NO_PROXY` (`no_proxy`) lists. Loopback is not excepted
/// unless listed. A CGI program (`REQUEST_METHOD` set) reads none of them.
fn environment_proxy(var: &dyn Fn(&str) -> Option<String>) -> String {
    if var("REQUEST_METHOD").is_some() {
        return "no proxy (REQUEST_METHOD is set: a CGI program does not read the environment's proxy variables)".into();
    }
    let first = |names: [&str; 2]| names.iter().find_map(|n| var(n));
    let proxy = |names: [&str; 2]| {
        first(names).and_then(|v| {
            let text = if v.contains("://") {
                v
            } else {
                format!("http://{v}")
            };
            url::Url::parse(&text)
                .ok()
                .filter(|u| u.host_str().is_some_and(|h| !h.is_empty()))
                .map(|u| shown_proxy(&u))
        })
    };
    let all = proxy(["ALL_PROXY", "all_proxy"]);
    let http = proxy(["HTTP_PROXY", "http_proxy"]).or_else(|| all.clone());
    let https = proxy(["HTTPS_PROXY", "https_proxy"]).or(all);
    if http.is_none() && https.is_none() {
        return "no proxy (the environment names none)".into();
    }
    let except = first(["NO_PROXY", "no_proxy"])
        .filter(|n| !n.trim().is_empty())
        .map(|n| format!(", except for the hosts NO_PROXY lists ({n})"))
        .unwrap_or_default();
    format!(
        "the environment's proxy: {} for http://, {} for https://{except}",
        http.as_deref().unwrap_or("none"),
        https.as_deref().unwrap_or("none")
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn described(vars: &[(&str, &str)]) -> String {
        environment_proxy(&|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn the_environments_proxy_is_described_without_credentials() {
        assert_eq!(described(&[]), "no proxy (the environment names none)");
        assert_eq!(
            described(&[
                ("HTTP_PROXY", "http://relay:s3cret@proxy.internal:3128"),
                ("http_proxy", "http://other:1"),
                ("NO_PROXY", "partner.example,10.0.0.0/8"),
            ]),
            "the environment's proxy: http://proxy.internal:3128 for http://, none for https://, except for the hosts NO_PROXY lists (partner.example,10.0.0.0/8)"
        );
        // ALL_PROXY for what has no proxy of its own; a value without a scheme is http://.
        assert_eq!(
            described(&[
                ("all_proxy", "proxy.internal:8080"),
                ("HTTPS_PROXY", "https://u:p@tls-proxy.internal"),
            ]),
            "the environment's proxy: http://proxy.internal:8080 for http://, https://tls-proxy.internal:443 for https://"
        );
        assert!(
            described(&[("HTTP_PROXY", "http://p:1"), ("REQUEST_METHOD", "GET")])
                .starts_with("no proxy (REQUEST_METHOD is set")
        );
    }
}
