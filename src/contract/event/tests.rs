//! Tests of `event`.

use super::*;

const LIMIT: usize = 1 << 20;

pub(crate) const EXAMPLE: &str = r#"{
  "event_id": "ord-10045-paid",
  "type": "order",
  "occurred_at": "2026-11-22T10:00:00Z",
  "attribution": {
    "network": "powerspace",
    "click_id": "abc123xyz789",
    "clicked_at": "2026-11-20T09:00:00Z",
    "publisher_id": "45628",
    "tracker": "trID_1234567_aff9-tx77-ck42_trID",
    "params": { "clickRef": "LINKCMP2013-06" }
  },
  "order": {
    "id": "10045", "amount": "89.99", "currency": "EUR", "status": "paid",
    "shipping": "4.99", "tax": "14.99", "commission": "1.64",
    "products": [], "commission_groups": []
  },
  "customer": { "id": "cust-77" },
  "action": "sale"
}"#;

fn with(path: &[&str], value: serde_json::Value) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
    let mut cur = &mut v;
    for p in &path[..path.len() - 1] {
        cur = cur.get_mut(*p).unwrap();
    }
    let last = path[path.len() - 1];
    if value.is_null() {
        cur.as_object_mut().unwrap().remove(last);
    } else {
        cur[last] = value;
    }
    serde_json::to_vec(&v).unwrap()
}

fn invalid_at(body: &[u8]) -> (String, String) {
    match parse(body, LIMIT) {
        Err(ParseError::Invalid { path, message }) => (path, message),
        other => panic!("expected invalid, got {other:?}"),
    }
}

#[test]
fn parses_the_design_example() {
    let e = parse(EXAMPLE.as_bytes(), LIMIT).unwrap();
    assert_eq!(e.event_id, "ord-10045-paid");
    assert_eq!(e.kind, EventType::Order);
    let o = e.order.unwrap();
    assert_eq!(o.amount.unwrap().to_string(), "89.99");
    assert_eq!(o.currency.unwrap().as_str(), "EUR");
    assert_eq!(e.attribution.unwrap().params["clickRef"], "LINKCMP2013-06");
}

#[test]
fn numbers_are_accepted_as_amounts_exactly() {
    let e = parse(&with(&["order", "amount"], serde_json::json!(89.99)), LIMIT).unwrap();
    assert_eq!(e.order.unwrap().amount.unwrap().to_string(), "89.99");
}

#[test]
fn bad_amounts_name_the_field() {
    for bad in ["12,50", "1e3", "NaN", "-3.00", ""] {
        let (path, msg) = invalid_at(&with(&["order", "amount"], serde_json::json!(bad)));
        assert_eq!(path, "order.amount");
        assert!(msg.contains(bad), "{msg}");
    }
}

#[test]
fn missing_required_fields_are_named() {
    let (path, msg) = invalid_at(&with(&["event_id"], serde_json::Value::Null));
    assert_eq!(path, ".");
    assert!(msg.contains("missing field `event_id`"), "{msg}");
    let (path, msg) = invalid_at(&with(&["attribution", "click_id"], serde_json::Value::Null));
    assert_eq!(path, "attribution");
    assert!(msg.contains("missing field `click_id`"), "{msg}");
    let (path, _) = invalid_at(&with(&["attribution", "click_id"], serde_json::json!(" ")));
    assert_eq!(path, "attribution.click_id");
}

#[test]
fn wrong_types_and_unknown_enum_values_are_invalid() {
    let (path, _) = invalid_at(&with(&["event_id"], serde_json::json!(42)));
    assert_eq!(path, "event_id");
    let (path, msg) = invalid_at(&with(&["type"], serde_json::json!("refund")));
    assert_eq!(path, "type");
    assert!(msg.contains("refund"), "{msg}");
    let (path, _) = invalid_at(&with(&["occurred_at"], serde_json::json!("yesterday")));
    assert_eq!(path, "occurred_at");
    let (path, _) = invalid_at(&with(&["order", "currency"], serde_json::json!("eur")));
    assert_eq!(path, "order.currency");
    let (path, _) = invalid_at(b"[1,2]");
    assert_eq!(path, ".");
}

#[test]
fn not_json_and_trailing_garbage() {
    assert!(matches!(
        parse(b"hello", LIMIT),
        Err(ParseError::NotJson(_))
    ));
    assert!(matches!(parse(b"", LIMIT), Err(ParseError::NotJson(_))));
    // Not UTF-8 at all: an invalid event that says so.
    assert!(matches!(
        parse(&[0xff, 0xfe], LIMIT),
        Err(ParseError::NotUtf8 { at: 0 })
    ));
    let mut trailing = EXAMPLE.as_bytes().to_vec();
    trailing.extend_from_slice(b" {}");
    assert!(matches!(
        parse(&trailing, LIMIT),
        Err(ParseError::NotJson(_))
    ));
}

#[test]
fn oversized_bodies_are_refused_before_parsing() {
    let body = vec![b' '; 10 * 1024 * 1024];
    assert_eq!(
        parse(&body, LIMIT),
        Err(ParseError::TooLarge {
            size: 10 * 1024 * 1024,
            limit: LIMIT
        })
    );
}

#[test]
fn unknown_fields_are_tolerated_for_forward_compatibility() {
    let e = parse(&with(&["extra"], serde_json::json!({"x": 1})), LIMIT).unwrap();
    assert_eq!(e.event_id, "ord-10045-paid");
}

#[test]
fn params_are_bounded_like_identifiers() {
    let params = |v: serde_json::Value| with(&["attribution", "params"], v);
    let ok = params(serde_json::json!({ "clickRef": "x".repeat(MAX_ID_LEN), "clickRef2": "" }));
    assert!(parse(&ok, LIMIT).is_ok());
    let (path, msg) = invalid_at(&params(
        serde_json::json!({ "clickRef": "x".repeat(MAX_ID_LEN + 1) }),
    ));
    assert_eq!(path, "attribution.params.clickRef");
    assert!(msg.contains("4096"), "{msg}");
    let (path, _) = invalid_at(&params(serde_json::json!({ "clickRef": "a\u{0}b" })));
    assert_eq!(path, "attribution.params.clickRef");
    for key in [
        String::new(),
        " ".into(),
        "a\nb".into(),
        "k".repeat(MAX_ID_LEN + 1),
    ] {
        let (path, msg) = invalid_at(&params(serde_json::json!({ key: "v" })));
        assert_eq!(path, "attribution.params");
        assert!(msg.starts_with("a key "), "{msg}");
    }
}

#[test]
fn attribution_is_optional() {
    let e = parse(&with(&["attribution"], serde_json::Value::Null), LIMIT).unwrap();
    assert!(e.attribution.is_none());
}
