//! The console's actions on dead letters, beside the replay's form in `actions`: the replay's
//! preview (from the index) and its job, which lists each letter and what came of it; a
//! discard of junk letters (previewed, confirmed, run as a job; the index keeps them, marked
//! discarded); and a reindex from one read of the queue. Replays and discards read the queue,
//! the durable hand-off, under the dead-letter tools' lock; each is written to the journal's
//! actions.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{RawForm, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::Markup;

use super::Console;
use super::auth::Operator;
use super::forms::act;
use super::handlers::failed;
use super::jobs::{Came, LetterResult, State as JobState};
use super::letter_form::Asked;
use super::reading::Connection;
use super::view;
use crate::journal::letters::{Mark, State as Indexed};
use crate::operate::dlq::{self, Filter, Sent, Summary};

/// What a replay or a discard would take, as the preview says it.
pub(super) async fn preview(
    c: &Console,
    verb: &str,
    filter: &Filter,
    hidden: Markup,
    pinned: Option<&str>,
) -> Response {
    let counted = match super::letters::preview(c, filter).await {
        Ok(Some(p)) => Ok(p),
        Ok(None) => queue_preview(c, filter).await,
        Err(e) => Err(e),
    };
    let (matched, examined, to) = match counted {
        Ok(p) => p,
        Err(e) => return failed(c, &e),
    };
    let (title, action, fresh) = match verb {
        "replay" => (
            "Replay: preview",
            "/replay",
            " be replayed, each with a fresh budget",
        ),
        _ => (
            "Discard: preview",
            "/discard",
            " be removed from the queue (the journal keeps them)",
        ),
    };
    let mut said =
        format!("{matched} of {examined} dead letters would{fresh}. Nothing has changed yet.");
    if let Some(until) = pinned {
        said.push_str(&format!(
            " Only letters dead-lettered before {until} are taken: those that come after this preview are left for another."
        ));
    }
    if let Ok(Some(letters)) = super::letters::index(c).await
        && let Some((_, note)) = super::drift::drift(c, &letters).await
    {
        said.push(' ');
        said.push_str(&note);
    }
    let to: Vec<_> = to.into_iter().collect();
    c.page(view::preview(
        title,
        &said,
        &to,
        action,
        hidden,
        &c.auth.form_token,
        matched > 0,
    ))
}

/// Without an index: one read of the queue, counting (a replay's dry run).
async fn queue_preview(
    c: &Console,
    filter: &Filter,
) -> Result<(u64, u64, std::collections::BTreeMap<String, u64>), String> {
    let (config, topology, filter) = (c.config.clone(), c.topology.clone(), filter.clone());
    super::reading::detached(async move {
        let scrub = |e: &dyn std::fmt::Display| config.secrets.scrub(&e.to_string()).into_owned();
        let conn = Connection::open(&config).await.map_err(|e| scrub(&e))?;
        let mut to: std::collections::BTreeMap<String, u64> = Default::default();
        let max = config.worker.max_event_bytes;
        let report = dlq::replay(
            conn.get(),
            &topology,
            max,
            &filter,
            None,
            true,
            |s, chosen| {
                if chosen {
                    let d = s
                        .destination
                        .clone()
                        .unwrap_or_else(|| "(the events queue)".into());
                    *to.entry(d).or_default() += 1;
                }
            },
        )
        .await;
        conn.close().await;
        let r = report.map_err(|e| scrub(&e))?;
        Ok((r.matched, r.examined, to))
    })
    .await
}

fn line(s: &Summary, came: Came, why: String) -> LetterResult {
    LetterResult {
        id: s.dead_letter_id.clone().unwrap_or_else(|| "-".into()),
        event_id: s.event_id.clone(),
        destination: s.destination.clone(),
        came,
        why,
    }
}

/// Marks a job gathers, written to the index [`MARK_EVERY`] at a time as the job goes, so
/// that a job over a million letters holds a few hundred of them, and what it did before a
/// stop is marked.
struct Marks {
    c: Arc<Console>,
    who: Operator,
    held: std::sync::Mutex<(Vec<Mark>, Vec<tokio::task::JoinHandle<()>>)>,
}

