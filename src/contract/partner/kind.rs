//! The partner kinds the relay speaks, and a destination's partner side compiled from its
//! config: which event types it takes and what each is sent as, its kind's checked options
//! (templates parsed), and what to do with a value that is missing.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::template::Missing;
use super::{callback, custom, hoqu, powerspace, sign, tracker};
use crate::contract::event::EventType;

/// The partner formats the relay speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Powerspace S2S (specs/powerspace-s2s.fr.txt).
    Powerspace,
    /// HOQU S2S postbacks (specs/hoqu-s2s.ru.txt).
    Hoqu,
    /// Publisher callbacks in the Awin Transaction Notification style.
    Callback,
    /// Tracker postbacks in the Espace-plus style.
    Tracker,
    /// Any partner, by configuration: a method, URL, headers and body of templates, or a
    /// preset from `presets/`.
    Template,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Powerspace,
        Kind::Hoqu,
        Kind::Callback,
        Kind::Tracker,
        Kind::Template,
    ];

    /// What the partner can be told: the values of a destination's `conversions` table (a
    /// template destination takes any text, which its `conversion` macro sends).
    pub fn conversions(self) -> &'static [&'static str] {
        match self {
            Kind::Powerspace => &["lead", "order"],
            Kind::Hoqu => &["conversion", "status_update", "customer"],
            Kind::Callback => &["transaction"],
            Kind::Tracker => &["registration", "trial", "signup", "rebill"],
            Kind::Template => &[],
        }
    }

    /// Which event types a destination receives, and as what, unless its config says
    /// otherwise. These follow the documents.
    pub fn default_routes(self) -> &'static [(EventType, &'static str)] {
        use EventType::*;
        match self {
            Kind::Powerspace => &[(Lead, "lead"), (Order, "order")],
            Kind::Hoqu => &[
                (Lead, "conversion"),
                (Order, "conversion"),
                (OrderStatus, "status_update"),
            ],
            Kind::Callback => &[(Order, "transaction")],
            Kind::Tracker => &[
                (Registration, "registration"),
                (Trial, "trial"),
                (Signup, "signup"),
                (Rebill, "rebill"),
            ],
            // Every type, as its name, unless the preset or the config says otherwise.
            Kind::Template => &[
                (Lead, "lead"),
                (Order, "order"),
                (OrderStatus, "order_status"),
                (Registration, "registration"),
                (Trial, "trial"),
                (Signup, "signup"),
                (Rebill, "rebill"),
                (CustomerStatus, "customer_status"),
            ],
        }
    }

    /// Whether the kind calls a fixed endpoint (`base_url`) rather than a URL template.
    pub fn has_base_url(self) -> bool {
        matches!(self, Kind::Powerspace | Kind::Hoqu)
    }

    /// What a status code means to this partner, where its document says.
    pub fn explain_status(self, status: u16) -> Option<&'static str> {
        match self {
            Kind::Powerspace => powerspace::explain_status(status),
            Kind::Hoqu | Kind::Callback | Kind::Tracker | Kind::Template => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Powerspace => "powerspace",
            Kind::Hoqu => "hoqu",
            Kind::Callback => "callback",
            Kind::Tracker => "tracker",
            Kind::Template => "template",
        })
    }
}

/// A destination's kind-specific settings, ready to render with.
#[derive(Clone, Debug, PartialEq)]
pub enum Format {
    Powerspace(powerspace::Powerspace),
    Hoqu(hoqu::Hoqu),
    Callback(callback::Callback),
    Tracker(tracker::Tracker),
    Template(custom::Custom),
}

/// A destination's partner side, compiled: everything rendering needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Partner {
    pub kind: Kind,
    pub format: Format,
    /// Event type -> what the partner is told.
    pub routes: BTreeMap<EventType, String>,
    pub missing: Missing,
    /// The signature its requests carry (callbacks, template destinations).
    pub signer: Option<sign::Signer>,
}

impl Default for Partner {
    /// What a destination holds until its config is compiled: a Powerspace partner with no
    /// endpoint and no routes, which renders nothing.
    fn default() -> Self {
        Partner {
            kind: Kind::Powerspace,
            format: Format::Powerspace(powerspace::compile("", powerspace::Options::default())),
            routes: BTreeMap::new(),
            missing: Missing::default(),
            signer: None,
        }
    }
}

/// A destination's partner settings as written in the config.
pub struct Spec<'a> {
    pub kind: Kind,
    pub base_url: Option<&'a str>,
    /// Event type -> conversion, over the kind's defaults.
    pub conversions: &'a BTreeMap<EventType, String>,
    /// As configured; `None` takes the preset's, or `empty`.
    pub missing: Option<Missing>,
    pub powerspace: Option<&'a powerspace::Options>,
    pub hoqu: Option<&'a hoqu::Options>,
    pub callback: Option<&'a callback::Options>,
    pub tracker: Option<&'a tracker::Options>,
    pub template: Option<&'a custom::Options>,
}

