//! The journal browsed from the console: every delivery entry (by destination, outcome and
//! time, and those waiting for a retry with when it is due), and the operators' actions,
//! each newest first, a page at a time ([`crate::journal::browse`]).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;

use super::Console;
use super::handlers::{bad, failed, parse_time};
use super::view::{self, DeliveriesForm, OUTCOMES, Paged};
use crate::journal::browse::{Browse, Browsed, Cursor};
use crate::journal::{Action, Reader};

/// Rows a page shows.
pub const PAGE: usize = 50;

/// The page a form asks for, or why it cannot be.
pub fn browse_of(f: &DeliveriesForm) -> Result<Browse, String> {
    let since = parse_time("since", &f.since)?;
    let until = parse_time("until", &f.until)?;
    if let (Some(s), Some(u)) = (since, until)
        && u < s
    {
        return Err(format!("until ({u}) is before since ({s})"));
    }
    let destination = match f.destination.trim() {
        "" => None,
        d => {
            crate::contract::event::check_id("destination", d).map_err(|e| e.to_string())?;
            Some(d.to_owned())
        }
    };
    let outcome = f.outcome.trim();
    if !outcome.is_empty() && !OUTCOMES.iter().any(|(o, _)| *o == outcome) {
        return Err(format!(
            "outcome {outcome:?}: one of {}",
            OUTCOMES.map(|(o, _)| o).join(", ")
        ));
    }
    let before = match f.before.trim() {
        "" => None,
        b => Some(Cursor::parse(b).ok_or_else(|| format!("{b:?} is not a page's place"))?),
    };
    Ok(Browse {
        destination,
        waiting: outcome == "waiting",
        outcome: (!outcome.is_empty() && outcome != "waiting").then(|| outcome.to_owned()),
        since,
        until,
        before,
        // One more than shown: whether there is a next page.
        limit: PAGE + 1,
    })
}

/// The journal, or the note that says why there is none (never an error in the log: a
/// console started before its relay has no journal yet).
async fn journal(c: &Console) -> Result<Reader, String> {
    match super::gather::reader(c).await {
        Ok(Some(r)) => Ok(r),
        Ok(None) if !c.config.journal.enabled => Err(
            "The journal is turned off (journal.enabled = false): there is nothing to browse."
                .into(),
        ),
        Ok(None) => Err("No journal yet: deliveries show here once the relay has run.".into()),
        Err(e) => Err(format!("The journal cannot be read: {}", c.scrubbed(&e))),
    }
}

fn paged<T>(mut rows: Vec<T>, cursor: impl Fn(&T) -> Cursor) -> Paged<T> {
    let more = rows.len() > PAGE;
    rows.truncate(PAGE);
    let next = if more { rows.last().map(cursor) } else { None };
    Paged { rows, next }
}

pub async fn deliveries(
    State(c): State<Arc<Console>>,
    Query(f): Query<DeliveriesForm>,
) -> Response {
    let b = match browse_of(&f) {
        Ok(b) => b,
        Err(why) => return bad(&c, &why),
    };
    let found = match journal(&c).await {
        Ok(r) => match r.browse(&b).await {
            Ok(rows) => Ok(paged(rows, |r: &Browsed| r.cursor)),
            Err(e) => return failed(&c, &e),
        },
        Err(note) => Err(note),
    };
    c.page(view::deliveries(&f, &c.destinations(), found))
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct ActionsForm {
    pub before: String,
}

pub async fn actions(State(c): State<Arc<Console>>, Query(f): Query<ActionsForm>) -> Response {
    let before = match f.before.trim() {
        "" => None,
        b => match Cursor::parse(b) {
            Some(c) => Some(c),
            None => return bad(&c, &format!("{b:?} is not a page's place")),
        },
    };
    let found = match journal(&c).await {
        Ok(r) => match r.actions(before, PAGE + 1).await {
            Ok(rows) => Ok(paged(rows, |r: &(Cursor, Action)| r.0)),
            Err(e) => return failed(&c, &e),
        },
        Err(note) => Err(note),
    };
    c.page(view::actions(found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deliveries_form_is_checked() {
        let f = |outcome: &str, before: &str| DeliveriesForm {
            outcome: outcome.into(),
            before: before.into(),
            ..DeliveriesForm::default()
        };
        let waiting = browse_of(&f("waiting", "")).unwrap();
        assert!(waiting.waiting && waiting.outcome.is_none());
        assert_eq!(
            browse_of(&f("delivered", "")).unwrap().outcome.as_deref(),
            Some("delivered")
        );
        assert!(browse_of(&f("bogus", "")).unwrap_err().contains("one of"));
        assert_eq!(
            browse_of(&f("", "1763632800000.42")).unwrap().before,
            Some(Cursor {
                at: 1_763_632_800_000,
                id: 42
            })
        );
        assert!(browse_of(&f("", "x")).is_err());
        let backwards = DeliveriesForm {
            since: "2026-11-20T16:00:00Z".into(),
            until: "2026-11-20T14:00:00Z".into(),
            ..DeliveriesForm::default()
        };
        assert!(browse_of(&backwards).unwrap_err().contains("before"));
        let hidden = DeliveriesForm {
            destination: "a\u{1}".into(),
            ..DeliveriesForm::default()
        };
        assert!(browse_of(&hidden).is_err());
    }

    #[test]
    fn a_page_says_where_the_next_starts_only_when_there_is_one() {
        let at = |id| Cursor { at: 1, id };
        let full = paged((0..=PAGE as i64).rev().collect(), |&id| at(id));
        assert_eq!(full.rows.len(), PAGE);
        assert_eq!(full.next, Some(at(1)));
        let last = paged(vec![3_i64, 2], |&id| at(id));
        assert_eq!((last.rows.len(), last.next), (2, None));
    }
}
