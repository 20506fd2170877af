//! A destination's charts on the console, over HTTP, against a real relay, RabbitMQ, the
//! partner sandbox and the journal (the file, and PostgreSQL): the SVG's bars and points
//! carry the numbers the journal holds, hour by hour, and an unknown destination is refused;
//! and in Debian's chromium, under the console's Content-Security-Policy, they are drawn.
//!
//! `CONSOLE_SCREENSHOTS=docs cargo test --test console_chart` also writes
//! `docs/console-chart.png`.

mod common;

use std::collections::BTreeMap;

use common::{Env, event, until};
use fantoccini::Locator;
use postback_relay::interfaces::sandbox::Rule;
use postback_relay::journal::{Filter, Outcome, hour_of};

const TOKEN: &str = "console-chart-token-5e1d2b";

/// What one hour of the journal holds for a destination: delivered, dead-lettered, calls
/// with a latency and their sum.
#[derive(Default, Debug)]
struct Hour {
    delivered: u64,
    dead: u64,
    calls: u64,
    latency_ms_sum: f64,
}

async fn the_chart_shows_what_the_journal_holds(env: Env, in_a_browser: bool) {
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
        destination: Some("powerspace".into()),
        since: Some(chrono::Utc::now() - chrono::Duration::hours(2)),
        limit: 100,
        ..Filter::default()
    };
    let entries = env.until_journaled(&all, 5).await;
    // Entries and counts are committed together: what the journal holds is what is counted.
    let mut want: BTreeMap<_, Hour> = BTreeMap::new();
    for e in &entries {
        let h = want.entry(hour_of(e.at)).or_default();
        match e.outcome {
            Outcome::Delivered => h.delivered += 1,
            Outcome::DeadLettered(_) => h.dead += 1,
            _ => {}
        }
        if let Some(l) = e.latency_ms {
            h.calls += 1;
            h.latency_ms_sum += l;
        }
    }
    assert_eq!(want.values().map(|h| h.delivered).sum::<u64>(), 3);
    assert_eq!(want.values().map(|h| h.dead).sum::<u64>(), 2);

    let mut config = builder.load();
    config.console.listen = "127.0.0.1:0".parse().unwrap();
    config.console.token = Some(TOKEN.into());
    let console = postback_relay::operate::console::start(config, env.shutdown.clone())
        .await
        .unwrap();
    let base = format!("http://{}", console.addr);
    let http = reqwest::Client::new();
    let get = async |path: &str| {
        let res = http
            .get(format!("{base}{path}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let csp = res
            .headers()
            .get("content-security-policy")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, csp, res.text().await.unwrap())
    };

    let (status, _, overview) = get("/").await;
    assert_eq!(status, 200);
    assert!(
        overview.contains("href=\"/destinations/powerspace\""),
        "the overview links to the chart"
    );

    let (status, csp, page) = get("/destinations/powerspace").await;
    assert_eq!(status, 200, "{page}");
    assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"));
    assert!(!page.contains("<script"), "no script: {page}");
    assert!(page.contains("<svg") && page.contains("id=\"success-chart\""));
    for (hour, h) in &want {
        let at = hour.to_rfc3339();
        if h.delivered + h.dead > 0 {
            let bar = format!(
                "data-hour=\"{at}\" data-delivered=\"{}\" data-dead=\"{}\"",
                h.delivered, h.dead
            );
            assert!(page.contains(&bar), "{bar} in {page}");
            let rate = h.delivered as f64 * 100.0 / (h.delivered + h.dead) as f64;
            let title = format!(
                "{rate:.1} % ({} delivered, {} dead-lettered)",
                h.delivered, h.dead
            );
            assert!(page.contains(&title), "{title} in {page}");
        }
        if h.calls > 0 {
            let mean = h.latency_ms_sum / h.calls as f64;
            let point = format!("data-hour=\"{at}\" data-mean-ms=\"{mean:.1}\"");
            assert!(page.contains(&point), "{point} in {page}");
            let title = format!("mean over {} calls", h.calls);
            assert!(page.contains(&title), "{title} in {page}");
        }
    }
    // 24 hours in the table, the latest first.
    assert_eq!(page.matches("<td class=\"num delivered\">").count(), 24);

    let (status, _, refused) = get("/destinations/%3Cscript%3Ealert(1)%3C%2Fscript%3E").await;
    assert_eq!(status, 400);
    assert!(refused.contains("is not a destination"), "{refused}");
    assert!(!refused.contains("<script>alert"), "escaped: {refused}");

    if in_a_browser {
        drawn_in_a_browser(&builder, &env, &want).await;
    }
}

/// The charts as chromium draws them (a console on loopback without a token): each hour with
/// a final outcome is a bar of some height, each hour with calls a point.
async fn drawn_in_a_browser(
    builder: &common::ConfigBuilder,
    env: &Env,
    want: &BTreeMap<chrono::DateTime<chrono::Utc>, Hour>,
) {
    let Some((_driver, b)) = common::browser::browser().await else {
        return;
    };
    let mut config = builder.load();
    config.console.listen = "127.0.0.1:0".parse().unwrap();
    let console = postback_relay::operate::console::start(config, env.shutdown.clone())
        .await
        .unwrap();
    b.goto(&format!("http://{}/destinations/powerspace", console.addr))
        .await
        .unwrap();
    let bars = b
        .find_all(Locator::Css("#success-chart rect.bar"))
        .await
        .unwrap();
    let hours_with_outcomes = want.values().filter(|h| h.delivered + h.dead > 0).count();
    assert_eq!(bars.len(), hours_with_outcomes);
    for bar in &bars {
        let (_, _, width, height) = bar.rectangle().await.unwrap();
        assert!(width > 1.0 && height >= 2.0, "drawn: {width} x {height}");
    }
    let points = b
        .find_all(Locator::Css("#latency-chart circle.point"))
        .await
        .unwrap();
    assert_eq!(points.len(), want.values().filter(|h| h.calls > 0).count());
    let (_, _, width, _) = b
        .find(Locator::Css("#success-chart"))
        .await
        .unwrap()
        .rectangle()
        .await
        .unwrap();
    assert_eq!(width, 720.0, "the chart has its size");
    if let Some(dir) = std::env::var_os("CONSOLE_SCREENSHOTS") {
        let png = b.screenshot().await.unwrap();
        std::fs::write(std::path::Path::new(&dir).join("console-chart.png"), png).unwrap();
    }
    b.close().await.unwrap();
}

#[tokio::test]
async fn the_chart_shows_what_the_file_journal_holds() {
    the_chart_shows_what_the_journal_holds(Env::new().await, true).await;
}

#[tokio::test]
async fn the_chart_shows_what_the_postgres_journal_holds() {
    the_chart_shows_what_the_journal_holds(Env::with_postgres_journal().await, false).await;
}
