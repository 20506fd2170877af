//! The console's pages: each reads what the request asks, checks it, gathers, and renders.
//! The actions (replay, recovery) are in `actions`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, Utc};
use maud::Markup;

use super::view::{self, FilterForm};
use super::{Console, gather};
use crate::contract::reason::Reason;
use crate::operate::dlq::{DeadLetter, Filter};

impl Console {
    /// A page, scrubbed of the configuration's secrets (also where the page escaped them),
    /// with every control or invisible character shown escaped ([`crate::contract::text::printable_lines`]):
    /// the page's own markup has none, so each one found came from a value.
    pub(super) fn page(&self, m: Markup) -> Response {
        let html = m.into_string();
        let clean = self.page_secrets.scrub(&html);
        Html(crate::contract::text::printable_lines(&clean).into_owned()).into_response()
    }

    pub(super) fn scrubbed(&self, e: &dyn std::fmt::Display) -> String {
        self.config.secrets.scrub(&e.to_string()).into_owned()
    }

    pub(super) fn destinations(&self) -> Vec<String> {
        self.config
            .destinations
            .iter()
            .map(|d| d.name.clone())
            .collect()
    }
}

/// Bad input: a clear message, and nothing changed.
pub(super) fn bad(c: &Console, why: &str) -> Response {
    let mut r = c.page(view::refused(why));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r
}

pub(super) fn failed(c: &Console, e: &dyn std::fmt::Display) -> Response {
    let mut r = c.page(view::error_page(502, &c.scrubbed(e)));
    *r.status_mut() = StatusCode::BAD_GATEWAY;
    r
}

/// A time as an operator types it: RFC 3339, or `YYYY-MM-DDTHH:MM[:SS]` in UTC.
pub fn parse_time(name: &str, v: &str) -> Result<Option<DateTime<Utc>>, String> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, f) {
            return Ok(Some(t.and_utc()));
        }
    }
    Err(format!(
        "{name}: {v:?} is not a time (RFC 3339, such as 2026-11-20T14:00:00Z)"
    ))
}

/// A dead letter's id as the relay writes it (a UUID, lower case, hyphenated), from any way
/// of writing a UUID.
pub fn letter_id(id: &str) -> Result<String, String> {
    uuid::Uuid::parse_str(id.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| format!("{id:?} is not a dead letter's id"))
}

/// The dead-letter filter a form asks for, or why it cannot be.
pub fn filter_of(f: &FilterForm, ids: Vec<String>) -> Result<Filter, String> {
    let since = parse_time("since", &f.since)?;
    let until = parse_time("until", &f.until)?;
    if let (Some(s), Some(u)) = (since, until)
        && u < s
    {
        return Err(format!("until ({u}) is before since ({s})"));
    }
    let reason = match f.reason.trim() {
        "" => None,
        r => Some(r.parse::<Reason>()?),
    };
    let event_id = match f.event_id.trim() {
        "" => None,
        e => {
            crate::contract::event::check_id("event id", e).map_err(|e| e.to_string())?;
            Some(e.to_owned())
        }
    };
    // Written as the relay writes them (lower case, hyphens), so that an id pasted in
    // upper case or without hyphens finds its letter.
    let ids = ids
        .iter()
        .map(|id| letter_id(id))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Filter {
        destination: Some(f.destination.trim())
            .filter(|d| !d.is_empty())
            .map(str::to_owned),
        reason,
        since,
        until,
        event_id,
        ids,
    })
}

pub async fn overview(State(c): State<Arc<Console>>) -> Response {
    let mut o = gather::overview(&c).await;
    // Scrubbed before rendering: an escaped secret would not match afterwards.
    for n in &mut o.notes {
        c.config.secrets.scrub_in_place(n);
    }
    c.page(view::overview(&o, &c.auth.form_token))
}

pub async fn dead_letters(State(c): State<Arc<Console>>, Query(f): Query<FilterForm>) -> Response {
    let filter = match filter_of(&f, Vec::new()) {
        Ok(filter) => filter,
        Err(why) => return bad(&c, &why),
    };
    match super::letters::dead_page(&c, &filter, f.page.unwrap_or(1)).await {
        Ok(mut p) => {
            // Scrubbed before rendering too: an escaped secret would not match afterwards.
            for s in &mut p.items {
                c.config.secrets.scrub_in_place(&mut s.detail);
            }
            for n in &mut p.notes {
                c.config.secrets.scrub_in_place(n);
            }
            c.page(view::dead(&p, &f, &c.destinations(), &c.auth.form_token))
        }
        Err(e) => failed(&c, &e),
    }
}

