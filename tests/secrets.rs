//! No secret in anything the relay writes: a partner that echoes the request back (its path,
//! query and headers, as error pages do) must not put the API key or a token into dead letters,
//! logs, or the output of `dlq`, `replay` and `render`.

mod common;

use std::time::Duration;

use common::{Callback, Cli, Dest, Env, Event, Hoqu, RelayProcess, Retry};
use postback_relay::interfaces::sandbox::Rule;
use tokio_util::sync::CancellationToken;

const HOQU_KEY: &str = "hq-Secret/Key 42";
const CB_TOKEN: &str = "cb+Token=9x";

/// Every form a secret can be written in that a reader could use.
fn leaks(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for secret in [HOQU_KEY, CB_TOKEN] {
        let encoded = postback_relay::contract::partner::encode_component(secret);
        let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        for f in [
            secret.to_owned(),
            encoded.clone(),
            encoded.to_lowercase(),
            form,
        ] {
            if text.contains(&f) {
                found.push(f);
            }
        }
    }
    found
}

/// What a command on `config` writes, stdout then stderr; it must succeed.
fn cli(config: &str, args: &[&str]) -> String {
    let out = Cli::new(args)
        .args(&["--config", config])
        .env("HOQU_KEY", HOQU_KEY)
        .env("CB_TOKEN", CB_TOKEN)
        .ok();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[tokio::test]
async fn partners_echoing_the_request_leak_no_secret() {
    let env = Env::new().await;
    // Express's default: 404 "Cannot GET /<path>", here with the query and headers too.
    env.sandbox
        .add_rule(&Rule::answer(404).echoing())
        .await
        .unwrap();
    let base = env.sandbox.base_url();
    let hoqu = || {
        Hoqu::new("${HOQU_KEY}", "fixed")
            .action("lead")
            .status_wait_secs(30)
    };
    let dir = tempfile::tempdir().unwrap();
    let config = env
        .config()
        .destination(Dest::hoqu("hoqu-get", base, hoqu()).retry(Retry::fast()))
        .destination(Dest::hoqu("hoqu-post", base, hoqu().method("post")).retry(Retry::fast()))
        .destination(
            Dest::callback(
                "publisher",
                Callback::new(&format!(
                    "{base}/cb?tok=${{CB_TOKEN}}&id=!!!transactionId!!!"
                ))
                .any_port(),
            )
            .retry(Retry::fast()),
        )
        .write(&dir);
    let log = dir.path().join("relay.log");
    env.declare().await;
    let relay = RelayProcess::run_with(
        &config,
        &[("HOQU_KEY", HOQU_KEY), ("CB_TOKEN", CB_TOKEN)],
        Some(&log),
    );
    let events = [
        Event::attributed("h1", "lead", "hoqu", "c1").order_id("o1"),
        Event::attributed("a1", "order", "awin", "c2")
            .order("o2", "10.00")
            .currency("EUR"),
    ]
    .map(Event::body);
    let files = dir.path().join("events.jsonl");
    std::fs::write(&files, events.join(&b'\n')).unwrap();
    let dead = env.topology().dead;
    env.until_consumed().await;
    for e in &events {
        env.publish(e).await;
    }
    env.until_holds(&dead, 3, Duration::from_secs(30), "three dead letters")
        .await;
    // The partner did echo the secrets: the test would see a leak.
    let echoed: String = env
        .sandbox
        .requests()
        .await
        .unwrap()
        .iter()
        .map(|r| format!("{} {:?}\n", r.path, r.query))
        .collect();
    assert!(!leaks(&echoed).is_empty(), "the partner saw the secrets");

    let outputs = [
        (
            "dlq list json",
            cli(&config, &["dlq", "list", "--format", "json"]),
        ),
        ("dlq list", cli(&config, &["dlq", "list"])),
        (
            "dlq stats",
            cli(&config, &["dlq", "stats", "--format", "json"]),
        ),
        ("replay dry run", cli(&config, &["replay", "--dry-run"])),
        ("render", cli(&config, &["render", files.to_str().unwrap()])),
    ];
    assert!(
        outputs[0].1.contains("Cannot GET") && outputs[0].1.contains("REDACTED"),
        "the echoed answer is kept, with its secrets redacted: {}",
        outputs[0].1
    );
    drop(relay);
    let logs = std::fs::read_to_string(&log).unwrap();
    for (what, text) in outputs.iter().chain([&("relay log", logs)]) {
        assert_eq!(
            leaks(text),
            Vec::<String>::new(),
            "{what} leaks a secret:\n{text}"
        );
    }
}

const TOKEN: &str = "cbTokenSECRET0123456789abcdefXYZ";

/// A secret across the point where a partner's answer is cut to its snippet is scrubbed too:
/// the answer is scrubbed whole, then cut.
#[tokio::test]
async fn a_secret_cut_by_the_snippet_limit_is_still_scrubbed() {
    let env = Env::new().await;
    env.declare().await;
    env.sandbox
        .add_rule(&Rule::answer(404).echoing())
        .await
        .unwrap();
    let base = env.sandbox.base_url();
    let config = env
        .config()
        .destination(
            Dest::callback(
                "publisher",
                Callback::new(&format!(
                    "{base}/cb?id=!!!transactionId!!!&tok=${{CB_TOKEN}}"
                ))
                .any_port(),
            )
            .retry(Retry::fast()),
        )
        .var("CB_TOKEN", TOKEN);
    let stop = CancellationToken::new();
    let running = env.start_until(config.load(), stop.clone()).await;
    // The echo starts "Cannot GET /cb?id=<order id>&tok=<token>": an order id this long puts
    // the token's first 24 characters before the 1 KiB cut and the rest after it.
    let prefix = "Cannot GET /cb?id=".len() + "&tok=".len();
    let order_id = "o".repeat(postback_relay::relay::deadletter::SNIPPET_MAX - 24 - prefix);
    let event = Event::attributed("cut1", "order", "awin", "c2")
        .order(&order_id, "10.00")
        .currency("EUR")
        .body();
    env.publish(&event).await;
    let dead = env.topology().dead;
    env.until_holds(&dead, 1, Duration::from_secs(30), "the dead letter")
        .await;
    let envelopes = env.take_dead_letters().await;
    let snippet = envelopes[0].response_snippet.clone().unwrap_or_default();
    assert!(
        snippet.starts_with("Cannot GET /cb?id=ooo"),
        "the partner echoed the request: {snippet}"
    );
    assert!(
        !snippet.contains(&TOKEN[..16]),
        "the dead letter keeps the first 24 of the token's 32 characters: ...{}",
        &snippet[snippet.len().saturating_sub(40)..]
    );
    stop.cancel();
    running.wait().await.unwrap();
}

/// Dead letters written by older versions of the relay (or by anything else) may hold the
/// configuration's secrets anywhere: `dlq list`, `dlq stats` and `replay` print none of them
/// when they are given the config, and their JSON stays JSON.
#[tokio::test]
async fn dead_letters_holding_secrets_are_printed_without_them() {
    use postback_relay::relay::deadletter::{Envelope, Reason, Source};
    let env = Env::new().await;
    env.declare().await;
    let base = env.sandbox.base_url();
    let hoqu = Hoqu::new("${HOQU_KEY}", "fixed")
        .action("lead")
        .status_wait_secs(30);
    let dir = tempfile::tempdir().unwrap();
    let config = env
        .config()
        .destination(Dest::hoqu("hoqu-get", base, hoqu).retry(Retry::fast()))
        .destination(
            Dest::callback(
                "publisher",
                Callback::new(&format!(
                    "{base}/cb?tok=${{CB_TOKEN}}&id=!!!transactionId!!!"
                ))
                .any_port(),
            )
            .retry(Retry::fast()),
        )
        .write(&dir);

    // An envelope as an older relay wrote it: secrets in what it wrote, raw and encoded.
    let key = postback_relay::contract::partner::encode_component(HOQU_KEY);
    let event = format!(
        r#"{{"event_id":"old1","type":"lead","occurred_at":"2026-11-22T10:00:00Z","attribution":{{"network":"hoqu","click_id":"{CB_TOKEN}"}}}}"#
    );
    let source = Source {
        queue: "events".into(),
        routing_key: "lead".into(),
        message_id: None,
        redelivered: false,
    };
    let mut old = Envelope::for_message(
        Reason::PartnerRejected,
        format!("HTTP 404: Cannot GET /{key}/s2s"),
        event.as_bytes(),
        None,
        source,
    );
    old.destination = Some(format!("hoqu-{HOQU_KEY}"));
    old.response_snippet = Some(format!("Cannot GET /{key}/s2s?tok={CB_TOKEN}"));
    old.last_error = Some(format!("refused {HOQU_KEY}"));
    let mut old = serde_json::to_value(&old).unwrap();
    old["request"] = serde_json::json!({
        "destination": "hoqu-get",
        "method": "GET",
        "url": format!("{base}/{key}/s2s"),
        "headers": { "x-token": CB_TOKEN },
    });
    // And a message that is not an envelope at all.
    let raw = format!("not json, key={HOQU_KEY}");
    for body in [serde_json::to_vec(&old).unwrap(), raw.into_bytes()] {
        env.publisher
            .publish_json("", &env.topology().dead, &body, None, None)
            .await
            .unwrap();
    }

    // Each command reads the whole queue: the next one waits until the messages the last one
    // held are back.
    let dead = env.topology().dead;
    let run = async |args: &[&str]| {
        let out = cli(&config, args);
        env.until_holds(&dead, 2, Duration::from_secs(10), "the dead letters back")
            .await;
        out
    };
    let list_json = run(&["dlq", "list", "--format", "json"]).await;
    let stats_json = run(&["dlq", "stats", "--format", "json"]).await;
    let outputs = [
        ("dlq list", run(&["dlq", "list"]).await),
        ("dlq stats", run(&["dlq", "stats"]).await),
        ("replay dry run", run(&["replay", "--dry-run"]).await),
        ("replay", cli(&config, &["replay"])),
    ];
    // The JSON still reads, and still shows the dead letters, secrets replaced.
    let listed: serde_json::Value = serde_json::from_str(&list_json).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{list_json}");
    assert_eq!(listed[0]["event_id"], "old1", "{list_json}");
    assert!(
        list_json.contains("Cannot GET /REDACTED/s2s"),
        "{list_json}"
    );
    let stats: serde_json::Value = serde_json::from_str(&stats_json).unwrap();
    assert_eq!(stats["total"], 2, "{stats_json}");
    assert!(outputs[0].1.contains("old1"), "{}", outputs[0].1);
    assert!(
        outputs[3]
            .1
            .contains("replayed 2 dead letter(s) of 2 examined"),
        "{}",
        outputs[3].1
    );
    for (what, text) in [
        ("dlq list json", &list_json),
        ("dlq stats json", &stats_json),
    ]
    .into_iter()
    .chain(outputs.iter().map(|(w, t)| (*w, t)))
    {
        assert_eq!(
            leaks(text),
            Vec::<String>::new(),
            "{what} leaks a secret:\n{text}"
        );
    }
}
