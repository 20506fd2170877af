//! Every preset in `presets/`, rendered for sample events: the exact request each sends, as
//! its network's public postback documentation describes it. Pure rendering: no broker.

mod common;

use chrono::{DateTime, Utc};
use common::{ConfigBuilder, Dest, Event};
use postback_relay::partner::{Method, RenderError, Request};
use serde_json::json;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T10:00:05Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// What `table` (a `[template]` table) renders for `event`.
fn try_render(network: &str, table: &str, event: Event) -> Result<Request, RenderError> {
    let d = ConfigBuilder::new()
        .destination(Dest::template("p", network, table))
        .load_destination();
    d.partner.render_at("p", &event.parsed(), now())
}

/// The request `table` (a `[template]` table) renders for `event`.
fn render(network: &str, table: &str, event: Event) -> Request {
    try_render(network, table, event).unwrap_or_else(|e| panic!("{e}"))
}

/// Order 10045: 89.99 EUR paid, shipping and tax included, of which the merchant pays 8.99
/// commission.
fn order(network: &str) -> Event {
    Event::attributed("evt-1", "order", network, "5f2c1a9e3b")
        .order("10045", "89.99")
        .currency("EUR")
        .status(Some("paid"))
        .set("/order/commission", json!("8.99"))
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
            "https://www.trk.example.com/?nid=123&transaction_id=5f2c1a9e3b&amount=89.99&currency=EUR&order_id=10045",
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
            "https://tracker.example.com/8c1f2e/postback?subid=5f2c1a9e3b&tid=10045&status=sale&payout=8.99&currency=EUR",
        ),
    );
    // A refund moves the conversion to rejected.
    same(
        render(
            "keitaro",
            table,
            order("keitaro")
                .set("/type", json!("order_status"))
                .status(Some("refunded")),
        ),
        get(
            "https://tracker.example.com/8c1f2e/postback?subid=5f2c1a9e3b&tid=10045&status=rejected&payout=8.99&currency=EUR",
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
            "https://yourcompany.voluumtrk.com/postback?cid=5f2c1a9e3b&payout=8.99&txid=10045&currency=EUR",
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
            "https://tracker.example.com/click.php?cnv_id=5f2c1a9e3b&payout=8.99&cnv_status=approved&cnv_currency=EUR",
        ),
    );
}

#[test]
fn payout_is_the_commission_and_without_one_the_tracker_takes_the_offers_own() {
    let presets = [
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
        let with = render(name, &table, order(name));
        assert!(with.url.contains("&payout=8.99&"), "{name}: {}", with.url);
        // An order without a commission leaves payout out (missing = "skip").
        let without = order(name).set("/order/commission", json!(null));
        let r = render(name, &table, without);
        assert!(!r.url.contains("payout="), "{name}: {}", r.url);
        assert!(r.url.contains("currency=EUR"), "{name}: {}", r.url);
    }
}

