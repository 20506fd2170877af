//! The journal as the commands and the console read and change it, whichever it is: the
//! SQLite file (its calls run on blocking threads, one connection behind a lock) or the
//! PostgreSQL database.

use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::browse::{Browse, Browsed, Cursor};
use super::postgres::Pg;
use super::recovery::{Action, Candidate, FileRecoveries, Window};
use super::sqlite::FileReader;
use super::{Entry, Filter, JournalConfig, JournalError, JournalKind};

pub(super) enum Backend<F> {
    File(Arc<Mutex<F>>),
    Postgres(Arc<Pg>),
}

impl<F> Clone for Backend<F> {
    fn clone(&self) -> Self {
        match self {
            Backend::File(f) => Backend::File(f.clone()),
            Backend::Postgres(p) => Backend::Postgres(p.clone()),
        }
    }
}

/// Runs `f` on the file's connection, on a blocking thread.
pub(super) async fn on_file<F: Send + 'static, T: Send + 'static>(
    file: &Arc<Mutex<F>>,
    f: impl FnOnce(&F) -> Result<T, JournalError> + Send + 'static,
) -> Result<T, JournalError> {
    let file = file.clone();
    tokio::task::spawn_blocking(move || {
        let guard = file
            .lock()
            .map_err(|_| JournalError::Task("the journal's connection was poisoned".into()))?;
        f(&guard)
    })
    .await
    .map_err(|e| JournalError::Task(e.to_string()))?
}

/// The file at `journal.path` must exist: asking never creates a journal.
fn existing(config: &JournalConfig) -> Result<(), JournalError> {
    if config.path.exists() {
        Ok(())
    } else {
        Err(JournalError::Missing(config.path.display().to_string()))
    }
}

impl<F: Send + 'static> Backend<F> {
    /// The configured journal: the file (which must exist) opened by `open_file` on a
    /// blocking thread, or a connection to the database.
    pub(super) async fn open(
        config: &JournalConfig,
        open_file: fn(&Path) -> Result<F, JournalError>,
    ) -> Result<Backend<F>, JournalError> {
        Ok(match config.kind {
            JournalKind::Embedded => {
                existing(config)?;
                let path = config.path.clone();
                let f = tokio::task::spawn_blocking(move || open_file(&path))
                    .await
                    .map_err(|e| JournalError::Task(e.to_string()))??;
                Backend::File(Arc::new(Mutex::new(f)))
            }
            JournalKind::Postgres => {
                let url = config.url.as_deref().unwrap_or_default();
                Backend::Postgres(Arc::new(Pg::connect(url).await?))
            }
        })
    }
}

/// A file connection that reads events (both the reader's and the recoveries').
pub(super) trait Events {
    fn event(&self, event_id: &str) -> Result<Option<String>, JournalError>;
}

impl Events for FileReader {
    fn event(&self, event_id: &str) -> Result<Option<String>, JournalError> {
        FileReader::event(self, event_id)
    }
}

impl Events for FileRecoveries {
    fn event(&self, event_id: &str) -> Result<Option<String>, JournalError> {
        FileRecoveries::event(self, event_id)
    }
}

impl<F: Events + Send + 'static> Backend<F> {
    async fn event(&self, event_id: &str) -> Result<Option<String>, JournalError> {
        match self {
            Backend::File(f) => {
                let id = event_id.to_owned();
                on_file(f, move |r| r.event(&id)).await
            }
            Backend::Postgres(p) => p.event(event_id).await,
        }
    }
}

/// Reads the journal: entries, events, counts.
#[derive(Clone)]
pub struct Reader(Backend<FileReader>);

impl Reader {
    /// Opens the configured journal for reading. The file must exist
    /// ([`JournalError::Missing`] otherwise).
    pub async fn open(config: &JournalConfig) -> Result<Reader, JournalError> {
        Ok(Reader(Backend::open(config, FileReader::open).await?))
    }

    /// The entries `filter` selects, oldest first.
    pub async fn entries(&self, filter: &Filter) -> Result<Vec<Entry>, JournalError> {
        match &self.0 {
            Backend::File(f) => {
                let filter = filter.clone();
                on_file(f, move |r| r.entries(&filter)).await
            }
            Backend::Postgres(p) => p.entries(filter).await,
        }
    }

    /// The event as published, if the journal still holds it.
    pub async fn event(&self, event_id: &str) -> Result<Option<String>, JournalError> {
        self.0.event(event_id).await
    }

    /// A page of delivery entries, newest first (`journal::browse`).
    pub async fn browse(&self, b: &Browse) -> Result<Vec<Browsed>, JournalError> {
        match &self.0 {
            Backend::File(f) => {
                let b = b.clone();
                on_file(f, move |r| super::browse::deliveries_in_file(r.conn(), &b)).await
            }
            Backend::Postgres(p) => super::browse::deliveries_in_pg(p, b).await,
        }
    }

