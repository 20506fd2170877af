//! The form a replay or a discard is asked with: the letters chosen, or a filter; a preview
//! first, then the confirmation. Both actions read it the same way.

use axum::response::Response;
use chrono::Utc;
use maud::Markup;

use super::Console;
use super::forms::{field, fields, not_ours};
use super::handlers::{bad, filter_of, parse_time};
use super::view::FilterForm;
use crate::operate::dlq::Filter;

/// What a replay or a discard form asks for.
pub(super) struct Asked {
    pub filter: Filter,
    /// Whether this is the confirmation (otherwise the preview).
    pub confirmed: bool,
    /// The end a preview gave a filter that had none, carried by its confirmation.
    pub pinned: Option<String>,
    /// The form's fields again, for the preview's confirmation.
    pub hidden: Markup,
}

impl Asked {
    /// Reads the posted `body` of action `verb`: refused unless the form is this console's,
    /// then as [`Asked::read`] does.
    pub fn posted(c: &Console, body: &[u8], verb: &str) -> Result<Asked, Box<Response>> {
        let fs = fields(body);
        if let Some(refused) = not_ours(c, &fs) {
            return Err(Box::new(refused));
        }
        Asked::read(c, &fs, verb)
    }

    /// Reads the form of action `verb` ("replay", "discard"); a form that cannot be is
    /// answered with why (boxed: a response is large).
    fn read(c: &Console, fs: &[(String, String)], verb: &str) -> Result<Asked, Box<Response>> {
        let mut form = FilterForm {
            destination: field(fs, "destination").into(),
            reason: field(fs, "reason").into(),
            since: field(fs, "since").into(),
            until: field(fs, "until").into(),
            event_id: field(fs, "event_id").into(),
            page: None,
        };
        let ids: Vec<String> = fs
            .iter()
            .filter(|(k, _)| k == "ids")
            .map(|(_, v)| v.clone())
            .collect();
        let chosen = match field(fs, "mode") {
            "chosen" => true,
            "filter" => false,
            other => {
                return Err(Box::new(bad(
                    c,
                    &format!("mode {other:?}: chosen or filter"),
                )));
            }
        };
        if chosen && ids.is_empty() {
            return Err(Box::new(bad(
                c,
                &format!("Choose at least one letter to {verb}."),
            )));
        }
        let confirmed = field(fs, "confirm") == "yes";
        // A preview of a filter with no end pins its end to now, and the confirmation carries
        // it: the action then takes the letters the preview counted, not those dead-lettered
        // since. Without it, a confirmation sent twice (a double click, a resubmitted form)
        // replayed the letters the first replay's partner had refused again, and called the
        // partner again.
        let now = Utc::now();
        let since = parse_time("since", &form.since).ok().flatten();
        let pinned = !chosen
            && !confirmed
            && form.until.trim().is_empty()
            && since.is_none_or(|since| since <= now);
        if pinned {
            form.until = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        }
        let filter = filter_of(&form, if chosen { ids.clone() } else { Vec::new() })
            .map_err(|why| Box::new(bad(c, &why)))?;
        let hidden = maud::html! {
            input type="hidden" name="mode" value=(if chosen { "chosen" } else { "filter" });
            @for id in &ids { input type="hidden" name="ids" value=(id); }
            (form.hidden())
        };
        Ok(Asked {
            filter,
            confirmed,
            pinned: pinned.then_some(form.until),
            hidden,
        })
    }

    /// The filter as the journal's actions record it.
    pub fn described(&self) -> serde_json::Value {
        let f = &self.filter;
        serde_json::json!({
            "destination": f.destination, "reason": f.reason.map(|r| r.as_str()),
            "since": f.since, "until": f.until, "event_id": f.event_id, "ids": f.ids,
        })
    }
}
