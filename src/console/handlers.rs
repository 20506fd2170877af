//! The console's pages and actions: each reads what the request asks, checks it, gathers, and
//! renders. An action (a replay, a recovery) is previewed first, runs as a job once
//! confirmed, and is written to the journal.

use std::sync::Arc;

use axum::extract::{Path, Query, RawForm, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, NaiveDateTime, Utc};
use maud::Markup;

use super::jobs::State as JobState;
use super::view::{self, FilterForm, RecoverForm};
use super::{Console, gather};
use crate::dlq::{self, DeadLetter, Filter};
use crate::journal::{Action, Recoveries, Which, Window};
use crate::reason::Reason;

impl Console {
    /// A page, scrubbed of the configuration's secrets.
    fn page(&self, m: Markup) -> Response {
        let html = m.into_string();
        Html(self.config.secrets.scrub(&html).into_owned()).into_response()
    }

    fn scrubbed(&self, e: &dyn std::fmt::Display) -> String {
        self.config.secrets.scrub(&e.to_string()).into_owned()
    }

    fn destinations(&self) -> Vec<String> {
        self.config
            .destinations
            .iter()
            .map(|d| d.name.clone())
            .collect()
    }
}

/// Bad input: a clear message, and nothing changed.
fn bad(c: &Console, why: &str) -> Response {
    let mut r = c.page(view::refused(why));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r
}

fn failed(c: &Console, e: &dyn std::fmt::Display) -> Response {
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
            crate::event::check_id("event id", e).map_err(|e| e.to_string())?;
            Some(e.to_owned())
        }
    };
    for id in &ids {
        uuid::Uuid::parse_str(id).map_err(|_| format!("{id:?} is not a dead letter's id"))?;
    }
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
    let o = gather::overview(&c).await;
    c.page(view::overview(&o))
}

pub async fn dead_letters(State(c): State<Arc<Console>>, Query(f): Query<FilterForm>) -> Response {
    let filter = match filter_of(&f, Vec::new()) {
        Ok(filter) => filter,
        Err(why) => return bad(&c, &why),
    };
    match gather::dead_page(&c, &filter, f.page.unwrap_or(1)).await {
        Ok(mut p) => {
            // Scrubbed before rendering too: an escaped secret would not match afterwards.
            for s in &mut p.items {
                c.config.secrets.scrub_in_place(&mut s.detail);
            }
            c.page(view::dead(&p, &f, &c.destinations(), &c.auth.form_token))
        }
        Err(e) => failed(&c, &e),
    }
}

pub async fn letter(State(c): State<Arc<Console>>, Path(id): Path<String>) -> Response {
    if uuid::Uuid::parse_str(&id).is_err() {
        return bad(&c, &format!("{id:?} is not a dead letter's id"));
    }
    let mut l = match gather::letter(&c, &id).await {
        Ok(Some(l)) => l,
        Ok(None) => {
            let mut r = c.page(view::error_page(
                404,
                "No such dead letter in the queue (replayed already?).",
            ));
            *r.status_mut() = StatusCode::NOT_FOUND;
            return r;
        }
        Err(e) => return failed(&c, &e),
    };
    if let DeadLetter::Envelope(e) = &mut l {
        e.scrub(&c.config.secrets);
    }
    let (event_id, destination) = match &l {
        DeadLetter::Envelope(e) => (e.event_id.clone(), e.destination.clone()),
        DeadLetter::Raw(r) => (r.event_id.clone(), None),
    };
    let event = match &l {
        DeadLetter::Envelope(e) => e.event.as_ref().map(|ev| pretty(ev.get())),
        DeadLetter::Raw(r) => std::str::from_utf8(&r.body).ok().map(pretty),
    }
    .map(|e| c.config.secrets.scrub(&e).into_owned());
    let journal = match &event_id {
        Some(e) => gather::timeline_of(&c, e, destination.as_deref())
            .await
            .ok()
            .flatten(),
        None => None,
    };
    c.page(view::letter(
        &l,
        event.as_deref(),
        journal.as_deref(),
        &c.auth.form_token,
    ))
}

fn pretty(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| json.to_owned())
}

