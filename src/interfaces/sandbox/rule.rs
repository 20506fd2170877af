//! The sandbox's rules: which requests a rule applies to, and how the sandbox answers them.

use serde::{Deserialize, Serialize};

/// Which requests a rule applies to; every given field must match.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// A substring of the raw query string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_contains: Option<String>,
}

/// How to answer matching requests.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default, rename = "match")]
    pub matcher: Match,
    #[serde(default = "ok")]
    pub status: u16,
    #[serde(default)]
    pub delay_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<String>,
    /// Apply to this many requests, then stop; forever when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
    /// Answer with the request itself (method, path, query, headers and body), as some
    /// servers' error pages do (`Cannot GET /path`).
    #[serde(default)]
    pub echo: bool,
}

fn ok() -> u16 {
    200
}

impl Rule {
    /// Answer `status` to every request, at once, for ever; narrow it with the methods below.
    pub fn answer(status: u16) -> Rule {
        Rule {
            matcher: Match::default(),
            status,
            delay_ms: 0,
            retry_after: None,
            times: None,
            echo: false,
        }
    }

    /// Answer with the request itself.
    pub fn echoing(mut self) -> Rule {
        self.echo = true;
        self
    }

    /// Only requests whose raw query contains `text`.
    pub fn on_query(mut self, text: &str) -> Rule {
        self.matcher.query_contains = Some(text.into());
        self
    }

    /// Only requests whose path starts with `prefix`.
    pub fn on_path(mut self, prefix: &str) -> Rule {
        self.matcher.path_prefix = Some(prefix.into());
        self
    }

    /// Answer after `ms` milliseconds.
    pub fn after_ms(mut self, ms: u64) -> Rule {
        self.delay_ms = ms;
        self
    }

    /// With a `Retry-After` header.
    pub fn retry_after(mut self, value: &str) -> Rule {
        self.retry_after = Some(value.into());
        self
    }

    /// For this many requests, then no more.
    pub fn times(mut self, n: u64) -> Rule {
        self.times = Some(n);
        self
    }
}
