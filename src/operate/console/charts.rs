//! A destination's page: its success rate and latency per hour over the last day, drawn from
//! the journal's per-minute counts (a few rows a minute, never the entries themselves).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use chrono::Utc;

use super::view::chart;
use super::{Console, gather, handlers};
use crate::journal::hour_of;

/// Hours the charts show, the one in progress the last.
const HOURS: usize = 24;

pub async fn destination(State(c): State<Arc<Console>>, Path(name): Path<String>) -> Response {
    if !c.config.destinations.iter().any(|d| d.name == name) {
        return handlers::bad(
            &c,
            &format!("{name:?} is not a destination of this configuration"),
        );
    }
    let first = hour_of(Utc::now()) - chrono::Duration::hours(HOURS as i64 - 1);
    let (rows, note) = match gather::reader(&c).await {
        Ok(Some(r)) => match r.per_hour(&name, first).await {
            Ok(rows) => (rows, None),
            Err(e) => (Vec::new(), Some(format!("The journal cannot be read: {e}"))),
        },
        Ok(None) => (
            Vec::new(),
            Some("No journal yet: the charts fill in once the relay has run.".to_owned()),
        ),
        Err(e) => (Vec::new(), Some(format!("The journal cannot be read: {e}"))),
    };
    // Scrubbed before rendering: an escaped secret would not match afterwards.
    let note = note.map(|n| c.scrubbed(&n));
    let hours = chart::hours(&rows, first, HOURS);
    c.page(chart::page(&name, &hours, note.as_deref()))
}
