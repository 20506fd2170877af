//! The pages, rendered on the server from what `gather` found. Every value is escaped by the
//! template; the handlers scrub the configuration's secrets before and after.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::gather::{Counts, DeadPage, Overview};
use super::jobs::{Job, State};
use crate::dlq::DeadLetter;
use crate::journal::timeline::{Timeline, answer, shown};
use crate::reason::Reason;

pub const CSS: &str = r#"
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f5f6f8; }
header { background: #1d2330; color: #fff; padding: 10px 24px; display: flex; gap: 24px; align-items: center; }
header a { color: #cfd6e4; text-decoration: none; } header a:hover { color: #fff; }
header strong { font-size: 16px; margin-right: 12px; }
main { padding: 16px 24px; max-width: 1200px; }
h1 { font-size: 20px; margin: 8px 0 16px; } h2 { font-size: 16px; margin: 24px 0 8px; }
table { border-collapse: collapse; background: #fff; width: 100%; margin-bottom: 12px; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #e3e6eb; vertical-align: top; }
th { background: #eef0f4; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #137333; } .bad { color: #b3261e; } .warn { color: #9a6700; } .muted { color: #6b7280; }
pre { background: #fff; border: 1px solid #e3e6eb; padding: 10px; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
form.inline { display: inline; }
.filters { display: flex; flex-wrap: wrap; gap: 8px; align-items: end; margin-bottom: 12px; }
.filters label { display: flex; flex-direction: column; font-size: 12px; color: #4b5563; }
input, select, button { font: inherit; padding: 4px 6px; }
button { background: #1d4ed8; color: #fff; border: 0; border-radius: 4px; padding: 6px 12px; cursor: pointer; }
button.secondary { background: #6b7280; } button.danger { background: #b3261e; }
.note { background: #fff8e1; border: 1px solid #f2d675; padding: 8px 12px; margin-bottom: 12px; }
.panel { background: #fff; border: 1px solid #e3e6eb; padding: 12px 16px; margin-bottom: 12px; }
dl { display: grid; grid-template-columns: 180px 1fr; gap: 4px 12px; margin: 0; } dt { color: #4b5563; }
"#;

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · postback-relay" }
                link rel="stylesheet" href="/console.css";
            }
            body {
                header {
                    strong { "postback-relay" }
                    a href="/" { "Overview" }
                    a href="/dead" { "Dead letters" }
                    a href="/search" { "Search" }
                    a href="/recover" { "Recover" }
                }
                main { (body) }
            }
        }
    }
}

pub fn error_page(status: u16, why: &str) -> Markup {
    layout(
        "Error",
        html! { h1 { "Error " (status) } p.bad #error { (why) } },
    )
}

pub fn refused(why: &str) -> Markup {
    layout(
        "Refused",
        html! { h1 { "Nothing changed" } p.bad #error { (why) } p { a href="/" { "Back to the overview" } } },
    )
}

fn at(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".into())
}

/// An age in words: `3 h 12 min`.
pub fn age(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

fn age_of(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| age((Utc::now() - t).num_seconds() as f64))
        .unwrap_or_else(|| "-".into())
}

fn rate(c: Counts) -> Markup {
    match c.rate() {
        None => html! { span.muted { "-" } },
        Some(r) if r >= 99.0 => html! { span.ok { (format!("{r:.1} %")) } },
        Some(r) if r >= 90.0 => html! { span.warn { (format!("{r:.1} %")) } },
        Some(r) => html! { span.bad { (format!("{r:.1} %")) } },
    }
}

fn circuit(state: Option<f64>) -> Markup {
    match state {
        Some(0.0) => html! { span.ok { "closed" } },
        Some(1.0) => html! { span.warn { "half-open" } },
        Some(_) => html! { span.bad { "open" } },
        None => html! { span.muted { "unknown" } },
    }
}

pub fn overview(o: &Overview) -> Markup {
    layout(
        "Overview",
        html! {
            h1 { "Overview" }
            @for n in &o.notes { p.note { (n) } }
            table #destinations {
                tr {
                    th { "destination" } th { "kind" }
                    th.num { "success (1 h)" } th.num { "delivered (1 h)" } th.num { "dead letters (1 h)" }
                    th.num { "success (24 h)" } th.num { "delivered (24 h)" } th.num { "dead letters (24 h)" }
                    th { "circuit" }
                }
                @for r in &o.rows {
                    tr id={ "dest-" (r.name) } {
                        td { a href={ "/dead?destination=" (r.name) } { (r.name) } }
                        td { (r.kind) }
                        td.num { (rate(r.hour)) }
                        td.num.delivered-hour { (r.hour.delivered) }
                        td.num.dead-hour { (r.hour.dead) }
                        td.num { (rate(r.day)) }
                        td.num.delivered-day { (r.day.delivered) }
                        td.num.dead-day { (r.day.dead) }
                        td.circuit { (circuit(r.circuit)) }
                    }
                }
            }
            h2 { "Backlog" }
            table #queues {
                tr { th { "queue" } th.num { "messages" } }
                @for (q, n) in &o.queues {
                    tr {
                        td { (q) }
                        td.num { @match n { Some(n) => (n), None => span.muted { "-" } } }
                    }
                }
            }
            p #oldest {
                "Oldest dead letter: "
                @match (o.oldest_dead_age, o.dead_depth()) {
                    (Some(a), _) if a > 0.0 => strong { (age(a)) },
                    (_, Some(0)) => "none",
                    (Some(_), _) => span.muted { "not measured yet (the relay samples every worker.queue_sample_secs)" },
                    (None, _) => span.muted { "unknown" },
                }
            }
        },
    )
}

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

    fn query(&self, page: u64) -> String {
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

pub fn dead(p: &DeadPage, f: &FilterForm, destinations: &[String], form_token: &str) -> Markup {
    layout(
        "Dead letters",
        html! {
            h1 { "Dead letters" }
            form.filters method="get" action="/dead" #filter {
                label { "destination"
                    select name="destination" {
                        option value="" { "any" }
                        @for d in destinations {
                            option value=(d) selected[*d == f.destination] { (d) }
                        }
                    }
                }
                label { "reason"
                    select name="reason" {
                        option value="" { "any" }
                        @for r in Reason::ALL {
                            option value=(r.as_str()) selected[r.as_str() == f.reason] { (r.as_str()) }
                        }
                    }
                }
                label { "since (RFC 3339)" input type="text" name="since" value=(f.since) placeholder="2026-11-20T14:00:00Z"; }
                label { "until" input type="text" name="until" value=(f.until); }
                label { "event id" input type="text" name="event_id" value=(f.event_id); }
                button type="submit" #apply { "Filter" }
                a href="/dead" { "clear" }
            }
            p #counts { (p.matched) " of " (p.total) " dead letters match." }
            h2 { "By destination and reason" }
            table #groups {
                tr { th { "destination" } th { "reason" } th.num { "count" } th { "oldest" } }
                @for g in &p.groups {
                    tr {
                        td { (g.destination) } td { (g.reason) } td.num { (g.count) }
                        td { (age_of(g.oldest)) }
                    }
                }
            }
            @if p.matched > 0 {
                form.inline method="post" action="/replay" #replay-filter {
                    input type="hidden" name="csrf" value=(form_token);
                    input type="hidden" name="mode" value="filter";
                    (f.hidden())
                    button type="submit" #replay-all { "Replay all " (p.matched) " matching…" }
                }
            }
            h2 { "Letters" }
            form method="post" action="/replay" #replay-chosen {
                input type="hidden" name="csrf" value=(form_token);
                input type="hidden" name="mode" value="chosen";
                table #letters {
                    tr { th {} th { "dead-lettered" } th { "destination" } th { "reason" } th { "event" } th.num { "attempts" } th { "detail" } }
                    @for s in &p.items {
                        tr.letter {
                            td { @if let Some(id) = &s.dead_letter_id { input type="checkbox" name="ids" value=(id); } }
                            td { (at(s.dead_lettered_at)) }
                            td { (s.destination.as_deref().unwrap_or("-")) }
                            td { (s.reason.as_str()) }
                            td { @match &s.dead_letter_id {
                                Some(id) => a.open href={ "/dead/" (id) } { (s.event_id.as_deref().unwrap_or("(no event id)")) },
                                None => (s.event_id.as_deref().unwrap_or("-")),
                            } }
                            td.num { (s.attempts) }
                            td { (s.detail) }
                        }
                    }
                }
                @if !p.items.is_empty() { button type="submit" #replay-selected { "Replay selected…" } }
            }
            p {
                @if p.page > 1 { a href={ "/dead?" (f.query(p.page - 1)) } { "← previous" } " " }
                "page " (p.page)
                @if p.has_more { " " a #next href={ "/dead?" (f.query(p.page.saturating_add(1))) } { "next →" } }
            }
        },
    )
}

fn timelines(ts: &[Timeline]) -> Markup {
    html! {
        @for t in ts {
            div.panel.timeline {
                strong { (t.event_id) " → " (t.destination) } " "
                span.muted { "(" (t.event_type) ", order " (t.order_id.as_deref().unwrap_or("-")) ")" } " "
                span.outcome { (t.outcome) }
                table {
                    tr { th { "at" } th.num { "attempt" } th { "outcome" } th { "answer" } th.num { "latency" } th { "request / response" } }
                    @for e in &t.entries {
                        tr {
                            td { (e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)) }
                            td.num { (e.attempt) }
                            td { (shown(e)) @if let Some(r) = &e.recovery { br; span.muted { "recovery " (r) } } }
                            td { (answer(e)) }
                            td.num { @if let Some(l) = e.latency_ms { (format!("{l:.0} ms")) } }
                            td {
                                @if let Some(r) = &e.request { code { (r) } }
                                @if let Some(r) = e.response.as_deref().filter(|r| !r.is_empty()) { br; span.muted { (r) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn letter(
    l: &DeadLetter,
    event: Option<&str>,
    journal: Option<&[Timeline]>,
    form_token: &str,
) -> Markup {
    let s = l.summary();
    layout(
        "Dead letter",
        html! {
            h1 { "Dead letter " span.muted { (s.dead_letter_id.as_deref().unwrap_or("")) } }
            div.panel #reason {
                p { strong { (s.reason.as_str()) } " — " (s.reason.meaning()) }
                p #todo { strong { "What to do: " } (s.reason.what_to_do()) }
            }
            dl.panel {
                dt { "event" } dd #event-id { (s.event_id.as_deref().unwrap_or("-")) }
                dt { "destination" } dd { (s.destination.as_deref().unwrap_or("-")) }
                dt { "dead-lettered" } dd { (at(s.dead_lettered_at)) }
                dt { "attempts" } dd { (s.attempts) }
                dt { "detail" } dd #detail { (s.detail) }
                @if let DeadLetter::Envelope(e) = l {
                    dt { "first / last attempt" } dd { (at(e.first_attempt_at)) " / " (at(e.last_attempt_at)) }
                    dt { "last answer" } dd { @if let Some(st) = e.last_status { "HTTP " (st) " " } (e.last_error.as_deref().unwrap_or("")) }
                }
            }
            @if let Some(id) = &s.dead_letter_id {
                form method="post" action="/replay" {
                    input type="hidden" name="csrf" value=(form_token);
                    input type="hidden" name="mode" value="chosen";
                    input type="hidden" name="ids" value=(id);
                    button type="submit" #replay-this { "Replay this letter…" }
                }
            }
            @if let DeadLetter::Envelope(e) = l {
                @if let Some(r) = &e.request {
                    h2 { "The request as sent (secrets redacted)" }
                    pre #request { (r.method) " " (r.url)
                        @for (k, v) in &r.headers { "\n" (k) ": " (v) }
                        @if let Some(b) = &r.body { "\n\n" (b) }
                    }
                }
                h2 { "The partner's answer" }
                pre #response { (e.response_snippet.as_deref().unwrap_or("(none)")) }
                @if !e.history.is_empty() {
                    h2 { "Attempts" }
                    table #history {
                        tr { th { "at" } th { "result" } th { "status" } th { "error" } }
                        @for h in &e.history {
                            tr { td { (at(Some(h.at))) } td { (h.result.to_string()) } td { @if let Some(st) = h.status { (st) } } td { (h.error.as_deref().unwrap_or("")) } }
                        }
                    }
                }
            }
            h2 { "The original event" }
            pre #original { (event.unwrap_or("(not JSON: see the raw body with dlq list --format json)")) }
            @if let Some(ts) = journal {
                h2 { "In the journal" }
                (timelines(ts))
            }
        },
    )
}

/// What an action would do, and the form that confirms it.
pub fn preview(
    title: &str,
    said: &str,
    by_destination: &[(String, u64)],
    action: &str,
    hidden: Markup,
    form_token: &str,
    can: bool,
) -> Markup {
    layout(
        title,
        html! {
            h1 { (title) }
            p #preview { (said) }
            @if !by_destination.is_empty() {
                table #preview-destinations {
                    tr { th { "to" } th.num { "count" } }
                    @for (d, n) in by_destination { tr { td { (d) } td.num { (n) } } }
                }
            }
            @if can {
                form method="post" action=(action) {
                    input type="hidden" name="csrf" value=(form_token);
                    input type="hidden" name="confirm" value="yes";
                    (hidden)
                    button.danger type="submit" #confirm { "Confirm" }
                    " "
                    a href="/dead" { "Cancel" }
                }
            } @else {
                p { a href="/dead" { "Back" } }
            }
        },
    )
}

pub fn job(j: &Job) -> Markup {
    let running = j.state == State::Running;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                @if running { meta http-equiv="refresh" content="1"; }
                title { "Job " (j.id) " · postback-relay" }
                link rel="stylesheet" href="/console.css";
            }
            body {
                header { strong { "postback-relay" } a href="/" { "Overview" } a href="/dead" { "Dead letters" } a href="/search" { "Search" } a href="/recover" { "Recover" } }
                main {
                    h1 { (j.what) }
                    p #state { @match j.state { State::Running => "running", State::Done => "done", State::Failed => "failed" } }
                    p #progress { (j.done) @if j.total > 0 { " of " (j.total) } }
                    @if let Some(r) = &j.result { p #result { (r) } }
                }
            }
        }
    }
}

pub fn search(q: &str, found: Option<&[Timeline]>, note: Option<&str>) -> Markup {
    layout(
        "Search",
        html! {
            h1 { "Search the journal" }
            form.filters method="get" action="/search" {
                label { "event id or order id" input type="text" name="q" value=(q) autofocus; }
                button type="submit" #search { "Search" }
            }
            @if let Some(n) = note { p.note { (n) } }
            @if let Some(ts) = found {
                p #found { (ts.len()) " deliveries" }
                (timelines(ts))
            }
        },
    )
}

/// The recovery form's fields, as the form gives them back.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct RecoverForm {
    pub destination: String,
    pub since: String,
    pub until: String,
    pub outcome: String,
    pub csrf: String,
    pub confirm: String,
}

impl RecoverForm {
    pub fn hidden(&self) -> Markup {
        html! {
            input type="hidden" name="destination" value=(self.destination);
            input type="hidden" name="since" value=(self.since);
            input type="hidden" name="until" value=(self.until);
            input type="hidden" name="outcome" value=(self.outcome);
        }
    }
}

pub fn recover_form(destinations: &[String], form_token: &str) -> Markup {
    layout(
        "Recover",
        html! {
            h1 { "Recover a time window" }
            p { "Sends a destination's deliveries of a window again from the journal, each with a fresh budget, past the record that the partner accepted them. A second run of the same recovery sends nothing twice." }
            form.filters method="post" action="/recover" #recover {
                input type="hidden" name="csrf" value=(form_token);
                label { "destination"
                    select name="destination" { @for d in destinations { option value=(d) { (d) } } }
                }
                label { "since (RFC 3339)" input type="text" name="since" placeholder="2026-11-20T14:00:00Z"; }
                label { "until (empty: now)" input type="text" name="until"; }
                label { "which"
                    select name="outcome" {
                        option value="delivered" { "delivered there" }
                        option value="any" { "every event it takes (backfill)" }
                    }
                }
                button type="submit" #preview-recovery { "Preview…" }
            }
        },
    )
}
