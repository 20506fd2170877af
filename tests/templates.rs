//! Template destinations end to end: the real RabbitMQ, the partner sandbox on loopback, a
//! signed JSON webhook retried after a 503, a preset's postback, and a status the map does
//! not know dead-lettered with its reason.

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::partner::until_received;
use common::{Dest, Env, Event, Retry, until};
use hmac::{Hmac, Mac};
use postback_relay::interfaces::sandbox::Rule;
use postback_relay::relay::deadletter::Reason;
use serde_json::json;
use sha2::Sha256;

const WAIT: Duration = Duration::from_secs(30);

/// Whether `signature` (`v1,<base64>`) is the Standard Webhooks signature of `id`,
/// `timestamp` and `body` under the key `secret` (the bytes a secret's base64 encodes).
fn verifies(secret: &str, id: &str, timestamp: &str, body: &str, signature: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    let Some(b64) = signature.strip_prefix("v1,") else {
        return false;
    };
    let Ok(sig) = STANDARD.decode(b64) else {
        return false;
    };
    mac.verify_slice(&sig).is_ok()
}

#[tokio::test]
async fn a_signed_webhook_and_a_preset_postback_reach_their_partners() {
    let env = Env::new().await;
    let base = env.sandbox.base_url().to_owned();
    // The webhook's first call fails: the retry is sent, signed again at its own time.
    env.sandbox
        .add_rule(&Rule::answer(503).on_path("/hooks/").times(1))
        .await
        .unwrap();
    let webhook = format!(
        r#"
syntax = "brace"
method = "POST"
url = "{base}/hooks/{{params.shop}}?source=relay"
headers = {{ "X-Order" = "{{order_id}}" }}
status_map = {{ paid = "captured" }}
signature = {{ scheme = "standard_webhooks", secrets = ["${{HOOK_SECRET}}", "${{HOOK_SECRET_OLD}}"] }}
[body.json]
event = "{{event_id}}"
click = "{{click_id}}"
cents = "{{cents}}"
status = "{{status}}"
at = "{{occurred_at}}"
[macros]
cents = {{ from = "amount", money = "minor", number = true }}
"#
    );
    let keitaro = format!(
        r#"
preset = "keitaro"
settings = {{ tracker = "{base}", postback_key = "k3y" }}
"#
    );
    let config = env
        .config()
        .destination(
            Dest::template("webhook", "shop", &webhook).retry(Retry::new().delays(100, 400)),
        )
        .destination(Dest::template("keitaro", "shop", &keitaro).retry(Retry::fast()))
        .var(
            "HOOK_SECRET",
            &format!("whsec_{}", STANDARD.encode("new-secret-value")),
        )
        .var("HOOK_SECRET_OLD", &STANDARD.encode("old-secret-value"));
    let running = env.start(&config).await;
    env.publish(
        &Event::attributed("evt-t1", "order", "shop", "clk/1 &x")
            .param("shop", "eu/west")
            .order("10045", "89.99")
            .currency("EUR")
            .status(Some("paid"))
            .set("/order/commission", json!("8.99"))
            .body(),
    )
    .await;
    until_received(&env.sandbox, 3, WAIT, "the webhook twice and the postback").await;
    until(&running, "both delivered", |m| {
        m.deliveries
            .with_label_values(&["webhook", "delivered"])
            .get()
            == 1
            && m.deliveries
                .with_label_values(&["keitaro", "delivered"])
                .get()
                == 1
    })
    .await;

    let requests = env.sandbox.requests().await.unwrap();
    let hooks: Vec<_> = requests
        .iter()
        .filter(|r| r.path.starts_with("/hooks/"))
        .collect();
    assert_eq!(hooks.len(), 2, "{requests:?}");
    assert_eq!(hooks[0].status, 503);
    assert_eq!(hooks[1].status, 200);
    for h in &hooks {
        // The shop's `/` stays inside its path segment.
        assert_eq!(
            (h.method.as_str(), h.path.as_str()),
            ("POST", "/hooks/eu%2Fwest")
        );
        assert_eq!(h.query.as_deref(), Some("source=relay"));
        assert_eq!(h.content_type.as_deref(), Some("application/json"));
        assert_eq!(h.headers["x-order"], "10045");
        let body: serde_json::Value = serde_json::from_str(&h.body).unwrap();
        assert_eq!(
            body,
            json!({
                "event": "evt-t1", "click": "clk/1 &x", "cents": 8999,
                "status": "captured", "at": "2026-11-22T10:00:00Z"
            })
        );
        let (id, ts) = (&h.headers["webhook-id"], &h.headers["webhook-timestamp"]);
        assert_eq!(id, "evt-t1");
        let sent_at: i64 = ts.parse().unwrap();
        assert!((h.received_at.timestamp() - sent_at).abs() <= 5, "{ts}");
        // One signature per active secret, the new one first: either verifies.
        let sigs: Vec<&str> = h.headers["webhook-signature"].split(' ').collect();
        assert_eq!(sigs.len(), 2, "{sigs:?}");
        assert!(verifies("new-secret-value", id, ts, &h.body, sigs[0]));
        assert!(verifies("old-secret-value", id, ts, &h.body, sigs[1]));
        assert!(!verifies("another-secret", id, ts, &h.body, sigs[0]));
    }
    let postback: Vec<_> = requests
        .iter()
        .filter(|r| r.path == "/k3y/postback")
        .collect();
    assert_eq!(postback.len(), 1, "{requests:?}");
    assert_eq!(postback[0].method, "GET");
    assert_eq!(
        postback[0].query.as_deref(),
        Some("subid=clk%2F1%20%26x&tid=10045&status=sale&payout=8.99&currency=EUR")
    );
    assert!(env.take_dead_letters().await.is_empty());
}

