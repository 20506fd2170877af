//! The index of dead letters rebuilt from the console: one read of the queue, as a job, as
//! `dlq reindex` does.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{RawForm, State};
use axum::response::{IntoResponse, Redirect, Response};

use super::Console;
use super::auth::Operator;
use super::forms::{act, fields, not_ours};
use super::handlers::{bad, failed};
use super::jobs::State as JobState;
use super::reading::Connection;
use crate::journal::letters::Letters;
use crate::operate::dlq;

/// Rebuilds the index from one read of the queue, as a job.
pub async fn reindex(
    State(c): State<Arc<Console>>,
    Extension(who): Extension<Operator>,
    RawForm(body): RawForm,
) -> Response {
    let fs = fields(&body);
    if let Some(refused) = not_ours(&c, &fs) {
        return refused;
    }
    let letters = match super::letters::index(&c).await {
        Ok(Some(l)) => l,
        Ok(None) => {
            return bad(
                &c,
                "There is no index to rebuild: journal.enabled is false, or the relay has not made the journal yet.",
            );
        }
        Err(e) => return failed(&c, &e),
    };
    let id = c.jobs.start("Reindexing the dead letters".into(), 0);
    let console = c.clone();
    tokio::spawn(async move { run_reindex(console, who, id, letters).await });
    Redirect::to(&format!("/jobs/{id}")).into_response()
}

async fn run_reindex(c: Arc<Console>, who: Operator, id: u64, letters: Letters) {
    let result = async {
        let conn = Connection::open(&c.config).await?;
        let total = dlq::depth(&conn.get().create_channel().await?, &c.topology.dead).await?;
        c.jobs.update(id, |j| j.total = u64::from(total));
        let max = c.config.worker.max_event_bytes;
        let r = dlq::reindex(conn.get(), &c.topology, max, &letters, &who.0, |n| {
            c.jobs.update(id, |j| j.done = n)
        })
        .await;
        conn.close().await;
        r.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
    }
    .await;
    let (state, said, count) = match result {
        Ok(r) => (
            JobState::Done,
            format!(
                "The index holds the {} dead letter(s) of {}; {} it had waiting were no longer there.",
                r.found, c.topology.dead, r.gone
            ),
            r.found,
        ),
        Err(e) => (JobState::Failed, c.scrubbed(&e), 0),
    };
    act(&c, &who, "reindex", serde_json::json!({}), count).await;
    c.jobs.update(id, |j| {
        j.state = state;
        j.result = Some(said);
    });
}
