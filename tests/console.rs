//! The operators' console in a real browser (Debian's chromium, driven by chromedriver over
//! WebDriver), against a real relay, RabbitMQ and the partner sandbox: the overview's
//! numbers, a filter that narrows the dead letters, a letter opened, a replay previewed,
//! confirmed and delivered (the journal shows it), and requests without the token refused.
//!
//! `CONSOLE_SCREENSHOTS=docs cargo test --test console` also writes the screenshots README
//! shows.

mod common;

use std::net::SocketAddr;

use common::browser::{WAIT, browser, count, log_in, screenshot, text, until_page};
use common::{Env, deliveries, event, eventually, free_port, until};
use fantoccini::Locator;
use postback_relay::interfaces::sandbox::Rule;
use postback_relay::journal::Filter;

const TOKEN: &str = "console-test-token-7f3a9c";

#[tokio::test]
async fn an_operator_reads_filters_opens_and_replays_in_a_real_browser() {
    let Some((_driver, b)) = browser().await else {
        return;
    };
    let env = Env::new().await;
    env.sandbox
        .add_rule(&Rule::answer(404).on_query("qci=gone"))
        .await
        .unwrap();
    let builder = env.default_config();
    let running = env.start(&builder).await;
    for i in 1..=3 {
        env.publish(&event(
            &format!("fine-{i}"),
            "order",
            &format!("ok{i}"),
            Some("20.00"),
        ))
        .await;
    }
    for i in 1..=2 {
        env.publish(&event(
            &format!("dead-{i}"),
            "order",
            &format!("gone{i}"),
            Some("5.00"),
        ))
        .await;
    }
    until(&running, "5 events settled", |m| m.events_acked.get() >= 5).await;
    let all = Filter {
        limit: 100,
        ..Filter::default()
    };
    env.until_journaled(&all, 5).await;

    let mut config = builder.load();
    config.console.listen = "127.0.0.1:0".parse().unwrap();
    config.console.token = Some(TOKEN.into());
    config.console.relay_metrics_url = Some(format!("http://{}/metrics", running.http_addr));
    let console = postback_relay::operate::console::start(config, env.shutdown.clone())
        .await
        .unwrap();
    let base = format!("http://{}", console.addr);
    refuses_without_the_token(&base, console.addr).await;

    // The overview, with the journal's numbers and the relay's circuit state.
    log_in(&b, &base, TOKEN).await;
    assert_eq!(b.current_url().await.unwrap().path(), "/");
    assert_eq!(text(&b, "#dest-powerspace .delivered-hour").await, "3");
    assert_eq!(text(&b, "#dest-powerspace .dead-hour").await, "2");
    assert_eq!(text(&b, "#dest-powerspace .circuit").await, "closed");
    assert!(text(&b, "#queues").await.contains(&env.topology().dead));
    screenshot(&b, "console-overview.png").await;

    // A destination paused and resumed from the overview: the relay sees both.
    assert_eq!(text(&b, "#dest-powerspace .paused .state").await, "running");
    b.find(Locator::Id("pause-powerspace"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(
        text(&b, "#preview")
            .await
            .contains("Nothing has changed yet")
    );
    b.find(Locator::Id("confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_page(
        &b,
        &format!("{base}/"),
        "#dest-powerspace .paused .state",
        "paused",
    )
    .await;
    assert!(
        text(&b, "#dest-powerspace .paused")
            .await
            .contains("by operator")
    );
    until(&running, "the relay sees the pause", |m| {
        m.destination_paused
            .with_label_values(&["powerspace"])
            .get()
            == 1
    })
    .await;
    b.find(Locator::Id("resume-powerspace"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_page(
        &b,
        &format!("{base}/"),
        "#dest-powerspace .paused .state",
        "running",
    )
    .await;
    until(&running, "the relay sees the resume", |m| {
        m.destination_paused
            .with_label_values(&["powerspace"])
            .get()
            == 0
    })
    .await;

    // The dead letters, narrowed by a filter; one opened.
    b.goto(&format!("{base}/dead")).await.unwrap();
    assert_eq!(count(&b, "tr.letter").await, 2);
    assert!(text(&b, "#groups").await.contains("partner_rejected"));
    b.find(Locator::Css("input[name=event_id]"))
        .await
        .unwrap()
        .send_keys("dead-1")
        .await
        .unwrap();
    b.find(Locator::Id("apply"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually(WAIT, "the filter applied", || async {
        b.current_url()
            .await
            .unwrap()
            .query()
            .unwrap_or("")
            .contains("event_id=dead-1")
    })
    .await;
    assert_eq!(count(&b, "tr.letter").await, 1);
    assert!(text(&b, "#counts").await.starts_with("1 of 2"));
    b.find(Locator::Css("a.open"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually(WAIT, "the letter opened", || async {
        b.current_url().await.unwrap().path().starts_with("/dead/")
    })
    .await;
    assert!(text(&b, "#reason").await.contains("partner_rejected"));
    assert!(text(&b, "#todo").await.contains("What to do"));
    assert!(text(&b, "#original").await.contains("\"dead-1\""));
    assert!(text(&b, "#response").await.contains("404"));
    screenshot(&b, "console-letter.png").await;

    // The partner takes it now: replay it, previewed, then confirmed.
    env.sandbox.clear_rules().await.unwrap();
    b.find(Locator::Id("replay-this"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let preview = text(&b, "#preview").await;
    assert!(
        preview.starts_with("1 of 2 dead letters would be replayed"),
        "{preview}"
    );
    assert!(
        text(&b, "#preview-destinations")
            .await
            .contains("powerspace")
    );
    b.find(Locator::Id("confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually(WAIT, "the replay's job page", || async {
        b.current_url().await.unwrap().path().starts_with("/jobs/")
    })
    .await;
    let job = b.current_url().await.unwrap().to_string();
    until_page(&b, &job, "#state", "done").await;
    assert!(
        text(&b, "#result")
            .await
            .starts_with("Replayed 1 dead letter(s) of 2")
    );
    until(&running, "the replayed letter delivered", |m| {
        deliveries(m, "powerspace", "delivered") >= 4
    })
    .await;
    until_page(
        &b,
        &format!("{base}/search?q=dead-1"),
        ".timeline .outcome",
        "delivered",
    )
    .await;
    let actions = env.recoveries().await.actions(10).await.unwrap();
    let mut done: Vec<_> = actions
        .iter()
        .map(|a| (a.action.as_str(), a.count))
        .collect();
    done.sort();
    assert_eq!(
        done,
        [("pause", 1), ("replay", 1), ("resume", 1)],
        "{actions:?}"
    );
    b.goto(&format!("{base}/dead")).await.unwrap();
    assert_eq!(count(&b, "tr.letter").await, 1, "the other letter stays");
    b.close().await.unwrap();
}

/// Without the token, or with another, nothing is served; an action from another origin,
/// or without the form's token, changes nothing.
async fn refuses_without_the_token(base: &str, addr: SocketAddr) {
    let http = reqwest::Client::new();
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(http.get(format!("{base}/")).send().await.unwrap()),
        401
    );
    let wrong = http
        .get(format!("{base}/dead"))
        .bearer_auth("not-the-token-at-all")
        .send()
        .await
        .unwrap();
    assert_eq!(status(wrong), 401);
    let login = http
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=not-the-token-at-all")
        .send()
        .await
        .unwrap();
    assert_eq!(status(login), 401);
    let page = http
        .get(format!("{base}/"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(
        !page.text().await.unwrap().contains(TOKEN),
        "the token is never rendered"
    );
    let no_csrf = http
        .post(format!("{base}/replay"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("mode=filter&confirm=yes")
        .send()
        .await
        .unwrap();
    assert_eq!(status(no_csrf), 403);
    let cross = http
        .post(format!("{base}/replay"))
        .bearer_auth(TOKEN)
        .header("origin", "http://evil.example")
        .header("host", addr.to_string())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("mode=filter")
        .send()
        .await
        .unwrap();
    assert_eq!(status(cross), 403);
    let pause_no_csrf = http
        .post(format!("{base}/pause"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("destination=powerspace&verb=pause")
        .send()
        .await
        .unwrap();
    assert_eq!(status(pause_no_csrf), 403);
}

#[tokio::test]
async fn the_console_refuses_to_start_off_loopback_without_a_token() {
    let env = Env::new().await;
    let mut config = env.default_config().load();
    config.console.listen = "0.0.0.0:0".parse().unwrap();
    let e = postback_relay::operate::console::start(config.clone(), env.shutdown.clone())
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("not a loopback address"), "{e}");
    config.console.token = Some("short".into());
    let e = postback_relay::operate::console::start(config.clone(), env.shutdown.clone())
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("at least 16"), "{e}");

    // On loopback without a token it answers only to a loopback name: a page elsewhere whose
    // name is made to resolve to 127.0.0.1 (DNS rebinding) is refused.
    config.console.token = None;
    config.console.listen = "127.0.0.1:0".parse().unwrap();
    let console = postback_relay::operate::console::start(config, env.shutdown.clone())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://{}/search", console.addr);
    assert_eq!(http.get(&url).send().await.unwrap().status().as_u16(), 200);
    let rebound = http
        .get(&url)
        .header("host", format!("evil.example:{}", console.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status().as_u16(), 403);
}

#[tokio::test]
async fn a_replay_that_stops_is_written_to_the_journal_too() {
    let env = Env::new().await;
    // A relay first, so that the journal exists; then the console on a broker that is gone.
    let builder = env.default_config();
    let running = env.start(&builder).await;
    env.publish(&event("one", "order", "ok1", Some("1.00")))
        .await;
    until(&running, "the event settled", |m| m.events_acked.get() >= 1).await;
    let mut config = builder.load();
    config.broker.url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port());
    config.broker.connect_timeout_secs = 1;
    config.console.listen = "127.0.0.1:0".parse().unwrap();
    config.console.token = Some(TOKEN.into());
    let console = postback_relay::operate::console::start(config, env.shutdown.clone())
        .await
        .unwrap();
    let base = format!("http://{}", console.addr);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let csrf = form_token(&http, &base).await;
    let started = http
        .post(format!("{base}/replay"))
        .bearer_auth(TOKEN)
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("mode=filter&confirm=yes&csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status().as_u16(), 303, "the job started");
    eventually(WAIT, "the stopped replay in the journal", || async {
        let actions = env.recoveries().await.actions(10).await.unwrap();
        actions
            .iter()
            .any(|a| a.action == "replay_stopped" && a.count == 0 && a.filter.contains("stopped"))
    })
    .await;
}

/// The console's form token, read off its recovery form (served whatever the broker's state).
async fn form_token(http: &reqwest::Client, base: &str) -> String {
    let page = http
        .get(format!("{base}/recover"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a form token on the page")
        .to_owned()
}

/// The hidden fields of the page's confirmation form, as a browser would send them.
fn confirmation(page: &str) -> String {
    let form = page
        .split("<form method=\"post\"")
        .nth(1)
        .expect("a confirmation form on the page");
    let form = form.split("</form>").next().unwrap_or(form);
    let mut body = url::form_urlencoded::Serializer::new(String::new());
    for input in form.split("<input type=\"hidden\" name=\"").skip(1) {
        let name = input.split('"').next().unwrap_or_default();
        let value = input
            .split("value=\"")
            .nth(1)
            .and_then(|v| v.split('"').next())
            .unwrap_or_default()
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        body.append_pair(name, &value);
    }
    body.finish()
}

/// A replay previewed once and confirmed twice (a double click, a form sent again) takes what
/// the preview counted, once: the preview pins the filter's end, so the letter the partner
/// refused again after the first replay is not replayed by the second confirmation.
#[tokio::test]
async fn a_replay_confirmed_twice_takes_only_what_its_preview_counted() {
    let env = Env::new().await;
    env.sandbox
        .add_rule(&Rule::answer(404).on_query("qci=gone"))
        .await
        .unwrap();
    let builder = env.default_config();
    let running = env.start(&builder).await;
    env.publish(&event("dead-twice", "order", "gone1", Some("5.00")))
        .await;
    until(&running, "the event settled", |m| m.events_acked.get() >= 1).await;
    let calls = || async {
        let all = env.sandbox.requests().await.unwrap();
        all.iter()
            .filter(|r| r.query.as_deref().is_some_and(|q| q.contains("qci=gone")))
            .count()
    };
    let dead = || async {
        postback_relay::operate::dlq::depth(&env.channel, &env.topology().dead)
            .await
            .unwrap()
    };
    eventually(WAIT, "the letter dead", || async { dead().await == 1 }).await;
    // The preview counts from the dead-letter index, which the journal's writer fills a batch
    // after the letter reaches its queue.
    let letters = postback_relay::journal::letters::Letters::open(&env.journal_config())
        .await
        .unwrap();
    eventually(WAIT, "the letter indexed", || async {
        letters.waiting().await.unwrap() == 1
    })
    .await;

    let mut config = builder.load();
    config.console.listen = "127.0.0.1:0".parse().unwrap();
    config.console.token = Some(TOKEN.into());
    let console = postback_relay::operate::console::start(config, env.shutdown.clone())
        .await
        .unwrap();
    let base = format!("http://{}", console.addr);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = |body: String| {
        http.post(format!("{base}/replay"))
            .bearer_auth(TOKEN)
            .header("sec-fetch-site", "same-origin")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let csrf = form_token(&http, &base).await;
    let preview = post(format!("mode=filter&destination=powerspace&csrf={csrf}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(preview.contains("1 of 1 dead letters"), "{preview}");
    let confirm = confirmation(&preview);
    assert!(confirm.contains("confirm=yes"), "{confirm}");

    let replays = || async {
        let actions = env.recoveries().await.actions(10).await.unwrap();
        let mut counts: Vec<u64> = actions
            .iter()
            .filter(|a| a.action == "replay")
            .map(|a| a.count)
            .collect();
        counts.sort_unstable();
        counts
    };
    let first = post(confirm.clone()).await.unwrap();
    assert_eq!(first.status().as_u16(), 303, "the first replay started");
    eventually(WAIT, "the first replay done", || async {
        replays().await == [1]
    })
    .await;
    // The partner refuses it again: the letter is back, dead-lettered after the preview.
    eventually(WAIT, "refused again and dead again", || async {
        calls().await == 2 && dead().await == 1
    })
    .await;
    let second = post(confirm).await.unwrap();
    assert_eq!(second.status().as_u16(), 303, "the second replay started");
    eventually(WAIT, "the second replay done", || async {
        replays().await.len() == 2
    })
    .await;
    assert_eq!(replays().await, [0, 1], "the second took nothing");
    assert_eq!(
        calls().await,
        2,
        "the partner was called once per replay taken"
    );
    assert_eq!(dead().await, 1);
}
