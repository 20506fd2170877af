//! One connection of the pool, each statement on it within [`CALL_TIMEOUT`]: a connection on
//! which a statement failed or did not answer in time is closed when let go, never given back
//! to the pool (a server that froze would hold every later call on it).

use std::error::Error as _;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Transaction};

use super::tls::{HandshakeError, io_reason};
use crate::journal::{CALL_TIMEOUT, JournalError};

pub(in crate::journal) struct Conn {
    obj: Option<Object>,
    /// False while a call is under way, and after one that failed otherwise than by the
    /// database's refusal of the statement.
    sound: AtomicBool,
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl Conn {
    pub(super) fn new(obj: Object) -> Conn {
        Conn {
            obj: Some(obj),
            sound: AtomicBool::new(true),
        }
    }

    fn client(&self) -> &Client {
        self.obj.as_ref().expect("held until dropped")
    }

    async fn bounded<T>(
        &self,
        what: &'static str,
        call: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, JournalError> {
        self.sound.store(false, Ordering::SeqCst);
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Err(_) => Err(JournalError::Timeout(what, CALL_TIMEOUT)),
            Ok(result) => {
                // The database refused the statement: the connection itself is sound.
                let sound = result
                    .as_ref()
                    .map_or_else(|e| e.as_db_error().is_some(), |_| true);
                self.sound.store(sound, Ordering::SeqCst);
                Ok(result?)
            }
        }
    }

    pub(in crate::journal) async fn query(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, JournalError> {
        self.bounded("reading", self.client().query(sql, params))
            .await
    }

    pub(in crate::journal) async fn query_one(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Row, JournalError> {
        self.bounded("reading", self.client().query_one(sql, params))
            .await
    }

    pub(in crate::journal) async fn query_opt(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, JournalError> {
        self.bounded("reading", self.client().query_opt(sql, params))
            .await
    }

    pub(in crate::journal) async fn execute(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<u64, JournalError> {
        self.bounded("writing", self.client().execute(sql, params))
            .await
    }

    #[cfg(test)]
    pub(in crate::journal) async fn batch_execute(&self, sql: &str) -> Result<(), JournalError> {
        self.bounded("writing", self.client().batch_execute(sql))
            .await
    }

    /// `f` in a transaction, committed, all within `limit`.
    pub(in crate::journal) async fn transaction<T>(
        &mut self,
        what: &'static str,
        limit: Duration,
        f: impl AsyncFnOnce(&Transaction<'_>) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        self.sound.store(false, Ordering::SeqCst);
        let client: &mut Client = self.obj.as_mut().expect("held until dropped");
        let run = async {
            let tx = client.transaction().await?;
            let value = f(&tx).await?;
            tx.commit().await?;
            Ok(value)
        };
        let result = tokio::time::timeout(limit, run)
            .await
            .unwrap_or(Err(JournalError::Timeout(what, limit)));
        if result.is_ok() {
            self.sound.store(true, Ordering::SeqCst);
        }
        result
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if !*self.sound.get_mut()
            && let Some(obj) = self.obj.take()
        {
            // Out of the pool: the client goes, and its connection closes.
            drop(Object::take(obj));
        }
    }
}

/// Why connecting failed, in words: a refused handshake says which check failed (the CA, the
/// name, the dates, the client certificate), whether the handshake or the first message after
/// it (where TLS 1.3 tells of a refused client certificate) failed; the rest as
/// tokio-postgres says it.
pub(super) fn reason(e: &tokio_postgres::Error) -> String {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<HandshakeError>() {
            return format!("TLS handshake refused: {}", h.reason());
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|i| i.downcast_ref::<rustls::Error>().is_some())
        {
            return format!("TLS refused: {}", io_reason(io));
        }
        source = s.source();
    }
    super::said(e)
}