/// Marks written to the index at once.
const MARK_EVERY: usize = 500;

impl Marks {
    fn new(c: &Arc<Console>, who: &Operator) -> Marks {
        Marks {
            c: c.clone(),
            who: who.clone(),
            held: Default::default(),
        }
    }

    fn push(&self, m: Mark) {
        let Ok(mut held) = self.held.lock() else {
            return;
        };
        held.0.push(m);
        if held.0.len() >= MARK_EVERY {
            let these = std::mem::take(&mut held.0);
            let (c, who) = (self.c.clone(), self.who.clone());
            held.1
                .push(tokio::spawn(async move { mark(&c, &who, these).await }));
        }
    }

    /// Writes what is left, and waits for what is being written.
    async fn finish(self) {
        let (rest, writing) = self.held.into_inner().unwrap_or_default();
        mark(&self.c, &self.who, rest).await;
        for w in writing {
            let _ = w.await;
        }
    }
}

/// Marks in the index what a job did to each letter; an index that cannot take it is
/// logged (a reindex brings it back to the queue).
async fn mark(c: &Console, who: &Operator, marks: Vec<Mark>) {
    if marks.is_empty() {
        return;
    }
    let marked = match super::letters::index(c).await {
        Ok(Some(letters)) => letters.mark(&marks, &who.0).await.map(|_| ()),
        Ok(None) => Ok(()),
        Err(e) => {
            tracing::error!(message = "cannot mark dead letters in the index", error = %e);
            return;
        }
    };
    if let Err(e) = marked {
        tracing::error!(message = "cannot mark dead letters in the index", error = %c.scrubbed(&e));
    }
}

/// The chosen letters a job did not find in the queue, as skipped.
fn not_found(c: &Console, id: u64, filter: &Filter) {
    c.jobs.update(id, |j| {
        for wanted in &filter.ids {
            if !j.letters.iter().any(|l| &l.id == wanted) {
                j.add(LetterResult {
                    id: wanted.clone(),
                    event_id: None,
                    destination: None,
                    came: Came::Skipped,
                    why: "not in the queue (replayed or discarded already?)".into(),
                });
            }
        }
    });
}

