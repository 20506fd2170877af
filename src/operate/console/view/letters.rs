//! The dead letters' pages: the filtered list, one letter, and an action's preview.

use maud::{Markup, html};

use super::filter_form::FilterForm;
use super::{age_of, at, layout, letter_index, timelines};
use crate::contract::reason::Reason;
use crate::journal::timeline::Timeline;
use crate::operate::console::letters::DeadPage;
use crate::operate::dlq::DeadLetter;

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
            (letter_index::notes(p, form_token))
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
            (letter_index::discard_filter(p.matched, f, form_token))
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
                @if !p.items.is_empty() {
                    button type="submit" #replay-selected { "Replay selected…" } " "
                    button.danger type="submit" formaction="/discard" #discard-selected { "Discard selected…" }
                }
            }
            p {
                @if p.page > 1 { a href={ "/dead?" (f.query(p.page - 1)) } { "← previous" } " " }
                "page " (p.page)
                @if p.has_more { " " a #next href={ "/dead?" (f.query(p.page.saturating_add(1))) } { "next →" } }
            }
        },
    )
}

pub fn letter(
    l: &DeadLetter,
    changed: Option<&crate::journal::letters::Indexed>,
    event: Option<&str>,
    journal: Option<&[Timeline]>,
    (form_token, trace_url): (&str, Option<&str>),
) -> Markup {
    let s = l.summary();
    layout(
        "Dead letter",
        html! {
            h1 { "Dead letter " span.muted { (s.dead_letter_id.as_deref().unwrap_or("")) } }
            (letter_index::changed(changed))
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
                    @if let Some(id) = &e.trace_id {
                        @let link = trace_url.map(|t| crate::config::tracing::trace_link(t, id));
                        dt { "trace" } dd #trace-id { (super::trace(id, link.as_deref())) }
                    }
                }
            }
            @if let (Some(id), None) = (&s.dead_letter_id, changed) {
                form method="post" action="/replay" {
                    input type="hidden" name="csrf" value=(form_token);
                    input type="hidden" name="mode" value="chosen";
                    input type="hidden" name="ids" value=(id);
                    button type="submit" #replay-this { "Replay this letter…" } " "
                    button.danger type="submit" formaction="/discard" #discard-this { "Discard this letter…" }
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
            pre #original { (event.unwrap_or("(none)")) }
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
