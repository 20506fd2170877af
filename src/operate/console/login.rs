//! Logging in and out. The token is typed into a form and POSTed (never in the address,
//! which browser history and proxy logs keep); a login makes a session (see `sessions`) and
//! sets the `__Host-` cookie, which is `Secure`: browsers keep it over HTTPS, and over plain
//! HTTP to `localhost` or a loopback address (trustworthy origins). Elsewhere over plain HTTP
//! the browser would drop it, and the token would cross the network in clear: the login is
//! refused there, and says why.

use std::sync::Arc;

use axum::extract::{Query, RawForm, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::Console;
use super::auth::{COOKIE, loopback_host, refused, same_origin};

/// How a login request came: whether a browser keeps a `Secure` cookie from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// HTTPS, as a proxy in front says (`X-Forwarded-Proto` or `Forwarded`).
    Https,
    /// Plain HTTP to a loopback name.
    Loopback,
    /// Plain HTTP to any other name.
    Plain,
}

/// How the request came, from its headers. A client that claims HTTPS over plain HTTP gets
/// a cookie its browser drops, and has sent its own token in clear: it fools only itself.
pub fn channel(headers: &HeaderMap) -> Channel {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let forwarded_https = text("x-forwarded-proto")
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
        || text("forwarded").is_some_and(|f| {
            f.split([';', ','])
                .any(|kv| kv.trim().eq_ignore_ascii_case("proto=https"))
        });
    if forwarded_https {
        Channel::Https
    } else if loopback_host(headers) {
        Channel::Loopback
    } else {
        Channel::Plain
    }
}

const PLAIN: &str = "Log in over HTTPS (a proxy in front of the console that terminates TLS \
    and sets X-Forwarded-Proto: https) or from this machine (http://127.0.0.1 or \
    http://localhost): over plain HTTP elsewhere the token would cross the network in clear, \
    and the browser would not keep the session's cookie. Authorization: Bearer works either way.";

fn form(note: Option<&str>, can: bool) -> Markup {
    super::view::layout(
        "Log in",
        html! {
            h1 { "Log in" }
            @if let Some(n) = note { p.bad #error { (n) } }
            @if can {
                form.filters method="post" action="/login" #login {
                    label { "access token"
                        input type="password" name="token" autocomplete="current-password" autofocus required;
                    }
                    button type="submit" #log-in { "Log in" }
                }
                p.muted { "A session lasts 12 hours from its login, and ends after an hour without a request or at Log out." }
            }
        },
    )
}

fn page(status: StatusCode, m: Markup) -> Response {
    let mut res = (status, axum::response::Html(m.into_string())).into_response();
    super::auth::secure(res.headers_mut());
    res
}

#[derive(serde::Deserialize)]
pub struct LoginQuery {
    token: Option<String>,
}

/// `GET /login`: the form. A token in the address logs nobody in.
pub async fn show(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    if !c.auth.required() {
        return no_tokens(&headers);
    }
    let can = channel(&headers) != Channel::Plain;
    if q.token.is_some() {
        return page(
            StatusCode::BAD_REQUEST,
            form(
                Some(
                    "The token does not go in the address (browser history and proxy logs keep it): nobody was logged in. Type it into the form instead.",
                ),
                can,
            ),
        );
    }
    page(StatusCode::OK, form((!can).then_some(PLAIN), can))
}

/// A console without tokens answers on loopback only, and needs no login.
fn no_tokens(headers: &HeaderMap) -> Response {
    if !loopback_host(headers) {
        return refused(
            StatusCode::FORBIDDEN,
            "Refused: this console answers to a loopback address only.",
        );
    }
    Redirect::to("/").into_response()
}

/// `POST /login`: a session for the operator whose token the form carries.
pub async fn submit(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    RawForm(body): RawForm,
) -> Response {
    if !c.auth.required() {
        return no_tokens(&headers);
    }
    if !same_origin(&headers) {
        return refused(StatusCode::FORBIDDEN, "Refused: a login from another site.");
    }
    if channel(&headers) == Channel::Plain {
        return page(StatusCode::FORBIDDEN, form(Some(PLAIN), false));
    }
    let token = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let Some(who) = c.auth.by_token(&token) else {
        return page(
            StatusCode::UNAUTHORIZED,
            form(Some("That token does not match."), true),
        );
    };
    let id = c.auth.sessions.start(who);
    let cookie = format!(
        "{COOKIE}={id}; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        c.auth.sessions.ttl().as_secs()
    );
    let mut res = Redirect::to("/").into_response();
    if let Ok(v) = header::HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    super::auth::secure(res.headers_mut());
    res
}

/// `POST /logout` (behind the guard): the session ends on the server, and its cookie goes.
pub async fn logout(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if let Some(id) = super::auth::cookie(&headers, COOKIE) {
        c.auth.sessions.end(id);
    }
    let mut res = Redirect::to(if c.auth.required() { "/login" } else { "/" }).into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        header::HeaderValue::from_static(
            "__Host-postback_relay_console=; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        ),
    );
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

    #[test]
    fn a_login_needs_https_or_loopback() {
        assert_eq!(
            channel(&headers(&[("host", "127.0.0.1:8081")])),
            Channel::Loopback
        );
        assert_eq!(
            channel(&headers(&[("host", "localhost:8081")])),
            Channel::Loopback
        );
        assert_eq!(
            channel(&headers(&[("host", "relay.example:8081")])),
            Channel::Plain
        );
        assert_eq!(channel(&headers(&[])), Channel::Plain);
        for https in [
            ("x-forwarded-proto", "https"),
            ("x-forwarded-proto", "HTTPS"),
            ("forwarded", "for=10.0.0.1;proto=https;host=relay.example"),
        ] {
            assert_eq!(
                channel(&headers(&[("host", "relay.example"), https])),
                Channel::Https,
                "{https:?}"
            );
        }
        assert_eq!(
            channel(&headers(&[
                ("host", "relay.example"),
                ("x-forwarded-proto", "http")
            ])),
            Channel::Plain
        );
    }

    #[test]
    fn the_cookie_that_logs_out_is_the_one_that_logs_in() {
        assert!(
            "__Host-postback_relay_console=; Secure".starts_with(&format!("{COOKIE}=")),
            "the logout clears the login's cookie"
        );
    }
}
