//! The operators' actions, newest first; and the step that confirms a pause.

use maud::{Markup, html};

use super::{Paged, at, layout};
use crate::journal::Action;
use crate::journal::browse::Cursor;

pub fn actions(found: Result<Paged<(Cursor, Action)>, String>) -> Markup {
    layout(
        "Actions",
        html! {
            h1 { "Actions" }
            p.muted { "What operators did (the console's replays, recoveries, pauses and resumes, and the recoveries of the recover command), newest first, as the journal keeps it." }
            @match &found {
                Err(note) => p.note #note { (note) },
                Ok(page) => {
                    table #actions {
                        tr { th { "at" } th { "who" } th { "action" } th { "applied to" } th.num { "count" } }
                        @for (_, a) in &page.rows {
                            tr.action {
                                td { (at(Some(a.at))) }
                                td.who { (a.who) }
                                td.what { (a.action) }
                                td { code { (a.filter) } }
                                td.num { (a.count) }
                            }
                        }
                    }
                    @if page.rows.is_empty() { p #none { "No action yet." } }
                    p {
                        @if let Some(next) = page.next { a #older href={ "/actions?before=" (next) } { "older →" } }
                    }
                }
            }
        },
    )
}

/// What pausing `name` does, and the form that confirms it.
pub fn pause_confirm(name: &str, form_token: &str) -> Markup {
    layout(
        "Pause: confirm",
        html! {
            h1 { "Pause " (name) "?" }
            p #preview { "Every relay on this store stops calling " strong { (name) } " within a second: its deliveries, new ones and retries alike, wait in the retry tiers until it is resumed (spending no attempt and none of their age budget). Nothing has changed yet." }
            form method="post" action="/pause" {
                input type="hidden" name="csrf" value=(form_token);
                input type="hidden" name="destination" value=(name);
                input type="hidden" name="verb" value="pause";
                input type="hidden" name="confirm" value="yes";
                button.danger type="submit" #confirm { "Pause " (name) }
                " "
                a href="/" { "Cancel" }
            }
        },
    )
}
