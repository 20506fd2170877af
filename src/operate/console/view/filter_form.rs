//! The dead letters' filter as the console's forms give it back and carry it on.

use maud::{Markup, html};

/// The dead letters' filter, as the form gives it back.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct FilterForm {
    pub destination: String,
    pub reason: String,
    pub since: String,
    pub until: String,
    pub event_id: String,
    pub page: Option<u64>,
}

impl FilterForm {
    /// As hidden form fields, to carry the filter into an action.
    pub fn hidden(&self) -> Markup {
        html! {
            input type="hidden" name="destination" value=(self.destination);
            input type="hidden" name="reason" value=(self.reason);
            input type="hidden" name="since" value=(self.since);
            input type="hidden" name="until" value=(self.until);
            input type="hidden" name="event_id" value=(self.event_id);
        }
    }

    pub(super) fn query(&self, page: u64) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("destination", &self.destination),
            ("reason", &self.reason),
            ("since", &self.since),
            ("until", &self.until),
            ("event_id", &self.event_id),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        q.append_pair("page", &page.to_string());
        q.finish()
    }
}
