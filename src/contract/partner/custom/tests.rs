//! Tests of template destinations: each position's encoding, the missing rules, macros and
//! their formats, status maps, presets, and config errors that point at the macro.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::config::Config;
use crate::contract::event::ConversionEvent;
use crate::contract::partner::{Method, RenderError, Request};

fn load(destination: &str) -> Result<Config, String> {
    let text = format!(
        "[[destinations]]\nname = \"t\"\nkind = \"template\"\nmatch = {{ networks = [\"n\"] }}\n{destination}"
    );
    Config::from_toml(&text, &|v| {
        (v == "SIGNING_SECRET").then(|| "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned())
    })
    .map_err(|e| e.to_string())
}

fn event(v: serde_json::Value) -> ConversionEvent {
    crate::contract::event::parse(&serde_json::to_vec(&v).unwrap(), 1 << 20).unwrap()
}

fn order() -> ConversionEvent {
    event(json!({
        "event_id": "evt-1", "type": "order", "occurred_at": "2026-11-22T10:00:00Z",
        "attribution": { "network": "n", "click_id": "clk 1/2&x=y",
            "clicked_at": "2026-11-21T08:30:00Z", "params": { "sub1": "50% é\"x\"" } },
        "order": { "id": "10045", "amount": "89.99", "currency": "EUR", "status": "paid" },
        "customer": { "id": "cust-9" }
    }))
}

fn at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T10:00:05Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn render(destination: &str, e: &ConversionEvent) -> Result<Request, RenderError> {
    let c = load(destination).unwrap_or_else(|e| panic!("{e}"));
    c.destinations[0].partner.render_at("t", e, at())
}

fn ok(destination: &str, e: &ConversionEvent) -> Request {
    render(destination, e).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn each_position_is_encoded_once_for_where_it_lands() {
    let r = ok(
        r#"[destinations.template]
syntax = "brace"
method = "POST"
url = "https://partner.example/pb/{click_id}?c={click_id}&o={order_id}"
headers = { "X-Click" = "{click_id}", "X-Sub" = "{params.sub1}" }
body = { form = { click = "{click_id}", sub = "{params.sub1}" } }
"#,
        &order(),
    );
    assert_eq!(r.method, Method::Post);
    assert_eq!(
        r.url,
        "https://partner.example/pb/clk%201%2F2%26x%3Dy?c=clk%201%2F2%26x%3Dy&o=10045"
    );
    assert_eq!(r.headers["X-Click"], "clk 1/2&x=y");
    assert_eq!(r.headers["X-Sub"], "50%25 %C3%A9\"x\"");
    assert_eq!(
        r.headers["Content-Type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        r.body.as_deref(),
        Some("click=clk+1%2F2%26x%3Dy&sub=50%25+%C3%A9%22x%22")
    );
}

#[test]
fn a_json_body_holds_values_as_json_strings_and_numbers_where_asked() {
    let r = ok(
        r##"[destinations.template]
syntax = "hash"
method = "PUT"
url = "https://partner.example/conversions"
[destinations.template.body.json]
id = "#event_id#"
click = "#click_id#"
nested = { sub = "#params.sub1#", fixed = 3, list = ["#order_id#", true] }
cents = "#cents#"
text = "order #order_id# of #amount# #currency#"
[destinations.template.macros]
cents = { from = "amount", money = "minor", number = true }
"##,
        &order(),
    );
    assert_eq!(r.method, Method::Put);
    assert_eq!(r.headers["Content-Type"], "application/json");
    let body: serde_json::Value = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({
            "id": "evt-1", "click": "clk 1/2&x=y",
            "nested": { "sub": "50% é\"x\"", "fixed": 3, "list": ["10045", true] },
            "cents": 8999,
            "text": "order 10045 of 89.99 EUR"
        })
    );
    // The written order of keys is kept.
    assert!(r.body.unwrap().starts_with(r#"{"id":"evt-1","click""#));
}

#[test]
fn missing_values_skip_their_field_send_empty_or_fail() {
    let lead = event(json!({
        "event_id": "e2", "type": "lead", "occurred_at": "2026-11-22T10:00:00Z",
        "attribution": { "network": "n", "click_id": "c1" }
    }));
    let dest = |missing: &str| {
        format!(
            r#"missing = "{missing}"
[destinations.template]
syntax = "bracket"
method = "POST"
url = "https://partner.example/pb?click=[click_id]&order=[order_id]&flag"
headers = {{ "X-Order" = "[order_id]" }}
body = {{ json = {{ click = "[click_id]", order = "[order_id]" }} }}
"#
        )
    };
    let r = ok(&dest("skip"), &lead);
    assert_eq!(r.url, "https://partner.example/pb?click=c1&flag");
    assert!(!r.headers.contains_key("X-Order"));
    assert_eq!(r.body.as_deref(), Some(r#"{"click":"c1"}"#));
    let r = ok(&dest("empty"), &lead);
    assert_eq!(r.url, "https://partner.example/pb?click=c1&order=&flag");
    assert_eq!(r.headers["X-Order"], "");
    assert_eq!(r.body.as_deref(), Some(r#"{"click":"c1","order":""}"#));
    let e = render(&dest("fail"), &lead).unwrap_err();
    assert_eq!(
        e.to_string(),
        "placeholder [order_id] has no value for this event"
    );
    // Every parameter left out: no `?` either.
    let r = ok(
        "missing = \"skip\"\n[destinations.template]\nsyntax = \"brace\"\nurl = \"https://partner.example/pb?order={order_id}\"\n",
        &lead,
    );
    assert_eq!(r.url, "https://partner.example/pb");
    // In the path, a value cannot be left out: skip refuses the delivery.
    let path = r#"missing = "skip"
[destinations.template]
syntax = "brace"
url = "https://partner.example/o/{order_id}/pb"
"#;
    assert!(matches!(
        render(path, &lead),
        Err(RenderError::MissingValue(_))
    ));
}

#[test]
fn a_value_never_moves_the_request_elsewhere() {
    let d = r#"[destinations.template]
syntax = "brace"
url = "https://partner.example/a/{click_id}/b?x={click_id}"
"#;
    for hostile in [
        "..",
        ".",
        "//evil.example",
        "@evil.example",
        "?y=1#frag",
        "%2e%2e",
    ] {
        let e = event(json!({
            "event_id": "e", "type": "lead", "occurred_at": "2026-11-22T10:00:00Z",
            "attribution": { "network": "n", "click_id": hostile }
        }));
        match render(d, &e) {
            Ok(r) => {
                let u = url::Url::parse(&r.url).unwrap();
                assert_eq!(u.host_str(), Some("partner.example"), "{hostile}");
                assert_eq!(
                    u.path_segments().unwrap().count(),
                    3,
                    "{hostile}: {}",
                    r.url
                );
                assert_eq!(u.query_pairs().count(), 1, "{hostile}");
            }
            Err(RenderError::RewrittenValue(v)) => assert_eq!(v.placeholder, "{click_id}"),
            Err(other) => panic!("{hostile}: {other}"),
        }
    }
    let e = load(
        r#"[destinations.template]
syntax = "brace"
url = "https://{params.host}/pb"
"#,
    )
    .unwrap_err();
    assert!(
        e.contains("not in the scheme, user, password, host or port"),
        "{e}"
    );
}

#[test]
fn times_and_money_in_the_partners_form() {
    let r = ok(
        r#"[destinations.template]
syntax = "brace"
url = "https://p.example/?t={occurred_at}&d={t_dt}&z={t_paris}&u={t_unix}&ms={t_ms}&day={t_date}&click={clicked_at}&now={now}&a={amount}&a0={a0}&ad={ad}&am={am}&cur={cur}"
[destinations.template.macros]
t_dt = { from = "occurred_at", time = "datetime" }
t_paris = { from = "occurred_at", time = "datetime", zone = "Europe/Paris" }
t_unix = { from = "occurred_at", time = "unix" }
t_ms = { from = "occurred_at", time = "unix_ms" }
t_date = { from = "occurred_at", time = "date", zone = "Asia/Tokyo" }
a0 = { from = "amount", money = "fixed", decimals = 0 }
ad = { from = "amount", money = "decimal" }
am = { from = "amount", money = "minor" }
cur = { from = "currency", case = "lower" }
"#,
        &order(),
    );
    let q: Vec<(String, String)> = url::Url::parse(&r.url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |k: &str| q.iter().find(|(n, _)| n == k).unwrap().1.clone();
    assert_eq!(get("t"), "2026-11-22T10:00:00Z");
    assert_eq!(get("d"), "2026-11-22 10:00:00");
    assert_eq!(get("z"), "2026-11-22 11:00:00");
    assert_eq!(get("u"), "1795341600");
    assert_eq!(get("ms"), "1795341600000");
    assert_eq!(get("day"), "2026-11-22");
    assert_eq!(get("click"), "2026-11-21T08:30:00Z");
    assert_eq!(get("now"), "2026-11-22T10:00:05Z");
    assert_eq!(get("a"), "89.99");
    assert_eq!(get("a0"), "90");
    assert_eq!(get("ad"), "89.99");
    assert_eq!(get("am"), "8999");
    assert_eq!(get("cur"), "eur");
    // Minor units follow the currency.
    let mut yen = order();
    yen.order.as_mut().unwrap().currency = serde_json::from_str("\"JPY\"").unwrap();
    yen.order.as_mut().unwrap().amount = Some("1500".parse().unwrap());
    let r = ok(
        r#"[destinations.template]
syntax = "brace"
url = "https://p.example/?am={am}"
macros = { am = { from = "amount", money = "minor" } }
"#,
        &yen,
    );
    assert!(r.url.ends_with("?am=1500"), "{}", r.url);
}

#[test]
fn less_takes_amounts_of_the_order_off_a_money_macro() {
    let mut e = order();
    let o = e.order.as_mut().unwrap();
    o.shipping = Some("5.00".parse().unwrap());
    o.tax = Some("15".parse().unwrap());
    let r = ok(
        r#"[destinations.template]
syntax = "brace"
url = "https://p.example/?net={net}&cents={cents}&exact={exact}&a={amount}"
[destinations.template.macros]
net = { from = "amount", less = ["shipping", "tax"] }
cents = { from = "amount", less = ["tax"], money = "minor" }
exact = { from = "amount", less = ["shipping"], money = "decimal" }
"#,
        &e,
    );
    // Two decimals unless a form is given; the amount itself is unchanged.
    assert!(
        r.url.ends_with("?net=69.99&cents=7499&exact=84.99&a=89.99"),
        "{}",
        r.url
    );
    // An amount the order lacks counts 0; without the amount itself there is no value.
    let dest = "[destinations.template]\nsyntax = \"brace\"\nurl = \"https://p.example/?net={net}\"\nmacros = { net = { from = \"amount\", less = [\"shipping\", \"tax\"] } }\n";
    assert!(ok(dest, &order()).url.ends_with("?net=89.99"));
    let mut no_amount = e.clone();
    no_amount.order.as_mut().unwrap().amount = None;
    assert!(ok(dest, &no_amount).url.ends_with("?net="));
    // Below zero: a render error naming the amounts.
    let mut over = e.clone();
    over.order.as_mut().unwrap().shipping = Some("80".parse().unwrap());
    let err = render(dest, &over).unwrap_err();
    assert!(matches!(err, RenderError::Invalid(_)));
    assert_eq!(
        err.to_string(),
        "macro net: order.shipping (80) and order.tax (15) come to more than order.amount (89.99)"
    );
    // Exactly the amount: zero.
    over.order.as_mut().unwrap().shipping = Some("74.99".parse().unwrap());
    assert!(ok(dest, &over).url.ends_with("?net=0.00"));
    // What it is for, checked at load.
    for (macros, want) in [
        (
            "x = { from = \"click_id\", less = [\"tax\"] }",
            "template.macros.x.less`: is for an amount of the order (amount, shipping, tax, commission)",
        ),
        (
            "x = { from = \"amount\", less = [\"tracked_amount\"] }",
            "template.macros.x.less`: \"tracked_amount\" is not an amount of the order other than amount (shipping, tax, commission)",
        ),
        (
            "x = { from = \"amount\", less = [\"amount\"] }",
            "\"amount\" is not an amount of the order other than amount",
        ),
        (
            "x = { from = \"amount\", less = [\"tax\", \"tax\"] }",
            "template.macros.x.less`: names tax twice",
        ),
        (
            "x = { from = \"amount\", less = [\"tax\"], time = \"unix\" }",
            "not a time",
        ),
    ] {
        let e = load(&format!(
            "[destinations.template]\nsyntax = \"brace\"\nurl = \"https://p.example/?x={{x}}\"\nmacros = {{ {macros} }}\n"
        ))
        .unwrap_err();
        assert!(e.contains(want), "{macros}: {e}");
    }
}

#[test]
fn omit_names_values_for_which_a_macro_has_none() {
    let dest = |missing: &str| {
        format!(
            r#"missing = "{missing}"
[destinations.template]
syntax = "brace"
url = "https://p.example/?e={{ev}}&c={{conversion}}&cur={{cur}}"
[destinations.template.macros]
ev = {{ from = "conversion", omit = ["order", "base"] }}
cur = {{ from = "currency", case = "lower", omit = ["eur"] }}
"#
        )
    };
    // An omitted value is no value: `missing` says what is sent.
    assert_eq!(
        ok(&dest("skip"), &order()).url,
        "https://p.example/?c=order"
    );
    assert_eq!(
        ok(&dest("empty"), &order()).url,
        "https://p.example/?e=&c=order&cur="
    );
    // Under fail, every event whose value is omitted would be refused: the config is.
    let e = load(&dest("fail")).unwrap_err();
    assert!(
        e.contains("missing`: fail would refuse every event for which macro ev"),
        "{e}"
    );
    // Any other value is sent; the value compared is the one written (here in lower case).
    let mut usd = order();
    usd.kind = crate::contract::event::EventType::Lead;
    usd.order.as_mut().unwrap().currency = serde_json::from_str("\"USD\"").unwrap();
    assert_eq!(
        ok(&dest("skip"), &usd).url,
        "https://p.example/?e=lead&c=lead&cur=usd"
    );
    let e = load(
        "[destinations.template]\nsyntax = \"brace\"\nurl = \"https://p.example/?e={ev}\"\nmacros = { ev = { from = \"conversion\", omit = [\"a\\u0007\"] } }\n",
    )
    .unwrap_err();
    assert!(
        e.contains("template.macros.ev.omit`: holds a control character"),
        "{e}"
    );
}

#[test]
fn the_status_goes_through_the_destinations_map() {
    let with_status = |s: &str| {
        let mut e = order();
        e.order.as_mut().unwrap().status = Some(s.into());
        e
    };
    let hoqu_default = r#"[destinations.template]
syntax = "brace"
url = "https://p.example/?s={status}"
"#;
    // Without a map: the HOQU table's class.
    assert!(
        ok(hoqu_default, &with_status("paid"))
            .url
            .ends_with("s=approved")
    );
    assert!(
        ok(hoqu_default, &with_status("Refunded"))
            .url
            .ends_with("s=rejected")
    );
    assert!(
        ok(hoqu_default, &with_status("pending"))
            .url
            .ends_with("s=hold")
    );
    let mapped = r#"[destinations.template]
syntax = "brace"
url = "https://p.example/?s={status}"
status_map = { paid = "1", refunded = "2", rejected = "3", hold = "0" }
status_by_type = { lead = "7" }
"#;
    assert!(ok(mapped, &with_status("PAID")).url.ends_with("s=1"));
    assert!(ok(mapped, &with_status("refunded")).url.ends_with("s=2"));
    // Not in the map itself: its class is.
    assert!(ok(mapped, &with_status("cancelled")).url.ends_with("s=3"));
    assert!(ok(mapped, &with_status("new")).url.ends_with("s=0"));
    // Its class is not either: refused, never guessed.
    let e = render(mapped, &with_status("delivered"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("\"delivered\" is not in this destination's status map"),
        "{e}"
    );
    let e = render(mapped, &with_status("weird"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"weird\""), "{e}");
    // No status: the type's.
    let lead = event(json!({
        "event_id": "e2", "type": "lead", "occurred_at": "2026-11-22T10:00:00Z",
        "attribution": { "network": "n", "click_id": "c1" }
    }));
    assert!(ok(mapped, &lead).url.ends_with("s=7"));
}

#[test]
fn an_unknown_macro_is_a_config_error_pointing_at_it() {
    let e = load(
        r#"[destinations.template]
syntax = "brace"
url = "https://p.example/pb?cid={click_id}&payout={amout}"
"#,
    )
    .unwrap_err();
    assert!(
        e.contains("destinations[0].template.url`: unknown placeholder {amout} at character 44 (did you mean {amount}?)\n"),
        "{e}"
    );
    let lines: Vec<&str> = e.lines().collect();
    let caret = lines
        .iter()
        .position(|l| l.trim_start().starts_with('^'))
        .unwrap();
    let col = lines[caret].chars().position(|c| c == '^').unwrap();
    let above: String = lines[caret - 1].chars().skip(col).take(7).collect();
    assert_eq!(above, "{amout}", "{e}");
    for (table, want) in [
        (
            r#"headers = { "X-A" = "[nope]" }"#,
            "template.headers.X-A`: unknown placeholder [nope]",
        ),
        (
            r#"method = "POST"
body = { json = { a = { b = "[nope]" } } }"#,
            "template.body.json.a.b`: unknown placeholder [nope]",
        ),
        (
            r#"method = "POST"
body = { form = { f = "x[Click_id]" } }"#,
            "did you mean [click_id]?",
        ),
    ] {
        let e = load(&format!(
            "[destinations.template]\nsyntax = \"bracket\"\nurl = \"https://p.example/\"\n{table}\n"
        ))
        .unwrap_err();
        assert!(e.contains(want), "{e}");
    }
}

#[test]
fn bad_template_settings_are_config_errors() {
    let base = "[destinations.template]\nsyntax = \"brace\"\nurl = \"https://p.example/\"\n";
    for (extra, want) in [
        ("body = { text = \"x\" }", "a GET request has no body"),
        (
            "method = \"POST\"\nbody = { text = \"x\", json = {} }",
            "exactly one of json, form or text",
        ),
        ("headers = { Host = \"evil.example\" }", "may not set it"),
        (
            "headers = { \"Bad Name\" = \"x\" }",
            "not an HTTP header name",
        ),
        (
            "macros = { status = { from = \"amount\" } }",
            "built-in macro",
        ),
        (
            "macros = { x = { from = \"click_id\", time = \"unix\" } }",
            "not a time",
        ),
        (
            "macros = { x = { from = \"occurred_at\", time = \"unix\", zone = \"Mars/Base\" } }",
            "not a time zone",
        ),
        (
            "macros = { x = { from = \"amount\", money = \"fixed\", decimals = 12 } }",
            "over 8",
        ),
        (
            "macros = { x = { from = \"click_id\", number = true } }",
            "JSON number",
        ),
        (
            "status_map = { Paid = \"1\", paid = \"2\" }",
            "appears twice",
        ),
        ("settings = { a = \"b\" }", "settings are for a preset"),
        (
            "preset = \"nonesuch\"",
            "no preset \"nonesuch\" (presets: binom, everflow, keitaro, voluum)",
        ),
    ] {
        let e = load(&format!("{base}{extra}\n")).unwrap_err();
        assert!(e.contains(want), "{extra}: {e}");
    }
    let e = load("[destinations.template]\nurl = \"https://p.example/\"\n").unwrap_err();
    assert!(e.contains("template.syntax`: required"), "{e}");
    let e = load("missing = \"skip\"\n").unwrap_err();
    assert!(e.contains("template`: required"), "{e}");
}

#[test]
fn skip_is_for_template_destinations_only() {
    let text = r#"
[[destinations]]
name = "ps"
kind = "powerspace"
base_url = "https://a.pwspace.com"
missing = "skip"
match = { networks = ["powerspace"] }
"#;
    let e = Config::from_toml(text, &|_| None).unwrap_err().to_string();
    assert!(
        e.contains("destinations[0].missing`: skip is for template"),
        "{e}"
    );
}

#[test]
fn a_signed_template_request_carries_standard_webhooks_headers() {
    let r = ok(
        r#"[destinations.template]
syntax = "brace"
method = "POST"
url = "https://p.example/hook"
body = { json = { id = "{event_id}", amount = "{amount}" } }
signature = { scheme = "standard_webhooks", secrets = ["${SIGNING_SECRET}"] }
"#,
        &order(),
    );
    assert_eq!(r.headers["webhook-id"], "evt-1");
    assert_eq!(r.headers["webhook-timestamp"], at().timestamp().to_string());
    assert!(r.headers["webhook-signature"].starts_with("v1,"));
    assert_eq!(r.secrets, vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]);
    // What is shown never holds the secret.
    assert!(!format!("{:?}", r.redacted()).contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
}

#[test]
fn every_preset_loads_and_asks_for_its_settings() {
    for (name, _) in super::preset::PRESETS {
        let p = super::preset::get(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!p.docs.is_empty() && !p.description.is_empty(), "{name}");
        for (k, setting) in &p.settings {
            assert!(!setting.about.is_empty(), "{name}.{k}");
            if let Some(d) = &setting.default {
                setting
                    .kind
                    .check(d)
                    .unwrap_or_else(|e| panic!("{name}.{k}: {e}"));
            }
        }
        let e = load(&format!("[destinations.template]\npreset = \"{name}\"\n")).unwrap_err();
        assert!(
            e.contains("template.settings.") && e.contains("required by preset"),
            "{name}: {e}"
        );
    }
    let e = load(
        "[destinations.template]\npreset = \"voluum\"\nsettings = { tracking_domain = \"https://{click_id}.example\" }\n",
    )
    .unwrap_err();
    assert!(e.contains("not a template"), "{e}");
    let e = load("[destinations.template]\npreset = \"voluum\"\nsettings = { domain = \"x\" }\n")
        .unwrap_err();
    assert!(
        e.contains("has no such setting (it has: tracking_domain)"),
        "{e}"
    );
}

#[test]
fn preset_settings_stand_only_where_their_kind_allows() {
    let keitaro = "[destinations.template]\npreset = \"keitaro\"\nsettings = { tracker = \"https://t.example.com\", postback_key = \"k\" }\n";
    let e = load(&format!(
        "{keitaro}url = \"https://x.example/<<tracker>>\"\n"
    ))
    .unwrap_err();
    assert!(
        e.contains("template.url`: setting tracker is an origin (where the tracker is): it may only begin the URL"),
        "{e}"
    );
    let e = load(&format!("{keitaro}url = \"<<postback_key>>/x\"\n")).unwrap_err();
    assert!(e.contains("setting postback_key is a path segment"), "{e}");
    // A segment stands as it is in the path or the query.
    let r = ok(
        &format!("{keitaro}url = \"<<tracker>>/a/<<postback_key>>?k=<<postback_key>>\"\n"),
        &order(),
    );
    assert_eq!(r.url, "https://t.example.com/a/k?k=k");
    let everflow = "[destinations.template]\npreset = \"everflow\"\nsettings = { tracking_domain = \"https://t.example.com\", network_id = \"a b%&\" }\n";
    let e = load(&format!(
        "{everflow}url = \"<<tracking_domain>>/<<network_id>>\"\n"
    ))
    .unwrap_err();
    assert!(
        e.contains("template.url`: setting network_id is a value, for the query, a header or a body, not the URL's path"),
        "{e}"
    );
    // A value is written for where it stands: encoded in the query and a header, as it is
    // in a body, whose serializer writes it.
    let r = ok(
        &format!(
            "{everflow}method = \"POST\"\nurl = \"<<tracking_domain>>/?n=<<network_id>>\"\nheaders = {{ X-Net = \"<<network_id>>\" }}\nbody = {{ json = {{ n = \"<<network_id>>\" }} }}\n"
        ),
        &order(),
    );
    assert_eq!(r.url, "https://t.example.com/?n=a%20b%25%26");
    assert_eq!(r.headers["X-Net"], "a b%25&");
    assert_eq!(r.body.as_deref(), Some(r#"{"n":"a b%&"}"#));
    // An optional setting not given leaves out its query parameter, and only a query
    // parameter can be left out.
    let r = ok(
        &format!("{everflow}url = \"<<tracking_domain>>/?t=<<verification_token>>&n=1\"\n"),
        &order(),
    );
    assert_eq!(r.url, "https://t.example.com/?n=1");
    let r = ok(
        &format!("{everflow}url = \"<<tracking_domain>>/?t=<<verification_token>>\"\n"),
        &order(),
    );
    assert_eq!(r.url, "https://t.example.com/");
    let e = load(&format!(
        "{everflow}headers = {{ X-T = \"<<verification_token>>\" }}\n"
    ))
    .unwrap_err();
    assert!(
        e.contains("template.headers.X-T`: setting verification_token is optional: it may only stand in the URL's query"),
        "{e}"
    );
    // A default stands for a setting not given.
    let binom = "[destinations.template]\npreset = \"binom\"\nsettings = { tracker = \"https://t.example.com\" }\nurl = \"<<tracker>>/<<path>>\"\n";
    assert_eq!(ok(binom, &order()).url, "https://t.example.com/click.php");
}

#[test]
fn a_publisher_callback_can_be_signed_and_is_unchanged_without() {
    let text = |signature: &str| {
        format!(
            r#"
[[destinations]]
name = "publisher"
kind = "callback"
match = {{ networks = ["n"] }}
callback = {{ url = "https://www.publisher-domain.com/cb", method = "post" {signature} }}
"#
        )
    };
    let render = |signature: &str| {
        let c = Config::from_toml(&text(signature), &|_| Some("cb-secret".into()))
            .unwrap_or_else(|e| panic!("{e}"));
        c.destinations[0]
            .partner
            .render_at("publisher", &order(), at())
            .unwrap()
    };
    let plain = render("");
    assert_eq!(
        plain.headers.keys().collect::<Vec<_>>(),
        ["Content-Type"],
        "no signature unless asked"
    );
    let signed = render(
        r#", signature = { scheme = "header", header = "X-Signature", prefix = "sha256=", secrets = ["${CB_SECRET}"] }"#,
    );
    assert_eq!((&signed.url, &signed.body), (&plain.url, &plain.body));
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"cb-secret").unwrap();
    mac.update(plain.body.as_deref().unwrap().as_bytes());
    assert_eq!(
        signed.headers["X-Signature"],
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    );
    assert_eq!(signed.secrets, vec!["cb-secret"]);
}

#[test]
fn secrets_stay_out_of_template_errors() {
    let load_with = |secret: &'static str, table: &str| {
        let text = format!(
            "[[destinations]]\nname = \"t\"\nkind = \"template\"\nmatch = {{ networks = [\"n\"] }}\n[destinations.template]\n{table}"
        );
        Config::from_toml(&text, &move |_| Some(secret.to_owned()))
            .map(|_| ())
            .unwrap_or_else(|e| panic!("{e}"));
    };
    let err = |secret: &'static str, table: &str| {
        let text = format!(
            "[[destinations]]\nname = \"t\"\nkind = \"template\"\nmatch = {{ networks = [\"n\"] }}\n[destinations.template]\n{table}"
        );
        Config::from_toml(&text, &move |_| Some(secret.to_owned()))
            .unwrap_err()
            .to_string()
    };
    // A long secret before a mistyped macro: the error shows the template, the secret
    // redacted whole.
    let long = "s3cret-0123456789-abcdefghijklmnopqrstuvwxyz-0123456789-tail";
    let e = err(
        long,
        "syntax = \"brace\"\nurl = \"https://p.example/${KEY}/pb?c={clik_id}\"\n",
    );
    assert!(e.contains("{clik_id}") && e.contains("REDACTED"), "{e}");
    for piece in ["s3cret", "0123456789", "tail"] {
        assert!(!e.contains(piece), "{e}");
    }
    // In a URL's sent form (a space written %20), the secret is redacted too.
    let e = err(
        "ab cd=efgh-s3cret",
        "syntax = \"brace\"\nurl = \"https://p.example/${KEY}/{click_id}/..\"\n",
    );
    assert!(
        e.contains("REDACTED") && !e.contains("efgh") && !e.contains("s3cret"),
        "{e}"
    );
    // A secret holding the syntax's delimiter would be read as macros: refused, unshown.
    let e = err(
        "tok{click_id}en",
        "syntax = \"brace\"\nurl = \"https://p.example/pb\"\nheaders = { Authorization = \"Bearer ${KEY}\" }\n",
    );
    assert!(
        e.contains("destinations[0].template") && e.contains("reads as a macro"),
        "{e}"
    );
    assert!(!e.contains("tok"), "{e}");
    // The same delimiter under another syntax is text.
    load_with(
        "tok{session}en",
        "syntax = \"hash\"\nurl = \"https://p.example/pb\"\nheaders = { Authorization = \"Bearer ${KEY}\" }\n",
    );
}

#[test]
fn review_findings_stay_fixed() {
    let lead = event(json!({
        "event_id": "e2", "type": "lead", "occurred_at": "2026-11-22T10:00:00Z",
        "attribution": { "network": "n", "click_id": "c1" }
    }));
    // A macro, or a user at all, in the URL's user:password part: the client would send it
    // as an Authorization header, not as shown.
    for url in [
        "https://{click_id}:pw@h.example/p",
        "https://u:{click_id}@h.example/p",
        "https://user:pw@h.example/p",
    ] {
        let e = load(&format!(
            "[destinations.template]\nsyntax = \"brace\"\nurl = \"{url}\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("template.url"), "{url}: {e}");
    }
    // A text body cannot be partly left out: skip fails the delivery.
    let text = r#"missing = "skip"
[destinations.template]
syntax = "brace"
method = "POST"
url = "https://p.example/"
body = { text = "click={click_id} pub={publisher_id}" }
"#;
    assert!(
        matches!(render(text, &lead), Err(RenderError::MissingValue(m)) if m.0 == "{publisher_id}")
    );
    // Nor can an element of a JSON array, or the whole body.
    let array = r#"missing = "skip"
[destinations.template]
syntax = "brace"
method = "POST"
url = "https://p.example/"
body = { json = { ids = ["{publisher_id}", "{click_id}"], click = "{click_id}", pub = "{publisher_id}" } }
"#;
    assert!(
        matches!(render(array, &lead), Err(RenderError::MissingValue(m)) if m.0 == "{publisher_id}")
    );
    let whole = "missing = \"skip\"\n[destinations.template]\nsyntax = \"brace\"\nmethod = \"POST\"\nurl = \"https://p.example/\"\nbody = { json = \"{publisher_id}\" }\n";
    assert!(render(whole, &lead).is_err());
    // A preset's status map entry is replaced in any case.
    let keitaro = r#"[destinations.template]
preset = "keitaro"
settings = { tracker = "https://t.example.com", postback_key = "k" }
status_map = { Approved = "confirmed" }
"#;
    assert!(ok(keitaro, &order()).url.contains("status=confirmed"));
    // A status through a macro of the destination's own keeps statuses in order.
    let own = r#"[destinations.template]
syntax = "brace"
url = "https://p.example/?s={st}"
macros = { st = { from = "status", case = "upper" } }
"#;
    let c = load(own).unwrap();
    let s = c.destinations[0]
        .partner
        .status_of(&order())
        .expect("a status in order");
    assert_eq!((s.name, s.rank), ("approved", 2));
    // Header names are unique without regard to case, and a signature's own are its.
    for headers in [
        r#"headers = { "X-A" = "1", "x-a" = "2" }"#,
        r#"headers = { "Webhook-Timestamp" = "{click_id}" }
signature = { scheme = "standard_webhooks", secrets = ["a2V5"] }
method = "POST"
body = { json = {} }"#,
        r#"headers = { "x-signature" = "{click_id}" }
signature = { scheme = "header", header = "X-Signature", secrets = ["key"] }"#,
    ] {
        let e = load(&format!(
            "[destinations.template]\nsyntax = \"brace\"\nurl = \"https://p.example/\"\n{headers}\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("appears twice") || e.contains("written by the signature"),
            "{e}"
        );
    }
    // A space at either end of a header value would be trimmed by HTTP: it is encoded.
    let spaced = event(json!({
        "event_id": "e3", "type": "lead", "occurred_at": "2026-11-22T10:00:00Z",
        "attribution": { "network": "n", "click_id": " a b " }
    }));
    let r = ok(
        "[destinations.template]\nsyntax = \"brace\"\nurl = \"https://p.example/\"\nheaders = { X-C = \"{click_id}\" }\n",
        &spaced,
    );
    assert_eq!(r.headers["X-C"], "%20a b%20");
    // Template text holding the placeholder marker's letters is text like any other.
    let r = ok(
        "[destinations.template]\nsyntax = \"brace\"\nurl = \"https://p.example/zq0qz/{click_id}\"\n",
        &lead,
    );
    assert_eq!(r.url, "https://p.example/zq0qz/c1");
    // The destination's Debug output never holds a signature secret.
    let c = load(
        "[destinations.template]\nsyntax = \"brace\"\nmethod = \"POST\"\nurl = \"https://p.example/\"\nbody = { json = {} }\nsignature = { scheme = \"standard_webhooks\", secrets = [\"VE9QU0VDUkVULVNJR05JTkc=\"] }\n",
    )
    .unwrap();
    let d = format!("{:?}", c.destinations[0]);
    assert!(!d.contains("VE9QU0VDUkVULVNJR05JTkc"), "{d}");
    assert!(
        c.secrets
            .scrub("x VE9QU0VDUkVULVNJR05JTkc= y")
            .contains("REDACTED")
    );
}

#[test]
fn a_text_body_with_macros_is_refused_as_json_or_a_form() {
    // A text body inserts each value as it is: as JSON or a form, a click id (from the
    // landing URL, so from anyone) holding `","payout":"9999` or `&payout=9999` would add a
    // member or a field.
    let table = |text: &str, content_type: &str| {
        format!(
            "[destinations.template]\nsyntax = \"brace\"\nmethod = \"POST\"\nurl = \"https://p.example/\"\nbody = {{ text = '{text}', content_type = \"{content_type}\" }}\n"
        )
    };
    let json = r#"{"click":"{click_id}","payout":"1"}"#;
    let form = "click={click_id}&payout=1";
    for (text, content_type, instead) in [
        (json, "application/json", "body.json"),
        (json, "Application/JSON; charset=utf-8", "body.json"),
        (json, "application/vnd.partner+json", "body.json"),
        (json, " application/problem+JSON ;v=2", "body.json"),
        (json, "text/json", "body.json"),
        (json, "application/x-json", "body.json"),
        (form, "application/x-www-form-urlencoded", "body.form"),
        (
            form,
            "application/x-www-form-urlencoded; charset=UTF-8",
            "body.form",
        ),
    ] {
        let e = load(&table(text, content_type)).unwrap_err();
        assert!(
            e.contains("destinations[0].template.body.content_type`") && e.contains(instead),
            "{content_type}: {e}"
        );
    }
    // The same through a Content-Type header of the template's own.
    let e = load(&format!(
        "{}headers = {{ Content-Type = \"application/json\" }}\n",
        table(json, "text/plain")
    ))
    .unwrap_err();
    assert!(
        e.contains("destinations[0].template.headers.Content-Type`") && e.contains("body.json"),
        "{e}"
    );
    // Without a macro, the text is sent as written; with another type, values go as they are.
    let fixed = ok(&table(r#"{"payout":"1"}"#, "application/json"), &order());
    assert_eq!(fixed.body.as_deref(), Some(r#"{"payout":"1"}"#));
    assert_eq!(fixed.headers["Content-Type"], "application/json");
    let plain = ok(&table("click {click_id}", "text/plain"), &order());
    assert_eq!(plain.body.as_deref(), Some("click clk 1/2&x=y"));
    // What body.json sends for the same click: one member, whatever the click holds.
    let injected = event(json!({
        "event_id": "evt-9", "type": "lead", "occurred_at": "2026-11-22T10:00:00Z",
        "attribution": { "network": "n", "click_id": "x\",\"payout\":\"9999" }
    }));
    let r = ok(
        "[destinations.template]\nsyntax = \"brace\"\nmethod = \"POST\"\nurl = \"https://p.example/\"\nbody = { json = { click = \"{click_id}\", payout = \"1\" } }\n",
        &injected,
    );
    let body: serde_json::Value = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({ "click": "x\",\"payout\":\"9999", "payout": "1" })
    );
}

#[test]
fn a_malformed_macro_is_a_config_error_pointing_at_it() {
    // Each was taken as text, and sent literally on every event.
    for (syntax, url, shown, want) in [
        (
            "brace",
            "https://p.example/pb?c={click-id}&o=1",
            "{click-id}",
            "malformed placeholder {click-id} at character 24 (did you mean {click_id}?)",
        ),
        (
            "brace",
            "https://p.example/pb?c={ click_id }&o=1",
            "{ click_id }",
            "malformed placeholder { click_id } at character 24 (did you mean {click_id}?)",
        ),
        (
            "brace",
            "https://p.example/pb?c={\u{441}lick_id}",
            "{\u{441}lick_id}",
            "malformed placeholder {\u{441}lick_id} at character 24 (did you mean {click_id}?)",
        ),
        (
            "brace",
            "https://p.example/pb?c={click_id",
            "{click_id",
            "unclosed placeholder {click_id at character 24 (did you mean {click_id}?)",
        ),
        (
            "brace",
            "https://p.example/pb?c={click_id&o={order_id}",
            "{click_id",
            "unclosed placeholder {click_id at character 24 (did you mean {click_id}?)",
        ),
        (
            "bang",
            "https://p.example/pb?c=!!!click_id!!",
            "!!!click_id",
            "unclosed placeholder !!!click_id at character 24 (did you mean !!!click_id!!!?)",
        ),
        (
            "bracket",
            "https://p.example/pb?c={click_id}",
            "{click_id}",
            "placeholder {click_id} at character 24 is not in this template's syntax (did you mean [click_id]?)",
        ),
        (
            "brace",
            "https://p.example/pb?c=!!!click_id!!!",
            "!!!click_id!!!",
            "placeholder !!!click_id!!! at character 24 is not in this template's syntax (did you mean {click_id}?)",
        ),
        (
            "hash",
            "https://p.example/pb?c={click_id}",
            "{click_id}",
            "placeholder {click_id} at character 24 is not in this template's syntax (did you mean #click_id#?)",
        ),
    ] {
        let e = load(&format!(
            "[destinations.template]\nsyntax = \"{syntax}\"\nurl = \"{url}\"\n"
        ))
        .unwrap_err();
        assert!(
            e.contains(&format!("destinations[0].template.url`: {want}\n")),
            "{url}: {e}"
        );
        // Under the message, the URL with the placeholder pointed at.
        let lines: Vec<&str> = e.lines().collect();
        let caret = lines
            .iter()
            .position(|l| l.trim_start().starts_with('^'))
            .unwrap();
        let col = lines[caret].chars().position(|c| c == '^').unwrap();
        let width = lines[caret].chars().filter(|c| *c == '^').count();
        let above: String = lines[caret - 1].chars().skip(col).take(width).collect();
        assert_eq!(above, shown, "{e}");
    }
    // In a header and a body too.
    let e = load(
        "[destinations.template]\nsyntax = \"brace\"\nmethod = \"POST\"\nurl = \"https://p.example/\"\nheaders = { X-Click = \"{click-id}\" }\nbody = { json = {} }\n",
    )
    .unwrap_err();
    assert!(
        e.contains("template.headers.X-Click`: malformed placeholder {click-id}"),
        "{e}"
    );
    let e = load(
        "[destinations.template]\nsyntax = \"hash\"\nmethod = \"POST\"\nurl = \"https://p.example/\"\nbody = { form = { c = \"#click_id\" } }\n",
    )
    .unwrap_err();
    assert!(
        e.contains("template.body.form.c`: unclosed placeholder #click_id at character 1"),
        "{e}"
    );
    // What looks like a placeholder but is not one stays valid: PHP-style array keys in a
    // query, braces and `#` in a text body.
    let r = ok(
        "[destinations.template]\nsyntax = \"brace\"\nmethod = \"POST\"\nurl = \"https://p.example/pb?data[order_id]={order_id}&data[click][]={click_id}\"\nbody = { text = 'order #{order_id}: {\"n\": {\"a\": 1}} {} { ok }' }\n",
        &order(),
    );
    assert_eq!(
        r.url,
        "https://p.example/pb?data[order_id]=10045&data[click][]=clk%201%2F2%26x%3Dy"
    );
    assert_eq!(
        r.body.as_deref(),
        Some(r#"order #10045: {"n": {"a": 1}} {} { ok }"#)
    );
}