/// A problem in a destination's partner settings: the key (relative to the destination, as
/// `hoqu.extra.sub1`) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct KeyError {
    pub key: String,
    pub message: String,
}

pub(crate) fn key_err(key: impl Into<String>, message: impl Into<String>) -> KeyError {
    KeyError {
        key: key.into(),
        message: message.into(),
    }
}

/// Checks a destination's partner settings and compiles them.
pub fn compile(spec: &Spec<'_>) -> Result<Partner, KeyError> {
    let kind = spec.kind;
    let sections = [
        (Kind::Powerspace, spec.powerspace.is_some()),
        (Kind::Hoqu, spec.hoqu.is_some()),
        (Kind::Callback, spec.callback.is_some()),
        (Kind::Tracker, spec.tracker.is_some()),
        (Kind::Template, spec.template.is_some()),
    ];
    for (other, present) in sections {
        if present && other != kind {
            return Err(key_err(
                other.to_string(),
                format!("options for kind {other} on a destination of kind {kind}"),
            ));
        }
    }
    let base_url = match (spec.base_url, kind.has_base_url()) {
        (Some(b), true) => base_as_sent(b).map_err(|m| key_err("base_url", m))?,
        (None, true) => return Err(key_err("base_url", format!("required for kind {kind}"))),
        (Some(_), false) => {
            return Err(key_err(
                "base_url",
                format!("not used by kind {kind}: its URL is a template in [{kind}]"),
            ));
        }
        (None, false) => String::new(),
    };
    let base_url = base_url.as_str();
    // A template destination is read first: its preset says which types it takes.
    let custom = match kind {
        Kind::Template => Some(custom::compile(spec.template)?),
        _ => None,
    };
    let mut routes: BTreeMap<EventType, String> =
        match custom.as_ref().and_then(|c| c.routes.clone()) {
            Some(preset) => preset,
            None => kind
                .default_routes()
                .iter()
                .map(|(t, c)| (*t, (*c).to_owned()))
                .collect(),
        };
    for (t, c) in spec.conversions {
        if kind == Kind::Template {
            let key = format!("conversions.{t}");
            custom::check_conversion(&key, c)?;
        } else if !kind.conversions().contains(&c.as_str()) {
            return Err(key_err(
                format!("conversions.{t}"),
                format!(
                    "{kind} has no conversion {c:?} (it has: {})",
                    kind.conversions().join(", ")
                ),
            ));
        }
        routes.insert(*t, c.clone());
    }
    let mut missing = spec.missing;
    let mut signature = match (kind, spec.callback.and_then(|c| c.signature.as_ref())) {
        (Kind::Callback, Some(s)) => {
            let has_body = spec
                .callback
                .is_some_and(|c| c.method == super::HttpMethod::Post);
            Some(sign::compile(s, "callback.signature", has_body)?)
        }
        _ => None,
    };
    let format = match kind {
        Kind::Powerspace => Format::Powerspace(powerspace::compile(
            base_url,
            spec.powerspace.cloned().unwrap_or_default(),
        )),
        Kind::Hoqu => Format::Hoqu(hoqu::compile(
            spec.hoqu,
            base_url,
            spec.conversions,
            &mut routes,
        )?),
        Kind::Callback => Format::Callback(callback::compile(spec.callback)?),
        Kind::Tracker => Format::Tracker(tracker::compile(spec.tracker, &routes)?),
        Kind::Template => {
            let c = custom.expect("compiled above");
            missing = missing.or(c.missing);
            signature = c
                .signature
                .as_ref()
                .map(|s| sign::compile(s, "template.signature", c.custom.has_body()))
                .transpose()?;
            Format::Template(c.custom)
        }
    };
    let missing = missing.unwrap_or_default();
    if let (Missing::Fail, Format::Template(t)) = (missing, &format)
        && let Some(name) = t.omitting()
    {
        return Err(key_err(
            "missing",
            format!(
                "fail would refuse every event for which macro {name} has no value on purpose (its omit list); use skip, which leaves its field out"
            ),
        ));
    }
    if missing == Missing::Skip && kind != Kind::Template {
        return Err(key_err(
            "missing",
            format!(
                "skip is for template destinations, whose fields can be left out; {kind} takes empty or fail"
            ),
        ));
    }
    Ok(Partner {
        kind,
        format,
        routes,
        missing,
        signer: signature,
    })
}

/// An http(s) URL with a host and no query or fragment, written once as the HTTP client
/// sends it (scheme and host in lower case, no default port, no trailing slash), so that
/// every URL joined to it is shown as it is sent.
fn base_as_sent(v: &str) -> Result<String, String> {
    let url = url::Url::parse(v).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("must be an http:// or https:// URL".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not carry a query or fragment".into());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}
