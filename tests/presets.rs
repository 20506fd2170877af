//! Every preset in `presets/`, rendered for sample events: the exact request each sends, as
//! its network's public postback documentation describes it. Pure rendering: no broker.

mod common;

use chrono::{DateTime, Utc};
use common::{ConfigBuilder, Dest, Event};
use postback_relay::partner::{Method, Request};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T10:00:05Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// The request `table` (a `[template]` table) renders for `event`.
fn render(network: &str, table: &str, event: Event) -> Request {
    let d = ConfigBuilder::new()
        .destination(Dest::template("p", network, table))
        .load_destination();
    d.partner
        .render_at("p", &event.parsed(), now())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn order(network: &str) -> Event {
    Event::attributed("evt-1", "order", network, "5f2c1a9e3b")
        .order("10045", "89.99")
        .currency("EUR")
        .status(Some("paid"))
}

fn get(url: &str) -> Request {
    Request {
        destination: "p".into(),
        method: Method::Get,
        url: url.into(),
        headers: Default::default(),
        body: None,
        secrets: Vec::new(),
        parsed_url: None,
    }
}

fn same(r: Request, want: Request) {
    assert_eq!(
        (r.method, r.url, r.headers, r.body),
        (want.method, want.url, want.headers, want.body)
    );
}

#[test]
fn everflow() {
    let table = r#"
preset = "everflow"
settings = { tracking_domain = "https://www.trk.example.com", network_id = "123" }
"#;
    same(
        render("everflow", table, order("everflow")),
        get(
            "https://www.trk.example.com/?nid=123&transaction_id=5f2c1a9e3b&amount=89.99&order_id=10045",
        ),
    );
    // A lead without an order: its parameters are left out (the preset's missing = "skip").
    same(
        render(
            "everflow",
            table,
            Event::attributed("evt-2", "lead", "everflow", "5f2c1a9e3b"),
        ),
        get("https://www.trk.example.com/?nid=123&transaction_id=5f2c1a9e3b"),
    );
}

#[test]
fn keitaro() {
    let table = r#"
preset = "keitaro"
settings = { tracker = "https://tracker.example.com", postback_key = "8c1f2e" }
"#;
    same(
        render("keitaro", table, order("keitaro")),
        get(
            "https://tracker.example.com/8c1f2e/postback?subid=5f2c1a9e3b&tid=10045&status=sale&payout=89.99&currency=EUR",
        ),
    );
    // A refund moves the conversion to rejected.
    same(
        render(
            "keitaro",
            table,
            Event::attributed("evt-3", "order_status", "keitaro", "5f2c1a9e3b")
                .order("10045", "89.99")
                .currency("EUR")
                .status(Some("refunded")),
        ),
        get(
            "https://tracker.example.com/8c1f2e/postback?subid=5f2c1a9e3b&tid=10045&status=rejected&payout=89.99&currency=EUR",
        ),
    );
    // A lead has no order status: its type says lead.
    same(
        render(
            "keitaro",
            table,
            Event::attributed("evt-4", "lead", "keitaro", "5f2c1a9e3b"),
        ),
        get("https://tracker.example.com/8c1f2e/postback?subid=5f2c1a9e3b&status=lead"),
    );
}

#[test]
fn voluum() {
    let table = r#"
preset = "voluum"
settings = { tracking_domain = "https://yourcompany.voluumtrk.com" }
"#;
    same(
        render("voluum", table, order("voluum")),
        get(
            "https://yourcompany.voluumtrk.com/postback?cid=5f2c1a9e3b&payout=89.99&txid=10045&currency=EUR",
        ),
    );
}

#[test]
fn binom() {
    let table = r#"
preset = "binom"
settings = { tracker = "https://tracker.example.com" }
"#;
    same(
        render("binom", table, order("binom")),
        get(
            "https://tracker.example.com/click.php?cnv_id=5f2c1a9e3b&payout=89.99&cnv_status=approved&cnv_currency=EUR",
        ),
    );
}

#[test]
fn a_preset_is_changed_key_by_key() {
    // The user's keys over the preset's: a status map entry, a header, a signature.
    let table = r#"
preset = "keitaro"
settings = { tracker = "https://tracker.example.com", postback_key = "8c1f2e" }
status_map = { approved = "confirmed" }
headers = { "X-Source" = "{network}" }
"#;
    let r = render("keitaro", table, order("keitaro"));
    assert!(r.url.contains("&status=confirmed&"), "{}", r.url);
    assert_eq!(r.headers["X-Source"], "keitaro");
}

#[test]
fn hostile_values_stay_inside_their_parameter_in_every_preset() {
    let presets = [
        (
            "everflow",
            r#"settings = { tracking_domain = "https://www.trk.example.com", network_id = "123" }"#,
        ),
        (
            "keitaro",
            r#"settings = { tracker = "https://tracker.example.com", postback_key = "8c1f2e" }"#,
        ),
        (
            "voluum",
            r#"settings = { tracking_domain = "https://yourcompany.voluumtrk.com" }"#,
        ),
        (
            "binom",
            r#"settings = { tracker = "https://tracker.example.com" }"#,
        ),
    ];
    for (name, settings) in presets {
        let table = format!("preset = \"{name}\"\n{settings}\n");
        for hostile in ["a&payout=0", "x#frag", "../../admin", "%00", "é ü", "?q=1"] {
            let e = Event::attributed("evt-h", "order", name, hostile)
                .order(hostile, "1")
                .currency("EUR");
            let r = render(name, &table, e);
            let u = url::Url::parse(&r.url).unwrap();
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            assert!(
                pairs.iter().any(|(_, v)| v == hostile),
                "{name}: {hostile} not found intact in {}",
                r.url
            );
            let keys: std::collections::BTreeSet<&str> =
                pairs.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                keys.len(),
                pairs.len(),
                "{name}: {hostile} added a parameter"
            );
        }
    }
}
