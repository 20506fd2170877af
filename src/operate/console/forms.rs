//! What the console's actions share: reading a form (its fields, its form token) and writing
//! what was done to the journal's actions.

use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;

use super::Console;
use crate::journal::{Action, Recoveries};

/// A form's fields, repeated ones kept (`ids`).
pub(super) fn fields(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

pub(super) fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// The refusal of a form that does not carry this console's form token.
pub(super) fn not_ours(c: &Console, fs: &[(String, String)]) -> Option<Response> {
    (field(fs, "csrf") != c.auth.form_token).then(|| {
        super::auth::refused(
            StatusCode::FORBIDDEN,
            "Refused: the form is not this console's (reload the page and try again).",
        )
    })
}

/// Writes an action to the journal; a journal that cannot take it is logged.
/// `who` is the operator the request was made by.
pub(super) async fn act(
    c: &Console,
    who: &super::auth::Operator,
    action: &str,
    filter: serde_json::Value,
    count: u64,
) {
    if !c.config.journal.enabled {
        return;
    }
    let a = Action {
        at: Utc::now(),
        who: who.0.clone(),
        action: action.into(),
        filter: filter.to_string(),
        count,
    };
    let written = match Recoveries::open(&c.config.journal).await {
        Ok(j) => j.act(&a).await,
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        tracing::error!(message = "cannot write the action to the journal", action, error = %c.scrubbed(&e));
    }
}
