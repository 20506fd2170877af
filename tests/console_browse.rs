//! The journal browsed from the console: every delivery, the retries waiting with when they
//! are due; pages that show hidden characters in ids escaped and redact secrets inside them;
//! and page loads that add no ERROR to the console's log, with or without a relay.

mod common;

use common::browser::WAIT;
use common::console::{TOKEN, console_config};
use common::process::RelayProcess;
use common::{Env, Retry, event, eventually, free_port, until};
use postback_relay::interfaces::sandbox::Rule;
use postback_relay::journal::Filter;

#[tokio::test]
async fn ids_show_hidden_characters_escaped_and_secrets_inside_them_redacted() {
    let env = Env::new().await;
    let builder = env.default_config();
    let running = env.start(&builder).await;
    let secret = r#"k&y<s>"cr3t"#;
    let id = format!("rtl-\u{202e}lanigiro-\u{200b}{secret}-end");
    env.publish(&event(&id, "order", "ok1", Some("20.00")))
        .await;
    until(&running, "the event settled", |m| m.events_acked.get() >= 1).await;
    let all = Filter {
        limit: 100,
        ..Filter::default()
    };
    env.until_journaled(&all, 1).await;
    let mut config = console_config(builder.load(), None);
    config.secrets.add(secret);
    let console = postback_relay::operate::console::start(config, env.shutdown.clone())
        .await
        .unwrap();
    let base = format!("http://{}", console.addr);
    let http = reqwest::Client::new();
    let q: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
    for page in [format!("/search?q={q}"), "/deliveries".into()] {
        let body = http
            .get(format!("{base}{page}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            body.contains("rtl-\\u{202e}lanigiro-\\u{200b}REDACTED-end"),
            "{page}: {body}"
        );
        for shown in ['\u{202e}', '\u{200b}'] {
            assert!(!body.contains(shown), "{page}: {shown:?} raw");
        }
        assert!(!body.contains("cr3t"), "{page}: the secret shows: {body}");
    }
}

#[tokio::test]
async fn deliveries_waiting_for_a_retry_show_when_they_are_due() {
    let env = Env::new().await;
    env.sandbox
        .add_rule(&Rule::answer(503).on_query("qci=wait"))
        .await
        .unwrap();
    let dest = env.powerspace().retry(
        Retry::durable(1600, 1600)
            .max_attempts(100)
            .max_age_secs(300),
    );
    let builder = env.config().destination(dest);
    let _running = env.start(&builder).await;
    env.publish(&event("waits-1", "order", "wait", Some("5.00")))
        .await;
    env.publish(&event("fine-1", "order", "ok", Some("5.00")))
        .await;
    let console = postback_relay::operate::console::start(
        console_config(builder.load(), None),
        env.shutdown.clone(),
    )
    .await
    .unwrap();
    let base = format!("http://{}", console.addr);
    let http = reqwest::Client::new();
    let page = |url: String| {
        let http = http.clone();
        async move {
            http.get(url)
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let waiting = format!("{base}/deliveries?outcome=waiting");
    eventually(WAIT, "the retry waits on the page", || async {
        page(waiting.clone()).await.contains("waits-1")
    })
    .await;
    let body = page(waiting.clone()).await;
    assert!(body.contains("retry_scheduled (1600ms)"), "{body}");
    assert!(
        body.contains("class=\"due\""),
        "a next attempt time: {body}"
    );
    assert!(!body.contains("fine-1"), "delivered: not waiting");
    let delivered = format!("{base}/deliveries?destination=powerspace&outcome=delivered");
    eventually(WAIT, "the delivered event on the page", || async {
        page(delivered.clone()).await.contains("fine-1")
    })
    .await;
    assert!(!page(delivered.clone()).await.contains("waits-1"));

    env.sandbox.clear_rules().await.unwrap();
    eventually(WAIT, "delivered, it no longer waits", || async {
        !page(waiting.clone()).await.contains("waits-1")
    })
    .await;
}

#[tokio::test]
async fn page_loads_add_no_error_to_the_log_when_the_journal_and_the_relay_are_away() {
    let env = Env::new().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    // No relay has run: no journal yet, and nothing answers at the metrics address.
    let toml = format!(
        "{}\n[console]\nlisten = \"127.0.0.1:{}\"\ntoken = \"{TOKEN}\"\nrelay_metrics_url = \"http://127.0.0.1:{}/metrics\"\n",
        env.default_config().toml(),
        free_port(),
        free_port()
    );
    std::fs::write(&path, toml).unwrap();
    let log = dir.path().join("console.log");
    let _console = RelayProcess::spawn(
        &[
            "--log-format",
            "json",
            "console",
            "--config",
            path.to_str().unwrap(),
        ],
        &[],
        Some(&log),
    );
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    eventually(WAIT, "the console listens", || async {
        read().contains("console on http://")
    })
    .await;
    let base = read()
        .split("console on ")
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let http = reqwest::Client::new();
    let load_every_page = || async {
        for _ in 0..3 {
            for p in [
                "/",
                "/dead",
                "/deliveries",
                "/actions",
                "/search?q=e-1",
                "/recover",
            ] {
                let r = http
                    .get(format!("{base}{p}"))
                    .bearer_auth(TOKEN)
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let body = r.text().await.unwrap();
                assert!(status < 500 || p == "/dead", "{p}: {status} {body}");
            }
        }
    };
    load_every_page().await;
    let overview = http
        .get(format!("{base}/"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(overview.contains("No journal yet"), "{overview}");
    assert!(overview.contains("did not answer"), "{overview}");
    let deliveries = http
        .get(format!("{base}/deliveries"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(deliveries.contains("No journal yet"), "{deliveries}");

    // And once a relay has run: its queues, its journal, a dead letter.
    env.sandbox
        .add_rule(&Rule::answer(404).on_query("qci=gone"))
        .await
        .unwrap();
    let running = env.start(&env.default_config()).await;
    env.publish(&event("gone-1", "order", "gone", Some("5.00")))
        .await;
    until(&running, "the event settled", |m| m.events_acked.get() >= 1).await;
    let all = Filter {
        limit: 100,
        ..Filter::default()
    };
    env.until_journaled(&all, 1).await;
    load_every_page().await;
    let logged = read();
    assert!(
        !logged
            .lines()
            .any(|l| l.contains("\"ERROR\"") || l.contains(" ERROR ")),
        "{logged}"
    );
}
