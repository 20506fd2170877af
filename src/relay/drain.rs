//! How a session ends. On a stop: take no more, let the work in flight finish within the grace
//! (that of sessions lost before too), let the last acks settle, close. When the connection is
//! lost: the work goes on to its end as an orphan (its partner calls are recorded in the store;
//! its acks are gone with the channel), and the next session starts. Every step has an end.

use lapin::options::{BasicCancelOptions, BasicQosOptions};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Relay;
use super::session::{ACK_SETTLE, CANCEL_TIMEOUT, CLOSE_BUDGET, Session};

impl Relay {
    /// Ends a session on a stop, within the grace and [`super::session::DRAIN_BOUNDS`].
    pub(super) async fn drain(&self, mut session: Session) {
        let grace_end = Instant::now() + self.grace();
        let alive = session.alive();
        for w in &session.watchers {
            w.abort();
        }
        // Take no more; deliveries buffered but not started stay unacked and return to the
        // queue when the channel closes.
        if alive {
            for t in &session.consumers {
                let cancel = session
                    .ch
                    .basic_cancel(t.tag.as_str().into(), BasicCancelOptions::default());
                let _ = tokio::time::timeout(CANCEL_TIMEOUT, cancel).await;
            }
        }
        finish(&mut session.tasks, grace_end).await;
        self.finish_orphans(grace_end).await;
        // Every task has reported (or was dropped, leaving its message unsettled): let the
        // settler send what is left, let the broker take the acks in, and close.
        let Session {
            conn,
            pub_conn,
            ch,
            settler,
            settling,
            ..
        } = session;
        drop(settler);
        let prefetch = self.config.broker.prefetch;
        let closing = async {
            let _ = settling.await;
            if alive {
                // A synchronous round trip: the broker has read every ack sent before it.
                let _ = ch.basic_qos(prefetch, BasicQosOptions::default()).await;
                tokio::time::sleep(ACK_SETTLE).await;
                let _ = ch.close(200, "shutdown".into()).await;
                let _ = conn.close(200, "shutdown".into()).await;
                let _ = pub_conn.close(200, "shutdown".into()).await;
            }
        };
        if tokio::time::timeout(CLOSE_BUDGET, closing).await.is_err() {
            tracing::warn!(
                message = "the broker did not take the last acks in time; they return to the queue"
            );
        }
        tracing::info!(message = "stopped consuming");
    }

    /// Ends a session whose connection was lost. Its work goes on: a partner call cut off
    /// midway would be sent again after the redelivery, while a finished one is recorded in
    /// the store (which does not depend on the broker) and its redelivery suppressed.
    pub(super) async fn abandon(&self, session: Session) {
        for w in &session.watchers {
            w.abort();
        }
        let Session {
            conn,
            pub_conn,
            tasks,
            ..
        } = session;
        self.adopt(tasks);
        // The next session does not wait for this one's connections: one that failed is
        // known dead, and the other, to the same node, is likely dead too, and would hold the
        // reconnect for the whole close budget. Those that still look alive are closed on the
        // side, within the budget.
        let closing = async move {
            let _ = tokio::join!(close_if_alive(&conn), close_if_alive(&pub_conn));
        };
        tokio::spawn(async move {
            let _ = tokio::time::timeout(CLOSE_BUDGET, closing).await;
        });
    }

    /// Keeps a lost session's work running, and forgets the finished work of earlier ones.
    fn adopt(&self, tasks: JoinSet<()>) {
        let mut orphans = self.orphans.lock().expect("orphans lock");
        for o in orphans.iter_mut() {
            while o.try_join_next().is_some() {}
        }
        orphans.retain(|o| !o.is_empty());
        orphans.push(tasks);
    }

    /// Lets the work of lost sessions finish until `deadline`, then stops what is left.
    pub(super) async fn finish_orphans(&self, deadline: Instant) {
        let orphans = std::mem::take(&mut *self.orphans.lock().expect("orphans lock"));
        for mut tasks in orphans {
            finish(&mut tasks, deadline).await;
        }
    }
}

/// Closes `conn` unless it is known to be closed or failed already.
async fn close_if_alive(conn: &lapin::Connection) {
    if conn.status().connected() {
        let _ = conn.close(200, "reconnecting".into()).await;
    }
}

/// Waits for `tasks` until `deadline`, then aborts what is left (its messages stay unacked and
/// return to the queue).
async fn finish(tasks: &mut JoinSet<()>, deadline: Instant) {
    let done = tokio::time::timeout_at(deadline, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if done.is_err() {
        tracing::warn!(
            message = "shutdown grace period over; unfinished deliveries return to the queue",
            unfinished = tasks.len()
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}
