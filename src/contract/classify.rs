//! The one place that decides what a partner's answer means: delivered, worth retrying, or a
//! permanent failure (DESIGN.md, "Failure classification").

use std::time::Duration;

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

    /// What the call means. `meaning` says what a status means to this partner, where its
    /// document says (`404` to Powerspace: the click ID expired or is unknown).
    pub fn classify(&self, meaning: &dyn Fn(u16) -> Option<&'static str>) -> Verdict {
        match self {
            CallResult::Response {
                status,
                retry_after,
            } => match status {
                200..=299 => Verdict::Delivered,
                // Request Timeout and Too Many Requests are the partner asking for patience.
                408 | 429 | 500..=599 => Verdict::Retry {
                    retry_after: *retry_after,
                    why: format!("HTTP {}", describe(*status, meaning)),
                },
                _ => Verdict::Reject {
                    why: format!("HTTP {}", describe(*status, meaning)),
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
fn describe(status: u16, meaning: &dyn Fn(u16) -> Option<&'static str>) -> String {
    let name = http_name(status);
    match (name, meaning(status)) {
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

/// Reads `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3), in any of the
/// three date forms of §5.6.7. A past date asks for no delay; delay-seconds too large for any
/// integer ask for the longest delay, which the retry policy then clamps.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let when = http_date(v, now)?;
    Some((when - now).to_std().unwrap_or(Duration::ZERO))
}

/// An HTTP date: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, read leniently as RFC 2822),
/// or one of the obsolete forms a recipient must still accept: RFC 850
/// (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`).
fn http_date(v: &str, now: chrono::DateTime<chrono::Utc>) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::{Datelike as _, NaiveDate, NaiveDateTime, NaiveTime, Weekday};
    if let Ok(d) = chrono::DateTime::parse_from_rfc2822(v) {
        return Some(d.with_timezone(&chrono::Utc));
    }
    if let Ok(d) = NaiveDateTime::parse_from_str(v, "%a %b %e %H:%M:%S %Y") {
        return Some(d.and_utc());
    }
    // RFC 850: the day's full name, and a two-digit year.
    let (day_name, rest) = v.split_once(", ")?;
    let weekday: Weekday = day_name.parse().ok()?;
    let (date, time) = rest.strip_suffix(" GMT")?.split_once(' ')?;
    let mut parts = date.split('-');
    let (day, month, yy) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || day.len() != 2
        || yy.len() != 2
        || !(day.bytes().chain(yy.bytes())).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let month = NaiveDate::parse_from_str(&format!("1 {month} 2000"), "%d %b %Y")
        .ok()?
        .month();
    // RFC 9110: a two-digit year that appears to be more than 50 years in the future is the
    // most recent past year with the same last two digits.
    let yy: i32 = yy.parse().ok()?;
    let mut year = now.year() - now.year().rem_euclid(100) + yy;
    if year > now.year() + 50 {
        year -= 100;
    }
    let date = NaiveDate::from_ymd_opt(year, month, day.parse().ok()?)?;
    if date.weekday() != weekday {
        return None;
    }
    let time = NaiveTime::parse_from_str(time, "%H:%M:%S").ok()?;
    Some(date.and_time(time).and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Powerspace's table of what its statuses mean.
    fn powerspace(status: u16) -> Option<&'static str> {
        match status {
            400 => Some("click ID missing or invalid"),
            404 => Some("click ID expired or unknown"),
            _ => None,
        }
    }

    fn nothing(_: u16) -> Option<&'static str> {
        None
    }

    fn status(s: u16) -> Verdict {
        CallResult::Response {
            status: s,
            retry_after: None,
        }
        .classify(&powerspace)
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
            CallResult::Timeout.classify(&powerspace),
            Verdict::Retry { .. }
        ));
        assert!(matches!(
            CallResult::ConnectError("refused".into()).classify(&powerspace),
            Verdict::Retry { .. }
        ));
    }

    #[test]
    fn a_request_that_cannot_be_built_is_given_up_and_kept_out_of_the_circuit() {
        let unsendable = CallResult::Unsendable("builder error".into());
        assert!(matches!(
            unsendable.classify(&nothing),
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

    fn at(rfc3339: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&chrono::Utc)
    }

    #[test]
    fn retry_after_in_every_http_date_form() {
        // RFC 9110 section 5.6.7: the preferred form and the two obsolete ones, all the same
        // instant.
        let now = at("1994-11-06T08:47:37Z");
        for date in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                parse_retry_after(date, now),
                Some(Duration::from_secs(120)),
                "{date}"
            );
        }
        // A date in the past asks for no delay.
        let later = at("2026-11-22T10:00:00Z");
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", later),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:37 1994", later),
            Some(Duration::ZERO)
        );
        // A two-digit year more than 50 years ahead is in the past century (RFC 9110).
        assert_eq!(
            parse_retry_after("Sunday, 22-Nov-26 10:01:00 GMT", later),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Saturday, 01-Jan-77 00:00:00 GMT", later),
            Some(Duration::ZERO),
            "1977"
        );
        assert!(
            parse_retry_after("Wednesday, 01-Jan-76 00:00:00 GMT", later)
                .is_some_and(|d| d > Duration::from_secs(49 * 365 * 86_400)),
            "2076"
        );
        // The weekday must agree with the date, as in the other forms.
        assert_eq!(
            parse_retry_after("Monday, 06-Nov-94 08:49:37 GMT", now),
            None
        );
        assert_eq!(
            parse_retry_after("Wed Nov 16 08:49:37 1994", now),
            Some(Duration::from_secs(10 * 86_400 + 120))
        );
    }

    #[test]
    fn retry_after_never_panics_on_huge_or_broken_values() {
        let now = at("2026-11-22T10:00:00Z");
        // delay-seconds past any integer type: the partner asks for a very long wait, which
        // the retry policy clamps to its longest delay.
        for huge in ["1000000000000000000000000000000", "18446744073709551616"] {
            let d = parse_retry_after(huge, now).expect(huge);
            assert!(d >= Duration::from_secs(u64::MAX / 2), "{huge}: {d:?}");
        }
        assert_eq!(
            parse_retry_after("18446744073709551615", now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert!(parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now).is_some());
        for junk in [
            "",
            " ",
            "-1",
            "+5",
            "1.5",
            "0x10",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 25:49:37 GMT",
            "Sun Nov 36 08:49:37 1994",
            "Sun, 06 Nov 99999 08:49:37 GMT",
            "\u{0}\u{ffff}",
        ] {
            assert_eq!(parse_retry_after(junk, now), None, "{junk:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn retry_after_parses_any_text_without_panicking(v in ".{0,64}") {
            let _ = parse_retry_after(&v, chrono::Utc::now());
        }

        #[test]
        fn retry_after_parses_any_digits_without_panicking(v in "[0-9]{1,80}") {
            proptest::prop_assert!(parse_retry_after(&v, chrono::Utc::now()).is_some());
        }
    }
}
