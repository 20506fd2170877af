//! Every delivery entry, newest first, filtered; those waiting for a retry with when it is
//! due.

use chrono::Utc;
use maud::{Markup, html};

use super::{age, layout};
use crate::journal::browse::{Browsed, Cursor};
use crate::journal::timeline::{answer, shown};

/// The deliveries' filter, as the form gives it back.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct DeliveriesForm {
    pub destination: String,
    /// An outcome's code, `waiting` (for a retry), or empty (any).
    pub outcome: String,
    pub since: String,
    pub until: String,
    /// Where the page starts (the previous page's last row), empty for the newest.
    pub before: String,
}

/// What the outcome field may say, and in words.
pub const OUTCOMES: [(&str, &str); 6] = [
    ("waiting", "waiting to retry"),
    ("delivered", "delivered"),
    ("retry_scheduled", "retry scheduled"),
    ("dead_lettered", "dead-lettered"),
    ("duplicate", "duplicate"),
    ("superseded", "superseded"),
];

/// A page of rows, and where the next one starts.
pub struct Paged<T> {
    pub rows: Vec<T>,
    pub next: Option<Cursor>,
}

fn query(f: &DeliveriesForm, before: Option<Cursor>) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("destination", &f.destination),
        ("outcome", &f.outcome),
        ("since", &f.since),
        ("until", &f.until),
    ] {
        if !v.is_empty() {
            q.append_pair(k, v);
        }
    }
    if let Some(c) = before {
        q.append_pair("before", &c.to_string());
    }
    q.finish()
}

/// When a scheduled retry is due, in words: `2026-11-20T14:05:00Z (in 4 min)`.
fn due(b: &Browsed) -> Markup {
    let Some(t) = b.next_attempt() else {
        return html! {};
    };
    let secs = (t - Utc::now()).num_seconds();
    html! {
        span.due { (super::at(Some(t))) }
        " "
        @if secs >= 0 {
            span.muted { "(in " (age(secs as f64)) ")" }
        } @else {
            span.warn { "(due " (age(-secs as f64)) " ago)" }
        }
    }
}

pub fn deliveries(
    f: &DeliveriesForm,
    destinations: &[String],
    found: Result<Paged<Browsed>, String>,
) -> Markup {
    layout(
        "Deliveries",
        html! {
            h1 { "Deliveries" }
            form.filters method="get" action="/deliveries" #filter {
                label { "destination"
                    select name="destination" {
                        option value="" { "any" }
                        @for d in destinations {
                            option value=(d) selected[*d == f.destination] { (d) }
                        }
                    }
                }
                label { "outcome"
                    select name="outcome" {
                        option value="" { "any" }
                        @for (o, words) in OUTCOMES {
                            option value=(o) selected[o == f.outcome] { (words) }
                        }
                    }
                }
                label { "since (RFC 3339)" input type="text" name="since" value=(f.since) placeholder="2026-11-20T14:00:00Z"; }
                label { "until" input type="text" name="until" value=(f.until); }
                button type="submit" #apply { "Filter" }
                a href="/deliveries" { "clear" }
            }
            @if f.outcome == "waiting" {
                p.muted { "Deliveries whose latest entry scheduled a retry in a delay tier, with nothing since: each is due back when its tier's delay has passed (then it waits its turn in the queue)." }
            }
            @match &found {
                Err(note) => p.note #note { (note) },
                Ok(page) => {
                    table #deliveries {
                        tr {
                            th { "at" } th { "destination" } th { "event" } th { "order" }
                            th.num { "attempt" } th { "outcome" } th { "answer" } th.num { "latency" } th { "next attempt" }
                        }
                        @for b in &page.rows {
                            @let e = &b.entry;
                            tr.delivery {
                                td { (e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)) }
                                td.destination { (e.destination) }
                                td { a href={ "/search?" (url::form_urlencoded::Serializer::new(String::new()).append_pair("q", &e.event_id).finish()) } { (e.event_id) } }
                                td { (e.order_id.as_deref().unwrap_or("-")) }
                                td.num { (e.attempt) }
                                td.outcome { (shown(e)) }
                                td { (answer(e)) }
                                td.num { @if let Some(l) = e.latency_ms { (format!("{l:.0} ms")) } }
                                td.next-attempt { (due(b)) }
                            }
                        }
                    }
                    @if page.rows.is_empty() { p #none { "No delivery matches." } }
                    p {
                        @if !f.before.is_empty() { a href={ "/deliveries?" (query(f, None)) } { "← newest" } " " }
                        @if let Some(next) = page.next { a #older href={ "/deliveries?" (query(f, Some(next))) } { "older →" } }
                    }
                }
            }
        },
    )
}
