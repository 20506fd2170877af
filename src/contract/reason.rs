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

impl Reason {
    /// What the reason means, for a person reading a dead letter.
    pub fn meaning(self) -> &'static str {
        match self {
            Reason::NotJson => "The message body is not JSON.",
            Reason::EventTooLarge => {
                "The message body is over worker.max_event_bytes; it was not read."
            }
            Reason::InvalidEvent => {
                "JSON, but not a valid conversion event (the detail names the field), or a body that is not UTF-8 or has a broken content encoding."
            }
            Reason::Unroutable => "No destination matches the event's network, type and publisher.",
            Reason::RenderError => {
                "The destination cannot build a request from this event: a required field is missing or out of its partner's table."
            }
            Reason::PartnerRejected => {
                "The partner refused the request with an answer that retrying cannot change (a 4xx other than 408/429, or a 3xx)."
            }
            Reason::RetriesExhausted => {
                "The partner kept failing (5xx, 408, 429, timeouts, connection errors) until the retry budget ran out."
            }
            Reason::ClickExpired => {
                "The click is older than the destination's click_lifetime_days: the partner would refuse it, so it was not called."
            }
            Reason::DeliveryLimit => {
                "The broker delivered the message too many times without it being settled (the quorum delivery limit)."
            }
            Reason::Poison => {
                "Processing the message crashed the relay; it was set aside so that it cannot crash it again."
            }
        }
    }

    /// What to do about a dead letter of this reason.
    pub fn what_to_do(self) -> &'static str {
        match self {
            Reason::NotJson | Reason::InvalidEvent => {
                "Fix the producer that published it. Replaying it unchanged fails the same way; publish a corrected event instead."
            }
            Reason::EventTooLarge => {
                "Find out why the producer sends such bodies; raise worker.max_event_bytes only if the event is legitimate."
            }
            Reason::Unroutable => {
                "Add or correct a destination's match rule, then replay: the event goes back to the events queue."
            }
            Reason::RenderError => {
                "Correct the event at its source, or the destination's configuration, then replay."
            }
            Reason::PartnerRejected => {
                "Read the partner's answer below. If the request was wrong, fix the configuration and replay; if the partner's data is wrong (an unknown click), settle it with the partner."
            }
            Reason::RetriesExhausted => {
                "Check that the partner is up again (the overview's circuit state and success rate), then replay."
            }
            Reason::ClickExpired => {
                "Nothing to send: the partner does not accept conversions this old. Settle it with the partner if it matters."
            }
            Reason::DeliveryLimit | Reason::Poison => {
                "Look at the relay's logs around the time it was dead-lettered; replay once the cause is fixed."
            }
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
