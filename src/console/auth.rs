//! Who may use the console: the access token (a bearer header, or a session cookie set by
//! `/login?token=`, good for [`SESSION_TTL`]), and a per-process form token with a
//! same-origin check on every POST.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::Console;

/// Sessions kept at most; the oldest goes first.
const MAX_SESSIONS: usize = 1000;
const COOKIE: &str = "postback_relay_console";
/// How long a session lasts from its login: a working day, then the token is asked again.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

pub(crate) struct Auth {
    token: Option<String>,
    /// Each session's id and when it was made.
    sessions: Mutex<VecDeque<(String, Instant)>>,
    ttl: Duration,
    /// Carried by every form; a POST without it is refused.
    pub form_token: String,
}

impl Auth {
    pub fn new(token: Option<String>) -> Auth {
        Auth::lasting(token, SESSION_TTL)
    }

    fn lasting(token: Option<String>, ttl: Duration) -> Auth {
        Auth {
            token,
            sessions: Mutex::default(),
            ttl,
            form_token: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    fn session_ok(&self, id: &str) -> bool {
        self.session_ok_at(id, Instant::now())
    }

    fn session_ok_at(&self, id: &str, now: Instant) -> bool {
        self.sessions
            .lock()
            .map(|mut s| {
                // The oldest first: the expired ones leave from the front.
                while s
                    .front()
                    .is_some_and(|(_, made)| now.duration_since(*made) >= self.ttl)
                {
                    s.pop_front();
                }
                s.iter().any(|(k, _)| same(k, id))
            })
            .unwrap_or(false)
    }

    fn new_session(&self) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        if let Ok(mut s) = self.sessions.lock() {
            if s.len() >= MAX_SESSIONS {
                s.pop_front();
            }
            s.push_back((id.clone(), Instant::now()));
        }
        id
    }

    /// Whether the request carries the access token (or a session made with it).
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_credentials);
        if bearer.is_some_and(|b| same(b, token)) {
            return true;
        }
        cookie(headers, COOKIE).is_some_and(|id| self.session_ok(id))
    }
}

/// The credentials of an `Authorization: Bearer` value. The scheme's name is
/// case-insensitive (RFC 9110, 11.1), and one or more spaces follow it.
fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim_start_matches(' '))
}

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether a POST comes from the console's own pages. A browser says where a request comes
/// from in `Sec-Fetch-Site`; without it, `Origin` must be this host.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
    };
    if let Some(site) = text("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    match text(header::ORIGIN.as_str()) {
        None => true,
        Some(origin) => text(header::HOST.as_str()).is_some_and(|h| {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                == Some(h)
        }),
    }
}

/// Whether the request names a loopback host. Without a token the console listens on
/// loopback only; a page elsewhere whose name is made to resolve to 127.0.0.1 (DNS
/// rebinding) still sends its own name, and is refused.
pub fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or(v6, |(h, _)| h),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses requests without the access token; adds the headers every page has.
pub async fn guard(State(c): State<Arc<Console>>, req: Request, next: Next) -> Response {
    if c.auth.token.is_none() && !loopback_host(req.headers()) {
        return refused(
            StatusCode::FORBIDDEN,
            "Refused: this console answers to a loopback address only.",
        );
    }
    if !c.auth.allows(req.headers()) {
        return refused(
            StatusCode::UNAUTHORIZED,
            "This console needs its access token: open /login?token=... or send Authorization: Bearer.",
        );
    }
    if req.method() == Method::POST && !same_origin(req.headers()) {
        return refused(
            StatusCode::FORBIDDEN,
            "Refused: an action from another site.",
        );
    }
    let mut res = next.run(req).await;
    secure(res.headers_mut());
    res
}

fn secure(h: &mut HeaderMap) {
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, header::HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "same-origin");
    set(h, "cache-control", "no-store");
}

pub fn refused(status: StatusCode, why: &str) -> Response {
    let page = super::view::error_page(status.as_u16(), why).into_string();
    let mut res = (status, axum::response::Html(page)).into_response();
    secure(res.headers_mut());
    res
}

