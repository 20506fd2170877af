//! Signed requests: a template destination's Standard Webhooks headers, a publisher callback's own.

use super::{at, ok, order};
use crate::config::Config;

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
