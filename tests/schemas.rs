//! The published JSON Schemas and the Rust types agree: what one accepts the other accepts, and
//! every envelope the relay writes validates against the dead-letter schema.

mod common;

use common::Event;
use postback_relay::contract::event;
use postback_relay::relay::deadletter::{Envelope, Reason, Source};
use serde_json::{Value, json};

fn validator(file: &str) -> jsonschema::Validator {
    let path = format!("{}/schemas/{file}", env!("CARGO_MANIFEST_DIR"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

fn base() -> Value {
    Event::attributed("ord-10045-paid", "order", "powerspace", "abc123xyz789")
        .clicked_at("2026-11-20T09:00:00Z")
        .publisher("45628")
        .tracker("trID_1234567_aff9-tx77-ck42_trID")
        .param("clickRef", "LINKCMP2013-06")
        .order("10045", "89.99")
        .currency("EUR")
        .status(Some("paid"))
        .set("/order/shipping", json!("4.99"))
        .set("/order/tax", json!("14.99"))
        .set("/order/commission", json!("1.64"))
        .set("/order/products", json!([]))
        .set("/order/commission_groups", json!([]))
        .customer("cust-77")
        .action("sale")
        .value()
}

/// Applies `edit` to the example event.
fn edited(edit: impl FnOnce(&mut Value)) -> Value {
    let mut v = base();
    edit(&mut v);
    v
}

#[test]
fn schema_and_parser_agree_on_events() {
    let schema = validator("conversion-event.v1.json");
    let valid = vec![
        base(),
        edited(|v| {
            v.as_object_mut().unwrap().remove("attribution");
        }),
        edited(|v| v["order"]["amount"] = json!(89.99)),
        edited(|v| v["type"] = json!("lead")),
        edited(|v| v["occurred_at"] = json!("2026-11-22T12:00:00+02:00")),
        edited(|v| v["future_field"] = json!({"anything": true})),
        json!({"event_id": "e", "type": "rebill", "occurred_at": "2026-11-22T10:00:00Z"}),
        edited(|v| v["attribution"]["params"]["clickRef2"] = json!("")),
        edited(|v| v["attribution"]["params"]["clickRef"] = json!("x".repeat(4096))),
        edited(|v| v["attribution"]["params"]["k".repeat(4096)] = json!("v")),
    ];
    let invalid = vec![
        json!([1, 2]),
        json!("order"),
        edited(|v| {
            v.as_object_mut().unwrap().remove("event_id");
        }),
        edited(|v| {
            v["attribution"].as_object_mut().unwrap().remove("click_id");
        }),
        edited(|v| v["event_id"] = json!("")),
        edited(|v| v["event_id"] = json!("   ")),
        edited(|v| v["event_id"] = json!("a\u{0}b")),
        edited(|v| v["event_id"] = json!("x".repeat(4097))),
        edited(|v| v["event_id"] = json!(42)),
        edited(|v| v["type"] = json!("refund")),
        edited(|v| v["occurred_at"] = json!("22/11/2026")),
        edited(|v| v["order"]["amount"] = json!("12,50")),
        edited(|v| v["order"]["amount"] = json!("1e3")),
        edited(|v| v["order"]["amount"] = json!("NaN")),
        edited(|v| v["order"]["amount"] = json!("-1.00")),
        edited(|v| v["order"]["amount"] = json!(-1)),
        edited(|v| v["order"]["currency"] = json!("eur")),
        edited(|v| v["attribution"]["params"]["clickRef"] = json!(7)),
        edited(|v| v["attribution"]["params"]["clickRef"] = json!("x".repeat(4097))),
        edited(|v| v["attribution"]["params"]["clickRef"] = json!("a\u{0}b")),
        edited(|v| v["attribution"]["params"]["clickRef"] = json!("a\u{85}b")),
        edited(|v| v["attribution"]["params"][""] = json!("v")),
        edited(|v| v["attribution"]["params"][" "] = json!("v")),
        edited(|v| v["attribution"]["params"]["a\nb"] = json!("v")),
        edited(|v| v["attribution"]["params"]["k".repeat(4097)] = json!("v")),
    ];
    for v in &valid {
        let body = serde_json::to_vec(v).unwrap();
        assert!(schema.is_valid(v), "schema refuses {v}");
        assert!(
            event::parse(&body, 1 << 20).is_ok(),
            "parser refuses {v}: {:?}",
            event::parse(&body, 1 << 20)
        );
    }
    for v in &invalid {
        let body = serde_json::to_vec(v).unwrap();
        assert!(!schema.is_valid(v), "schema accepts {v}");
        assert!(event::parse(&body, 1 << 20).is_err(), "parser accepts {v}");
    }
}

#[test]
fn envelopes_match_the_dead_letter_schema() {
    let schema = validator("dead-letter.v1.json");
    let source = Source {
        queue: "postback-relay.events".into(),
        routing_key: "order".into(),
        message_id: Some("ord-10045-paid".into()),
        redelivered: true,
    };
    let body = serde_json::to_vec(&base()).unwrap();
    let mut with_request = Envelope::for_message(
        Reason::PartnerRejected,
        "HTTP 404".into(),
        &body,
        None,
        source.clone(),
    );
    with_request.destination = Some("powerspace".into());
    with_request.attempts = 1;
    with_request.first_attempt_at = Some(chrono::Utc::now());
    with_request.last_attempt_at = Some(chrono::Utc::now());
    with_request.last_status = Some(404);
    with_request.response_snippet = Some("not found".into());
    with_request.request = Some(postback_relay::contract::partner::Request {
        destination: "powerspace".into(),
        method: postback_relay::contract::partner::Method::Get,
        url: "https://a.pwspace.com/ord?qci=abc123xyz789&ov=89.99".into(),
        headers: Default::default(),
        body: None,
        secrets: Vec::new(),
        parsed_url: None,
    });
    let envelopes = [
        with_request,
        Envelope::for_message(
            Reason::NotJson,
            "x".into(),
            b"\xff not json",
            None,
            source.clone(),
        ),
        Envelope::for_message(Reason::InvalidEvent, "x".into(), b"[1]", None, source),
    ];
    for env in envelopes {
        let v = serde_json::to_value(&env).unwrap();
        let errors: Vec<String> = schema.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{v}\n{errors:?}");
        let back: Envelope = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), v);
    }
}

#[test]
fn deliveries_match_the_delivery_schema() {
    let event_schema: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/schemas/conversion-event.v1.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let mut schema: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/schemas/delivery.v1.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    // The delivery's event is a conversion event: check it against that schema, inlined.
    assert_eq!(
        schema["properties"]["event"]["$ref"],
        "conversion-event.v1.json"
    );
    let mut inlined = event_schema;
    inlined.as_object_mut().unwrap().remove("$schema");
    schema["properties"]["event"] = inlined;
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let raw = serde_json::value::RawValue::from_string(base().to_string()).unwrap();
    let mut d = postback_relay::relay::delivery::Delivery::new(
        "ord-10045-paid".into(),
        "powerspace".into(),
        raw,
        chrono::Utc::now(),
    );
    d.attempts = 2;
    d.record([postback_relay::relay::delivery::AttemptRecord {
        at: chrono::Utc::now(),
        result: "5xx".into(),
        status: Some(503),
        error: None,
    }]);
    d.replay_of = Some(uuid::Uuid::new_v4());
    let v = serde_json::to_value(&d).unwrap();
    let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{v}\n{errors:?}");
}
