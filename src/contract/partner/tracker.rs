//! Tracker postbacks in the Espace-plus style (specs/espace-plus-postback.en.txt): the
//! affiliate's link carries `tracker=trID_..._trID` holding its own values in a structure it
//! chose (`#affid#-#TransID#-#clickId#-#whateverId#`, or its own ID first:
//! `1234567_#affid#-...`). On a conversion the relay calls the affiliate's postback URL,
//! giving those values back through `#name#` macros, together with the event's fields.
//!
//! Conversion kinds: free registration, trial, signup (the trial converted: a sale) and rebill;
//! one URL for all, or one per kind.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::template::{Missing, Syntax, Template};
use super::{KeyError, Kind, key_err};
use super::{RenderError, fields, required};
use crate::contract::event::{ConversionEvent, EventType};

const PREFIX: &str = "trID_";
const SUFFIX: &str = "_trID";

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// The affiliate's structure inside `trID_..._trID`, e.g.
    /// `#affid#-#TransID#-#clickId#-#whateverId#`.
    pub structure: String,
    /// The postback URL for every conversion kind.
    #[serde(default)]
    pub url: Option<String>,
    /// Postback URLs per conversion kind (`registration`, `trial`, `signup`, `rebill`),
    /// taking precedence over `url`.
    #[serde(default)]
    pub urls: BTreeMap<String, String>,
}

/// A checked tracker destination.
#[derive(PartialEq, Clone, Debug)]
pub struct Tracker {
    structure: Template,
    /// Conversion kind -> postback URL template.
    urls: BTreeMap<String, Template>,
}

pub fn compile(
    o: Option<&Options>,
    routes: &BTreeMap<EventType, String>,
) -> Result<Tracker, KeyError> {
    let at = |k: &str| k.to_owned();
    let o =
        o.ok_or_else(|| key_err(at("tracker"), "required for kind tracker (structure, url)"))?;
    let key = at("tracker.structure");
    let structure = Template::parse(&o.structure, Syntax::Hash, &["*"])
        .map_err(|e| key_err(&key, e.to_string()))?;
    let names: Vec<&str> = structure.placeholders().collect();
    if names.is_empty() {
        return Err(key_err(&key, "name at least one value, like #clickId#"));
    }
    if structure.has_adjacent_placeholders() {
        return Err(key_err(
            &key,
            "two #values# need a separator between them to be told apart",
        ));
    }
    for n in &names {
        if fields::EVENT_FIELDS.contains(n) || *n == "conversion" || n.starts_with("params.") {
            return Err(key_err(
                &key,
                format!("#{n}# is an event field name; call the tracker's value something else"),
            ));
        }
        if names.iter().filter(|m| *m == n).count() > 1 {
            return Err(key_err(&key, format!("#{n}# appears twice")));
        }
    }
    let mut known: Vec<&str> = fields::EVENT_FIELDS.to_vec();
    known.push("conversion");
    known.extend(&names);
    let parse = |k: String, text: &str| -> Result<Template, KeyError> {
        let t = Template::parse(text, Syntax::Hash, &known)
            .map_err(|e| key_err(&k, e.to_string()))?
            .as_sent()
            .map_err(|e| key_err(&k, e))?;
        // Tracker values come from the affiliate's link: they must never choose the host.
        t.fixed_origin().map_err(|e| key_err(&k, e))?;
        Ok(t)
    };
    let default = o
        .url
        .as_deref()
        .map(|u| parse(at("tracker.url"), u))
        .transpose()?;
    let mut urls = BTreeMap::new();
    for (conv, text) in &o.urls {
        if !Kind::Tracker.conversions().contains(&conv.as_str()) {
            return Err(key_err(
                at(&format!("tracker.urls.{conv}")),
                format!(
                    "not a conversion kind (kinds: {})",
                    Kind::Tracker.conversions().join(", ")
                ),
            ));
        }
        urls.insert(
            conv.clone(),
            parse(at(&format!("tracker.urls.{conv}")), text)?,
        );
    }
    for conv in routes.values() {
        if !urls.contains_key(conv) {
            let t = default.clone().ok_or_else(|| {
                key_err(
                    at("tracker.url"),
                    format!("no postback URL for {conv}: set tracker.url or tracker.urls.{conv}"),
                )
            })?;
            urls.insert(conv.clone(), t);
        }
    }
    Ok(Tracker { structure, urls })
}

impl Tracker {
    /// The affiliate's values, read from the event's `trID_..._trID` tracker.
    pub fn parse_tracker(&self, tracker: &str) -> Result<Vec<(String, String)>, RenderError> {
        let inner = tracker
            .strip_prefix(PREFIX)
            .and_then(|t| t.strip_suffix(SUFFIX))
            .ok_or_else(|| {
                RenderError::Invalid(format!(
                    "attribution.tracker {tracker:?} is not wrapped in {PREFIX}..{SUFFIX}"
                ))
            })?;
        self.structure.extract(inner).map_err(|why| {
            RenderError::Invalid(format!(
                "attribution.tracker {tracker:?} does not fit the affiliate's structure: {why}"
            ))
        })
    }

    pub(crate) fn render(
        &self,
        event: &ConversionEvent,
        conversion: &str,
        missing: Missing,
    ) -> Result<String, RenderError> {
        let tracker = event
            .attribution
            .as_ref()
            .and_then(|a| a.tracker.as_deref());
        let values =
            self.parse_tracker(required(Kind::Tracker, "attribution.tracker", tracker)?)?;
        let url = self
            .urls
            .get(conversion)
            .ok_or_else(|| RenderError::UnsupportedType {
                kind: Kind::Tracker,
                event_type: event.kind.to_string(),
            })?;
        let value = |name: &str| {
            if name == "conversion" {
                return Some(conversion.to_owned());
            }
            match values.iter().find(|(n, _)| n == name) {
                Some((_, v)) => Some(v.clone()),
                None => fields::value(event, name),
            }
        };
        url.render_url(&value, missing)
    }
}
