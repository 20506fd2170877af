//! The one place that decides what a partner's answer means: delivered, worth retrying, or a
//! permanent failure (DESIGN.md, "Failure classification").

use std::time::Duration;

use crate::config::Kind;

/// What came back from one partner call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallResult {
    /// The partner answered.
    Response {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// No answer within the destination's timeout.
    Timeout,
    /// The connection could not be made or broke (DNS, refused, reset, TLS).
    ConnectError(String),
    /// The HTTP client refused to build the request (a URL over its limit, an invalid header
    /// value): nothing was sent. The same request can never be sent, and it says nothing
    /// about the partner: a render error, given up at once, kept out of the circuit.
    Unsendable(String),
}

/// What to do about a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Worth trying again; the partner may have asked for a delay.
    Retry {
        retry_after: Option<Duration>,
        why: String,
    },
    /// Retrying cannot help; a person must look.
    Reject {
        why: String,
    },
}

impl CallResult {
    /// The bounded `status_class` metric label.
    pub fn status_class(&self) -> &'static str {
        match self {
            CallResult::Response { status, .. } => match status {
                100..=199 => "1xx",
                200..=299 => "2xx",
                300..=399 => "3xx",
                400..=499 => "4xx",
                _ => "5xx",
            },
            CallResult::Timeout => "timeout",
            CallResult::ConnectError(_) => "connect_error",
            CallResult::Unsendable(_) => "unsendable",
        }
    }

    /// Whether this result tells the partner's circuit anything: a request that never left
    /// neither opens nor closes it.
    pub fn tells_of_partner(&self) -> bool {
        !matches!(self, CallResult::Unsendable(_))
    }

    pub fn classify(&self, kind: Kind) -> Verdict {
        match self {
            CallResult::Response {
                status,
                retry_after,
            } => match status {
                200..=299 => Verdict::Delivered,
                // Request Timeout and Too Many Requests are the partner asking for patience.
                408 | 429 | 500..=599 => Verdict::Retry {
                    retry_after: *retry_after,
                    why: format!("HTTP {}", describe(*status, kind)),
                },
                _ => Verdict::Reject {
                    why: format!("HTTP {}", describe(*status, kind)),
                },
            },
            CallResult::Timeout => Verdict::Retry {
                retry_after: None,
                why: "timeout".into(),
            },
            CallResult::ConnectError(e) => Verdict::Retry {
                retry_after: None,
                why: format!("connection error: {e}"),
            },
            CallResult::Unsendable(e) => Verdict::Reject {
                why: format!("the HTTP client cannot send this request: {e}"),
            },
        }
    }
}

/// `404 Not Found: click ID expired or unknown`: the code, its name, and what the partner's
/// document says it means.
fn describe(status: u16, kind: Kind) -> String {
    let name = http_name(status);
    let meaning = match kind {
        Kind::Powerspace => crate::partner::powerspace::explain_status(status),
        Kind::Hoqu | Kind::Callback | Kind::Tracker => None,
    };
    match (name, meaning) {
        (Some(n), Some(m)) => format!("{status} {n}: {m}"),
        (Some(n), None) => format!("{status} {n}"),
        (None, Some(m)) => format!("{status}: {m}"),
        (None, None) => status.to_string(),
    }
}

fn http_name(status: u16) -> Option<&'static str> {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
}

/// Reads `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - now;
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(s: u16) -> Verdict {
        CallResult::Response {
            status: s,
            retry_after: None,
        }
        .classify(Kind::Powerspace)
    }

    #[test]
    fn the_design_table() {
        assert_eq!(status(200), Verdict::Delivered);
        assert_eq!(status(204), Verdict::Delivered);
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert!(matches!(status(s), Verdict::Retry { .. }), "{s}");
        }
        for s in [301, 400, 401, 403, 404, 410, 422] {
            assert!(matches!(status(s), Verdict::Reject { .. }), "{s}");
        }
        assert!(matches!(
            CallResult::Timeout.classify(Kind::Powerspace),
            Verdict::Retry { .. }
        ));
        assert!(matches!(
            CallResult::ConnectError("refused".into()).classify(Kind::Powerspace),
            Verdict::Retry { .. }
        ));
    }

    #[test]
    fn a_request_that_cannot_be_built_is_given_up_and_kept_out_of_the_circuit() {
        let unsendable = CallResult::Unsendable("builder error".into());
        assert!(matches!(
            unsendable.classify(Kind::Hoqu),
            Verdict::Reject { .. }
        ));
        assert!(!unsendable.tells_of_partner());
        assert!(CallResult::ConnectError("refused".into()).tells_of_partner());
        assert!(CallResult::Timeout.tells_of_partner());
    }

    #[test]
    fn rejections_say_what_the_partner_meant() {
        assert_eq!(
            status(404),
            Verdict::Reject {
                why: "HTTP 404 Not Found: click ID expired or unknown".into()
            }
        );
        assert_eq!(
            status(400),
            Verdict::Reject {
                why: "HTTP 400 Bad Request: click ID missing or invalid".into()
            }
        );
    }

    #[test]
    fn status_classes_are_bounded() {
        let r = |s| CallResult::Response {
            status: s,
            retry_after: None,
        };
        assert_eq!(r(200).status_class(), "2xx");
        assert_eq!(r(404).status_class(), "4xx");
        assert_eq!(r(503).status_class(), "5xx");
        assert_eq!(CallResult::Timeout.status_class(), "timeout");
    }

    #[test]
    fn retry_after_forms() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 10:01:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
