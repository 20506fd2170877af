//! The pages, rendered on the server from what `gather` found (the dead letters' own in
//! `letters`). Every value is escaped by the template; the handlers scrub the
//! configuration's secrets before and after.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::gather::{Counts, Overview};
use super::jobs::{Job, State};
use crate::journal::timeline::{Timeline, answer, shown};

mod actions;
pub mod chart;
mod deliveries;
mod filter_form;
mod letter_index;
mod letters;

pub use actions::{actions, pause_confirm};
pub use deliveries::{DeliveriesForm, OUTCOMES, Paged, deliveries};
pub use filter_form::FilterForm;
pub use letters::{dead, letter, preview};

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
td, dd, code { overflow-wrap: anywhere; }
header form { margin-left: auto; } header button { background: transparent; color: #cfd6e4; padding: 0; }
"#;

pub(super) fn layout(title: &str, body: Markup) -> Markup {
    page(title, false, body)
}

/// A page; with `refresh`, one that loads itself again every second (a job in progress).
fn page(title: &str, refresh: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                @if refresh { meta http-equiv="refresh" content="1"; }
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
                    a href="/deliveries" { "Deliveries" }
                    a href="/actions" { "Actions" }
                    form.inline method="post" action="/logout" { button #log-out type="submit" { "Log out" } }
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

pub(super) fn at(t: Option<DateTime<Utc>>) -> String {
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

pub(super) fn age_of(t: Option<DateTime<Utc>>) -> String {
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

pub fn overview(o: &Overview, csrf: &str) -> Markup {
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
                    th { "circuit" } th { "calls" }
                }
                @for r in &o.rows {
                    tr id={ "dest-" (r.name) } {
                        td {
                            a href={ "/dead?destination=" (r.name) } { (r.name) } " "
                            a.chart href={ "/destinations/" (r.name) } title="success rate and latency per hour" { "chart" }
                        }
                        td { (r.kind) }
                        td.num { (rate(r.hour)) }
                        td.num.delivered-hour { (r.hour.delivered) }
                        td.num.dead-hour { (r.hour.dead) }
                        td.num { (rate(r.day)) }
                        td.num.delivered-day { (r.day.delivered) }
                        td.num.dead-day { (r.day.dead) }
                        td.circuit { (circuit(r.circuit)) }
                        td.paused { (pause_control(&r.name, r.paused.as_ref(), csrf)) }
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
            (letter_index::waiting(o.letters.as_ref()))
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

/// A destination's pause state, and the button that changes it.
fn pause_control(name: &str, paused: Option<&crate::shared::pause::Paused>, csrf: &str) -> Markup {
    let (verb, label) = match paused {
        Some(_) => ("resume", "Resume"),
        None => ("pause", "Pause"),
    };
    html! {
        @match paused {
            Some(p) => { strong.state { "paused" } " " span.muted { "by " (p.by) " since " (p.at.format("%Y-%m-%d %H:%M:%S UTC")) } " " }
            None => { span.state { "running" } " " }
        }
        form.inline method="post" action="/pause" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="destination" value=(name);
            input type="hidden" name="verb" value=(verb);
            button id={ (verb) "-" (name) } type="submit" { (label) }
        }
    }
}

pub(super) fn timelines(ts: &[Timeline]) -> Markup {
    html! {
        @for t in ts {
            div.panel.timeline {
                strong { (t.event_id) " → " (t.destination) } " "
                span.muted { "(" (t.event_type) ", order " (t.order_id.as_deref().unwrap_or("-")) ")" } " "
                span.outcome { (t.outcome) }
                @if let Some(id) = &t.trace_id { " " (trace(id, t.trace_link.as_deref())) }
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

/// A trace id, linked to the tracing UI when `console.trace_url` is set.
pub(super) fn trace(id: &str, link: Option<&str>) -> Markup {
    html! {
        span.trace.muted {
            "trace "
            @match link {
                Some(href) => a.trace-link href=(href) target="_blank" rel="noopener" { code { (id) } },
                None => code { (id) },
            }
        }
    }
}

pub fn job(j: &Job) -> Markup {
    let running = j.state == State::Running;
    page(
        &format!("Job {}", j.id),
        running,
        html! {
            h1 { (j.what) }
            p #state { @match j.state { State::Running => "running", State::Done => "done", State::Failed => "failed" } }
            p #progress { (j.done) @if j.total > 0 { " of " (j.total) } }
            @if let Some(r) = &j.result { p #result { (r) } }
            (letter_index::results(j))
        },
    )
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_trace_id_is_linked_only_where_a_trace_url_is_set() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let plain = super::trace(id, None).into_string();
        assert!(plain.contains(id) && !plain.contains("href"), "{plain}");
        let url = crate::config::tracing::trace_link("https://grafana.example/t/{trace_id}", id);
        let linked = super::trace(id, Some(&url)).into_string();
        assert!(
            linked.contains(&format!("href=\"https://grafana.example/t/{id}\"")),
            "{linked}"
        );
    }
}