/// A confirmed replay, run as job `id`: each chosen letter's result on the job's page, and
/// each sent back marked replayed in the index.
pub(super) async fn run_replay(
    c: Arc<Console>,
    who: Operator,
    id: u64,
    filter: Filter,
    described: serde_json::Value,
) {
    let chosen = std::sync::atomic::AtomicU64::new(0);
    let marks = Marks::new(&c, &who);
    let result = async {
        let conn = Connection::open(&c.config).await?;
        let total = dlq::depth(&conn.get().create_channel().await?, &c.topology.dead).await?;
        c.jobs.update(id, |j| j.total = u64::from(total));
        let max = c.config.worker.max_event_bytes;
        let progress = |_: &Summary, picked: bool| {
            if picked {
                chosen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            c.jobs.update(id, |j| j.done += 1);
        };
        let sent = |s: &Summary, sent: &Sent| {
            let (came, why) = match sent {
                Sent::Republished { queue, budget } => {
                    if let Some(letter) = &s.dead_letter_id {
                        marks.push(Mark {
                            id: letter.clone(),
                            state: Indexed::Replayed,
                            result: format!("republished to {queue}"),
                        });
                    }
                    let how = match budget {
                        dlq::Budget::Fresh => "with a fresh budget",
                        dlq::Budget::AsItWas => "as it was (not a valid delivery)",
                    };
                    (Came::Republished, format!("to {queue}, {how}"))
                }
                Sent::Failed(why) => (Came::Failed, format!("{why}; it stays in the queue")),
            };
            let why = c.scrubbed(&why);
            c.jobs.update(id, |j| j.add(line(s, came, why)));
        };
        let args = (&filter, None, false);
        let report = dlq::replay_telling(conn.get(), &c.topology, max, args, progress, sent).await;
        conn.close().await;
        report.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
    }
    .await;
    marks.finish().await;
    not_found(&c, id, &filter);
    match result {
        Ok(r) => {
            act(&c, &who, "replay", described, r.replayed).await;
            let said = format!(
                "Replayed {} dead letter(s) of {} examined; the other {} stay in {}.",
                r.replayed,
                r.examined,
                r.examined.saturating_sub(r.replayed),
                c.topology.dead
            );
            c.jobs.update(id, |j| {
                j.state = JobState::Done;
                j.result = Some(said);
            });
        }
        Err(e) => {
            let said = c.scrubbed(&e);
            // Written too: a letter leaves the dead-letter queue only once it is published
            // again, so those not sent are still there, and the count is the most sent.
            let mut described = described;
            if let Some(d) = described.as_object_mut() {
                d.insert("stopped".into(), serde_json::json!(said));
            }
            let at_most = chosen.load(std::sync::atomic::Ordering::Relaxed);
            act(&c, &who, "replay_stopped", described, at_most).await;
            c.jobs.update(id, |j| {
                j.state = JobState::Failed;
                j.result = Some(said);
            });
        }
    }
}

/// Discards dead letters: a preview of what the filter (or the chosen letters) takes, then,
/// confirmed, a job that removes them from the queue and marks them discarded in the index.
pub async fn discard(
    State(c): State<Arc<Console>>,
    Extension(who): Extension<Operator>,
    RawForm(body): RawForm,
) -> Response {
    let asked = match Asked::posted(&c, &body, "discard") {
        Ok(asked) => asked,
        Err(answer) => return *answer,
    };
    if !asked.confirmed {
        let pinned = asked.pinned.as_deref();
        return preview(&c, "discard", &asked.filter, asked.hidden, pinned).await;
    }
    let described = asked.described();
    let id = c.jobs.start("Discarding dead letters".into(), 0);
    let console = c.clone();
    let filter = asked.filter;
    tokio::spawn(async move { run_discard(console, who, id, filter, described).await });
    Redirect::to(&format!("/jobs/{id}")).into_response()
}

async fn run_discard(
    c: Arc<Console>,
    who: Operator,
    id: u64,
    filter: Filter,
    described: serde_json::Value,
) {
    let marks = Marks::new(&c, &who);
    let mut removed_so_far = 0u64;
    let result = async {
        let conn = Connection::open(&c.config).await?;
        let total = dlq::depth(&conn.get().create_channel().await?, &c.topology.dead).await?;
        c.jobs.update(id, |j| j.total = u64::from(total));
        let max = c.config.worker.max_event_bytes;
        let done = dlq::discard(conn.get(), &c.topology, max, &filter, |s, taken| {
            c.jobs.update(id, |j| {
                j.done += 1;
                if taken {
                    j.add(line(s, Came::Discarded, "removed from the queue".into()));
                }
            });
            removed_so_far += u64::from(taken);
            if let (true, Some(letter)) = (taken, &s.dead_letter_id) {
                marks.push(Mark {
                    id: letter.clone(),
                    state: Indexed::Discarded,
                    result: "discarded from the console".into(),
                });
            }
        })
        .await;
        conn.close().await;
        done.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
    }
    .await;
    marks.finish().await;
    not_found(&c, id, &filter);
    let (state, said, action, count) = match result {
        Ok((examined, removed)) => (
            JobState::Done,
            format!(
                "Discarded {removed} dead letter(s) of {examined} examined; the journal keeps them."
            ),
            "discard",
            removed,
        ),
        // Written with what left the queue before the stop.
        Err(e) => (
            JobState::Failed,
            c.scrubbed(&e),
            "discard_stopped",
            removed_so_far,
        ),
    };
    act(&c, &who, action, described, count).await;
    c.jobs.update(id, |j| {
        j.state = state;
        j.result = Some(said);
    });
}
