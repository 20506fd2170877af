//! The relay end to end against the real RabbitMQ and the partner sandbox on loopback.

mod common;

use std::time::Duration;

use common::{Env, event, eventually};
use postback_relay::config::Config;
use postback_relay::deadletter::Reason;
use postback_relay::dlq::DeadLetter;
use postback_relay::relay::{self, Running};
use postback_relay::sandbox::Rule;

const WAIT: Duration = Duration::from_secs(30);

async fn start(env: &Env, extra: &str) -> Running {
    env.start(&env.config_toml(extra)).await
}

async fn wait_acked(running: &Running, n: u64) {
    let m = running.metrics.clone();
    eventually(WAIT, &format!("{n} events acked"), || {
        let m = m.clone();
        async move { m.events_acked.get() >= n }
    })
    .await;
}

fn rule(query_contains: &str, status: u16, times: Option<u64>) -> Rule {
    let r = Rule::answer(status).on_query(query_contains);
    match times {
        Some(n) => r.times(n),
        None => r,
    }
}

#[tokio::test]
async fn an_order_becomes_exactly_one_get() {
    let env = Env::new().await;
    let running = start(&env, "").await;
    env.publish(&event("ord-1", "order", "abc123xyz789", Some("89.99")))
        .await;
    wait_acked(&running, 1).await;

    let requests = env.sandbox.requests().await.unwrap();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let r = &requests[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/ord"));
    assert_eq!(r.query.as_deref(), Some("qci=abc123xyz789&ov=89.99"));
    let t = env.topology();
    assert_eq!(env.ready(&t.events).await, 0);
    assert!(env.take_dead_letters().await.is_empty());
    assert_eq!(
        running
            .metrics
            .deliveries
            .with_label_values(&["powerspace", "delivered"])
            .get(),
        1
    );
    env.cleanup().await;
}

#[tokio::test]
async fn a_404_becomes_one_dead_letter_with_its_reason() {
    let env = Env::new().await;
    env.sandbox
        .add_rule(&rule("qci=gone", 404, None))
        .await
        .unwrap();
    let running = start(&env, "").await;
    let body = event("ord-404", "order", "gone", Some("10.00"));
    env.publish(&body).await;
    wait_acked(&running, 1).await;

    // 404 is permanent: one call, no retry.
    assert_eq!(env.sandbox.requests().await.unwrap().len(), 1);
    let dead = env.take_dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d = &dead[0];
    assert_eq!(d.reason, Reason::PartnerRejected);
    assert_eq!(d.destination.as_deref(), Some("powerspace"));
    assert_eq!(d.event_id.as_deref(), Some("ord-404"));
    assert_eq!(d.last_status, Some(404));
    assert_eq!(d.attempts, 1);
    assert_eq!(d.detail, "HTTP 404 Not Found: click ID expired or unknown");
    assert_eq!(d.response_snippet.as_deref(), Some("sandbox answered 404"));
    let req = d.request.as_ref().unwrap();
    assert!(req.url.ends_with("/ord?qci=gone&ov=10.00"), "{}", req.url);
    assert_eq!(d.event.as_ref().unwrap().get().as_bytes(), body);
    assert_eq!(
        running
            .metrics
            .dead_letters
            .with_label_values(&["powerspace", "partner_rejected"])
            .get(),
        1
    );
    env.cleanup().await;
}

#[tokio::test]
async fn malformed_events_are_dead_lettered_and_consuming_goes_on() {
    let env = Env::new().await;
    let running = start(&env, "").await;
    let bad_amount = String::from_utf8(event("bad-amount", "order", "c1", Some("12,50"))).unwrap();
    let no_click = r#"{"event_id":"no-click","type":"lead","occurred_at":"2026-11-22T10:00:00Z","attribution":{"network":"powerspace"}}"#;
    let huge = format!(
        r#"{{"event_id":"huge","pad":"{}"}}"#,
        "x".repeat(10 * 1024 * 1024)
    );
    let bodies: Vec<&[u8]> = vec![
        b"this is not json",
        bad_amount.as_bytes(),
        no_click.as_bytes(),
        huge.as_bytes(),
    ];
    for b in &bodies {
        env.publish(b).await;
    }
    env.publish(&event("after", "lead", "still-here", None))
        .await;
    // Three malformed events and the valid one are acked; the oversized one is refused whole.
    wait_acked(&running, bodies.len() as u64).await;
    let dead_queue = env.topology().dead;
    eventually(WAIT, "four messages in the dead-letter queue", || {
        let (env, q) = (&env, dead_queue.clone());
        async move { env.ready(&q).await == 4 }
    })
    .await;

    let requests = env.sandbox.requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].query.as_deref(), Some("qci=still-here"));

    let mut all = env.take_all_dead().await;
    // The oversized body is refused whole and moved by the broker, unparsed: nothing lost,
    // no envelope built around 10 MB.
    let raw: Vec<_> = all
        .iter()
        .filter_map(|l| match l {
            DeadLetter::Raw(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0].reason, Reason::EventTooLarge);
    assert_eq!(raw[0].body, huge.as_bytes());
    all.retain(|l| matches!(l, DeadLetter::Envelope(_)));
    let mut dead: Vec<_> = all
        .into_iter()
        .filter_map(|l| match l {
            DeadLetter::Envelope(e) => Some(*e),
            _ => None,
        })
        .collect();
    dead.sort_by_key(|d| d.reason.as_str());
    let got: Vec<_> = dead
        .iter()
        .map(|d| (d.reason, d.event_id.as_deref()))
        .collect();
    assert_eq!(
        got,
        vec![
            (Reason::InvalidEvent, Some("bad-amount")),
            (Reason::InvalidEvent, Some("no-click")),
            (Reason::NotJson, None),
        ]
    );
    assert!(
        dead[0].detail.contains("order.amount") && dead[0].detail.contains("12,50"),
        "{}",
        dead[0].detail
    );
    assert!(dead[1].detail.contains("click_id"), "{}", dead[1].detail);
    // Nothing is lost: the bodies are in the envelopes.
    assert_eq!(dead[0].event.as_ref().unwrap().get(), bad_amount);
    assert_eq!(dead[2].raw_body.as_ref().unwrap().data, "this is not json");
    assert!(
        dead.iter()
            .all(|d| d.destination.is_none() && d.attempts == 0)
    );
    // Not requeued in a loop: every queue is empty.
    let t = env.topology();
    assert_eq!(env.ready(&t.events).await, 0);
    assert_eq!(env.ready(&t.dead).await, 0);
    env.cleanup().await;
}