    /// A page of the operators' actions, newest first, below `before`.
    pub async fn actions(
        &self,
        before: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<(Cursor, Action)>, JournalError> {
        match &self.0 {
            Backend::File(f) => {
                on_file(f, move |r| {
                    super::browse::actions_in_file(r.conn(), before, limit)
                })
                .await
            }
            Backend::Postgres(p) => super::browse::actions_in_pg(p, before, limit).await,
        }
    }

    /// Per destination, how many entries of each outcome there are from the minute holding
    /// `since` on.
    pub async fn counts(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, String, u64)>, JournalError> {
        match &self.0 {
            Backend::File(f) => on_file(f, move |r| r.counts(since)).await,
            Backend::Postgres(p) => p.counts(since).await,
        }
    }

    /// `destination`'s counts per hour and outcome, from the minute holding `since` on,
    /// oldest first.
    pub async fn per_hour(
        &self,
        destination: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<super::HourCount>, JournalError> {
        match &self.0 {
            Backend::File(f) => {
                let d = destination.to_owned();
                on_file(f, move |r| r.per_hour(&d, since)).await
            }
            Backend::Postgres(p) => p.per_hour(destination, since).await,
        }
    }
}

/// Recoveries and operators' actions: read and written beside a running relay.
#[derive(Clone)]
pub struct Recoveries(Backend<FileRecoveries>);

impl Recoveries {
    /// Opens the configured journal, its schema brought up to date. The file must exist.
    pub async fn open(config: &JournalConfig) -> Result<Recoveries, JournalError> {
        Ok(Recoveries(
            Backend::open(config, FileRecoveries::open).await?,
        ))
    }

    /// Where an open-ended recovery's window ends (when it was first asked for).
    pub async fn pinned_until(&self, w: &Window) -> Result<Option<DateTime<Utc>>, JournalError> {
        match &self.0 {
            Backend::File(f) => {
                let w = w.clone();
                on_file(f, move |r| r.pinned_until(&w)).await
            }
            Backend::Postgres(p) => p.pinned_until(w).await,
        }
    }

    /// The events of `w` the recovery `id` has not sent yet, oldest first.
    pub async fn candidates(&self, w: &Window, id: &str) -> Result<Vec<Candidate>, JournalError> {
        match &self.0 {
            Backend::File(f) => {
                let (w, id) = (w.clone(), id.to_owned());
                on_file(f, move |r| r.candidates(&w, &id)).await
            }
            Backend::Postgres(p) => p.candidates(w, id).await,
        }
    }

    /// How many events the recovery has sent so far.
    pub async fn sent(&self, recovery: &str) -> Result<u64, JournalError> {
        match &self.0 {
            Backend::File(f) => {
                let id = recovery.to_owned();
                on_file(f, move |r| r.sent(&id)).await
            }
            Backend::Postgres(p) => p.sent(recovery).await,
        }
    }

    /// The event as published.
    pub async fn event(&self, event_id: &str) -> Result<Option<String>, JournalError> {
        self.0.event(event_id).await
    }

    /// Records that `who` asked for the recovery `id` of `w` (once).
    pub async fn begin(&self, id: &str, w: &Window, who: &str) -> Result<(), JournalError> {
        match &self.0 {
            Backend::File(f) => {
                let (id, w, who) = (id.to_owned(), w.clone(), who.to_owned());
                on_file(f, move |r| r.begin(&id, &w, &who)).await
            }
            Backend::Postgres(p) => p.begin(id, w, who).await,
        }
    }

    /// Records that the recovery sent `event_id`.
    pub async fn mark(&self, recovery: &str, event_id: &str) -> Result<(), JournalError> {
        match &self.0 {
            Backend::File(f) => {
                let (id, e) = (recovery.to_owned(), event_id.to_owned());
                on_file(f, move |r| r.mark(&id, &e)).await
            }
            Backend::Postgres(p) => p.mark(recovery, event_id).await,
        }
    }

    /// Writes an operator's action.
    pub async fn act(&self, a: &Action) -> Result<(), JournalError> {
        match &self.0 {
            Backend::File(f) => {
                let a = a.clone();
                on_file(f, move |r| r.act(&a)).await
            }
            Backend::Postgres(p) => p.act(a).await,
        }
    }

    /// The latest actions, newest first.
    pub async fn actions(&self, limit: usize) -> Result<Vec<Action>, JournalError> {
        match &self.0 {
            Backend::File(f) => on_file(f, move |r| r.actions(limit)).await,
            Backend::Postgres(p) => p.actions(limit).await,
        }
    }
}
