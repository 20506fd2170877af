//! One destination as configured: its match rule, timeouts, limits, retry and circuit
//! settings, and its kind's own table, compiled into its partner side at load.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;

pub use super::circuit::CircuitConfig;
use super::{ConfigError, key_err};
use crate::config::retry::RetryPolicy;
use crate::contract::event::{ConversionEvent, EventType};
use crate::contract::partner::template::Missing;
use crate::contract::partner::{self, Kind, Partner, RenderError, Request, Spec};

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// Unique; used in metrics, logs and dead letters.
    pub name: String,
    pub kind: Kind,
    /// The partner's endpoint (powerspace, hoqu). Callbacks and trackers have URL templates.
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(rename = "match")]
    pub matcher: MatchRule,
    /// Event type -> what the partner is told (see [`Kind::conversions`]); merged over the
    /// kind's defaults.
    #[serde(default)]
    pub conversions: BTreeMap<EventType, String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Partner requests in flight at once for this destination.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default)]
    pub circuit: CircuitConfig,
    /// Requests per second at most to this destination (none when absent).
    #[serde(default)]
    pub rate_limit_per_sec: Option<u32>,
    /// With tracing on, each call to the partner carries the W3C `traceparent` (and
    /// `tracestate`) of its attempt's span, so that a partner that traces sees the same trace.
    /// Off by default: a partner's request is its document's, byte for byte.
    #[serde(default)]
    pub send_traceparent: bool,
    /// A conversion whose click is older than this is dead-lettered `click_expired` without
    /// calling the partner (Powerspace: "expiration ~30 jours"; HOQU: "как правило 30 дней").
    #[serde(default = "default_click_lifetime_days")]
    pub click_lifetime_days: u32,
    /// A template placeholder with no value: rendered `empty` (the default), the delivery
    /// `fail`s, or (template destinations) its field is left out, `skip`.
    #[serde(default)]
    pub missing: Option<Missing>,
    #[serde(default)]
    pub powerspace: Option<crate::contract::partner::powerspace::Options>,
    #[serde(default)]
    pub hoqu: Option<crate::contract::partner::hoqu::Options>,
    #[serde(default)]
    pub callback: Option<crate::contract::partner::callback::Options>,
    #[serde(default)]
    pub tracker: Option<crate::contract::partner::tracker::Options>,
    #[serde(default)]
    pub template: Option<crate::contract::partner::custom::Options>,
    /// The partner side, checked and compiled (templates parsed) at load.
    #[serde(skip)]
    pub partner: Partner,
}

fn default_timeout_ms() -> u64 {
    // Powerspace: "Gérez les timeouts (5 secondes max recommandé)".
    5_000
}

fn default_concurrency() -> usize {
    64
}

fn default_click_lifetime_days() -> u32 {
    30
}

impl DestinationConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// What `event` is sent as, when this destination must hear about it.
    pub fn route(&self, event: &crate::contract::event::ConversionEvent) -> Option<&str> {
        let a = event.attribution.as_ref()?;
        let m = &self.matcher;
        let wanted = m.networks.iter().any(|n| n == &a.network)
            && (m.types.is_empty() || m.types.contains(&event.kind))
            && (m.publishers.is_empty()
                || a.publisher_id
                    .as_ref()
                    .is_some_and(|p| m.publishers.contains(p)));
        if wanted {
            self.partner.routes.get(&event.kind).map(String::as_str)
        } else {
            None
        }
    }

    /// Whether this destination must hear about `event`.
    pub fn matches(&self, event: &crate::contract::event::ConversionEvent) -> bool {
        self.route(event).is_some()
    }

    /// Renders the request this destination sends for `event` (see [`Partner::render`]).
    pub fn render(&self, event: &ConversionEvent) -> Result<Request, RenderError> {
        self.partner.render(&self.name, event)
    }

    /// Checks the destination's partner side and compiles it. `at` names a key for errors.
    pub(super) fn compile(&mut self, at: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        let spec = Spec {
            kind: self.kind,
            base_url: self.base_url.as_deref(),
            conversions: &self.conversions,
            missing: self.missing,
            powerspace: self.powerspace.as_ref(),
            hoqu: self.hoqu.as_ref(),
            callback: self.callback.as_ref(),
            tracker: self.tracker.as_ref(),
            template: self.template.as_ref(),
        };
        self.partner = partner::compile(&spec).map_err(|e| key_err(at(&e.key), e.message))?;
        let routes = &self.partner.routes;
        for t in &self.matcher.types {
            if !routes.contains_key(t) {
                let known: Vec<&str> = routes.keys().map(|t| t.as_str()).collect();
                let sent_as = match self.kind {
                    Kind::Template => {
                        "as a name of your choice, which {conversion} sends".to_owned()
                    }
                    kind => format!("as one of: {}", kind.conversions().join(", ")),
                };
                return Err(key_err(
                    at("match.types"),
                    format!(
                        "{} has no request for `{t}` (it handles: {}; add `{t} = \"...\"` to [conversions] to send it {sent_as})",
                        self.kind,
                        known.join(", "),
                    ),
                ));
            }
        }
        // An update waits for its conversion in the retry tiers, and the wait counts against
        // the delivery's retry age: past it, a failed call would get no retry. Bounded by the
        // age, the wait is also covered by the store's TTL (checked against the age) and far
        // from chrono's range.
        if let Some(h) = &self.hoqu
            && h.status_wait_secs > self.retry.max_age_secs
        {
            return Err(key_err(
                at("hoqu.status_wait_secs"),
                format!(
                    "{} s is longer than this destination's retry.max_age_secs ({} s): the wait \
                     counts against the retry age, so an update sent after it would get no retry \
                     if its call failed; lower it, or raise retry.max_age_secs",
                    h.status_wait_secs, self.retry.max_age_secs
                ),
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchRule {
    /// `attribution.network` values this destination serves.
    pub networks: Vec<String>,
    /// Event types; empty means every type the destination has a conversion for.
    #[serde(default)]
    pub types: BTreeSet<EventType>,
    /// `attribution.publisher_id` values; empty means any publisher.
    #[serde(default)]
    pub publishers: BTreeSet<String>,
}