#[tokio::test]
async fn retryable_failures_are_retried_then_dead_lettered() {
    let env = Env::new().await;
    env.sandbox
        .add_rule(&rule("qci=flaky", 503, Some(2)))
        .await
        .unwrap();
    env.sandbox
        .add_rule(&rule("qci=down", 503, None))
        .await
        .unwrap();
    env.sandbox
        .add_rule(&rule("qci=busy", 429, Some(1)))
        .await
        .unwrap();
    let running = start(&env, "").await;
    env.publish(&event("flaky", "lead", "flaky", None)).await;
    env.publish(&event("down", "lead", "down", None)).await;
    env.publish(&event("busy", "lead", "busy", None)).await;
    let m = running.metrics.clone();
    eventually(
        WAIT,
        "two delivered, the partner that stays down dead-lettered",
        || {
            let m = m.clone();
            async move {
                m.deliveries
                    .with_label_values(&["powerspace", "delivered"])
                    .get()
                    == 2
                    && m.deliveries
                        .with_label_values(&["powerspace", "dead_lettered"])
                        .get()
                        == 1
            }
        },
    )
    .await;

    let requests = env.sandbox.requests().await.unwrap();
    let count = |q: &str| {
        requests
            .iter()
            .filter(|r| r.query.as_deref() == Some(q))
            .count()
    };
    assert_eq!(count("qci=flaky"), 3, "two 503s then a 200, in-process");
    assert_eq!(count("qci=busy"), 2, "a 429 then a 200");
    // Three in-process tries, then durable retries up to max_attempts = 6.
    assert_eq!(count("qci=down"), 6, "the whole budget");
    let dead = env.take_dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, Reason::RetriesExhausted);
    assert_eq!(dead[0].event_id.as_deref(), Some("down"));
    assert_eq!((dead[0].attempts, dead[0].last_status), (6, Some(503)));
    assert_eq!(dead[0].history.len(), 6, "the attempt history");
    assert!(
        dead[0]
            .history
            .iter()
            .all(|h| h.result == "5xx" && h.status == Some(503))
    );
    assert_eq!(
        m.partner_requests
            .with_label_values(&["powerspace", "5xx"])
            .get(),
        8
    );
    env.cleanup().await;
}

