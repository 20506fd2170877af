//! The `missing` rules: a macro without a value leaves its field out, sends it empty, or fails.

use serde_json::json;

use super::{event, ok, render};
use crate::config::Config;
use crate::contract::partner::RenderError;

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
