//! Partner formats: each destination kind turns an event into the HTTP request its partner
//! expects. Rendering is pure (no I/O), so every format is pinned by unit tests.

pub mod callback;
pub mod custom;
pub mod fields;
pub mod hoqu;
mod kind;
pub mod powerspace;
mod request;
pub mod sendable;
pub mod sign;
pub mod template;
pub mod tracker;

use std::collections::BTreeMap;

pub use crate::contract::encode::encode_component;
use crate::contract::event::ConversionEvent;
pub(crate) use kind::key_err;
pub use kind::{Format, KeyError, Kind, Partner, Spec, compile};
pub use request::{HttpMethod, Method, Request};
pub use sendable::Unsendable;

pub use crate::contract::redact::REDACTED;

/// Why a destination cannot build a request from an event. Permanent: retrying the same event
/// gives the same answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("{kind} has no request for events of type {event_type}")]
    UnsupportedType { kind: Kind, event_type: String },
    #[error("{field} is required by {kind}")]
    Missing { kind: Kind, field: &'static str },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    MissingValue(#[from] template::MissingValue),
    #[error("{0}")]
    RewrittenValue(#[from] template::RewrittenValue),
    /// The request is built, but the HTTP client could not send it as shown.
    #[error("{0}")]
    Unsendable(#[from] Unsendable),
}

impl Partner {
    /// Renders the request `destination` sends for `event`: exactly what the HTTP client will
    /// send, or a render error, also when the request is built but could never be sent
    /// ([`sendable::check`]).
    pub fn render(
        &self,
        destination: &str,
        event: &ConversionEvent,
    ) -> Result<Request, RenderError> {
        self.render_at(destination, event, chrono::Utc::now())
    }

    /// Whether a request carries the time it is made: a Standard Webhooks signature's
    /// timestamp, or the `now` macro. Such a request is rendered again right before each try
    /// goes on the wire, after every wait (a concurrency slot, the rate limit, a pause
    /// between tries), so that what it says of the time is when it was sent.
    pub fn timed(&self) -> bool {
        self.signer.as_ref().is_some_and(sign::Signer::timed)
            || matches!(&self.format, Format::Template(t) if t.sends_now())
    }

    /// [`Partner::render`] for a try at `now`: the time a signature and the `now`
    /// macro carry. Every other part of the request depends on the event alone.
    pub fn render_at(
        &self,
        destination: &str,
        event: &ConversionEvent,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Request, RenderError> {
        let mut request = self.build(destination, event, now)?;
        request.parsed_url = Some(sendable::check(&request)?);
        Ok(request)
    }

    fn build(
        &self,
        destination: &str,
        event: &ConversionEvent,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Request, RenderError> {
        let conversion =
            self.routes
                .get(&event.kind)
                .ok_or_else(|| RenderError::UnsupportedType {
                    kind: self.kind,
                    event_type: event.kind.to_string(),
                })?;
        let signed = |mut r: Rendered, mut secrets: Vec<String>| {
            if let Some(s) = &self.signer {
                s.sign(&mut r, &event.event_id, now);
                secrets.extend(s.secrets().iter().cloned());
            }
            Request {
                destination: destination.to_owned(),
                method: r.method,
                url: r.url,
                headers: r.headers,
                body: r.body,
                secrets,
                parsed_url: None,
            }
        };
        let request = |method, url, headers, body, secrets| {
            signed(
                Rendered {
                    method,
                    url,
                    headers,
                    body,
                },
                secrets,
            )
        };
        let missing = self.missing;
        match &self.format {
            Format::Powerspace(p) => {
                let url = p.url(event, conversion)?;
                Ok(request(Method::Get, url, BTreeMap::new(), None, Vec::new()))
            }
            Format::Hoqu(h) => h.render(event, conversion, missing).map(|r| {
                request(
                    r.method,
                    r.url,
                    r.headers,
                    r.body,
                    vec![h.api_key().to_owned()],
                )
            }),
            Format::Callback(c) => c
                .render(event, missing)
                .map(|r| request(r.method, r.url, r.headers, r.body, Vec::new())),
            Format::Tracker(t) => t
                .render(event, conversion, missing)
                .map(|url| request(Method::Get, url, BTreeMap::new(), None, Vec::new())),
            Format::Template(t) => t
                .render(event, conversion, missing, now)
                .map(|r| signed(r, Vec::new())),
        }
    }

    /// The status `event` carries, if the partner has statuses: HOQU, and template
    /// destinations that send `status` (see [`custom::Custom::status_class`]).
    pub fn status_of(&self, event: &ConversionEvent) -> Option<StatusOf> {
        let (name, update, wait_secs) = match &self.format {
            Format::Hoqu(h) => {
                let conversion = self.routes.get(&event.kind)?;
                let (name, update) = h.status_for(event, conversion)?;
                (name, update, h.status_wait_secs())
            }
            Format::Template(t) => {
                let (name, update) = t.status_class(event)?;
                (name, update, 0)
            }
            _ => return None,
        };
        let order = event.order.as_ref()?.id.as_deref()?;
        let rank = match name {
            "hold" => 1,
            "approved" => 2,
            _ => 3,
        };
        Some(StatusOf {
            order: order.to_owned(),
            rank,
            name,
            update,
            wait_for_conversion: i64::try_from(wait_secs)
                .ok()
                .and_then(chrono::Duration::try_seconds)
                .unwrap_or(chrono::Duration::MAX),
        })
    }
}

/// A status a request carries for a conversion, for status order: a status is never sent
/// after a later one for the same conversion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusOf {
    /// The conversion: its `order.id`.
    pub order: String,
    /// hold 1, approved 2, rejected 3: a status of a lower or equal rank than the one sent is
    /// superseded (an approved conversion can still be rejected on a refund, never put back
    /// on hold).
    pub rank: u8,
    pub name: &'static str,
    /// An update (rather than the conversion itself), which waits for its conversion.
    pub update: bool,
    /// How long an update waits for its conversion before it is sent anyway ("a final
    /// status may be sent directly").
    pub wait_for_conversion: chrono::Duration,
}

/// What a kind's renderer produces; [`Partner::render`] adds the destination and secrets.
pub(crate) struct Rendered {
    pub method: Method,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
}

/// A required event field, or a render error naming it.
pub(crate) fn required<T>(kind: Kind, field: &'static str, v: Option<T>) -> Result<T, RenderError> {
    v.ok_or(RenderError::Missing { kind, field })
}

/// Joins a base URL and a path that starts with `/`. The base was written as the HTTP client
/// sends it when the destination was compiled, so the URL shown is the URL sent.
pub(crate) fn join(base: &str, path_and_query: &str) -> String {
    let base = base.trim_end_matches('/');
    let mut url = String::with_capacity(base.len() + path_and_query.len());
    url.push_str(base);
    url.push_str(path_and_query);
    url
}

/// A HOQU destination's partner side at `https://trackerdomain.com`, from its `hoqu` table.
#[cfg(test)]
pub(crate) fn hoqu_partner(options: &str) -> Partner {
    let o: hoqu::Options = toml::from_str(options).expect("hoqu options");
    compile(&Spec {
        kind: Kind::Hoqu,
        base_url: Some("https://trackerdomain.com"),
        conversions: &BTreeMap::new(),
        missing: None,
        powerspace: None,
        hoqu: Some(&o),
        callback: None,
        tracker: None,
        template: None,
    })
    .expect("a valid hoqu destination")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(v: serde_json::Value) -> ConversionEvent {
        crate::contract::event::parse(&serde_json::to_vec(&v).unwrap(), 1 << 20).unwrap()
    }

    const HOQU_GET: &str = r#"api_key = "advertiser_api_key"
        payout = "fixed"
        action = "lead""#;

    #[test]
    fn a_url_the_client_cannot_send_is_a_render_error() {
        // The contract's longest identifiers, of characters 4 bytes long in UTF-8 and 12 once
        // percent-encoded: a valid event whose GET URL is about 98 KB, over what the HTTP
        // client can send.
        let long = "🎉".repeat(crate::contract::event::MAX_ID_LEN);
        let e = event(serde_json::json!({
            "event_id": "e1", "type": "lead", "occurred_at": "2026-11-22T10:00:00Z",
            "attribution": { "network": "hoqu", "click_id": long },
            "order": { "id": long }
        }));
        let r = hoqu_partner(HOQU_GET).render("hoqu", &e);
        assert!(
            matches!(
                r,
                Err(RenderError::Unsendable(Unsendable::UrlTooLong { bytes }))
                    if bytes > sendable::MAX_URL_BYTES
            ),
            "{r:?}"
        );
    }

    #[test]
    fn encodes_reserved_characters_once() {
        assert_eq!(encode_component("abc123xyz789"), "abc123xyz789");
        assert_eq!(encode_component("a b&c=d#e"), "a%20b%26c%3Dd%23e");
        assert_eq!(encode_component("%41"), "%2541");
        assert_eq!(encode_component("é"), "%C3%A9");
        assert_eq!(encode_component("a+b/c?"), "a%2Bb%2Fc%3F");
        assert_eq!(encode_component("!!!x!!!"), "%21%21%21x%21%21%21");
    }
}
