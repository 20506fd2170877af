//! Faults once found in template destinations, each pinned so that it stays fixed.

use serde_json::json;

use super::{event, load, ok, order, render};
use crate::contract::partner::RenderError;

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
