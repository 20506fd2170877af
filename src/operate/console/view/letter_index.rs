//! The parts of the pages about the index of dead letters: where the letters come from and
//! how the index stands against the queue (with a reindex), the letters waiting on the
//! overview, what became of a letter no longer waiting, the discard forms, and each letter's
//! result on a job's page.

use maud::{Markup, html};

use super::at;
use super::filter_form::FilterForm;
use crate::journal::letters::Indexed;
use crate::operate::console::jobs::Job;
use crate::operate::console::letters::{DeadPage, Waiting};

/// The page's notes, and the reindex when the index differs from the queue.
pub fn notes(p: &DeadPage, form_token: &str) -> Markup {
    html! {
        @for n in &p.notes { p.note.index-note { (n) } }
        @if p.offer_reindex { (reindex(form_token)) }
    }
}

/// The form that rebuilds the index from one read of the queue.
pub fn reindex(form_token: &str) -> Markup {
    html! {
        form.inline method="post" action="/dead/reindex" #reindex {
            input type="hidden" name="csrf" value=(form_token);
            button.secondary type="submit" #reindex-button { "Reindex from the queue" }
        }
    }
}

/// The letters waiting, by destination, as the index counts them.
pub fn waiting(w: Option<&Waiting>) -> Markup {
    html! {
        @if let Some(w) = w {
            h2 { "Dead letters waiting" }
            table #dead-waiting {
                tr { th { "destination" } th.num { "letters" } }
                @for (d, n) in &w.by_destination {
                    tr id={ "waiting-" (d) } {
                        td { @if d == "-" { "before routing (not JSON, invalid, unroutable)" } @else { a href={ "/dead?destination=" (d) } { (d) } } }
                        td.num { (n) }
                    }
                }
                tr #waiting-total { td { strong { "all" } } td.num { strong { (w.total) } } }
            }
        }
    }
}

/// What became of a letter that is no longer waiting.
pub fn changed(i: Option<&Indexed>) -> Markup {
    html! {
        @if let Some(i) = i {
            p.note #letter-state {
                strong { (i.state.as_str()) }
                " " (at(i.changed_at))
                @if let Some(by) = &i.changed_by { " by " (by) }
                @if let Some(r) = &i.result { ": " (r) }
                ". The journal keeps it; it is no longer in the queue."
            }
        }
    }
}

/// Discarding every letter a filter selects, previewed first.
pub fn discard_filter(matched: u64, f: &FilterForm, form_token: &str) -> Markup {
    html! {
        @if matched > 0 {
            " "
            form.inline method="post" action="/discard" #discard-filter {
                input type="hidden" name="csrf" value=(form_token);
                input type="hidden" name="mode" value="filter";
                (f.hidden())
                button.danger type="submit" #discard-all { "Discard all " (matched) " matching…" }
            }
        }
    }
}

/// Each letter a job took and what came of it.
pub fn results(j: &Job) -> Markup {
    html! {
        @if !j.letters.is_empty() {
            h2 { "Letters" }
            table #job-letters {
                tr { th { "letter" } th { "event" } th { "destination" } th { "result" } th { "why" } }
                @for l in &j.letters {
                    tr.job-letter {
                        td { (l.id) } td { (l.event_id.as_deref().unwrap_or("-")) }
                        td { (l.destination.as_deref().unwrap_or("-")) }
                        td.came { (l.came.as_str()) } td { (l.why) }
                    }
                }
            }
            @if j.unlisted > 0 { p.muted { "and " (j.unlisted) " more, not listed" } }
        }
    }
}