/// A form's fields, repeated ones kept (`ids`).
fn fields(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

pub async fn replay(State(c): State<Arc<Console>>, RawForm(body): RawForm) -> Response {
    let fs = fields(&body);
    if field(&fs, "csrf") != c.auth.form_token {
        return super::auth::refused(
            StatusCode::FORBIDDEN,
            "Refused: the form is not this console's (reload the page and try again).",
        );
    }
    let form = FilterForm {
        destination: field(&fs, "destination").into(),
        reason: field(&fs, "reason").into(),
        since: field(&fs, "since").into(),
        until: field(&fs, "until").into(),
        event_id: field(&fs, "event_id").into(),
        page: None,
    };
    let ids: Vec<String> = fs
        .iter()
        .filter(|(k, _)| k == "ids")
        .map(|(_, v)| v.clone())
        .collect();
    let chosen = match field(&fs, "mode") {
        "chosen" => true,
        "filter" => false,
        other => return bad(&c, &format!("mode {other:?}: chosen or filter")),
    };
    if chosen && ids.is_empty() {
        return bad(&c, "Choose at least one letter to replay.");
    }
    let filter = match filter_of(&form, if chosen { ids.clone() } else { Vec::new() }) {
        Ok(f) => f,
        Err(why) => return bad(&c, &why),
    };
    let hidden = maud::html! {
        input type="hidden" name="mode" value=(if chosen { "chosen" } else { "filter" });
        @for id in &ids { input type="hidden" name="ids" value=(id); }
        (form.hidden())
    };
    if field(&fs, "confirm") != "yes" {
        return replay_preview(&c, &filter, hidden).await;
    }
    let described = serde_json::json!({
        "destination": filter.destination, "reason": filter.reason.map(|r| r.as_str()),
        "since": filter.since, "until": filter.until, "event_id": filter.event_id, "ids": filter.ids,
    });
    let id = c.jobs.start("Replaying dead letters".into(), 0);
    let console = c.clone();
    tokio::spawn(async move { run_replay(console, id, filter, described).await });
    Redirect::to(&format!("/jobs/{id}")).into_response()
}

async fn replay_preview(c: &Console, filter: &Filter, hidden: Markup) -> Response {
    let conn = match crate::broker::connect(&c.config.broker.url, "console").await {
        Ok(conn) => conn,
        Err(e) => return failed(c, &e),
    };
    let mut to: std::collections::BTreeMap<String, u64> = Default::default();
    let max = c.config.worker.max_event_bytes;
    let report = dlq::replay(&conn, &c.topology, max, filter, None, true, |s, chosen| {
        if chosen {
            let d = s
                .destination
                .clone()
                .unwrap_or_else(|| "(the events queue)".into());
            *to.entry(d).or_default() += 1;
        }
    })
    .await;
    let _ = conn.close(200, "done".into()).await;
    match report {
        Ok(r) => {
            let said = format!(
                "{} of {} dead letters would be replayed, each with a fresh budget. Nothing has changed yet.",
                r.matched, r.examined
            );
            let to: Vec<_> = to.into_iter().collect();
            c.page(view::preview(
                "Replay: preview",
                &said,
                &to,
                "/replay",
                hidden,
                &c.auth.form_token,
                r.matched > 0,
            ))
        }
        Err(e) => failed(c, &e),
    }
}

async fn run_replay(c: Arc<Console>, id: u64, filter: Filter, described: serde_json::Value) {
    let result = async {
        let conn = crate::broker::connect(&c.config.broker.url, "console").await?;
        let total = dlq::depth(&conn.create_channel().await?, &c.topology.dead).await?;
        c.jobs.update(id, |j| j.total = u64::from(total));
        let max = c.config.worker.max_event_bytes;
        let report = dlq::replay(&conn, &c.topology, max, &filter, None, false, |_, _| {
            c.jobs.update(id, |j| j.done += 1);
        })
        .await;
        let _ = conn.close(200, "done".into()).await;
        report
    }
    .await;
    match result {
        Ok(r) => {
            act(&c, "replay", described, r.replayed);
            let said = format!(
                "Replayed {} dead letter(s) of {} examined; the other {} stay in {}.",
                r.replayed,
                r.examined,
                r.examined.saturating_sub(r.replayed),
                c.topology.dead
            );
            c.jobs.update(id, |j| {
                j.state = JobState::Done;
                j.result = Some(said);
            });
        }
        Err(e) => {
            let said = c.scrubbed(&e);
            c.jobs.update(id, |j| {
                j.state = JobState::Failed;
                j.result = Some(said);
            });
        }
    }
}

/// Writes an action to the journal; a journal that cannot take it is logged.
fn act(c: &Console, action: &str, filter: serde_json::Value, count: u64) {
    if !c.config.journal.enabled {
        return;
    }
    let a = Action {
        at: Utc::now(),
        who: "console".into(),
        action: action.into(),
        filter: filter.to_string(),
        count,
    };
    if let Err(e) = Recoveries::open(&c.config.journal.path).and_then(|j| j.act(&a)) {
        tracing::error!(message = "cannot write the action to the journal", action, error = %c.scrubbed(&e));
    }
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
    if let Err(e) = crate::event::check_id("the id", q) {
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

/// The window a recovery form asks for, or why it cannot be.
pub fn window_of(f: &RecoverForm, known: &[String]) -> Result<Window, String> {
    if !known.contains(&f.destination) {
        return Err(format!(
            "destination {:?} is not in the configuration (its destinations: {})",
            f.destination,
            known.join(", ")
        ));
    }
    let since = parse_time("since", &f.since)?.ok_or("since: give the window's start")?;
    let until = parse_time("until", &f.until)?;
    let outcome = match f.outcome.as_str() {
        "" | "delivered" => Which::Delivered,
        "any" => Which::Any,
        other => return Err(format!("{other:?}: delivered or any")),
    };
    Window::new(f.destination.clone(), since, until, outcome).map_err(|e| e.to_string())
}

pub async fn recover(State(c): State<Arc<Console>>, RawForm(body): RawForm) -> Response {
    let f: RecoverForm = match serde_urlencoded_form(&body) {
        Some(f) => f,
        None => return bad(&c, "The form could not be read."),
    };
    if f.csrf != c.auth.form_token {
        return super::auth::refused(
            StatusCode::FORBIDDEN,
            "Refused: the form is not this console's (reload the page and try again).",
        );
    }
    let window = match window_of(&f, &c.destinations()) {
        Ok(w) => w,
        Err(why) => return bad(&c, &why),
    };
    let path = c.config.journal.path.clone();
    if !c.config.journal.enabled || !path.exists() {
        return bad(&c, "There is no journal to recover from yet.");
    }
    let open = || Recoveries::open(&path);
    if f.confirm != "yes" {
        let journal = match open() {
            Ok(j) => j,
            Err(e) => return failed(&c, &e),
        };
        return match crate::recover::recover(&c.config, journal, &window, "console", true, |_| {})
            .await
        {
            Ok(r) => {
                let said = crate::recover::said(&r, &window, true);
                let to = vec![(window.destination.clone(), r.to_send)];
                c.page(view::preview(
                    "Recover: preview",
                    &said,
                    &to,
                    "/recover",
                    f.hidden(),
                    &c.auth.form_token,
                    r.to_send > 0,
                ))
            }
            Err(e) => failed(&c, &e),
        };
    }
    let id = c
        .jobs
        .start(format!("Recovering {}", window.destination), 0);
    let console = c.clone();
    tokio::spawn(async move {
        let c = console;
        let result = match Recoveries::open(&c.config.journal.path) {
            Ok(journal) => {
                let progress = |r: &crate::recover::Report| {
                    c.jobs.update(id, |j| {
                        j.done = r.sent;
                        j.total = r.to_send;
                    })
                };
                crate::recover::recover(&c.config, journal, &window, "console", false, progress)
                    .await
                    .map_err(|e| c.scrubbed(&e))
            }
            Err(e) => Err(c.scrubbed(&e)),
        };
        c.jobs.update(id, |j| match result {
            Ok(r) => {
                j.done = r.sent;
                j.total = r.to_send;
                j.state = JobState::Done;
                j.result = Some(crate::recover::said(&r, &window, false));
            }
            Err(e) => {
                j.state = JobState::Failed;
                j.result = Some(e);
            }
        });
    });
    Redirect::to(&format!("/jobs/{id}")).into_response()
}

fn serde_urlencoded_form<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    let map: serde_json::Map<String, serde_json::Value> = fields(body)
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    serde_json::from_value(serde_json::Value::Object(map)).ok()
}

pub async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        view::CSS,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_filters_and_windows_are_checked() {
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
        let known = vec!["hoqu".to_owned()];
        let w = |d: &str, since: &str, until: &str| RecoverForm {
            destination: d.into(),
            since: since.into(),
            until: until.into(),
            ..RecoverForm::default()
        };
        assert!(
            window_of(&w("nope", "2026-11-20T14:00:00Z", ""), &known)
                .unwrap_err()
                .contains("\"nope\"")
        );
        assert!(window_of(&w("hoqu", "", ""), &known).is_err());
        assert!(
            window_of(
                &w("hoqu", "2026-11-20T16:00:00Z", "2026-11-20T14:00:00Z"),
                &known
            )
            .is_err()
        );
        assert!(window_of(&w("hoqu", "2026-11-20T14:00:00Z", ""), &known).is_ok());
    }
}