#[test]
fn everflow_sends_the_sale_amount_with_or_without_shipping_and_tax() {
    let settings =
        r#"settings = { tracking_domain = "https://www.trk.example.com", network_id = "123" }"#;
    let sale = || {
        order("everflow")
            .set("/order/shipping", json!("5.00"))
            .set("/order/tax", json!("15.00"))
    };
    // The sale amount as paid, by default.
    let r = render(
        "everflow",
        &format!("preset = \"everflow\"\n{settings}\n"),
        sale(),
    );
    assert!(r.url.contains("&amount=89.99&currency=EUR&"), "{}", r.url);
    // Less shipping and tax, when the destination says so.
    let less = format!(
        "preset = \"everflow\"\n{settings}\nmacros = {{ sale_amount = {{ from = \"amount\", less = [\"shipping\", \"tax\"] }} }}\n"
    );
    let r = render("everflow", &less, sale());
    assert!(r.url.contains("&amount=69.99&currency=EUR&"), "{}", r.url);
    // An amount the order lacks counts 0.
    let r = render(
        "everflow",
        &less,
        order("everflow").set("/order/tax", json!("15.00")),
    );
    assert!(r.url.contains("&amount=74.99&"), "{}", r.url);
    // More shipping and tax than the amount: refused, naming them.
    let e = try_render(
        "everflow",
        &less,
        order("everflow")
            .set("/order/shipping", json!("50.00"))
            .set("/order/tax", json!("45.00")),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "macro sale_amount: order.shipping (50.00) and order.tax (45.00) come to more than order.amount (89.99)"
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

/// The error loading `table` (a `[template]` table) gives.
fn refused(network: &str, table: &str) -> String {
    ConfigBuilder::new()
        .destination(Dest::template("p", network, table))
        .error()
}

#[test]
fn an_origin_setting_is_a_url_to_start_from() {
    let keitaro = |tracker: &str| {
        format!(
            "preset = \"keitaro\"\nsettings = {{ tracker = \"{tracker}\", postback_key = \"8c1f2e\" }}\n"
        )
    };
    let want = "https://tracker.example.com/8c1f2e/postback?subid=5f2c1a9e3b&tid=10045&status=sale&payout=8.99&currency=EUR";
    // A trailing `/` is dropped: with it or without, the same request.
    for tracker in [
        "https://tracker.example.com",
        "https://tracker.example.com/",
        "HTTPS://Tracker.Example.com:443/",
    ] {
        same(
            render("keitaro", &keitaro(tracker), order("keitaro")),
            get(want),
        );
    }
    // A tracker in a subfolder.
    let r = render(
        "keitaro",
        &keitaro("https://example.com/kt/"),
        order("keitaro"),
    );
    assert!(
        r.url.starts_with("https://example.com/kt/8c1f2e/postback?"),
        "{}",
        r.url
    );
    let expected = "expected an origin: an http or https URL with a host and, if the tracker lives in a subfolder, its path (like https://tracker.example.com or https://example.com/tracker), without user, password, query, fragment, `.` or `..` segments";
    for (tracker, problem) in [
        (
            "https://tracker.example.com/../admin",
            "holds a `.` or `..` path segment",
        ),
        (
            "https://tracker.example.com/%2e%2e/admin",
            "holds a `.` or `..` path segment",
        ),
        (
            "https://tracker.example.com/a/./b",
            "holds a `.` or `..` path segment",
        ),
        ("https://tracker.example.com/?x=1", "holds a query (`?`)"),
        ("https://tracker.example.com?", "holds a query (`?`)"),
        ("https://tracker.example.com/#top", "holds a fragment (`#`)"),
        (
            "https://user:pw@tracker.example.com",
            "holds a user or password",
        ),
        ("ftp://tracker.example.com", "is an ftp URL"),
        (
            "tracker.example.com",
            "is not a URL (relative URL without a base)",
        ),
        (
            "https://tracker.example.com/a//b",
            "holds an empty path segment (`//`)",
        ),
    ] {
        let e = refused("keitaro", &keitaro(tracker));
        assert!(
            e.contains(&format!(
                "`destinations[0].template.settings.tracker`: {problem}; {expected}"
            )),
            "{tracker}: {e}"
        );
    }
}

#[test]
fn a_segment_setting_is_one_path_segment() {
    let keitaro = |key: &str| {
        format!(
            "preset = \"keitaro\"\nsettings = {{ tracker = \"https://tracker.example.com\", postback_key = \"{key}\" }}\n"
        )
    };
    let r = render("keitaro", &keitaro("A-z_0.9~"), order("keitaro"));
    assert!(
        r.url
            .starts_with("https://tracker.example.com/A-z_0.9~/postback?"),
        "{}",
        r.url
    );
    let expected = "expected a path segment: letters, digits, `-`, `.`, `_` and `~` only (RFC 3986 unreserved), not `.` or `..`";
    for (key, problem) in [
        ("../admin", "holds '/'"),
        ("k?x=1", "holds '?'"),
        ("k#x", "holds '#'"),
        ("k%2F", "holds '%'"),
        ("k\u{e9}", "holds '\u{e9}'"),
        ("..", "is `..`"),
        (".", "is `.`"),
    ] {
        let e = refused("keitaro", &keitaro(key));
        assert!(
            e.contains(&format!(
                "`destinations[0].template.settings.postback_key`: {problem}; {expected}"
            )),
            "{key}: {e}"
        );
    }
}

#[test]
fn a_value_setting_stays_data_in_its_query_parameter() {
    let table = r#"
preset = "everflow"
settings = { tracking_domain = "https://www.trk.example.com", network_id = "1&nid=2?x#y %" }
"#;
    let r = render("everflow", table, order("everflow"));
    assert!(
        r.url.starts_with(
            "https://www.trk.example.com/?nid=1%26nid%3D2%3Fx%23y%20%25&transaction_id="
        ),
        "{}",
        r.url
    );
    let u = url::Url::parse(&r.url).unwrap();
    let nids: Vec<String> = u
        .query_pairs()
        .filter(|(k, _)| k == "nid")
        .map(|(_, v)| v.into_owned())
        .collect();
    assert_eq!(nids, ["1&nid=2?x#y %"]);
    // The checks every setting has.
    for (value, want) in [
        ("", "template.settings.network_id`: is empty"),
        (
            "a\\nb",
            "template.settings.network_id`: must be plain text (no `<<`, no control characters)",
        ),
        (
            "<<tracking_domain>>",
            "template.settings.network_id`: must be plain text",
        ),
        (
            "{click_id}",
            "template.settings.network_id`: holds the macro syntax's delimiter",
        ),
    ] {
        let e = refused(
            "everflow",
            &format!(
                "preset = \"everflow\"\nsettings = {{ tracking_domain = \"https://www.trk.example.com\", network_id = \"{value}\" }}\n"
            ),
        );
        assert!(e.contains(want), "{value}: {e}");
    }
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
