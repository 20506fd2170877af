//! Every preset in `presets/`, rendered for sample events: the exact request each sends for an
//! order, a lead, a status update and a rebill, as its network's public postback documentation
//! describes it, and how each setting is checked. Pure rendering: no broker.

mod common;

use chrono::{DateTime, Utc};
use common::{ConfigBuilder, Dest, Event};
use postback_relay::contract::partner::{Method, RenderError, Request};
use serde_json::json;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T10:00:05Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// What destination `d` renders for `event`.
fn try_render_with(d: Dest, event: Event) -> Result<Request, RenderError> {
    let d = ConfigBuilder::new().destination(d).load_destination();
    d.partner.render_at("p", &event.parsed(), now())
}

/// What `table` (a `[template]` table) renders for `event`.
fn try_render(network: &str, table: &str, event: Event) -> Result<Request, RenderError> {
    try_render_with(Dest::template("p", network, table), event)
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

/// A lead on the same click: no order.
fn lead(network: &str) -> Event {
    Event::attributed("evt-2", "lead", network, "5f2c1a9e3b")
}

/// Order 10045 refunded.
fn refund(network: &str) -> Event {
    order(network)
        .set("/event_id", json!("evt-3"))
        .set("/type", json!("order_status"))
        .status(Some("refunded"))
}

/// A rebill of the subscription the click brought: 29.90 EUR, 2.99 commission.
fn rebill(network: &str) -> Event {
    Event::attributed("evt-4", "rebill", network, "5f2c1a9e3b")
        .order("10045-2", "29.90")
        .currency("EUR")
        .set("/order/commission", json!("2.99"))
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

/// The preset takes no event of this type.
fn not_taken(r: Result<Request, RenderError>, event_type: &str) {
    match r {
        Err(RenderError::UnsupportedType { event_type: t, .. }) => assert_eq!(t, event_type),
        other => panic!("{event_type}: {other:?}"),
    }
}

#[test]
fn everflow() {
    let table = r#"
preset = "everflow"
settings = { tracking_domain = "https://www.trk.example.com", network_id = "123" }
"#;
    let base = "https://www.trk.example.com/?nid=123&transaction_id=5f2c1a9e3b";
    // An order is a base conversion: no event_id.
    same(
        render("everflow", table, order("everflow")),
        get(&format!("{base}&amount=89.99&currency=EUR&order_id=10045")),
    );
    // A lead is a base conversion too; without an order, its parameters are left out (the
    // preset's missing = "skip").
    same(render("everflow", table, lead("everflow")), get(base));
    // Everflow's postback takes no status update, and a rebill is an event only once its
    // advertiser event id is given.
    not_taken(
        try_render("everflow", table, refund("everflow")),
        "order_status",
    );
    not_taken(try_render("everflow", table, rebill("everflow")), "rebill");
    same(
        try_render_with(
            Dest::template("p", "everflow", table).conversion("rebill", "17"),
            rebill("everflow"),
        )
        .unwrap(),
        get(&format!(
            "{base}&event_id=17&amount=29.90&currency=EUR&order_id=10045-2"
        )),
    );
}

#[test]
fn everflow_sends_advertiser_params_a_coupon_and_a_verification_token() {
    let settings = r#"settings = { tracking_domain = "https://www.trk.example.com", network_id = "123", verification_token = "t0k&n" }"#;
    let table = format!("preset = \"everflow\"\n{settings}\n");
    let with_params = || {
        order("everflow")
            .param("adv1", "blue")
            .param("adv5", "x y")
            .param("coupon_code", "SPRING")
            .customer("cust-9")
    };
    same(
        render("everflow", &table, with_params()),
        get(
            "https://www.trk.example.com/?nid=123&transaction_id=5f2c1a9e3b&amount=89.99&currency=EUR&order_id=10045&coupon_code=SPRING&adv1=blue&adv5=x%20y&verification_token=t0k%26n",
        ),
    );
    // adv2 from another field, without rewriting the URL.
    let table = format!(
        "preset = \"everflow\"\n{settings}\nmacros = {{ adv2 = {{ from = \"customer_id\" }} }}\n"
    );
    let r = render("everflow", &table, with_params());
    assert!(
        r.url.contains("&adv1=blue&adv2=cust-9&adv5=x%20y&"),
        "{}",
        r.url
    );
}

#[test]
fn keitaro() {
    let table = r#"
preset = "keitaro"
settings = { tracker = "https://tracker.example.com", postback_key = "8c1f2e" }
"#;
    let base = "https://tracker.example.com/8c1f2e/postback?subid=5f2c1a9e3b";
    same(
        render("keitaro", table, order("keitaro")),
        get(&format!(
            "{base}&tid=10045&status=sale&payout=8.99&currency=EUR"
        )),
    );
    // A lead has no order status: its type says lead.
    same(
        render("keitaro", table, lead("keitaro")),
        get(&format!("{base}&status=lead")),
    );
    // A refund moves the conversion to rejected.
    same(
        render("keitaro", table, refund("keitaro")),
        get(&format!(
            "{base}&tid=10045&status=rejected&payout=8.99&currency=EUR"
        )),
    );
    // A rebill is Keitaro's own status, with a transaction of its own, paid or not.
    same(
        render("keitaro", table, rebill("keitaro")),
        get(&format!(
            "{base}&tid=10045-2&status=rebill&payout=2.99&currency=EUR"
        )),
    );
    same(
        render("keitaro", table, rebill("keitaro").status(Some("paid"))),
        get(&format!(
            "{base}&tid=10045-2&status=rebill&payout=2.99&currency=EUR"
        )),
    );
    // A rebill whose charge was declined is no revenue.
    same(
        render("keitaro", table, rebill("keitaro").status(Some("declined"))),
        get(&format!(
            "{base}&tid=10045-2&status=rejected&payout=2.99&currency=EUR"
        )),
    );
}

#[test]
fn voluum() {
    let table = r#"
preset = "voluum"
settings = { tracking_domain = "https://yourcompany.voluumtrk.com" }
"#;
    let base = "https://yourcompany.voluumtrk.com/postback?cid=5f2c1a9e3b";
    // et names the custom conversion, so that a lead and a sale of one click are two
    // conversions, not a duplicate.
    same(
        render("voluum", table, order("voluum")),
        get(&format!(
            "{base}&et=sale&payout=8.99&txid=10045&currency=EUR"
        )),
    );
    same(
        render("voluum", table, lead("voluum")),
        get(&format!("{base}&et=lead")),
    );
    not_taken(
        try_render("voluum", table, refund("voluum")),
        "order_status",
    );
    same(
        render("voluum", table, rebill("voluum")),
        get(&format!(
            "{base}&et=rebill&payout=2.99&txid=10045-2&currency=EUR"
        )),
    );
    // A name the Voluum account knows under another.
    same(
        try_render_with(
            Dest::template("p", "voluum", table).conversion("order", "purchase"),
            order("voluum"),
        )
        .unwrap(),
        get(&format!(
            "{base}&et=purchase&payout=8.99&txid=10045&currency=EUR"
        )),
    );
}

#[test]
fn binom() {
    let table = r#"
preset = "binom"
settings = { tracker = "https://tracker.example.com" }
"#;
    let base = "https://tracker.example.com/click.php?cnv_id=5f2c1a9e3b";
    // cnv_status says what the conversion is, cnv_status2 the merchant status' class.
    same(
        render("binom", table, order("binom")),
        get(&format!(
            "{base}&payout=8.99&cnv_status=sale&cnv_status2=approved&cnv_currency=EUR"
        )),
    );
    same(
        render("binom", table, lead("binom")),
        get(&format!("{base}&cnv_status=lead")),
    );
    same(
        render("binom", table, refund("binom")),
        get(&format!(
            "{base}&payout=8.99&cnv_status=sale&cnv_status2=rejected&cnv_currency=EUR"
        )),
    );
    same(
        render("binom", table, rebill("binom")),
        get(&format!(
            "{base}&payout=2.99&cnv_status=rebill&cnv_currency=EUR"
        )),
    );
    // Binom 2's path.
    let binom2 = r#"
preset = "binom"
settings = { tracker = "https://tracker.example.com/", path = "click" }
"#;
    same(
        render("binom", binom2, order("binom")),
        get(
            "https://tracker.example.com/click?cnv_id=5f2c1a9e3b&payout=8.99&cnv_status=sale&cnv_status2=approved&cnv_currency=EUR",
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
