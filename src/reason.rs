//! Why a conversion could not be delivered: the stable reason codes that dead letters carry,
//! metrics count (`postback_relay_dead_letters_total{reason}`), logs name and `dlq`/`replay`
//! filter on.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a conversion could not be delivered. The codes are stable: metric labels, log fields and
/// replay filters use them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The message body is not JSON.
    NotJson,
    /// The message body is over the configured size limit.
    EventTooLarge,
    /// JSON, but not a valid conversion event (field named in the detail).
    InvalidEvent,
    /// No configured destination matches the event's network and type.
    Unroutable,
    /// The destination cannot build a request from this event (field named in the detail).
    RenderError,
    /// The partner refused the request with a 4xx that retrying cannot fix.
    PartnerRejected,
    /// Retryable failures (5xx, 408, 429, timeouts, connection errors) until the budget ran out.
    RetriesExhausted,
    /// The click is older than the destination's click lifetime: the partner would refuse it.
    ClickExpired,
    /// The message came back from the broker after too many deliveries (quorum delivery limit).
    DeliveryLimit,
    /// Processing the message crashed the relay; it was refused whole.
    Poison,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::NotJson,
        Reason::EventTooLarge,
        Reason::InvalidEvent,
        Reason::Unroutable,
        Reason::RenderError,
        Reason::PartnerRejected,
        Reason::RetriesExhausted,
        Reason::ClickExpired,
        Reason::DeliveryLimit,
        Reason::Poison,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotJson => "not_json",
            Reason::EventTooLarge => "event_too_large",
            Reason::InvalidEvent => "invalid_event",
            Reason::Unroutable => "unroutable",
            Reason::RenderError => "render_error",
            Reason::PartnerRejected => "partner_rejected",
            Reason::RetriesExhausted => "retries_exhausted",
            Reason::ClickExpired => "click_expired",
            Reason::DeliveryLimit => "delivery_limit",
            Reason::Poison => "poison",
        }
    }
}

impl std::str::FromStr for Reason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
                format!("unknown reason {s:?} (reasons: {})", all.join(", "))
            })
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
