//! The console's dead letters at size and under faults, against the real RabbitMQ, the real
//! journal file and real HTTP on loopback: an aborted page load hides no letter; pages come
//! from the journal's index of dead letters, which says when it differs from the queue and is
//! rebuilt from it; junk letters are discarded (the journal keeps them); a replay lists each
//! letter's result; and pages answer at 100,000 letters.

mod common;

use std::time::{Duration, Instant};

use common::{Env, event, eventually, until};
use postback_relay::interfaces::sandbox::Rule;
use postback_relay::journal::letters::{LetterFilter, Letters, State};
use postback_relay::relay::deadletter::{Envelope, Reason, Source};

const WAIT: Duration = Duration::from_secs(30);
const TOKEN: &str = "console-letters-token-4b8e1d";

fn source() -> Source {
    Source {
        queue: "events".into(),
        routing_key: "order".into(),
        message_id: None,
        redelivered: false,
    }
}

/// Puts `n` small dead letters in the queue, confirmed, with many in flight.
async fn fill_queue(env: &Env, n: usize) {
    let dead = env.topology().dead;
    let mut pending = std::collections::VecDeque::new();
    for i in 0..n {
        let mut e = Envelope::for_message(
            Reason::PartnerRejected,
            "HTTP 404".into(),
            format!("{{\"event_id\":\"f{i}\"}}").as_bytes(),
            None,
            source(),
        );
        e.destination = Some("powerspace".into());
        let body = serde_json::to_vec(&e).unwrap();
        pending.push_back(
            env.publisher
                .send_json("", &dead, &body, None, None)
                .await
                .unwrap(),
        );
        if pending.len() >= 500 {
            postback_relay::relay::broker::confirmed(pending.pop_front().unwrap(), &dead)
                .await
                .unwrap();
        }
    }
    for p in pending {
        postback_relay::relay::broker::confirmed(p, &dead)
            .await
            .unwrap();
    }
}