#[tokio::test]
async fn a_status_the_map_does_not_know_is_dead_lettered_not_guessed() {
    let env = Env::new().await;
    let base = env.sandbox.base_url().to_owned();
    let table = format!(
        r#"
syntax = "hash"
url = "{base}/pb?s=#status#&c=#click_id#"
status_map = {{ paid = "1", refunded = "2" }}
"#
    );
    let config = env
        .config()
        .destination(Dest::template("mapped", "shop", &table).retry(Retry::fast()));
    let _running = env.start(&config).await;
    env.publish(
        &Event::attributed("evt-s1", "order_status", "shop", "c1")
            .order("7", "5")
            .status(Some("on-the-moon"))
            .body(),
    )
    .await;
    let t = env.topology();
    env.until_holds(&t.dead, 1, WAIT, "the dead letter").await;
    let dead = env.take_dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, Reason::RenderError);
    assert!(
        dead[0]
            .detail
            .contains("\"on-the-moon\" is not in this destination's status map"),
        "{}",
        dead[0].detail
    );
    assert!(env.sandbox.requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn statuses_sent_through_a_template_never_go_backwards() {
    let env = Env::new().await;
    let keitaro = format!(
        r#"
preset = "keitaro"
settings = {{ tracker = "{}", postback_key = "k" }}
"#,
        env.sandbox.base_url()
    );
    let config = env
        .config()
        .destination(Dest::template("keitaro", "shop", &keitaro).retry(Retry::durable(100, 400)));
    let running = env.start(&config).await;
    let order = |id: &str, kind: &str, status: &str| {
        Event::attributed(id, kind, "shop", "c1")
            .order("12345", "30")
            .status(Some(status))
            .body()
    };
    env.publish(&order("paid", "order", "paid")).await;
    until(&running, "the sale sent", |m| {
        common::deliveries(m, "keitaro", "delivered") == 1
    })
    .await;
    // A late "pending" for the same order would take the sale back to lead.
    env.publish(&order("late", "order_status", "pending")).await;
    until(&running, "the late lead superseded", |m| {
        common::deliveries(m, "keitaro", "superseded") == 1
    })
    .await;
    // A refund may still reject it.
    env.publish(&order("refund", "order_status", "refunded"))
        .await;
    until(&running, "the rejection sent", |m| {
        common::deliveries(m, "keitaro", "delivered") == 2
    })
    .await;
    let sent: Vec<String> = env
        .sandbox
        .requests()
        .await
        .unwrap()
        .iter()
        .filter_map(|r| r.param("status"))
        .collect();
    assert_eq!(sent, ["sale", "rejected"]);
    assert!(env.take_dead_letters().await.is_empty());
}

/// A request that carries the time says when it left, whatever it waited for. Behind a rate
/// limit of one call a second and a backlog, and on every in-process try, its Standard
/// Webhooks timestamp and its `{now}` are the time it went on the wire: a receiver that
/// verifies the signature itself (HMAC-SHA256 here, not the relay's code) and holds the
/// timestamp to a tolerance of one second accepts every request.
#[tokio::test]
async fn signatures_and_times_are_made_when_each_try_leaves() {
    const N: usize = 6;
    let env = Env::new().await;
    let base = env.sandbox.base_url().to_owned();
    // The first event's first two calls fail: its three tries go one after another.
    env.sandbox
        .add_rule(&Rule::answer(503).on_path("/hooks/late-0").times(2))
        .await
        .unwrap();
    let table = format!(
        r#"
syntax = "brace"
method = "POST"
url = "{base}/hooks/{{event_id}}"
headers = {{ "X-Sent-At" = "{{sent}}" }}
signature = {{ scheme = "standard_webhooks", secrets = ["${{HOOK_SECRET}}"] }}
body = {{ json = {{ event = "{{event_id}}", at = "{{now}}" }} }}
macros = {{ sent = {{ from = "now", time = "unix_ms" }} }}
"#
    );
    let config = env
        .config()
        .destination(
            Dest::template("webhook", "shop", &table)
                .rate_limit(1)
                .retry(Retry::fast().immediate(3, 1100).max_age_secs(600))
                .circuit(common::Circuit::disabled()),
        )
        .var("HOOK_SECRET", &STANDARD.encode("signing-key"));
    env.declare().await;
    for i in 0..N {
        let event = Event::attributed(&format!("late-{i}"), "order", "shop", &format!("c{i}"))
            .order(&format!("o{i}"), "10.00");
        env.publish(&event.body()).await;
    }
    let running = env.start(&config).await;
    until(&running, "every event delivered", |m| {
        common::deliveries(m, "webhook", "delivered") == N as u64
    })
    .await;

    let requests = env.sandbox.requests().await.unwrap();
    assert_eq!(requests.len(), N + 2, "{requests:?}");
    for r in &requests {
        let (id, ts) = (&r.headers["webhook-id"], &r.headers["webhook-timestamp"]);
        let signature = &r.headers["webhook-signature"];
        assert!(
            verifies("signing-key", id, ts, &r.body, signature),
            "{id}: the signature does not verify"
        );
        let signed_at: i64 = ts.parse().unwrap();
        let age = r.received_at.timestamp() - signed_at;
        assert!(
            (0..=1).contains(&age),
            "{id} arrived {age} s after its timestamp ({ts}, received {})",
            r.received_at
        );
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let at = chrono::DateTime::parse_from_rfc3339(body["at"].as_str().unwrap()).unwrap();
        let late = r.received_at.timestamp_millis() - at.timestamp_millis();
        assert!(
            (-50..=1000).contains(&late),
            "{id}: {{now}} is {late} ms before it arrived"
        );
        let sent: i64 = r.headers["x-sent-at"].parse().unwrap();
        let late = r.received_at.timestamp_millis() - sent;
        assert!(
            (-50..=1000).contains(&late),
            "{id}: {{sent}} is {late} ms before it arrived"
        );
    }
    // The event tried three times in a row: each try signed at its own time.
    let tries: Vec<i64> = requests
        .iter()
        .filter(|r| r.path == "/hooks/late-0")
        .map(|r| r.headers["webhook-timestamp"].parse().unwrap())
        .collect();
    assert_eq!(tries.len(), 3, "{requests:?}");
    assert!(
        tries.windows(2).all(|w| w[0] < w[1]),
        "each retry is signed again: {tries:?}"
    );
    assert!(env.take_dead_letters().await.is_empty());
}
