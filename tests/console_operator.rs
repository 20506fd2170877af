//! The console's operators: a login through a form (never a token in the address) that
//! sets a `__Host-` session cookie Chromium keeps on loopback, sessions ended by a logout on
//! the server, operators named by their token or by an authenticating proxy's header and
//! written with each action, the actions page, a pause that asks first, long values that
//! keep the tables within the window, and `check-config` on operators.

mod common;

use common::browser::{WAIT, browser, count, log_in, text, until_page};
use common::console::{ALICE, TOKEN, console_config, form_token};
use common::process::{Cli, stderr};
use common::{Env, Retry, event, eventually, until};
use fantoccini::Locator;
use postback_relay::interfaces::sandbox::Rule;
use postback_relay::journal::Filter;

const COOKIE: &str = "__Host-postback_relay_console";

/// Whether the element `css` and the page fit the window's width.
async fn fits(b: &fantoccini::Client, css: &str) -> (f64, f64, f64) {
    let v = b
        .execute(
            "const e = document.querySelector(arguments[0]); \
             return [e.getBoundingClientRect().width, document.documentElement.scrollWidth, \
                     document.documentElement.clientWidth];",
            vec![serde_json::json!(css)],
        )
        .await
        .unwrap();
    let n = |i: usize| v[i].as_f64().unwrap();
    (n(0), n(1), n(2))
}

