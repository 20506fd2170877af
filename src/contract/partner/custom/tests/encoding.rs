//! Where each value lands and how it is encoded there: URL, headers, JSON, form and text bodies.

use serde_json::json;

use super::{event, load, ok, order, render};
use crate::contract::partner::{Method, RenderError};

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
