//! The console's actions: a replay of dead letters and a recovery by time window, each
//! previewed first (a dry run: how many, to where) and run as a job once confirmed; and a
//! destination paused (once confirmed: its deliveries stop) or resumed (at once). Each is
//! written to the journal's actions with the operator who asked.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{RawForm, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;

use super::Console;
use super::auth::Operator;
use super::forms::{act, field, fields, not_ours};
use super::handlers::{bad, failed, parse_time};
use super::jobs::State as JobState;
use super::letter_form::Asked;
use super::view::{self, RecoverForm};
use crate::journal::{Recoveries, Which, Window};

/// Pauses (once confirmed) or resumes a destination, for every relay on the store.
pub async fn pause(
    State(c): State<Arc<Console>>,
    Extension(who): Extension<Operator>,
    RawForm(body): RawForm,
) -> Response {
    let fs = fields(&body);
    if let Some(refused) = not_ours(&c, &fs) {
        return refused;
    }
    let name = field(&fs, "destination");
    if let Err(e) = c.config.destination(name) {
        return bad(&c, &e.to_string());
    }
    let verb = field(&fs, "verb");
    if verb == "pause" && field(&fs, "confirm") != "yes" {
        return c.page(view::pause_confirm(name, &c.auth.form_token));
    }
    let pauses = match c.pauses().await {
        Ok(p) => p,
        Err(e) => return bad(&c, &e),
    };
    let changed = match verb {
        "pause" => {
            let paused = crate::shared::pause::Paused {
                by: who.0.clone(),
                at: Utc::now(),
            };
            pauses.pause(name, paused).await
        }
        "resume" => pauses.resume(name).await,
        other => return bad(&c, &format!("verb {other:?}: pause or resume")),
    };
    match changed {
        Ok(changed) => {
            act(
                &c,
                &who,
                verb,
                serde_json::json!({ "destination": name }),
                u64::from(changed),
            )
            .await;
            Redirect::to("/").into_response()
        }
        Err(e) => bad(&c, &c.scrubbed(&e)),
    }
}

pub async fn replay(
    State(c): State<Arc<Console>>,
    Extension(who): Extension<Operator>,
    RawForm(body): RawForm,
) -> Response {
    let asked = match Asked::posted(&c, &body, "replay") {
        Ok(asked) => asked,
        Err(answer) => return *answer,
    };
    if !asked.confirmed {
        let pinned = asked.pinned.as_deref();
        return super::letter_actions::preview(&c, "replay", &asked.filter, asked.hidden, pinned)
            .await;
    }
    let described = asked.described();
    let id = c.jobs.start("Replaying dead letters".into(), 0);
    let console = c.clone();
    let filter = asked.filter;
    tokio::spawn(async move {
        super::letter_actions::run_replay(console, who, id, filter, described).await
    });
    Redirect::to(&format!("/jobs/{id}")).into_response()
}

/// The window a recovery form asks for, or why it cannot be.
pub fn window_of(f: &RecoverForm, known: &[String]) -> Result<Window, String> {
    crate::config::UnknownDestination::check(&f.destination, known.iter().map(String::as_str))
        .map_err(|e| e.to_string())?;
    let since = parse_time("since", &f.since)?.ok_or("since: give the window's start")?;
    let until = parse_time("until", &f.until)?;
    let outcome = match f.outcome.as_str() {
        "" | "delivered" => Which::Delivered,
        "any" => Which::Any,
        other => return Err(format!("{other:?}: delivered or any")),
    };
    Window::new(f.destination.clone(), since, until, outcome).map_err(|e| e.to_string())
}

pub async fn recover(
    State(c): State<Arc<Console>>,
    Extension(who): Extension<Operator>,
    RawForm(body): RawForm,
) -> Response {
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
    if !c.config.journal.enabled {
        return bad(
            &c,
            "There is no journal to recover from: journal.enabled is false.",
        );
    }
    let journal = match Recoveries::open(&c.config.journal).await {
        Ok(j) => j,
        Err(e @ crate::journal::JournalError::Missing(_)) => return bad(&c, &e.to_string()),
        Err(e) => return failed(&c, &e),
    };
    if f.confirm != "yes" {
        return match crate::operate::recover::recover(
            &c.config,
            journal,
            &window,
            &who.0,
            true,
            |_| {},
        )
        .await
        {
            Ok(r) => {
                let said = crate::operate::recover::said(&r, &window, true);
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
        let progress = |r: &crate::operate::recover::Report| {
            c.jobs.update(id, |j| {
                j.done = r.sent;
                j.total = r.to_send;
            })
        };
        let result =
            crate::operate::recover::recover(&c.config, journal, &window, &who.0, false, progress)
                .await
                .map_err(|e| c.scrubbed(&e));
        c.jobs.update(id, |j| match result {
            Ok(r) => {
                j.done = r.sent;
                j.total = r.to_send;
                j.state = JobState::Done;
                j.result = Some(crate::operate::recover::said(&r, &window, false));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recovery_window_is_checked() {
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