/// A console on this test's queues and journal; its address.
async fn console(env: &Env, journal: bool) -> String {
    let mut config = env.default_config().load();
    config.journal.enabled = journal;
    config.console.listen = "127.0.0.1:0".parse().unwrap();
    config.console.token = Some(TOKEN.into());
    let running = postback_relay::operate::console::start(config, env.shutdown.clone())
        .await
        .unwrap();
    format!("http://{}", running.addr)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get(base: &str, path: &str) -> (u16, String) {
    let r = http()
        .get(format!("{base}{path}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn post(base: &str, path: &str, body: String) -> reqwest::Response {
    http()
        .post(format!("{base}{path}"))
        .bearer_auth(TOKEN)
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// The console's form token, read off its recovery form.
async fn form_token(base: &str) -> String {
    let (_, page) = get(base, "/recover").await;
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a form token on the page")
        .to_owned()
}

/// A job started by a form, followed to its end; its page.
async fn job_done(base: &str, started: reqwest::Response) -> String {
    assert_eq!(started.status().as_u16(), 303, "a job started");
    let job = started.headers()["location"].to_str().unwrap().to_owned();
    let deadline = Instant::now() + WAIT;
    loop {
        let page = get(base, &job).await.1;
        if !page.contains("<p id=\"state\">running") {
            return page;
        }
        assert!(Instant::now() < deadline, "the job did not end: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A read dropped midway on a connection that stays open (as a long-running process's
/// would) lets go of every letter it held at once: nothing waits for the connection's end.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_dropped_midway_holds_nothing_on_a_connection_that_stays() {
    const N: usize = 5_000;
    let env = Env::new().await;
    env.declare().await;
    fill_queue(&env, N).await;
    let dead = env.topology().dead;
    let conn = std::sync::Arc::new(
        postback_relay::relay::broker::connect(&common::amqp_url(), None, "test-reader")
            .await
            .unwrap(),
    );
    for _ in 0..3 {
        let (reader, topology) = (conn.clone(), env.topology());
        let read = tokio::spawn(async move {
            postback_relay::operate::dlq::each(&reader, &topology, 1 << 20, |_| {
                std::thread::sleep(Duration::from_micros(200));
                Ok(())
            })
            .await
        });
        eventually(WAIT, "a read under way", || async {
            env.ready(&dead).await < N as u32
        })
        .await;
        read.abort();
        let _ = read.await;
        eventually(WAIT, "every letter back in the queue", || async {
            env.ready(&dead).await == N as u32
        })
        .await;
    }
}

/// Page loads dropped by their client mid-read (a proxy or a script giving up) while the
/// page reads the queue (no index: the journal is off) leave no letter held: the queue is
/// whole again, in every count, within a deadline, and every letter is listed.
#[tokio::test(flavor = "multi_thread")]
async fn aborted_page_loads_hide_no_letter() {
    const N: usize = 20_000;
    let env = Env::new().await;
    env.declare().await;
    fill_queue(&env, N).await;
    let dead = env.topology().dead;
    let base = console(&env, false).await;
    for _ in 0..3 {
        let load = tokio::spawn({
            let base = base.clone();
            async move { get(&base, "/dead").await }
        });
        // Mid-read: the read holds some letters out of the queue's count.
        eventually(WAIT, "a page load reading the queue", || async {
            env.ready(&dead).await < N as u32
        })
        .await;
        load.abort();
        let _ = load.await;
    }
    eventually(WAIT, "every letter back in the queue", || async {
        env.ready(&dead).await == N as u32
    })
    .await;
    let mut listed = 0;
    postback_relay::operate::dlq::each(&env.conn, &env.topology(), 1 << 20, |_| {
        listed += 1;
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(listed, N, "every letter listed");
}

/// Pages come from the index the relay writes as it dead-letters, letters from before
/// routing included (a body that is not JSON is shown as it came); a letter the index does
/// not know makes the pages say so until a reindex; a discarded letter leaves the queue and
/// stays in the journal; a replay lists each letter's result.
#[tokio::test(flavor = "multi_thread")]
async fn pages_come_from_the_index_which_is_reindexed_and_marks_discards_and_replays() {
    let env = Env::new().await;
    env.sandbox
        .add_rule(&Rule::answer(404).on_query("qci=gone"))
        .await
        .unwrap();
    let builder = env.default_config();
    let running = env.start(&builder).await;
    for i in 1..=2 {
        env.publish(&event(
            &format!("dead-{i}"),
            "order",
            &format!("gone{i}"),
            Some("5.00"),
        ))
        .await;
    }
    env.publish(b"this is not JSON \x01 <b>").await;
    let dead = env.topology().dead;
    until(&running, "3 messages settled", |m| {
        m.events_acked.get() >= 2
    })
    .await;
    eventually(WAIT, "3 dead letters", || async {
        env.ready(&dead).await == 3
    })
    .await;
    let letters = Letters::open(&env.journal_config()).await.unwrap();
    eventually(WAIT, "3 letters in the index", || async {
        letters.waiting().await.unwrap() == 3
    })
    .await;

    let base = console(&env, true).await;
    let (status, page) = get(&base, "/dead").await;
    assert_eq!(status, 200);
    assert_eq!(page.matches("class=\"letter\"").count(), 3, "{page}");
    assert!(
        !page.contains("index-note"),
        "index and queue agree: {page}"
    );
    let (_, overview) = get(&base, "/").await;
    let row = |id: &str| {
        overview
            .split(&format!("id=\"{id}\""))
            .nth(1)
            .and_then(|r| r.split("</tr>").next())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        row("waiting--").contains(">1<"),
        "before routing: {overview}"
    );
    assert!(row("waiting-powerspace").contains(">2<"), "{overview}");

    // The letter that was not JSON, opened: its body as it came.
    let not_json = LetterFilter {
        reason: Some("not_json".into()),
        ..LetterFilter::default()
    };
    let junk = letters.page(&not_json, 0, 1).await.unwrap().remove(0);
    let (status, page) = get(&base, &format!("/dead/{}", junk.id)).await;
    assert_eq!(status, 200);
    assert!(page.contains("this is not JSON"), "{page}");
    assert!(page.contains("&lt;b&gt;"), "escaped: {page}");

    // A letter the relay did not write (as the broker would): the pages say the index
    // differs, until a reindex reads the queue once.
    let stray = Envelope::for_message(Reason::Poison, "stray".into(), b"{}", None, source());
    env.publisher
        .publish_json("", &dead, &serde_json::to_vec(&stray).unwrap(), None, None)
        .await
        .unwrap();
    eventually(WAIT, "4 dead letters", || async {
        env.ready(&dead).await == 4
    })
    .await;
    let (_, page) = get(&base, "/dead").await;
    assert!(
        page.contains("index-note") && page.contains("Reindex"),
        "{page}"
    );
    let csrf = form_token(&base).await;
    let done = job_done(
        &base,
        post(&base, "/dead/reindex", format!("csrf={csrf}")).await,
    )
    .await;
    assert!(done.contains("holds the 4 dead letter(s)"), "{done}");
    let (_, page) = get(&base, "/dead").await;
    assert!(!page.contains("index-note"), "{page}");
    assert_eq!(page.matches("class=\"letter\"").count(), 4);

    // The junk discarded: previewed, confirmed; the queue lets it go, the journal keeps it.
    let chosen = format!("mode=chosen&ids={}&csrf={csrf}", junk.id);
    let preview = post(&base, "/discard", chosen.clone())
        .await
        .text()
        .await
        .unwrap();
    assert!(
        preview.contains("1 of 4 dead letters would be removed"),
        "{preview}"
    );
    let done = job_done(
        &base,
        post(&base, "/discard", format!("{chosen}&confirm=yes")).await,
    )
    .await;
    assert!(done.contains("Discarded 1 dead letter(s)"), "{done}");
    assert!(done.contains("<td class=\"came\">discarded</td>"), "{done}");
    eventually(WAIT, "3 dead letters", || async {
        env.ready(&dead).await == 3
    })
    .await;
    let kept = letters.get(&junk.id).await.unwrap().unwrap();
    assert_eq!(kept.state, State::Discarded);
    // Marked by the operator who asked, as the action is written (`console.token`'s operator
    // is named `operator`).
    assert_eq!(kept.changed_by.as_deref(), Some("operator"));
    let (_, page) = get(&base, &format!("/dead/{}", junk.id)).await;
    assert!(
        page.contains("letter-state") && page.contains("discarded"),
        "{page}"
    );
    let actions = env.recoveries().await.actions(10).await.unwrap();
    assert!(
        actions
            .iter()
            .any(|a| a.action == "discard" && a.count == 1 && a.who == "operator")
    );

    // A replay of one letter and of one that is not there: each with its result.
    let dest = LetterFilter {
        destination: Some("powerspace".into()),
        ..LetterFilter::default()
    };
    let one = letters.page(&dest, 0, 1).await.unwrap().remove(0);
    let missing = uuid::Uuid::new_v4().to_string();
    let body = format!(
        "mode=chosen&ids={}&ids={missing}&csrf={csrf}&confirm=yes",
        one.id
    );
    let done = job_done(&base, post(&base, "/replay", body).await).await;
    assert!(
        done.contains("<td class=\"came\">republished</td>"),
        "{done}"
    );
    assert!(done.contains("<td class=\"came\">skipped</td>"), "{done}");
    assert!(done.contains(&missing), "{done}");
    assert_eq!(
        letters.get(&one.id).await.unwrap().unwrap().state,
        State::Replayed
    );
}

/// The overview's count of dead letters is the index's: while a read of the queue holds
/// letters out of the queue's count, it stays whole, and the page says a read is under way.
#[tokio::test(flavor = "multi_thread")]
async fn the_overview_count_holds_while_the_queue_is_read() {
    const N: usize = 3_000;
    let env = Env::new().await;
    env.declare().await;
    fill_queue(&env, N).await;
    let dead = env.topology().dead;
    // The journal made, and indexed from the queue.
    let registry = prometheus::Registry::new();
    let (journal, writer) =
        postback_relay::journal::Journal::open(&env.journal_config(), &registry)
            .await
            .unwrap();
    drop(journal);
    writer.close(tokio::time::Instant::now() + WAIT).await;
    let letters = Letters::open(&env.journal_config()).await.unwrap();
    postback_relay::operate::dlq::reindex(
        &env.conn,
        &env.topology(),
        1 << 20,
        &letters,
        "test",
        |_| {},
    )
    .await
    .unwrap();
    let base = console(&env, true).await;
    let total = |page: &str| {
        page.split("id=\"waiting-total\"")
            .nth(1)
            .and_then(|r| r.split("</tr>").next())
            .unwrap_or_default()
            .to_owned()
    };
    let (_, page) = get(&base, "/").await;
    assert!(total(&page).contains(&format!(">{N}<")), "{page}");

    let reader = postback_relay::relay::broker::connect(&common::amqp_url(), None, "test-reader")
        .await
        .unwrap();
    // The read holds its first batch until the test lets it go on.
    let (go_on, held) = std::sync::mpsc::channel::<()>();
    let topology = env.topology();
    let read = tokio::spawn(async move {
        let mut held = Some(held);
        postback_relay::operate::dlq::each(&reader, &topology, 1 << 20, |_| {
            if let Some(h) = held.take() {
                let _ = h.recv_timeout(WAIT);
            }
            Ok(())
        })
        .await
    });
    eventually(WAIT, "a read under way", || async {
        env.ready(&dead).await < N as u32
    })
    .await;
    let (_, page) = get(&base, "/").await;
    assert!(
        total(&page).contains(&format!(">{N}<")),
        "whole while read: {page}"
    );
    assert!(page.contains("while a read of it"), "{page}");
    go_on.send(()).unwrap();
    read.await.unwrap().unwrap();
}

/// At 100,000 letters in the index every page answers, each by a query: the list (whole and
/// filtered), a letter, a replay's preview. The queue here is empty, so the pages say the
/// index differs from it. Times are printed; the bench measures them (`--only letters`).
#[tokio::test(flavor = "multi_thread")]
async fn pages_answer_at_100k_letters() {
    const N: usize = 100_000;
    let env = Env::new().await;
    env.declare().await;
    // The journal made, then filled directly, in batches.
    let registry = prometheus::Registry::new();
    let (journal, writer) =
        postback_relay::journal::Journal::open(&env.journal_config(), &registry)
            .await
            .unwrap();
    drop(journal);
    writer.close(tokio::time::Instant::now() + WAIT).await;
    let letters = Letters::open(&env.journal_config()).await.unwrap();
    let start: chrono::DateTime<chrono::Utc> = "2026-11-01T00:00:00Z".parse().unwrap();
    let reasons = ["partner_rejected", "retries_exhausted", "not_json"];
    let mut batch = Vec::new();
    for i in 0..N {
        let reason = reasons[i % 3];
        let mut e = Envelope::for_message(
            reason.parse().unwrap(),
            "HTTP 404".into(),
            format!("{{\"event_id\":\"e{i}\"}}").as_bytes(),
            None,
            source(),
        );
        e.destination = (reason != "not_json").then(|| format!("d{}", i % 4));
        e.dead_lettered_at = start + chrono::Duration::seconds(i as i64);
        e.attempts = 3;
        batch.push(postback_relay::relay::deadletter::envelope_row(&e));
        if batch.len() == 10_000 {
            letters.seen(&batch, 1).await.unwrap();
            batch.clear();
        }
    }
    let some = letters
        .page(&LetterFilter::default(), 777, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(letters.waiting().await.unwrap(), N as u64);

    let base = console(&env, true).await;
    let csrf = form_token(&base).await;
    for path in [
        "/dead".to_owned(),
        "/dead?destination=d1".to_owned(),
        "/dead?reason=retries_exhausted&page=300".to_owned(),
        "/dead?since=2026-11-01T10:00:00Z&until=2026-11-01T12:00:00Z".to_owned(),
        "/dead?event_id=e99999".to_owned(),
        format!("/dead/{}", some.id),
        "/".to_owned(),
    ] {
        let started = Instant::now();
        let (status, page) = get(&base, &path).await;
        eprintln!("{path}: {:?}", started.elapsed());
        assert_eq!(status, 200, "{path}: {page}");
        if path == "/dead" {
            assert!(
                page.contains("100000 of 100000 dead letters match"),
                "{page}"
            );
            assert!(
                page.contains("index-note"),
                "the empty queue differs: {page}"
            );
        }
    }
    let started = Instant::now();
    let preview = post(
        &base,
        "/replay",
        format!("mode=filter&destination=d2&csrf={csrf}"),
    )
    .await
    .text()
    .await
    .unwrap();
    eprintln!("replay preview: {:?}", started.elapsed());
    assert!(
        preview.contains("of 100000 dead letters would be replayed"),
        "{preview}"
    );
}
