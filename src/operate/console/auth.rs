//! Who may use the console, and who they are: an operator's access token (a bearer header,
//! or the session cookie a login sets, see `login`), the name an authenticating proxy gives
//! in `console.operator_header`, and a per-process form token with a same-origin check on
//! every POST.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Console;
use super::sessions::{Sessions, same};
use crate::config::ConsoleConfig;
use crate::config::operators;

/// The session cookie: `__Host-` makes the browser keep it to this host and path `/`, sent
/// over a secure connection only, and refuse one set by another service on the same host.
pub const COOKIE: &str = "__Host-postback_relay_console";

/// The operator a request acts for, as the guard found them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator(pub String);

/// Who a console without tokens (on loopback only) acts for.
pub const LOOPBACK_OPERATOR: &str = "loopback";

/// Why a request is not served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No token, no session (or an ended one).
    Unknown,
    /// `console.operator_header` holds what cannot be a name.
    BadHeader(String),
}

pub(crate) struct Auth {
    /// Each operator's name and token.
    operators: Vec<(String, String)>,
    /// The proxy's header naming the operator, when configured.
    header: Option<String>,
    pub sessions: Sessions,
    /// Carried by every form; a POST without it is refused.
    pub form_token: String,
}

impl Auth {
    pub fn new(c: &ConsoleConfig) -> Auth {
        Auth {
            operators: operators::all(c.token.as_deref(), &c.operators)
                .into_iter()
                .map(|(_, name, token)| (name, token))
                .collect(),
            header: c.operator_header.clone(),
            sessions: Sessions::default(),
            form_token: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// Whether a token is needed (any operator is configured).
    pub fn required(&self) -> bool {
        !self.operators.is_empty()
    }

    /// The operator whose token this is. Every token is compared, whole.
    pub fn by_token(&self, token: &str) -> Option<&str> {
        let mut found = None;
        for (name, t) in &self.operators {
            if same(t, token) && found.is_none() {
                found = Some(name.as_str());
            }
        }
        found
    }

    /// Who the request is from: its bearer token's operator, or its session's; without
    /// tokens, [`LOOPBACK_OPERATOR`]. Then, when `console.operator_header` is configured
    /// and the request has it, the name in it.
    pub fn who(&self, headers: &HeaderMap) -> Result<Operator, Refusal> {
        let known = if self.required() {
            let bearer = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(bearer_credentials)
                .and_then(|b| self.by_token(b).map(str::to_owned));
            bearer
                .or_else(|| cookie(headers, COOKIE).and_then(|id| self.sessions.who(id)))
                .ok_or(Refusal::Unknown)?
        } else {
            LOOPBACK_OPERATOR.to_owned()
        };
        let Some(h) = &self.header else {
            return Ok(Operator(known));
        };
        match headers.get(h.as_str()).map(|v| v.to_str()) {
            None => Ok(Operator(known)),
            Some(Ok(name)) if operators::name_problem(name).is_none() => {
                Ok(Operator(name.to_owned()))
            }
            Some(_) => Err(Refusal::BadHeader(h.clone())),
        }
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

pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
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

/// Refuses requests without the access token; names the operator (an [`Operator`] in the
/// request's extensions); adds the headers every page has.
pub async fn guard(State(c): State<Arc<Console>>, mut req: Request, next: Next) -> Response {
    if !c.auth.required() && !loopback_host(req.headers()) {
        return refused(
            StatusCode::FORBIDDEN,
            "Refused: this console answers to a loopback address only.",
        );
    }
    let who = match c.auth.who(req.headers()) {
        Ok(who) => who,
        Err(Refusal::Unknown) => {
            return refused(
                StatusCode::UNAUTHORIZED,
                "This console needs an operator's access token: log in at /login, or send Authorization: Bearer.",
            );
        }
        Err(Refusal::BadHeader(h)) => {
            return refused(
                StatusCode::BAD_REQUEST,
                &format!(
                    "Refused: the {h} header does not hold an operator's name (printable, at most {} characters).",
                    operators::MAX_NAME_CHARS
                ),
            );
        }
    };
    if req.method() == Method::POST && !same_origin(req.headers()) {
        return refused(
            StatusCode::FORBIDDEN,
            "Refused: an action from another site.",
        );
    }
    req.extensions_mut().insert(who);
    let mut res = next.run(req).await;
    secure(res.headers_mut());
    res
}

pub(super) fn secure(h: &mut HeaderMap) {
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

    fn auth(operators: &[(&str, &str)], header: Option<&str>) -> Auth {
        Auth::new(&ConsoleConfig {
            token: Some("0123456789abcdef".into()),
            operators: operators
                .iter()
                .map(|(name, token)| operators::Operator {
                    name: (*name).into(),
                    token: (*token).into(),
                })
                .collect(),
            operator_header: header.map(str::to_owned),
            ..ConsoleConfig::default()
        })
    }

    fn who(a: &Auth, pairs: &[(&'static str, &str)]) -> Result<String, Refusal> {
        a.who(&headers(pairs)).map(|o| o.0)
    }

    #[test]
    fn a_token_or_a_session_made_with_one_names_its_operator() {
        let a = auth(&[("alice", "alice-token-0123456789")], None);
        assert_eq!(who(&a, &[]), Err(Refusal::Unknown));
        assert_eq!(
            who(&a, &[("authorization", "Bearer wrong")]),
            Err(Refusal::Unknown)
        );
        let op = Ok("operator".to_owned());
        assert_eq!(who(&a, &[("authorization", "Bearer 0123456789abcdef")]), op);
        assert_eq!(who(&a, &[("authorization", "bearer 0123456789abcdef")]), op);
        assert_eq!(
            who(&a, &[("authorization", "BEARER  0123456789abcdef")]),
            op
        );
        assert_eq!(
            who(&a, &[("authorization", "Bearer0123456789abcdef")]),
            Err(Refusal::Unknown)
        );
        assert_eq!(
            who(&a, &[("authorization", "Basic 0123456789abcdef")]),
            Err(Refusal::Unknown)
        );
        assert_eq!(
            who(&a, &[("authorization", "Bearer alice-token-0123456789")]),
            Ok("alice".to_owned())
        );
        let id = a.sessions.start("alice");
        assert_eq!(
            who(&a, &[("cookie", &format!("x=1; {COOKIE}={id}"))]),
            Ok("alice".to_owned())
        );
        assert_eq!(
            who(&a, &[("cookie", &format!("{COOKIE}=forged"))]),
            Err(Refusal::Unknown)
        );
        assert_eq!(
            who(&a, &[("cookie", &format!("postback_relay_console={id}"))]),
            Err(Refusal::Unknown),
            "only the __Host- cookie"
        );
        a.sessions.end(&id);
        assert_eq!(
            who(&a, &[("cookie", &format!("{COOKIE}={id}"))]),
            Err(Refusal::Unknown)
        );
        let open = Auth::new(&ConsoleConfig::default());
        assert_eq!(who(&open, &[]), Ok(LOOPBACK_OPERATOR.to_owned()));
    }

    #[test]
    fn the_proxy_header_names_an_operator_who_has_a_token_already() {
        let a = auth(&[], Some("X-Forwarded-User"));
        let bearer = ("authorization", "Bearer 0123456789abcdef");
        assert_eq!(
            who(&a, &[("x-forwarded-user", "carol")]),
            Err(Refusal::Unknown),
            "a header alone is not a login"
        );
        assert_eq!(
            who(&a, &[bearer, ("x-forwarded-user", "carol")]),
            Ok("carol".to_owned())
        );
        assert_eq!(who(&a, &[bearer]), Ok("operator".to_owned()));
        assert_eq!(
            who(&a, &[bearer, ("x-forwarded-user", "ca\u{202e}rol")]),
            Err(Refusal::BadHeader("X-Forwarded-User".into()))
        );
        assert_eq!(
            who(&a, &[bearer, ("x-forwarded-user", &"x".repeat(65))]),
            Err(Refusal::BadHeader("X-Forwarded-User".into()))
        );
        let mut h = headers(&[bearer]);
        h.insert(
            "x-forwarded-user",
            axum::http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        assert!(a.who(&h).is_err(), "not ASCII: refused, never guessed");
        let unset = auth(&[], None);
        assert_eq!(
            who(&unset, &[bearer, ("x-forwarded-user", "mallory")]),
            Ok("operator".to_owned()),
            "not configured: ignored"
        );
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
