//! Schema 5 (bodies on entries) against schema 4 (an events table): the same entries written
//! by the version 4 writer (as it was) to a version 4 file and by today's journal, and the
//! recovery candidates compared before and after pruning; and a version 4 file brought up to
//! date by two processes at once, each event keeping its body and the time it was first seen.
//! Today's journal is used through the crate's API; the version 4 file, through SQLite.

use chrono::{DateTime, TimeZone, Utc};
use postback_relay::journal::{
    Entry, Journal, JournalConfig, Outcome, Reader, Recoveries, Which, Window,
};
use prometheus::Registry;
use rusqlite::Connection;

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const DAY: i64 = 86_400_000;
/// Events of the workload are this far apart (a day holds 20).
const SLOT: i64 = DAY / 20;

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

/// The outcome's detail, as stored: a retry's tier, a dead letter's reason.
fn detail(o: &Outcome) -> Option<&str> {
    match o {
        Outcome::RetryScheduled(d) | Outcome::DeadLettered(d) => Some(d),
        _ => None,
    }
}

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
        at: from_ms(at),
        outcome,
        http_status: None,
        error_class: None,
        latency_ms: None,
        request: None,
        response: None,
        recovery: recovery.map(str::to_owned),
        trace_id: None,
        event: body.then(|| format!(r#"{{"event_id":"{event}"}}"#)),
    }
}

fn v4(path: &std::path::Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    for sql in [
        include_str!("../src/journal/migrations/0001_deliveries.sql"),
        include_str!("../src/journal/migrations/0002_recoveries.sql"),
        include_str!("../src/journal/migrations/0003_events_by_rowid.sql"),
        include_str!("../src/journal/migrations/0004_no_events_order_index.sql"),
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
                rusqlite::params![e.event_id, e.order_id, e.event_type, body, ms(e.at)],
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
                ms(e.at),
                e.outcome.code(),
                detail(&e.outcome),
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
        rusqlite::params![w.destination, ms(w.since), w.until.map(ms), id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

async fn new_candidates(rec: &Recoveries, w: &Window, id: &str) -> Vec<(String, i64)> {
    rec.candidates(w, id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.event_id, ms(c.first_at)))
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
/// timestamps. Every entry is a few seconds from `t0` plus a whole number of [`SLOT`]s.
fn workload(seed: u64, events: usize, t0: i64) -> Vec<Vec<Entry>> {
    let mut rng = Rng(seed);
    let mut pending: Vec<Entry> = Vec::new();
    for i in 0..events {
        let id = format!("e{i:05}");
        // Coarse times so that many are equal.
        let base = t0 + (i as i64) * SLOT + (rng.below(3) as i64) * 1000;
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
    pending.sort_by_key(|e| ms(e.at));
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

fn windows(t0: i64) -> Vec<Window> {
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
                        from_ms(t0 + s * DAY),
                        u.map(|u| from_ms(t0 + u * DAY)),
                        outcome,
                    )
                    .unwrap(),
                );
            }
        }
    }
    out
}