pub async fn letter(State(c): State<Arc<Console>>, Path(id): Path<String>) -> Response {
    let id = match letter_id(&id) {
        Ok(id) => id,
        Err(why) => return bad(&c, &why),
    };
    let (mut l, changed) = match super::letters::letter(&c, &id).await {
        Ok(Some(found)) => (found.letter, found.changed),
        Ok(None) => {
            let mut r = c.page(view::error_page(
                404,
                "No such dead letter (if the index differs from the queue, reindex from the dead letters' page).",
            ));
            *r.status_mut() = StatusCode::NOT_FOUND;
            return r;
        }
        Err(e) => return failed(&c, &e),
    };
    match &mut l {
        DeadLetter::Envelope(e) => e.scrub(&c.config.secrets),
        DeadLetter::Raw(r) => {
            for text in [&mut r.note, &mut r.event_id, &mut r.message_id]
                .into_iter()
                .flatten()
            {
                c.config.secrets.scrub_in_place(text);
            }
        }
    }
    let (event_id, destination) = match &l {
        DeadLetter::Envelope(e) => (e.event_id.clone(), e.destination.clone()),
        DeadLetter::Raw(r) => (r.event_id.clone(), None),
    };
    let event = original(&l).map(|e| c.config.secrets.scrub(&e).into_owned());
    let journal = match &event_id {
        Some(e) => gather::timeline_of(&c, e, destination.as_deref())
            .await
            .ok()
            .flatten(),
        None => None,
    };
    c.page(view::letter(
        &l,
        changed.as_ref(),
        event.as_deref(),
        journal.as_deref(),
        (&c.auth.form_token, c.config.console.trace_url.as_deref()),
    ))
}

/// The letter's original body as the page shows it: JSON pretty-printed, other text as it
/// is, and bytes that are not text in base64, said so.
pub fn original(l: &DeadLetter) -> Option<String> {
    use base64::Engine as _;
    let raw = |body: &[u8]| match std::str::from_utf8(body) {
        Ok(text) => pretty(text),
        Err(_) => format!(
            "(not text; base64)\n{}",
            base64::engine::general_purpose::STANDARD.encode(body)
        ),
    };
    match l {
        DeadLetter::Envelope(e) => match (&e.event, &e.raw_body) {
            (Some(ev), _) => Some(pretty(ev.get())),
            (None, Some(r)) if r.encoding == "base64" => {
                Some(format!("(not text; base64)\n{}", r.data))
            }
            (None, Some(r)) => Some(r.data.clone()),
            (None, None) => None,
        },
        DeadLetter::Raw(r) => Some(raw(&r.body)),
    }
}

fn pretty(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| json.to_owned())
}

pub async fn job(State(c): State<Arc<Console>>, Path(id): Path<u64>) -> Response {
    match c.jobs.get(id) {
        Some(j) => c.page(view::job(&j)),
        None => {
            let mut r = c.page(view::error_page(404, "No such job."));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}

#[derive(serde::Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
}

pub async fn search(State(c): State<Arc<Console>>, Query(s): Query<SearchQuery>) -> Response {
    let q = s.q.trim();
    if q.is_empty() {
        return c.page(view::search("", None, None));
    }
    if let Err(e) = crate::contract::event::check_id("the id", q) {
        return bad(&c, &e.to_string());
    }
    match gather::search(&c, q).await {
        Ok(Some(found)) => c.page(view::search(q, Some(&found), None)),
        Ok(None) => c.page(view::search(q, None, Some("No journal yet."))),
        Err(e) => failed(&c, &e),
    }
}

pub async fn recover_form(State(c): State<Arc<Console>>) -> Response {
    c.page(view::recover_form(&c.destinations(), &c.auth.form_token))
}

/// The stylesheet: served without a token too (the login page uses it), with the headers
/// every page has.
pub async fn css() -> Response {
    let mut res = (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        view::CSS,
    )
        .into_response();
    super::auth::secure(res.headers_mut());
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_filters_are_checked() {
        assert_eq!(parse_time("since", "").unwrap(), None);
        let t = parse_time("since", "2026-11-20T14:00").unwrap().unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-20T14:00:00+00:00");
        assert!(
            parse_time("since", "2026-11-20T14:00:00+02:00")
                .unwrap()
                .is_some()
        );
        assert!(
            parse_time("since", "yesterday")
                .unwrap_err()
                .contains("since")
        );
        let f = |since: &str, until: &str| FilterForm {
            since: since.into(),
            until: until.into(),
            ..FilterForm::default()
        };
        assert!(
            filter_of(&f("2026-11-20T16:00:00Z", "2026-11-20T14:00:00Z"), vec![])
                .unwrap_err()
                .contains("before")
        );
        assert!(filter_of(&f("", ""), vec!["not-an-id".into()]).is_err());
        let bad_id = FilterForm {
            event_id: "a\u{1}".into(),
            ..FilterForm::default()
        };
        assert!(filter_of(&bad_id, vec![]).is_err());
    }

    #[test]
    fn a_letter_id_in_any_spelling_of_a_uuid_is_found_as_written() {
        let written = "6f1c2a4e-9b3d-4e5f-8a7b-1c2d3e4f5a6b";
        for spelt in [
            written,
            "6F1C2A4E-9B3D-4E5F-8A7B-1C2D3E4F5A6B",
            "6f1c2a4e9b3d4e5f8a7b1c2d3e4f5a6b",
            " 6f1c2a4e-9b3d-4e5f-8a7b-1c2d3e4f5a6b ",
        ] {
            assert_eq!(letter_id(spelt).unwrap(), written, "{spelt:?}");
        }
        let f = filter_of(&FilterForm::default(), vec![written.to_uppercase()]).unwrap();
        assert_eq!(f.ids, vec![written.to_owned()]);
        assert!(
            letter_id("6f1c2a4e")
                .unwrap_err()
                .contains("not a dead letter")
        );
    }
}
