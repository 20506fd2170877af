//! The last check on a rendered request: the HTTP client will send it, and send it exactly as
//! `render` and dead letters show it. A request that fails here can never be sent, whatever
//! the partner's state, so it is a render error, decided before any call: never a partner
//! failure, never a retry, never a mark against the destination's circuit.

use super::Request;

/// The longest URL the HTTP client can send, in bytes: its URI type refuses anything longer
/// (`tests/unsendable.rs` pins this against the client).
pub const MAX_URL_BYTES: usize = 65_534;

/// The largest request body sent, in bytes. A postback is a few hundred bytes; a body over
/// this comes from an event carrying more than any partner takes in one call.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// How much of a URL an error shows around the place it goes wrong.
const EXCERPT_CHARS: usize = 60;

/// Why a rendered request cannot be sent as shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsendable {
    #[error(
        "the request URL is {bytes} bytes long, over the {MAX_URL_BYTES} bytes the HTTP client can send"
    )]
    UrlTooLong { bytes: usize },
    #[error("the request URL is not a URL the HTTP client reads: {0}")]
    NotAUrl(String),
    /// The client normalizes URLs (a `.` or `..` path segment is removed, a host is written in
    /// lower case...): what it sent would not be what was shown. Both are redacted.
    #[error(
        "the HTTP client would not send the request URL as rendered: it rewrites {shown:?} as {sent:?}"
    )]
    Rewritten { shown: String, sent: String },
    #[error("the request URL has a fragment (#...), which the HTTP client never sends")]
    Fragment,
    #[error("header name {0:?} is not valid in HTTP")]
    HeaderName(String),
    /// The value is not shown: it may hold a secret, or the line break it should not.
    #[error("the value of header {0} is not valid in HTTP (a line break or control character)")]
    HeaderValue(String),
    #[error("the request body is {bytes} bytes long, over the limit of {MAX_BODY_BYTES} bytes")]
    BodyTooLarge { bytes: usize },
}

/// Checks that the HTTP client sends `req` exactly as it is: its URL is one the client
/// parses to the same text (nothing rewritten, nothing dropped) and not too long; every
/// header is valid HTTP; the body is within [`MAX_BODY_BYTES`]. Gives the parsed URL, which
/// the client then sends as it is.
pub fn check(req: &Request) -> Result<url::Url, Unsendable> {
    if req.url.len() > MAX_URL_BYTES {
        return Err(Unsendable::UrlTooLong {
            bytes: req.url.len(),
        });
    }
    let parsed = url::Url::parse(&req.url).map_err(|e| Unsendable::NotAUrl(e.to_string()))?;
    if parsed.as_str() != req.url {
        let (shown, sent) = excerpts(&req.hide(&req.url), &req.hide(parsed.as_str()));
        return Err(Unsendable::Rewritten { shown, sent });
    }
    if parsed.fragment().is_some() {
        return Err(Unsendable::Fragment);
    }
    for (name, value) in &req.headers {
        reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Unsendable::HeaderName(name.clone()))?;
        reqwest::header::HeaderValue::from_str(value)
            .map_err(|_| Unsendable::HeaderValue(name.clone()))?;
    }
    match req.body.as_ref().map(String::len) {
        Some(bytes) if bytes > MAX_BODY_BYTES => Err(Unsendable::BodyTooLarge { bytes }),
        _ => Ok(parsed),
    }
}

/// The two texts around where they first differ, a bounded piece of each.
fn excerpts(a: &str, b: &str) -> (String, String) {
    let common = a
        .char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map(|((i, _), _)| i)
        .unwrap_or_else(|| a.len().min(b.len()));
    let cut = |s: &str| {
        let before: Vec<char> = s[..common].chars().collect();
        let skip = before.len().saturating_sub(EXCERPT_CHARS / 2);
        let mut out: String = if skip > 0 {
            "…".into()
        } else {
            String::new()
        };
        out.extend(&before[skip..]);
        let mut after = s[common..].chars();
        out.extend(after.by_ref().take(EXCERPT_CHARS));
        if after.next().is_some() {
            out.push('…');
        }
        out
    };
    (cut(a), cut(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::partner::Method;

    fn get(url: &str) -> Request {
        Request {
            destination: "d".into(),
            method: Method::Get,
            url: url.into(),
            headers: Default::default(),
            body: None,
            secrets: vec!["s3cret-key".into()],
            parsed_url: None,
        }
    }

    #[test]
    fn sent_as_shown() {
        for ok in [
            "https://a.pwspace.com/ord?qci=abc&ov=89.99",
            "http://h/%252E%252E/x",
            "http://h/..a/x?v=..",
            "http://h//pixel.php",
        ] {
            assert_eq!(
                check(&get(ok)).map(|u| u.to_string()),
                Ok(ok.to_owned()),
                "{ok}"
            );
        }
    }

    #[test]
    fn what_the_client_would_rewrite_or_drop_is_refused() {
        assert!(matches!(
            check(&get("http://h/../pixel.php")),
            Err(Unsendable::Rewritten { shown, sent })
                if shown == "http://h/../pixel.php" && sent == "http://h/pixel.php"
        ));
        for rewritten in [
            "http://h/%2e%2E/x",
            "http://h/a/./x",
            "http://H/x",
            "https://h:443/x",
            "http://h?x=1",
            "http://h/a b",
        ] {
            assert!(
                matches!(check(&get(rewritten)), Err(Unsendable::Rewritten { .. })),
                "{rewritten}"
            );
        }
        assert_eq!(check(&get("http://h/x#top")), Err(Unsendable::Fragment));
        assert!(matches!(
            check(&get("not a url")),
            Err(Unsendable::NotAUrl(_))
        ));
    }

    #[test]
    fn a_rewritten_url_is_shown_redacted_and_bounded() {
        let long = "a".repeat(10_000);
        let err = check(&get(&format!("http://h/s3cret-key/{long}/../{long}")))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret-key"), "{err}");
        assert!(err.len() < 400, "{err}");
        assert!(err.contains("/../"), "{err}");
    }

    #[test]
    fn limits() {
        let start = "http://h/?q=";
        let at = |n: usize| get(&format!("{start}{}", "a".repeat(n - start.len())));
        assert!(check(&at(MAX_URL_BYTES)).is_ok());
        assert_eq!(
            check(&at(MAX_URL_BYTES + 1)),
            Err(Unsendable::UrlTooLong {
                bytes: MAX_URL_BYTES + 1
            })
        );
        let mut post = get("http://h/");
        post.body = Some("x".repeat(MAX_BODY_BYTES));
        assert!(check(&post).is_ok());
        post.body = Some("x".repeat(MAX_BODY_BYTES + 1));
        assert_eq!(
            check(&post),
            Err(Unsendable::BodyTooLarge {
                bytes: MAX_BODY_BYTES + 1
            })
        );
    }

    #[test]
    fn headers_must_be_valid_http() {
        let mut r = get("http://h/");
        r.headers
            .insert("Content-Type".into(), "application/json".into());
        assert!(check(&r).is_ok());
        r.headers
            .insert("X-Note".into(), "a\r\nX-Injected: s3cret-key".into());
        let err = check(&r).unwrap_err();
        assert_eq!(err, Unsendable::HeaderValue("X-Note".into()));
        assert!(!err.to_string().contains("s3cret-key"));
        r.headers.clear();
        r.headers.insert("Bad Name".into(), "v".into());
        assert_eq!(check(&r), Err(Unsendable::HeaderName("Bad Name".into())));
    }
}
