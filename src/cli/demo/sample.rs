//! What the demo relays: its configuration (one destination of each kind, all pointing at the
//! sandbox) and its sample events.

use postback_relay::config::Config;
use postback_relay::interfaces::publish::Outgoing;

/// The demo's destinations: one of each kind, each under its own path at the sandbox.
pub const DESTINATIONS: [&str; 4] = ["powerspace", "hoqu", "publisher", "affiliate"];

/// The demo's configuration: one destination of each kind, all pointing at the sandbox `sb`;
/// its exchange, queues and store named after `prefix`.
pub fn config(amqp_url: &str, prefix: &str, sb: &str) -> anyhow::Result<Config> {
    let db = std::env::temp_dir()
        .join(format!("{prefix}.db"))
        .display()
        .to_string();
    let journal = std::env::temp_dir()
        .join(format!("{prefix}.journal.db"))
        .display()
        .to_string();
    let text = format!(
        r##"
        [broker]
        url = {amqp_url:?}
        exchange = "{prefix}.conversions"
        queue_prefix = {prefix:?}
        prefetch = 64

        [http]
        listen = "127.0.0.1:0"

        [store]
        kind = "embedded"
        path = {db:?}

        [journal]
        path = {journal:?}

        [[destinations]]
        name = "powerspace"
        kind = "powerspace"
        base_url = "{sb}/powerspace"
        match = {{ networks = ["powerspace"] }}

        [[destinations]]
        name = "hoqu"
        kind = "hoqu"
        base_url = "{sb}/hoqu"
        match = {{ networks = ["hoqu"] }}
        hoqu = {{ api_key = "demo-api-key", payout = "percentage", action = "lead", status_wait_secs = 2 }}
        retry = {{ initial_delay_ms = 1000 }}

        [[destinations]]
        name = "publisher"
        kind = "callback"
        match = {{ networks = ["awin"] }}
        callback = {{ url = "{sb}/publisher/!!!merchantId!!!/pixel.php?clk=!!!clickRef!!!&cnv=!!!transactionId!!!&com=!!!commission!!!", merchant_id = "3661", allow_any_port = true }}

        [[destinations]]
        name = "affiliate"
        kind = "tracker"
        match = {{ networks = ["espace-plus"] }}
        tracker = {{ structure = "#affid#-#clickId#", url = "{sb}/affiliate/postback?affid=#affid#&cid=#clickId#&kind=#conversion#" }}
        "##
    );
    Ok(Config::from_toml(&text, &|_| None)?)
}

/// Sample events, spread over the four networks: leads, orders and status updates, with every
/// 23rd click expired (the sandbox answers 404), every 40th tracker in the wrong shape, every
/// 25th event malformed, and every 50th without attribution.
pub fn sample_events(n: usize) -> Vec<Outgoing> {
    (0..n)
        .map(|i| Outgoing::new(sample_body(i).into_bytes()))
        .collect()
}

/// The `i`th sample event.
fn sample_body(i: usize) -> String {
    const MALFORMED: [&str; 5] = [
        r#"{"event_id": "broken-"#,
        r#"{"event_id":"bad-amount-{i}","type":"order","occurred_at":"2026-11-22T10:00:00Z","attribution":{"network":"powerspace","click_id":"c{i}"},"order":{"amount":"12,50"}}"#,
        r#"{"event_id":"no-click-{i}","type":"lead","occurred_at":"2026-11-22T10:00:00Z","attribution":{"network":"hoqu"}}"#,
        r#"{"event_id":"nan-{i}","type":"order","occurred_at":"2026-11-22T10:00:00Z","attribution":{"network":"awin","click_id":"c{i}"},"order":{"amount":"NaN"}}"#,
        r#"{"event_id":"refund-{i}","type":"refund","occurred_at":"2026-11-22T10:00:00Z"}"#,
    ];
    if i % 25 == 3 {
        MALFORMED[(i / 25) % MALFORMED.len()].replace("{i}", &i.to_string())
    } else if i % 50 == 11 {
        format!(
            r#"{{"event_id":"organic-{i}","type":"order","occurred_at":"2026-11-22T10:00:00Z","order":{{"amount":"10.00"}}}}"#
        )
    } else {
        attributed(i)
    }
}

/// The `i`th sample event when it has a click: for network `i % 4`.
fn attributed(i: usize) -> String {
    // A status update carries its conversion's click.
    let c = if i % 8 == 5 { i - 4 } else { i };
    let click = if c % 23 == 5 {
        format!("expired-{c}")
    } else {
        format!("click-{c}")
    };
    let (network, kind, extra) = network_kind_order(i);
    let mut attribution = format!(r#""network":"{network}","click_id":"{click}""#);
    if network == "awin" {
        attribution.push_str(&format!(
            r#","publisher_id":"45628","params":{{"clickRef":"{click}"}}"#
        ));
    }
    let mut body = format!(
        r#"{{"event_id":"demo-{i}","type":"{kind}","occurred_at":"2026-11-22T10:00:00Z","attribution":{{{attribution}}}{extra}}}"#
    );
    if network == "espace-plus" {
        // The affiliate's structure is #affid#-#clickId#: no dash, no fit.
        let tracker = if i % 40 == 19 {
            "trID_nostructure_trID".to_owned()
        } else {
            format!("trID_aff{}-{click}_trID", i % 7)
        };
        body = body.replace(
            r#""click_id":"#,
            &format!(r#""tracker":"{tracker}","click_id":"#),
        );
    }
    body
}

/// The `i`th sample event's network, type, and `order` member (with its leading comma).
fn network_kind_order(i: usize) -> (&'static str, &'static str, String) {
    const TRACKER_KINDS: [&str; 4] = ["registration", "trial", "signup", "rebill"];
    let amount = format!("{}.{:02}", 10 + i % 190, i % 100);
    match i % 4 {
        0 if i.is_multiple_of(8) => ("powerspace", "lead", String::new()),
        0 => (
            "powerspace",
            "order",
            format!(r#","order":{{"id":"{i}","amount":"{amount}","currency":"EUR"}}"#),
        ),
        1 if i % 8 == 1 => (
            "hoqu",
            "lead",
            format!(r#","order":{{"id":"{i}","amount":"{amount}"}}"#),
        ),
        // The status update of the lead published four events earlier.
        1 => (
            "hoqu",
            "order_status",
            format!(
                r#","order":{{"id":"{}","amount":"{amount}","status":"paid"}}"#,
                i - 4
            ),
        ),
        2 => (
            "awin",
            "order",
            format!(
                r#","order":{{"id":"{i}","amount":"{amount}","currency":"GBP","commission":"1.64"}}"#
            ),
        ),
        _ => (
            "espace-plus",
            TRACKER_KINDS[(i / 4) % 4],
            format!(r#","order":{{"amount":"{amount}"}}"#),
        ),
    }
}
