//! Schema 5 (bodies on entries) against schema 4 (an events table): the same batches fed to
//! the old writer on a version 4 file and to today's, the recovery candidates compared before
//! and after pruning; pruning, migrating and sharing the file with another writer.
use super::recovery::FileRecoveries;
use super::*;
use rusqlite::Connection;

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const DAY: i64 = 86_400_000;

fn ent(
    event: &str,
    dest: &str,
    at: i64,
    outcome: Outcome,
    body: bool,
    recovery: Option<&str>,
) -> Entry {
    Entry {
        event_id: event.into(),
        order_id: None,
        event_type: "order".into(),
        destination: dest.into(),
        attempt: 1,
        at: sqlite::from_ms(at),
        outcome,
        http_status: None,
        error_class: None,
        latency_ms: None,
        request: None,
        response: None,
        recovery: recovery.map(str::to_owned),
        event: body.then(|| format!(r#"{{"event_id":"{event}"}}"#)),
    }
}

fn v4(path: &std::path::Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    for sql in [
        include_str!("migrations/0001_deliveries.sql"),
        include_str!("migrations/0002_recoveries.sql"),
        include_str!("migrations/0003_events_by_rowid.sql"),
        include_str!("migrations/0004_no_events_order_index.sql"),
    ] {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "user_version", 4).unwrap();
    conn
}

/// The v4 writer's commit, as it was.
fn old_commit(conn: &mut Connection, batch: &[Entry]) {
    let tx = conn.transaction().unwrap();
    for e in batch {
        if let Some(body) = &e.event {
            tx.execute(
                "INSERT INTO events (event_id, order_id, event_type, body, first_at)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(event_id) DO NOTHING",
                rusqlite::params![e.event_id, e.order_id, e.event_type, body, sqlite::ms(e.at)],
            )
            .unwrap();
        }
        tx.execute(
            "INSERT INTO entries (event_id, order_id, event_type, destination, attempt, at,
               outcome, detail, http_status, error_class, latency_ms, request, response, recovery)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            rusqlite::params![
                e.event_id,
                e.order_id,
                e.event_type,
                e.destination,
                e.attempt,
                sqlite::ms(e.at),
                e.outcome.code(),
                e.outcome.detail(),
                e.http_status,
                e.error_class,
                e.latency_ms,
                e.request,
                e.response,
                e.recovery
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

fn old_prune_step(conn: &Connection, before: i64) -> usize {
    let gone = conn
        .execute(
            "DELETE FROM entries WHERE id IN
               (SELECT id FROM entries WHERE at < ?1 ORDER BY at LIMIT ?2)",
            rusqlite::params![before, 1000],
        )
        .unwrap();
    conn.execute(
        "DELETE FROM events WHERE event_id IN
           (SELECT event_id FROM events e WHERE first_at < ?1
              AND NOT EXISTS (SELECT 1 FROM entries x WHERE x.event_id = e.event_id)
            LIMIT ?2)",
        rusqlite::params![before, 1000],
    )
    .unwrap();
    gone
}

fn old_candidates(conn: &Connection, w: &Window, id: &str) -> Vec<(String, i64)> {
    let sql = match w.outcome {
        Which::Delivered => {
            "SELECT ev.event_id, ev.first_at FROM events ev
             WHERE ev.event_id IN (
                 SELECT event_id FROM entries
                 WHERE destination = ?1 AND outcome = 'delivered' AND recovery IS NULL
                   AND at >= ?2 AND (?3 IS NULL OR at < ?3))
               AND NOT EXISTS (SELECT 1 FROM recovered r
                               WHERE r.recovery_id = ?4 AND r.event_id = ev.event_id)
             ORDER BY ev.first_at, ev.event_id"
        }
        Which::Any => {
            "SELECT ev.event_id, ev.first_at FROM events ev
             WHERE ?1 IS NOT NULL AND ev.first_at >= ?2 AND (?3 IS NULL OR ev.first_at < ?3)
               AND NOT EXISTS (SELECT 1 FROM recovered r
                               WHERE r.recovery_id = ?4 AND r.event_id = ev.event_id)
             ORDER BY ev.first_at, ev.event_id"
        }
    };
    let mut stmt = conn.prepare(sql).unwrap();
    stmt.query_map(
        rusqlite::params![
            w.destination,
            sqlite::ms(w.since),
            w.until.map(sqlite::ms),
            id
        ],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn new_candidates(rec: &FileRecoveries, w: &Window, id: &str) -> Vec<(String, i64)> {
    rec.candidates(w, id)
        .unwrap()
        .into_iter()
        .map(|c| (c.event_id, sqlite::ms(c.first_at)))
        .collect()
}

fn bodies(conn: &Connection) -> Vec<(String, i64)> {
    conn.prepare("SELECT event_id, count(*) FROM entries WHERE body IS NOT NULL GROUP BY event_id HAVING count(*) > 1")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A workload like the relay's: events at two destinations, in-process retries (the body on
/// each destination's last entry), broker retries in later batches, recovery entries, equal
/// timestamps.
fn workload(seed: u64, events: usize) -> Vec<Vec<Entry>> {
    let mut rng = Rng(seed);
    let mut pending: Vec<Entry> = Vec::new();
    for i in 0..events {
        let id = format!("e{i:05}");
        // Coarse times so that many are equal.
        let base = T0 + (i as i64) * (DAY / 20) + (rng.below(3) as i64) * 1000;
        for dest in ["hoqu", "powerspace"] {
            if rng.below(4) == 0 {
                continue;
            }
            let calls = 1 + rng.below(3) as i64;
            let mut at = base;
            for c in 0..calls {
                let last = c + 1 == calls;
                let outcome = if !last {
                    Outcome::RetryScheduled("in_process".into())
                } else if rng.below(3) == 0 {
                    Outcome::RetryScheduled("30s".into())
                } else {
                    Outcome::Delivered
                };
                pending.push(ent(&id, dest, at, outcome, last, None));
                at += (rng.below(2) as i64) * 1000;
            }
            // A broker retry days later.
            if rng.below(5) == 0 {
                let later = base + (1 + rng.below(60) as i64) * DAY;
                pending.push(ent(&id, dest, later, Outcome::Delivered, true, None));
            }
            // A recovery entry much later.
            if rng.below(6) == 0 {
                let later = base + (30 + rng.below(200) as i64) * DAY;
                pending.push(ent(
                    &id,
                    dest,
                    later,
                    Outcome::Delivered,
                    true,
                    Some("rec1"),
                ));
            }
        }
    }
    // Stable sort by time, with a little disorder inside a batch.
    pending.sort_by_key(|e| sqlite::ms(e.at));
    let mut batches = Vec::new();
    let mut i = 0;
    while i < pending.len() {
        let n = (1 + rng.below(40) as usize).min(pending.len() - i);
        let mut b: Vec<Entry> = pending[i..i + n].to_vec();
        if rng.below(3) == 0 {
            b.reverse();
        }
        batches.push(b);
        i += n;
    }
    batches
}

fn windows() -> Vec<Window> {
    let mut out = Vec::new();
    for dest in ["hoqu", "powerspace"] {
        for outcome in [Which::Delivered, Which::Any] {
            for (s, u) in [
                (0, None),
                (0, Some(400)),
                (3, Some(10)),
                (10, Some(11)),
                (50, Some(120)),
                (150, None),
                (200, Some(260)),
            ] {
                out.push(
                    Window::new(
                        dest.into(),
                        sqlite::from_ms(T0 + s * DAY),
                        u.map(|u| sqlite::from_ms(T0 + u * DAY)),
                        outcome,
                    )
                    .unwrap(),
                );
            }
        }
    }
    out
}

fn compare(old: &Connection, rec: &FileRecoveries, label: &str) -> usize {
    let mut diffs = 0;
    for w in windows() {
        for id in ["none", "r1"] {
            let a = old_candidates(old, &w, id);
            let b = new_candidates(rec, &w, id);
            let mut seen = std::collections::HashSet::new();
            assert!(
                b.iter().all(|(e, _)| seen.insert(e.clone())),
                "listed twice: {b:?}"
            );
            if a != b {
                diffs += 1;
                let sa: std::collections::BTreeMap<_, _> = a.iter().cloned().collect();
                let sb: std::collections::BTreeMap<_, _> = b.iter().cloned().collect();
                let only_old: Vec<_> = sa
                    .iter()
                    .filter(|(k, _)| !sb.contains_key(*k))
                    .take(3)
                    .collect();
                let only_new: Vec<_> = sb
                    .iter()
                    .filter(|(k, _)| !sa.contains_key(*k))
                    .take(3)
                    .collect();
                let moved: Vec<_> = sa
                    .iter()
                    .filter_map(|(k, v)| sb.get(k).filter(|n| *n != v).map(|n| (k, (n - v) / 1000)))
                    .take(3)
                    .collect();
                eprintln!(
                    "[{label}] {} {:?} [{}..{:?}) id={id}: old {} new {}; only old {:?}; only new {:?}; first_at moved (s) {:?}",
                    w.destination,
                    w.outcome,
                    (sqlite::ms(w.since) - T0) / DAY,
                    w.until.map(|u| (sqlite::ms(u) - T0) / DAY),
                    a.len(),
                    b.len(),
                    only_old,
                    only_new,
                    moved
                );
            }
        }
    }
    diffs
}

fn mark_some(conn: &Connection) {
    conn.execute(
        "INSERT INTO recovered (recovery_id, event_id, sent_at)
         SELECT 'r1', event_id, 0 FROM (SELECT DISTINCT event_id FROM entries) WHERE abs(random()) % 4 = 0",
        [],
    )
    .unwrap();
}

fn copy_recovered(from: &Connection, to: &Connection) {
    let rows: Vec<(String, String)> = from
        .prepare("SELECT recovery_id, event_id FROM recovered")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (r, e) in rows {
        to.execute("INSERT INTO recovered VALUES (?1, ?2, 0)", [r, e])
            .unwrap();
    }
}

/// Old and new writers fed the same batches; candidates compared, before and after pruning.
#[test]
fn differential_old_and_new_candidates() {
    let dir = tempfile::tempdir().unwrap();
    let old_path = dir.path().join("old.db");
    let new_path = dir.path().join("new.db");
    let mut old = v4(&old_path);
    let mut db = sqlite::Db::open_now(&new_path).unwrap();
    for b in workload(0x9e3779b97f4a7c15, 3000) {
        old_commit(&mut old, &b);
        db.commit_for_test(&b);
    }
    mark_some(&old);
    let new_conn = Connection::open(&new_path).unwrap();
    copy_recovered(&old, &new_conn);
    assert!(bodies(&new_conn).is_empty(), "{:?}", bodies(&new_conn));
    let rec = FileRecoveries::open(&new_path).unwrap();
    let before = compare(&old, &rec, "no prune");
    // Prune to day 100, both ways, a step at a time.
    let cut = T0 + 100 * DAY;
    while old_prune_step(&old, cut) == 1000 {}
    while db.prune_step(sqlite::from_ms(cut)).unwrap() == 1000 {}
    assert!(bodies(&new_conn).is_empty(), "{:?}", bodies(&new_conn));
    let after = compare(&old, &rec, "after prune");
    // Every event still told of by an entry has its body.
    let bodiless: i64 = new_conn
        .query_row(
            "SELECT count(DISTINCT event_id) FROM entries e WHERE NOT EXISTS
               (SELECT 1 FROM entries b WHERE b.event_id = e.event_id AND b.body IS NOT NULL)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(bodiless, 0);
    assert_eq!(before, 0, "candidates differ without pruning");
    assert_eq!(after, 0, "candidates differ after pruning");
}

/// An event's entries both older than the cut-off, split by a prune step's LIMIT.
#[test]
fn a_prune_step_that_cuts_through_an_event_keeps_its_body_while_an_entry_stays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let mut db = sqlite::Db::open_now(&path).unwrap();
    let mut batch = vec![ent("x", "hoqu", T0, Outcome::Delivered, true, None)];
    for i in 0..1000 {
        batch.push(ent(
            &format!("f{i}"),
            "hoqu",
            T0 + 1,
            Outcome::Delivered,
            true,
            None,
        ));
    }
    batch.push(ent(
        "x",
        "powerspace",
        T0 + 2,
        Outcome::Delivered,
        true,
        None,
    ));
    db.commit_for_test(&batch);
    let reader = sqlite::FileReader::open(&path).unwrap();
    assert!(reader.event("x").unwrap().is_some());
    assert_eq!(db.prune_step(sqlite::from_ms(T0 + DAY)).unwrap(), 1000);
    let left = reader
        .entries(&Filter {
            event_id: Some("x".into()),
            limit: 10,
            ..Filter::default()
        })
        .unwrap();
    assert_eq!(
        left.len(),
        1,
        "x's powerspace entry is still in the journal"
    );
    assert!(
        reader.event("x").unwrap().is_some(),
        "x has an entry left but its body is gone (the old journal kept the events row until no entry referred to it)"
    );
}

/// A pruned entry hands its body to a later entry of its event, with the time the journal
/// first had it: the event stays in the window it came in, and in no later one.
#[test]
fn pruning_does_not_move_an_event_into_a_later_window() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let mut db = sqlite::Db::open_now(&path).unwrap();
    // Received on day 0; sent again by a recovery on day 200.
    db.commit_for_test(&[ent("x", "hoqu", T0, Outcome::Delivered, true, None)]);
    db.commit_for_test(&[ent(
        "x",
        "hoqu",
        T0 + 200 * DAY,
        Outcome::Delivered,
        true,
        Some("rec"),
    )]);
    let rec = FileRecoveries::open(&path).unwrap();
    let w = |s, u| {
        Window::new(
            "new-dest".into(),
            sqlite::from_ms(T0 + s * DAY),
            Some(sqlite::from_ms(T0 + u * DAY)),
            Which::Any,
        )
        .unwrap()
    };
    assert_eq!(new_candidates(&rec, &w(0, 1), "a").len(), 1);
    assert_eq!(new_candidates(&rec, &w(190, 210), "a").len(), 0);
    db.prune_step(sqlite::from_ms(T0 + 100 * DAY)).unwrap();
    let early = new_candidates(&rec, &w(0, 1), "a");
    let late = new_candidates(&rec, &w(190, 210), "a");
    assert_eq!(early.len(), 1, "{early:?}");
    assert!(
        late.is_empty(),
        "an event received on day 0 is a backfill candidate of days 190..210: {late:?}"
    );
}

/// v4 file: an event with an in-process retry (body on the last call) at two destinations,
/// and an events row with no entries.
#[test]
fn migration_keeps_first_at_and_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let mut old = v4(&path);
    old_commit(
        &mut old,
        &[
            ent(
                "x",
                "hoqu",
                T0,
                Outcome::RetryScheduled("in_process".into()),
                false,
                None,
            ),
            ent("x", "hoqu", T0 + 5_000, Outcome::Delivered, true, None),
            ent(
                "x",
                "powerspace",
                T0 + 6_000,
                Outcome::Delivered,
                true,
                None,
            ),
            ent("y", "hoqu", T0 + 7_000, Outcome::Delivered, true, None),
        ],
    );
    old.execute("DELETE FROM entries WHERE event_id = 'y'", [])
        .unwrap();
    let w = Window::new("hoqu".into(), sqlite::from_ms(T0 + 1_000), None, Which::Any).unwrap();
    let w = Window {
        until: Some(sqlite::from_ms(T0 + DAY)),
        ..w
    };
    let before = old_candidates(&old, &w, "a");
    let wd = Window {
        outcome: Which::Delivered,
        ..w.clone()
    };
    let before_d = old_candidates(&old, &wd, "a");
    drop(old);
    // Two processes opening the v4 file at once.
    let p1 = path.clone();
    let p2 = path.clone();
    let t1 = std::thread::spawn(move || sqlite::Db::open_now(&p1).map(|_| ()));
    let t2 = std::thread::spawn(move || sqlite::Db::open_now(&p2).map(|_| ()));
    t1.join().unwrap().unwrap();
    t2.join().unwrap().unwrap();
    let conn = Connection::open(&path).unwrap();
    let v: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, 6);
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM entries WHERE body IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
    let rec = FileRecoveries::open(&path).unwrap();
    let after = new_candidates(&rec, &w, "a");
    let after_d = new_candidates(&rec, &wd, "a");
    assert_eq!(
        before_d, after_d,
        "Delivered first_at changed by the migration"
    );
    // An events row with no entry left (`y`) was one that pruning was about to remove: it
    // does not come through the migration.
    let kept: Vec<_> = before.into_iter().filter(|(e, _)| e != "y").collect();
    assert_eq!(kept, after, "Any window changed by the migration");
}

/// Another connection (the `recover` command marking events, the console writing an
/// action) commits while the writer commits: the writer waits its turn, it does not fail.
#[test]
fn a_concurrent_writer_does_not_make_commits_fail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let mut db = sqlite::Db::open_now(&path).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let other = {
        let (stop, path) = (stop.clone(), path.clone());
        std::thread::spawn(move || {
            let c = Connection::open(&path).unwrap();
            c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                c.execute("INSERT INTO recovered VALUES ('r', ?1, 0)", [i.to_string()])
                    .unwrap();
                i += 1;
                // Paced as the recover command writes (once per event it sends): a writer
                // that never lets go would starve any other past its busy timeout, since
                // SQLite's waiting is not fair.
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            i
        })
    };
    let mut failed = Vec::new();
    for i in 0..3000 {
        let b = [ent(
            &format!("e{i}"),
            "hoqu",
            T0 + i,
            Outcome::Delivered,
            true,
            None,
        )];
        if let Err(e) = db.try_commit_for_test(&b) {
            failed.push(e.to_string());
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = other.join().unwrap();
    assert!(writes > 0, "the other connection wrote meanwhile");
    assert!(
        failed.is_empty(),
        "{} of 3000 commits failed: {:?}",
        failed.len(),
        failed.first()
    );
}
