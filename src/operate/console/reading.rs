//! Reads of the dead-letter queue on the console's behalf (a page without an index to read,
//! a replay, a reindex). Each runs in a task of its own on a connection of its own, owned by
//! a guard: a page load that is aborted (a proxy or a script dropping the connection
//! mid-read) drops only the wait for the answer, while the read finishes, gives back what it
//! held in order, and closes its connection; and a read dropped anyway (the console
//! stopping) closes its connection through the guard, so the broker returns every message it
//! held at once.

use std::future::Future;

/// A broker connection closed when dropped, however its holder ends.
pub(crate) struct Connection(Option<lapin::Connection>);

impl Connection {
    pub(crate) async fn open(config: &crate::config::Config) -> Result<Connection, lapin::Error> {
        Ok(Connection(Some(
            crate::relay::broker::connect_to(&config.broker, "console").await?,
        )))
    }

    pub(crate) fn get(&self) -> &lapin::Connection {
        self.0.as_ref().expect("open until dropped")
    }

    /// Closes it now, waiting for the broker.
    pub(crate) async fn close(mut self) {
        if let Some(conn) = self.0.take() {
            let _ = conn.close(200, "done".into()).await;
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let Some(conn) = self.0.take() else {
            return;
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = conn.close(200, "dropped".into()).await;
            });
        }
    }
}

/// Runs `work` in a task of its own and waits for its answer: dropping the wait (the request
/// went away) leaves the work to finish on its own.
pub(crate) async fn detached<T: Send + 'static>(
    work: impl Future<Output = Result<T, String>> + Send + 'static,
) -> Result<T, String> {
    tokio::spawn(work)
        .await
        .unwrap_or_else(|e| Err(format!("the read stopped: {e}")))
}