#[tokio::test]
async fn timeouts_and_connection_errors_are_retryable() {
    let env = Env::new().await;
    env.sandbox
        .add_rule(&rule("qci=slow", 200, Some(1)).after_ms(1_000))
        .await
        .unwrap();
    let toml = env
        .config_toml("")
        .replace("timeout_ms = 2000", "timeout_ms = 200");
    let running = env.start(&toml).await;
    env.publish(&event("slow", "lead", "slow", None)).await;
    wait_acked(&running, 1).await;
    assert_eq!(
        running
            .metrics
            .partner_requests
            .with_label_values(&["powerspace", "timeout"])
            .get(),
        1
    );
    assert_eq!(
        running
            .metrics
            .deliveries
            .with_label_values(&["powerspace", "delivered"])
            .get(),
        1
    );
    env.cleanup().await;

    // Nothing listens on the port: every attempt is a connection error.
    let env = Env::new().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let toml = env
        .config_toml("")
        .replace(env.sandbox.base_url(), &format!("http://{closed}"));
    let running = env.start(&toml).await;
    env.publish(&event("refused", "lead", "c", None)).await;
    let m = running.metrics.clone();
    eventually(WAIT, "dead-lettered after the retry budget", || {
        let m = m.clone();
        async move {
            m.deliveries
                .with_label_values(&["powerspace", "dead_lettered"])
                .get()
                == 1
        }
    })
    .await;
    let dead = env.take_dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, Reason::RetriesExhausted);
    assert_eq!(dead[0].last_status, None);
    let err = dead[0].last_error.as_deref().unwrap();
    assert!(
        !err.contains(&closed.to_string()),
        "URLs stay out of errors: {err}"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn unattributed_events_are_skipped_and_unroutable_ones_dead_lettered() {
    let env = Env::new().await;
    let running = start(&env, "").await;
    env.publish(br#"{"event_id":"organic","type":"order","occurred_at":"2026-11-22T10:00:00Z"}"#)
        .await;
    env.publish(
        br#"{"event_id":"other-net","type":"lead","occurred_at":"2026-11-22T10:00:00Z","attribution":{"network":"elsewhere","click_id":"c"}}"#,
    )
    .await;
    env.publish(&event("rebill", "rebill", "c", None)).await;
    wait_acked(&running, 3).await;
    assert!(env.sandbox.requests().await.unwrap().is_empty());
    assert_eq!(running.metrics.events_skipped.get(), 1);
    let mut dead = env.take_dead_letters().await;
    dead.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    let got: Vec<_> = dead
        .iter()
        .map(|d| (d.event_id.as_deref().unwrap(), d.reason))
        .collect();
    // A Powerspace destination has no request for a rebill: the config's match decides, and
    // with no types listed it takes what the kind supports.
    assert_eq!(
        got,
        vec![
            ("other-net", Reason::Unroutable),
            ("rebill", Reason::Unroutable)
        ]
    );
    assert!(
        dead[0].detail.contains("\"elsewhere\""),
        "{}",
        dead[0].detail
    );
    env.cleanup().await;
}

#[tokio::test]
async fn metrics_and_health_endpoints() {
    let env = Env::new().await;
    env.sandbox
        .add_rule(&rule("qci=gone", 404, None))
        .await
        .unwrap();
    let running = start(&env, "").await;
    env.publish(&event("a", "lead", "ok-1", None)).await;
    env.publish(&event("b", "order", "ok-2", Some("5.00")))
        .await;
    env.publish(&event("c", "order", "gone", Some("5.00")))
        .await;
    env.publish(b"{").await;
    wait_acked(&running, 4).await;

    let base = format!("http://{}", running.http_addr);
    let get = |path: &str| reqwest::get(format!("{base}{path}"));
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    let text = get("/metrics").await.unwrap().text().await.unwrap();
    for line in [
        r#"postback_relay_events_consumed_total{type="lead"} 1"#,
        r#"postback_relay_events_consumed_total{type="order"} 2"#,
        r#"postback_relay_events_consumed_total{type="invalid"} 1"#,
        r#"postback_relay_events_acked_total 4"#,
        r#"postback_relay_deliveries_total{destination="powerspace",outcome="delivered"} 2"#,
        r#"postback_relay_deliveries_total{destination="powerspace",outcome="dead_lettered"} 1"#,
        r#"postback_relay_dead_letters_total{destination="powerspace",reason="partner_rejected"} 1"#,
        r#"postback_relay_dead_letters_total{destination="none",reason="not_json"} 1"#,
        r#"postback_relay_partner_requests_total{destination="powerspace",status_class="2xx"} 2"#,
        r#"postback_relay_partner_requests_total{destination="powerspace",status_class="4xx"} 1"#,
        r#"postback_relay_partner_request_duration_seconds_count{destination="powerspace"} 3"#,
        r#"postback_relay_broker_connected 1"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(
        !text.contains("ok-1") && !text.contains("qci"),
        "no click IDs or URLs in metrics"
    );

    env.shutdown.cancel();
    running.wait().await.unwrap();
    let t = env.topology();
    assert_eq!(env.ready(&t.events).await, 0);
    let _ = env.take_dead_letters().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_closed_broker_connection_is_survived() {
    let env = Env::new().await;
    let running = start(&env, "").await;
    env.publish(&event("before", "lead", "before", None)).await;
    wait_acked(&running, 1).await;

    // Force-close the relay's connection from the broker side, as an operator or a failover would.
    let name = format!("postback-relay worker {}", env.prefix);
    let out = std::process::Command::new("rabbitmqctl")
        .args(["list_connections", "pid", "client_properties", "--silent"])
        .output()
        .expect("rabbitmqctl");
    let listing = String::from_utf8_lossy(&out.stdout);
    let pid = listing
        .lines()
        .find(|l| l.contains(&name))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("connection {name} not listed:\n{listing}"))
        .to_owned();
    let closed = std::process::Command::new("rabbitmqctl")
        .args(["close_connection", &pid, "test closes it"])
        .output()
        .unwrap();
    assert!(closed.status.success());
    let m = running.metrics.clone();
    eventually(WAIT, "a reconnect", || {
        let m = m.clone();
        async move { m.broker_reconnects.get() >= 1 && m.broker_connected.get() == 1 }
    })
    .await;

    env.publish(&event("after", "lead", "after", None)).await;
    wait_acked(&running, 2).await;
    let queries: Vec<_> = env
        .sandbox
        .requests()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| r.query)
        .collect();
    assert_eq!(queries, vec!["qci=before", "qci=after"]);
    env.cleanup().await;
}

#[tokio::test]
async fn every_partner_kind_end_to_end() {
    let env = Env::new().await;
    env.sandbox
        .add_rule(&rule("click_id=gone", 404, None))
        .await
        .unwrap();
    let base = env.sandbox.base_url().to_owned();
    let toml = format!(
        r##"{powerspace}
        [[destinations]]
        name = "hoqu-get"
        kind = "hoqu"
        base_url = "{base}/hoqu-get"
        match = {{ networks = ["hoqu"] }}
        retry = {{ initial_delay_ms = 100, max_delay_ms = 1600 }}
        hoqu = {{ api_key = "${{TEST_HOQU_KEY}}", payout = "percentage", action = "lead", status_wait_secs = 0 }}

        [[destinations]]
        name = "hoqu-post"
        kind = "hoqu"
        base_url = "{base}/hoqu-post"
        match = {{ networks = ["hoqu"] }}
        retry = {{ initial_delay_ms = 100, max_delay_ms = 1600 }}
        hoqu = {{ api_key = "${{TEST_HOQU_KEY}}", method = "post", payout = "fixed", action = "sale", status_wait_secs = 0 }}

        [[destinations]]
        name = "publisher"
        kind = "callback"
        match = {{ networks = ["awin"] }}
        retry = {{ initial_delay_ms = 100, max_delay_ms = 1600 }}
        callback = {{ url = "{base}/cb/!!!merchantId!!!?clk=!!!clickRef!!!&amt=!!!transactionAmount!!!", merchant_id = "3661", allow_any_port = true }}

        [[destinations]]
        name = "publisher-post"
        kind = "callback"
        match = {{ networks = ["awin"] }}
        retry = {{ initial_delay_ms = 100, max_delay_ms = 1600 }}
        callback = {{ url = "{base}/cb-post", method = "post", allow_any_port = true }}

        [[destinations]]
        name = "affiliate"
        kind = "tracker"
        match = {{ networks = ["espace-plus"] }}
        retry = {{ initial_delay_ms = 100, max_delay_ms = 1600 }}
        tracker = {{ structure = "#affid#-#clickId#", url = "{base}/pb?a=#affid#&c=#clickId#&k=#conversion#" }}
        "##,
        powerspace = env.config_toml(""),
    );
    let config = Config::from_toml(&toml, &|n| {
        (n == "TEST_HOQU_KEY").then(|| "s3cr3t key".to_owned())
    })
    .unwrap();
    let running = relay::start(config, env.shutdown.clone()).await.unwrap();
    let health = running.health.clone();
    eventually(WAIT, "the relay consumes", || {
        let h = health.clone();
        async move { h.is_ready() }
    })
    .await;

    let events = [
        r#"{"event_id":"h1","type":"lead","occurred_at":"2026-11-22T10:00:00Z","attribution":{"network":"hoqu","click_id":"c7e2206f"},"order":{"id":"12345","amount":"30"}}"#,
        r#"{"event_id":"h2","type":"order_status","occurred_at":"2026-11-22T11:00:00Z","attribution":{"network":"hoqu","click_id":"c7e2206f"},"order":{"id":"12345","amount":"30","status":"PAID"}}"#,
        r#"{"event_id":"h3","type":"order_status","occurred_at":"2026-11-22T11:00:00Z","attribution":{"network":"hoqu","click_id":"gone"},"order":{"id":"9","amount":"5","status":"paid"}}"#,
        r#"{"event_id":"a1","type":"order","occurred_at":"2013-06-13T12:05:00Z","attribution":{"network":"awin","click_id":"k","publisher_id":"45628","params":{"clickRef":"a&b"}},"order":{"id":"105956531","amount":"26.09","currency":"GBP"}}"#,
        r#"{"event_id":"t1","type":"rebill","occurred_at":"2026-11-22T10:00:00Z","attribution":{"network":"espace-plus","click_id":"x","tracker":"trID_aff9-ck42_trID"}}"#,
        r#"{"event_id":"t2","type":"signup","occurred_at":"2026-11-22T10:00:00Z","attribution":{"network":"espace-plus","click_id":"x","tracker":"trID_nodash_trID"}}"#,
    ];
    // The conversion first, so its status update follows it (status order).
    env.publish(events[0].as_bytes()).await;
    wait_acked(&running, 1).await;
    for e in &events[1..] {
        env.publish(e.as_bytes()).await;
    }
    wait_acked(&running, events.len() as u64).await;

    let requests = env.sandbox.requests().await.unwrap();
    let find = |prefix: &str| -> Vec<_> {
        requests
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .collect()
    };
    let hoqu_get = find("/hoqu-get/");
    assert_eq!(hoqu_get.len(), 3);
    assert!(
        hoqu_get
            .iter()
            .all(|r| r.path == "/hoqu-get/s3cr3t%20key/s2s" && r.method == "GET")
    );
    let queries: Vec<_> = hoqu_get.iter().map(|r| r.query.clone().unwrap()).collect();
    assert!(queries.contains(
        &"click_id=c7e2206f&request_id=12345&action=lead&price=30&status=hold".to_owned()
    ));
    assert!(queries.contains(
        &"click_id=c7e2206f&request_id=12345&action=lead&price=30&status=approved".to_owned()
    ));
    let hoqu_post = find("/hoqu-post/");
    assert_eq!(hoqu_post.len(), 3);
    let post = hoqu_post
        .iter()
        .find(|r| r.body.contains("\"status\":\"hold\""))
        .unwrap();
    assert_eq!(post.method, "POST");
    assert_eq!(post.path, "/hoqu-post/s3cr3t%20key");
    assert_eq!(post.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        post.body,
        r#"{"click_id":"c7e2206f","request_id":"12345","action":"sale","price":30,"status":"hold"}"#
    );
    // Status updates go by GET, whatever `method` says: HOQU offers POST for new conversions.
    assert_eq!(
        hoqu_post.iter().filter(|r| r.method == "GET").count(),
        2,
        "{hoqu_post:?}"
    );
    let cb = find("/cb/");
    assert_eq!(cb.len(), 1);
    assert_eq!(
        (cb[0].path.as_str(), cb[0].query.as_deref()),
        ("/cb/3661", Some("clk=a%26b&amt=26.09"))
    );
    let cb_post = find("/cb-post");
    assert_eq!(
        cb_post[0].content_type.as_deref(),
        Some("application/x-www-form-urlencoded; charset=UTF-8")
    );
    assert!(
        cb_post[0]
            .body
            .starts_with("AwinTransactionPush=%7B%22transactionId%22%3A%22105956531%22"),
        "{}",
        cb_post[0].body
    );
    let pb = find("/pb");
    assert_eq!(pb.len(), 1);
    assert_eq!(pb[0].query.as_deref(), Some("a=aff9&c=ck42&k=rebill"));

    // Dead letters: the 404s of both HOQU destinations (the sandbox's rule matches the query,
    // and status updates go by GET) and the tracker that does not fit.
    let mut dead = env.take_dead_letters().await;
    dead.sort_by(|a, b| a.destination.cmp(&b.destination));
    let got: Vec<_> = dead
        .iter()
        .map(|d| (d.destination.as_deref().unwrap(), d.reason))
        .collect();
    assert_eq!(
        got,
        vec![
            ("affiliate", Reason::RenderError),
            ("hoqu-get", Reason::PartnerRejected),
            ("hoqu-post", Reason::PartnerRejected)
        ]
    );
    assert!(
        dead[0].detail.contains("does not fit"),
        "{}",
        dead[0].detail
    );
    let envelope = serde_json::to_string(&dead).unwrap();
    assert!(
        !envelope.contains("s3cr3t"),
        "the API key never reaches a dead letter"
    );
    assert!(
        dead[1]
            .request
            .as_ref()
            .unwrap()
            .url
            .contains("/REDACTED/s2s?")
    );
    env.cleanup().await;
}

/// Unacknowledged messages of `queue`, as the broker counts them.
fn unacked(queue: &str) -> u64 {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "name",
            "messages_unacknowledged",
            "--silent",
            "--no-table-headers",
        ])
        .output()
        .expect("rabbitmqctl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some(queue)).then(|| f.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("queue {queue} not listed"))
}