async fn compare(old: &Connection, rec: &Recoveries, label: &str, t0: i64) -> usize {
    let mut diffs = 0;
    for w in windows(t0) {
        for id in ["none", "r1"] {
            let a = old_candidates(old, &w, id);
            let b = new_candidates(rec, &w, id).await;
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
                    (ms(w.since) - t0) / DAY,
                    w.until.map(|u| (ms(u) - t0) / DAY),
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

/// The journal in the file at `path`, pruning what is older than `retention_days`, with room
/// in its buffer for every entry of the workload.
fn config(path: &std::path::Path, retention_days: u32) -> JournalConfig {
    JournalConfig {
        path: path.to_owned(),
        retention_days,
        buffer: 100_000,
        ..JournalConfig::default()
    }
}

fn written(registry: &Registry) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "postback_relay_journal_written_total")
        .flat_map(|f| f.get_metric().iter())
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

/// Today's journal fed `batches` in order, stopped once it has committed every entry.
async fn write(config: &JournalConfig, batches: &[Vec<Entry>]) {
    let registry = Registry::new();
    let (journal, writer) = Journal::open(config, &registry).await.unwrap();
    let mut n = 0;
    for e in batches.iter().flatten() {
        journal.record(e.clone()).unwrap();
        n += 1;
    }
    drop(journal);
    writer
        .close(tokio::time::Instant::now() + std::time::Duration::from_secs(120))
        .await;
    assert_eq!(written(&registry), n, "every entry committed");
}

/// Today's journal pruning what is past its retention (its writer starts a pruning as it
/// starts, a step at a time), stopped once no entry before `cut` is left.
async fn prune(config: &JournalConfig, cut: i64) {
    let (journal, writer) = Journal::open(config, &Registry::new()).await.unwrap();
    let conn = Connection::open(&config.path).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let left: i64 = conn
            .query_row("SELECT count(*) FROM entries WHERE at < ?1", [cut], |r| {
                r.get(0)
            })
            .unwrap();
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} entries before the cut-off not pruned within 120 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(journal);
    writer
        .close(tokio::time::Instant::now() + std::time::Duration::from_secs(120))
        .await;
}

/// Old and new writers fed the same batches; candidates compared, before and after pruning.
/// Today's journal prunes what is older than its retention (100 days) when its writer starts:
/// the workload's day 100 is set at 100 days less half an hour before now, so that a pruning
/// started within half an hour cuts between the same entries as a cut-off at day 100 (every
/// entry is a few seconds past a whole number of [`SLOT`]s).
#[tokio::test(flavor = "multi_thread")]
async fn differential_old_and_new_candidates() {
    let t0 = ms(Utc::now()) - 200 * DAY + 30 * 60_000;
    let dir = tempfile::tempdir().unwrap();
    let old_path = dir.path().join("old.db");
    let new_path = dir.path().join("new.db");
    let mut old = v4(&old_path);
    let batches = workload(0x9e3779b97f4a7c15, 3000, t0);
    for b in &batches {
        old_commit(&mut old, b);
    }
    // Kept for a century: nothing is pruned while the workload is written.
    write(&config(&new_path, 36_500), &batches).await;
    mark_some(&old);
    let new_conn = Connection::open(&new_path).unwrap();
    copy_recovered(&old, &new_conn);
    assert!(bodies(&new_conn).is_empty(), "{:?}", bodies(&new_conn));
    let rec = Recoveries::open(&config(&new_path, 36_500)).await.unwrap();
    let before = compare(&old, &rec, "no prune", t0).await;
    // Prune to day 100, both ways, a step at a time.
    let cut = t0 + 100 * DAY;
    while old_prune_step(&old, cut) == 1000 {}
    prune(&config(&new_path, 100), cut).await;
    assert!(
        ms(Utc::now()) - 100 * DAY < cut,
        "the pruning started too late to cut at day 100"
    );
    assert!(bodies(&new_conn).is_empty(), "{:?}", bodies(&new_conn));
    let after = compare(&old, &rec, "after prune", t0).await;
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

/// The SQLite schema's versions: one file each in `src/journal/migrations/`.
fn versions() -> i64 {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/journal/migrations");
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|f| {
            f.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|e| e == "sql")
        })
        .count() as i64
}

/// v4 file: an event with an in-process retry (body on the last call) at two destinations,
/// and an events row with no entries.
#[tokio::test]
async fn migration_keeps_first_at_and_bodies() {
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
    let w = Window::new("hoqu".into(), from_ms(T0 + 1_000), None, Which::Any).unwrap();
    let w = Window {
        until: Some(from_ms(T0 + DAY)),
        ..w
    };
    let before = old_candidates(&old, &w, "a");
    let wd = Window {
        outcome: Which::Delivered,
        ..w.clone()
    };
    let before_d = old_candidates(&old, &wd, "a");
    drop(old);
    // Two processes opening the v4 file at once (each opening brings the schema up to date,
    // on a thread of its own).
    let config = JournalConfig {
        path: path.clone(),
        ..JournalConfig::default()
    };
    let (r1, r2) = tokio::join!(Recoveries::open(&config), Recoveries::open(&config));
    drop((r1.unwrap(), r2.unwrap()));
    let conn = Connection::open(&path).unwrap();
    let v: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, versions());
    // The reader opens a file of the newest version only.
    assert!(Reader::open(&config).await.is_ok(), "version {v}");
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM entries WHERE body IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
    let rec = Recoveries::open(&config).await.unwrap();
    let after = new_candidates(&rec, &w, "a").await;
    let after_d = new_candidates(&rec, &wd, "a").await;
    assert_eq!(
        before_d, after_d,
        "Delivered first_at changed by the migration"
    );
    // An events row with no entry left (`y`) was one that pruning was about to remove: it
    // does not come through the migration.
    let kept: Vec<_> = before.into_iter().filter(|(e, _)| e != "y").collect();
    assert_eq!(kept, after, "Any window changed by the migration");
}