#[tokio::test]
async fn operators_log_in_with_the_form_act_under_their_names_and_log_out() {
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
    let long = format!("long-{}", "x".repeat(2000));
    env.publish(&event("fine-1", "order", "ok1", Some("20.00")))
        .await;
    env.publish(&event(&long, "order", "gone1", Some("5.00")))
        .await;
    until(&running, "2 events settled", |m| m.events_acked.get() >= 2).await;
    let all = Filter {
        limit: 100,
        ..Filter::default()
    };
    env.until_journaled(&all, 2).await;
    let metrics = Some(format!("http://{}/metrics", running.http_addr));
    let console = postback_relay::operate::console::start(
        console_config(builder.load(), metrics),
        env.shutdown.clone(),
    )
    .await
    .unwrap();
    let base = format!("http://{}", console.addr);

    // A token in the address logs nobody in, and says where to log in.
    b.goto(&format!("{base}/login?token={TOKEN}"))
        .await
        .unwrap();
    assert!(
        text(&b, "#error")
            .await
            .contains("does not go in the address")
    );
    b.goto(&format!("{base}/")).await.unwrap();
    assert!(text(&b, "#error").await.contains("log in at /login"));
    assert!(b.get_all_cookies().await.unwrap().is_empty());

    // The form logs alice in; Chromium keeps the Secure __Host- cookie on http://127.0.0.1.
    log_in(&b, &base, ALICE).await;
    assert_eq!(b.current_url().await.unwrap().path(), "/");
    let cookies = b.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c.name() == COOKIE)
        .unwrap_or_else(|| panic!("no session cookie in {cookies:?}"));
    assert_eq!(session.secure(), Some(true));
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(session.path(), Some("/"));
    let session_id = session.value().to_owned();

    // A pause asks first, then is done, by alice; a resume at once.
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
    let nothing_yet = env.recoveries().await.actions(10).await.unwrap();
    assert!(nothing_yet.is_empty(), "{nothing_yet:?}");
    b.find(Locator::Id("confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_page(
        &b,
        &format!("{base}/"),
        "#dest-powerspace .paused",
        "by alice",
    )
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

    // The actions page, newest first, says who.
    b.goto(&format!("{base}/actions")).await.unwrap();
    assert_eq!(count(&b, "tr.action").await, 2);
    assert_eq!(text(&b, "tr.action .what").await, "resume");
    assert_eq!(text(&b, "tr.action .who").await, "alice");
    let written = env.recoveries().await.actions(10).await.unwrap();
    assert!(written.iter().all(|a| a.who == "alice"), "{written:?}");

    // A 2,000-character id widens neither the letters' table nor the deliveries'.
    for (page, table) in [("/dead", "#letters"), ("/deliveries", "#deliveries")] {
        b.goto(&format!("{base}{page}")).await.unwrap();
        assert!(text(&b, table).await.contains("long-xxx"));
        let (width, scroll, window) = fits(&b, table).await;
        assert!(
            width <= window && scroll <= window,
            "{page}: {table} {width} px, page {scroll} px, window {window} px"
        );
    }

    // Logging out ends the session on the server: its cookie, sent again, opens nothing.
    b.find(Locator::Id("log-out"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually(WAIT, "the login page after the logout", || async {
        b.current_url().await.unwrap().path() == "/login"
    })
    .await;
    b.goto(&format!("{base}/")).await.unwrap();
    assert!(text(&b, "#error").await.contains("log in at /login"));
    let replayed = reqwest::Client::new()
        .get(format!("{base}/"))
        .header("cookie", format!("{COOKIE}={session_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status().as_u16(), 401);
    b.close().await.unwrap();
}

#[tokio::test]
async fn a_login_is_a_form_post_over_https_or_loopback_and_a_proxy_may_name_the_operator() {
    let env = Env::new().await;
    let builder = env.default_config();
    let _running = env.start(&builder).await;
    let mut config = console_config(builder.load(), None);
    config.console.operator_header = Some("X-Forwarded-User".into());
    let console = postback_relay::operate::console::start(config, env.shutdown.clone())
        .await
        .unwrap();
    let base = format!("http://{}", console.addr);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = |host: &'static str, proto: Option<&'static str>, token: &str| {
        let mut r = http
            .post(format!("{base}/login"))
            .header("host", host)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"));
        if let Some(p) = proto {
            r = r.header("x-forwarded-proto", p);
        }
        r.send()
    };

    let in_url = http
        .get(format!("{base}/login?token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(in_url.status().as_u16(), 400);
    assert!(in_url.headers().get("set-cookie").is_none());

    // The login page's stylesheet needs no token, and has every page's headers.
    let css = http
        .get(format!("{base}/console.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status().as_u16(), 200);
    assert_eq!(css.headers()["x-content-type-options"], "nosniff");

    let plain = login("relay.example:8081", None, TOKEN).await.unwrap();
    assert_eq!(plain.status().as_u16(), 403);
    assert!(plain.headers().get("set-cookie").is_none());
    assert!(plain.text().await.unwrap().contains("HTTPS"));

    let wrong = login("127.0.0.1", None, "not-the-token-at-all")
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let https = login("relay.example", Some("https"), ALICE).await.unwrap();
    assert_eq!(https.status().as_u16(), 303);
    let cookie = https.headers()["set-cookie"].to_str().unwrap().to_owned();
    for part in [
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(cookie.starts_with(&format!("{COOKIE}=")), "{cookie}");
    assert!(!cookie.contains("Domain"), "{cookie}");

    // From another site, no login.
    let cross = http
        .post(format!("{base}/login"))
        .header("origin", "http://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status().as_u16(), 403);

    // The proxy's header names the operator of a request that has a token, never alone.
    let alone = http
        .get(format!("{base}/"))
        .header("x-forwarded-user", "carol")
        .send()
        .await
        .unwrap();
    assert_eq!(alone.status().as_u16(), 401);
    let csrf = form_token(&http, &base).await;
    let paused = http
        .post(format!("{base}/pause"))
        .bearer_auth(TOKEN)
        .header("x-forwarded-user", "carol")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf={csrf}&destination=powerspace&verb=pause&confirm=yes"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(paused.status().as_u16(), 303);
    let bad_name = http
        .post(format!("{base}/pause"))
        .bearer_auth(TOKEN)
        .header("x-forwarded-user", "x".repeat(65))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&destination=powerspace&verb=resume"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_name.status().as_u16(), 400);
    let actions = env.recoveries().await.actions(10).await.unwrap();
    let done: Vec<_> = actions
        .iter()
        .map(|a| (a.who.as_str(), a.action.as_str()))
        .collect();
    assert_eq!(done, [("carol", "pause")]);
}

#[test]
fn check_config_refuses_operators_it_cannot_tell_apart_without_echoing_tokens() {
    let env_dir = tempfile::tempdir().unwrap();
    let base = common::ConfigBuilder::for_test("check-operators", &env_dir.path().join("db"))
        .destination(
            common::Dest::powerspace("powerspace", "http://127.0.0.1:1").retry(Retry::fast()),
        )
        .toml();
    let cases = [
        (
            "[[console.operators]]\nname = \"operator\"\ntoken = \"${ALICE_TOKEN}\"\n",
            "console.operators[0].name",
        ),
        (
            "[[console.operators]]\nname = \"alice\"\ntoken = \"${CONSOLE_TOKEN}\"\n",
            "same token",
        ),
        (
            "[[console.operators]]\nname = \"bob\"\ntoken = \"bob-short\"\n",
            "9 characters long: use at least 16",
        ),
    ];
    for (extra, says) in cases {
        let path = env_dir.path().join("relay.toml");
        std::fs::write(
            &path,
            format!("{base}\n[console]\ntoken = \"${{CONSOLE_TOKEN}}\"\n{extra}"),
        )
        .unwrap();
        let out = Cli::new(&["check-config", "--config", path.to_str().unwrap()])
            .env("CONSOLE_TOKEN", TOKEN)
            .env("ALICE_TOKEN", ALICE)
            .output();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{extra}: {err}");
        assert!(err.contains(says), "{extra}: {err}");
        for token in [TOKEN, ALICE, "bob-short"] {
            assert!(!err.contains(token), "{extra}: a token echoed: {err}");
        }
    }
    let path = env_dir.path().join("relay.toml");
    std::fs::write(
        &path,
        format!("{base}\n[console]\ntoken = \"${{CONSOLE_TOKEN}}\"\n[[console.operators]]\nname = \"alice\"\ntoken = \"${{ALICE_TOKEN}}\"\n"),
    )
    .unwrap();
    let out = Cli::new(&["check-config", "--config", path.to_str().unwrap()])
        .env("CONSOLE_TOKEN", TOKEN)
        .env("ALICE_TOKEN", ALICE)
        .output();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[tokio::test]
async fn operators_alone_guard_a_console_off_loopback_and_each_token_is_long_enough() {
    let env = Env::new().await;
    let mut config = console_config(env.default_config().load(), None);
    config.console.listen = "0.0.0.0:0".parse().unwrap();
    config.console.token = None;
    config.console.operators[0].token = "short".into();
    let e = postback_relay::operate::console::start(config.clone(), env.shutdown.clone())
        .await
        .err()
        .expect("refused");
    assert!(
        e.to_string()
            .starts_with("console.operators[0].token is 5 characters long"),
        "{e}"
    );
    config.console.operators[0].token = ALICE.into();
    config.console.listen = "127.0.0.1:0".parse().unwrap();
    let console = postback_relay::operate::console::start(config, env.shutdown.clone())
        .await
        .unwrap();
    let status = |r: reqwest::Response| r.status().as_u16();
    let http = reqwest::Client::new();
    let base = format!("http://{}", console.addr);
    assert_eq!(
        status(http.get(format!("{base}/")).send().await.unwrap()),
        401
    );
    let alice = http
        .get(format!("{base}/"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(status(alice), 200);
}
