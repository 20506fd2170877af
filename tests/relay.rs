//! The relay end to end against the real RabbitMQ and the partner sandbox on loopback.

mod common;

use std::time::Duration;

use common::broker::{close_connection, unacked, worker_connections};
use common::{
    Callback, Dest, Env, Event, Hoqu, Retry, Tracker, deliveries, event, eventually, until,
};
use postback_relay::interfaces::sandbox::Rule;
use postback_relay::operate::dlq::DeadLetter;
use postback_relay::relay::Running;
use postback_relay::relay::deadletter::Reason;

const WAIT: Duration = Duration::from_secs(30);

async fn wait_acked(running: &Running, n: u64) {
    until(running, &format!("{n} events acked"), |m| {
        m.events_acked.get() >= n
    })
    .await;
}

#[tokio::test]
async fn an_order_becomes_exactly_one_get() {
    let env = Env::new().await;
    let running = env.start(&env.default_config()).await;
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
}

#[tokio::test]
async fn a_404_becomes_one_dead_letter_with_its_reason() {
    let env = Env::new().await;
    env.sandbox
        .add_rule(&Rule::answer(404).on_query("qci=gone"))
        .await
        .unwrap();
    let running = env.start(&env.default_config()).await;
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
}

#[tokio::test]
async fn malformed_events_are_dead_lettered_and_consuming_goes_on() {
    let env = Env::new().await;
    let running = env.start(&env.default_config()).await;
    let bad_amount = String::from_utf8(event("bad-amount", "order", "c1", Some("12,50"))).unwrap();
    let no_click = Event::new("no-click", "lead")
        .set("/attribution/network", "powerspace".into())
        .body();
    let huge = format!(
        r#"{{"event_id":"huge","pad":"{}"}}"#,
        "x".repeat(10 * 1024 * 1024)
    );
    let bodies: Vec<&[u8]> = vec![
        b"this is not json",
        bad_amount.as_bytes(),
        &no_click,
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
    env.until_holds(
        &dead_queue,
        4,
        WAIT,
        "four messages in the dead-letter queue",
    )
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
}

#[tokio::test]
async fn retryable_failures_are_retried_then_dead_lettered() {
    let env = Env::new().await;
    env.sandbox
        .add_rule(&Rule::answer(503).on_query("qci=flaky").times(2))
        .await
        .unwrap();
    env.sandbox
        .add_rule(&Rule::answer(503).on_query("qci=down"))
        .await
        .unwrap();
    env.sandbox
        .add_rule(&Rule::answer(429).on_query("qci=busy").times(1))
        .await
        .unwrap();
    let running = env.start(&env.default_config()).await;
    env.publish(&event("flaky", "lead", "flaky", None)).await;
    env.publish(&event("down", "lead", "down", None)).await;
    env.publish(&event("busy", "lead", "busy", None)).await;
    until(
        &running,
        "two delivered, the partner that stays down dead-lettered",
        |m| {
            deliveries(m, "powerspace", "delivered") == 2
                && deliveries(m, "powerspace", "dead_lettered") == 1
        },
    )
    .await;
    let m = running.metrics.clone();

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
}

#[tokio::test]
async fn timeouts_and_connection_errors_are_retryable() {
    let env = Env::new().await;
    env.sandbox
        .add_rule(
            &Rule::answer(200)
                .on_query("qci=slow")
                .times(1)
                .after_ms(1_000),
        )
        .await
        .unwrap();
    let config = env.config().destination(env.powerspace().timeout_ms(200));
    let running = env.start(&config).await;
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
    drop(env);

    // Nothing listens on the port: every attempt is a connection error.
    let env = Env::new().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = env
        .config()
        .destination(env.powerspace().base_url(&format!("http://{closed}")));
    let running = env.start(&config).await;
    env.publish(&event("refused", "lead", "c", None)).await;
    until(&running, "dead-lettered after the retry budget", |m| {
        deliveries(m, "powerspace", "dead_lettered") == 1
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
}

#[tokio::test]
async fn unattributed_events_are_skipped_and_unroutable_ones_dead_lettered() {
    let env = Env::new().await;
    let running = env.start(&env.default_config()).await;
    env.publish(&Event::new("organic", "order").body()).await;
    env.publish(&Event::attributed("other-net", "lead", "elsewhere", "c").body())
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
}

#[tokio::test]
async fn metrics_and_health_endpoints() {
    let env = Env::new().await;
    env.sandbox
        .add_rule(&Rule::answer(404).on_query("qci=gone"))
        .await
        .unwrap();
    let running = env.start(&env.default_config()).await;
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
}

#[tokio::test]
async fn a_closed_broker_connection_is_survived() {
    let env = Env::new().await;
    let running = env.start(&env.default_config()).await;
    env.publish(&event("before", "lead", "before", None)).await;
    wait_acked(&running, 1).await;

    // Force-close the relay's connection from the broker side, as an operator or a failover would.
    let name = format!("postback-relay worker {}", env.prefix);
    let connections = worker_connections(&env.prefix);
    let pid = connections
        .pids
        .first()
        .unwrap_or_else(|| panic!("connection {name} not listed:\n{}", connections.listing));
    assert!(close_connection(pid, "test closes it"));
    until(&running, "a reconnect", |m| {
        m.broker_reconnects.get() >= 1 && m.broker_connected.get() == 1
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
}

#[tokio::test]
async fn every_partner_kind_end_to_end() {
    let env = Env::new().await;
    env.sandbox
        .add_rule(&Rule::answer(404).on_query("click_id=gone"))
        .await
        .unwrap();
    let base = env.sandbox.base_url().to_owned();
    let retry = || Retry::new().delays(100, 1600);
    let hoqu = |name: &str| {
        Dest::hoqu(
            name,
            &format!("{base}/{name}"),
            Hoqu::new("${TEST_HOQU_KEY}", "percentage")
                .action("lead")
                .status_wait_secs(0),
        )
        .retry(retry())
    };
    let config = env
        .default_config()
        .destination(hoqu("hoqu-get"))
        .destination(
            Dest::hoqu(
                "hoqu-post",
                &format!("{base}/hoqu-post"),
                Hoqu::new("${TEST_HOQU_KEY}", "fixed")
                    .method("post")
                    .action("sale")
                    .status_wait_secs(0),
            )
            .retry(retry()),
        )
        .destination(
            Dest::callback(
                "publisher",
                Callback::new(&format!(
                    "{base}/cb/!!!merchantId!!!?clk=!!!clickRef!!!&amt=!!!transactionAmount!!!"
                ))
                .merchant_id("3661")
                .any_port(),
            )
            .retry(retry()),
        )
        .destination(
            Dest::callback(
                "publisher-post",
                Callback::new(&format!("{base}/cb-post"))
                    .method("post")
                    .any_port(),
            )
            .retry(retry()),
        )
        .destination(
            Dest::tracker(
                "affiliate",
                Tracker::new("#affid#-#clickId#")
                    .url(&format!("{base}/pb?a=#affid#&c=#clickId#&k=#conversion#")),
            )
            .retry(retry()),
        )
        .var("TEST_HOQU_KEY", "s3cr3t key");
    let running = env.start(&config).await;

    let hoqu_status = |id: &str, click: &str, order: &str, amount: &str, status: &str| {
        Event::attributed(id, "order_status", "hoqu", click)
            .occurred_at("2026-11-22T11:00:00Z")
            .order(order, amount)
            .status(Some(status))
    };
    let events = [
        Event::attributed("h1", "lead", "hoqu", "c7e2206f").order("12345", "30"),
        hoqu_status("h2", "c7e2206f", "12345", "30", "PAID"),
        hoqu_status("h3", "gone", "9", "5", "paid"),
        Event::attributed("a1", "order", "awin", "k")
            .occurred_at("2013-06-13T12:05:00Z")
            .publisher("45628")
            .param("clickRef", "a&b")
            .order("105956531", "26.09")
            .currency("GBP"),
        Event::attributed("t1", "rebill", "espace-plus", "x").tracker("trID_aff9-ck42_trID"),
        Event::attributed("t2", "signup", "espace-plus", "x").tracker("trID_nodash_trID"),
    ]
    .map(Event::body);
    // The conversion first, so its status update follows it (status order).
    env.publish(&events[0]).await;
    wait_acked(&running, 1).await;
    for e in &events[1..] {
        env.publish(e).await;
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
    let config = env.config().destination(env.powerspace().timeout_ms(15000));
    let running = env.start(&config).await;
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
}
