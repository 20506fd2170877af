//! PostgreSQL refuses the NUL character in text, and a batch it refuses is kept and tried
//! again: one event id, partner answer or letter holding a NUL would hold every entry behind
//! it until the buffer overflows. Before a batch goes to PostgreSQL, each NUL in its text is
//! written as U+FFFD (the replacement character), as the SQLite file would have kept it
//! whole.

use crate::journal::Entry;
use crate::journal::letter::Letter;

const REPLACEMENT: &str = "\u{fffd}";

fn clean(s: &mut String) {
    if s.contains('\0') {
        *s = s.replace('\0', REPLACEMENT);
    }
}

fn clean_opt(s: &mut Option<String>) {
    if let Some(s) = s {
        clean(s);
    }
}

/// Every text of an entry, without NUL.
pub(super) fn entry(e: &mut Entry) {
    clean(&mut e.event_id);
    clean_opt(&mut e.order_id);
    clean(&mut e.event_type);
    clean(&mut e.destination);
    e.outcome.clean_detail(clean);
    clean_opt(&mut e.error_class);
    clean_opt(&mut e.request);
    clean_opt(&mut e.response);
    clean_opt(&mut e.recovery);
    clean_opt(&mut e.event);
}

/// Every text of a dead letter, without NUL.
pub(super) fn letter(l: &mut Letter) {
    clean(&mut l.id);
    clean(&mut l.destination);
    clean(&mut l.reason);
    clean_opt(&mut l.event_id);
    clean(&mut l.detail);
    clean(&mut l.letter);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Outcome;
    use crate::journal::writer::Sink as _;

    fn hostile_entry() -> Entry {
        Entry {
            event_id: "e\0nul".into(),
            order_id: Some("o\0".into()),
            event_type: "order".into(),
            destination: "hoqu".into(),
            attempt: 1,
            at: "2026-11-20T10:00:00Z".parse().unwrap(),
            outcome: Outcome::DeadLettered("partner_rejected\0".into()),
            http_status: Some(400),
            error_class: None,
            latency_ms: Some(1.0),
            request: Some("{\"url\":\"https://p/x\"}".into()),
            response: Some("bad\0answer".into()),
            recovery: None,
            trace_id: None,
            event: Some("{\"event_id\":\"e\\u0000nul\"}\0".into()),
        }
    }

    fn hostile_letter() -> Letter {
        Letter {
            id: "l\0".into(),
            at: "2026-11-20T10:00:00Z".parse().unwrap(),
            destination: "hoqu".into(),
            reason: "invalid_event".into(),
            event_id: Some("x\0".into()),
            attempts: 0,
            detail: "not\0json".into(),
            letter: "{\"body\":\"\0\"}".into(),
        }
    }

    #[test]
    fn no_nul_is_left_and_the_rest_is_kept() {
        let mut e = hostile_entry();
        entry(&mut e);
        assert_eq!(e.event_id, "e\u{fffd}nul");
        assert_eq!(e.order_id.as_deref(), Some("o\u{fffd}"));
        assert_eq!(e.response.as_deref(), Some("bad\u{fffd}answer"));
        assert_eq!(e.outcome.detail(), Some("partner_rejected\u{fffd}"));
        assert!(!format!("{e:?}").contains("\\0"));
        let mut l = hostile_letter();
        letter(&mut l);
        assert!(!format!("{l:?}").contains("\\0"), "{l:?}");
        assert_eq!(l.detail, "not\u{fffd}json");
    }

    /// A batch holding NUL commits: before, PostgreSQL refused it at every try, and the
    /// writer kept it, so nothing after it was ever written.
    #[tokio::test]
    async fn a_batch_holding_nul_commits_in_postgresql() {
        let Some((admin, name, url)) = super::super::tests::database().await else {
            return;
        };
        let mut sink = super::super::PgSink::new(&url);
        let (_, committed) = sink.commit(vec![hostile_entry()]).await;
        committed.unwrap();
        let (_, committed) = sink.commit_letters(vec![hostile_letter()]).await;
        committed.unwrap();
        let db = super::super::Pg::client(&url).await.unwrap();
        let n = async |sql: &str| -> i64 { db.query_one(sql, &[]).await.unwrap().get(0) };
        assert_eq!(
            n("SELECT count(*) FROM entries WHERE response = 'bad\u{fffd}answer'").await,
            1
        );
        assert_eq!(
            n("SELECT count(*) FROM dead_letters WHERE detail = 'not\u{fffd}json'").await,
            1
        );
        drop(db);
        drop(sink);
        admin
            .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
            .await
            .unwrap();
    }
}