/// Waits until the broker counts `n` unacknowledged messages in `queue`.
async fn until_unacked(queue: &str, n: u64, what: &str) {
    eventually(WAIT, what, || {
        let q = queue.to_owned();
        async move {
            tokio::task::spawn_blocking(move || unacked(&q))
                .await
                .unwrap()
                == n
        }
    })
    .await;
}

#[tokio::test]
async fn a_slow_delivery_does_not_hold_back_the_acks_of_the_others() {
    let env = Env::new().await;
    env.sandbox
        .add_rule(&Rule::answer(200).on_query("qci=slow").after_ms(6000))
        .await
        .unwrap();
    let toml = env
        .config_toml("")
        .replace("timeout_ms = 2000", "timeout_ms = 15000");
    let running = env.start(&toml).await;
    // The slow one first: every later message sits above it on the channel.
    env.publish(&event("slow", "lead", "slow", None)).await;
    for i in 0..100 {
        env.publish(&event(
            &format!("fast-{i}"),
            "lead",
            &format!("fast{i}"),
            None,
        ))
        .await;
    }
    wait_acked(&running, 100).await;
    let in_flight = running.metrics.in_flight.with_label_values(&["powerspace"]);
    assert_eq!(
        in_flight.get(),
        1,
        "the 100 fast ones were acknowledged while the slow one was still at the partner"
    );
    // The broker agrees: only the slow one is unacknowledged.
    let events = env.topology().events;
    until_unacked(&events, 1, "the broker holds only the slow one").await;
    wait_acked(&running, 101).await;
    until_unacked(&events, 0, "nothing unacknowledged").await;
    assert_eq!(env.ready(&events).await, 0);
    assert_eq!(env.sandbox.requests().await.unwrap().len(), 101);
    env.cleanup().await;
}