#[derive(serde::Deserialize)]
pub struct Login {
    token: Option<String>,
}

/// `/login?token=`: a session cookie for a browser that shows the token once.
pub async fn login(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<Login>,
) -> Response {
    let Some(expected) = &c.auth.token else {
        if !loopback_host(&headers) {
            return refused(
                StatusCode::FORBIDDEN,
                "Refused: this console answers to a loopback address only.",
            );
        }
        return Redirect::to("/").into_response();
    };
    match q.token {
        Some(t) if same(&t, expected) => {
            let id = c.auth.new_session();
            let mut res = Redirect::to("/").into_response();
            // Secure when the browser came over HTTPS (a proxy in front says so); a plain
            // HTTP console would otherwise never get its cookie back.
            let https = headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|p| p.eq_ignore_ascii_case("https"));
            let cookie = format!(
                "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
                c.auth.ttl.as_secs(),
                if https { "; Secure" } else { "" }
            );
            if let Ok(v) = header::HeaderValue::from_str(&cookie) {
                res.headers_mut().insert(header::SET_COOKIE, v);
            }
            secure(res.headers_mut());
            res
        }
        _ => refused(StatusCode::UNAUTHORIZED, "That token does not match."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_token_or_a_session_made_with_it_is_required() {
        let a = Auth::new(Some("0123456789abcdef".into()));
        assert!(!a.allows(&headers(&[])));
        assert!(!a.allows(&headers(&[("authorization", "Bearer wrong")])));
        assert!(a.allows(&headers(&[("authorization", "Bearer 0123456789abcdef")])));
        assert!(a.allows(&headers(&[("authorization", "bearer 0123456789abcdef")])));
        assert!(a.allows(&headers(&[("authorization", "BEARER  0123456789abcdef")])));
        assert!(!a.allows(&headers(&[("authorization", "Bearer0123456789abcdef")])));
        assert!(!a.allows(&headers(&[("authorization", "Basic 0123456789abcdef")])));
        let id = a.new_session();
        assert!(a.allows(&headers(&[("cookie", &format!("x=1; {COOKIE}={id}"))])));
        assert!(!a.allows(&headers(&[("cookie", &format!("{COOKIE}=forged"))])));
        assert!(Auth::new(None).allows(&headers(&[])));
    }

    #[test]
    fn a_session_ends_when_its_time_is_up() {
        let a = Auth::lasting(Some("0123456789abcdef".into()), Duration::from_secs(60));
        let id = a.new_session();
        let with = headers(&[("cookie", &format!("{COOKIE}={id}"))]);
        assert!(a.allows(&with));
        let later = Instant::now() + Duration::from_secs(59);
        assert!(a.session_ok_at(&id, later));
        assert!(
            !a.session_ok_at(&id, later + Duration::from_secs(1)),
            "an expired session"
        );
        assert!(a.sessions.lock().unwrap().is_empty(), "and it is gone");
        // The token itself still works.
        assert!(a.allows(&headers(&[("authorization", "Bearer 0123456789abcdef")])));
    }

    #[test]
    fn without_a_token_only_loopback_names_are_answered() {
        for ok in [
            "127.0.0.1:8081",
            "localhost:8081",
            "[::1]:8081",
            "LOCALHOST",
        ] {
            assert!(loopback_host(&headers(&[("host", ok)])), "{ok}");
        }
        for no in [
            "evil.example:8081",
            "10.0.0.1:8081",
            "127.0.0.1.evil.example",
        ] {
            assert!(!loopback_host(&headers(&[("host", no)])), "{no}");
        }
        assert!(!loopback_host(&headers(&[])));
    }

    #[test]
    fn actions_come_from_the_console_itself() {
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8081")])));
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:8081"),
            ("origin", "http://127.0.0.1:8081")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8081"),
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8081"),
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:8081"),
            ("origin", "null"),
            ("sec-fetch-site", "same-origin")
        ])));
    }
}
