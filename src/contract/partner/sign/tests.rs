//! Tests of `sign`: the Standard Webhooks example, rotation, partner headers and refused settings.

use super::*;
use crate::contract::partner::Method;
use std::collections::BTreeMap;

fn opts(scheme: Scheme, secrets: &[&str]) -> Options {
    Options {
        scheme,
        secrets: secrets.iter().map(|s| s.to_string()).collect(),
        header: None,
        encoding: Encoding::Hex,
        prefix: String::new(),
        over: None,
    }
}

fn post(body: &str) -> Rendered {
    Rendered {
        method: Method::Post,
        url: "https://partner.example/hook".into(),
        headers: BTreeMap::new(),
        body: Some(body.into()),
    }
}

#[test]
fn standard_webhooks_matches_the_specifications_example() {
    // The example of the Standard Webhooks specification and its reference libraries.
    let s = compile(
        &opts(
            Scheme::StandardWebhooks,
            &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
        ),
        "signature",
        true,
    )
    .unwrap();
    let mut r = post(r#"{"test": 2432232314}"#);
    let at = DateTime::from_timestamp(1_614_265_330, 0).unwrap();
    s.sign(&mut r, "msg_p5jXN8AQM9LWM0D4loKWxJek", at);
    assert_eq!(r.headers["webhook-id"], "msg_p5jXN8AQM9LWM0D4loKWxJek");
    assert_eq!(r.headers["webhook-timestamp"], "1614265330");
    assert_eq!(
        r.headers["webhook-signature"],
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
}

#[test]
fn two_active_secrets_sign_twice_the_new_one_first() {
    let at = DateTime::from_timestamp(1_614_265_330, 0).unwrap();
    let one = |secrets: &[&str]| {
        let mut r = post("{}");
        compile(&opts(Scheme::StandardWebhooks, secrets), "s", true)
            .unwrap()
            .sign(&mut r, "e1", at);
        r.headers["webhook-signature"].clone()
    };
    let (new, old) = (one(&["whsec_bmV3LXNlY3JldA=="]), one(&["b2xkLXNlY3JldA=="]));
    assert_ne!(new, old);
    assert_eq!(
        one(&["whsec_bmV3LXNlY3JldA==", "b2xkLXNlY3JldA=="]),
        format!("{new} {old}")
    );
    // With whsec_ or without, the key is what the base64 encodes.
    assert_eq!(one(&["bmV3LXNlY3JldA=="]), new);
}

#[test]
fn a_standard_webhooks_secret_is_read_with_or_without_base64_padding() {
    // A 32-byte key is 44 characters of base64 with its `=`, 43 without: the standard's
    // libraries read both, so a secret copied from either form gives the same key.
    let padded = format!("whsec_{}", STANDARD.encode([0x5a_u8; 32]));
    assert!(padded.ends_with('='), "{padded}");
    let unpadded = padded.trim_end_matches('=').to_owned();
    assert_eq!(unpadded.len(), "whsec_".len() + 43);
    let at = DateTime::from_timestamp(1_614_265_330, 0).unwrap();
    let signature = |secret: &str| {
        let mut r = post("{}");
        compile(&opts(Scheme::StandardWebhooks, &[secret]), "s", true)
            .unwrap_or_else(|e| panic!("{secret}: {e}"))
            .sign(&mut r, "e1", at);
        r.headers["webhook-signature"].clone()
    };
    let expected = format!(
        "v1,{}",
        STANDARD.encode(hmac(&[0x5a_u8; 32], &[b"e1.1614265330.{}"]))
    );
    assert_eq!(signature(&padded), expected);
    assert_eq!(signature(&unpadded), expected);
    assert_eq!(signature(unpadded.trim_start_matches("whsec_")), expected);
    // Padding that is wrong rather than absent is still refused.
    let e = compile(
        &opts(Scheme::StandardWebhooks, &[&format!("{padded}=")]),
        "signature",
        true,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("is not base64"), "{e}");
}

#[test]
fn a_partner_header_in_hex_or_base64_over_body_or_url() {
    let mut o = opts(Scheme::Header, &["key"]);
    o.header = Some("X-Signature".into());
    o.prefix = "sha256=".into();
    let at = DateTime::from_timestamp(0, 0).unwrap();
    let mut r = post("The quick brown fox jumps over the lazy dog");
    compile(&o, "s", true).unwrap().sign(&mut r, "e1", at);
    // RFC 4231-style known value: HMAC-SHA256("key", "The quick brown fox...").
    assert_eq!(
        r.headers["X-Signature"],
        "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    );
    o.encoding = Encoding::Base64;
    o.prefix.clear();
    o.over = Some(Over::Url);
    let mut r = post("ignored");
    compile(&o, "s", true).unwrap().sign(&mut r, "e1", at);
    let url_mac = hmac(b"key", &[b"https://partner.example/hook"]);
    assert_eq!(r.headers["X-Signature"], STANDARD.encode(&url_mac));
    // Without a body, the URL is signed.
    let mut get = post("");
    get.body = None;
    o.over = None;
    compile(&o, "s", true).unwrap().sign(&mut get, "e1", at);
    assert_eq!(get.headers["X-Signature"], STANDARD.encode(&url_mac));
}

#[test]
fn bad_settings_are_refused_without_repeating_a_secret() {
    let err = |o: Options| compile(&o, "signature", true).unwrap_err().to_string();
    assert!(err(opts(Scheme::StandardWebhooks, &[])).contains("signature.secrets"));
    assert!(err(opts(Scheme::StandardWebhooks, &["a", "b", "c"])).contains("got 3"));
    let e = err(opts(Scheme::StandardWebhooks, &["whsec_not*base64!"]));
    assert!(
        e.contains("signature.secrets[0]") && !e.contains("not*base64"),
        "{e}"
    );
    assert!(err(opts(Scheme::Header, &["k"])).contains("signature.header"));
    let mut o = opts(Scheme::Header, &["k"]);
    o.header = Some("Bad Header".into());
    assert!(err(o).contains("not an HTTP header name"));
    assert!(err(opts(Scheme::StandardWebhooks, &["  "])).contains("is empty"));
    let e = err(opts(Scheme::StandardWebhooks, &["not base64, s3cret"]));
    assert!(e.contains("is not base64") && !e.contains("s3cret"), "{e}");
    // Without a body: Standard Webhooks cannot sign, and a body signature would be the
    // same on every request.
    let no_body = |o: Options| compile(&o, "signature", false).unwrap_err().to_string();
    assert!(no_body(opts(Scheme::StandardWebhooks, &["a2V5"])).contains("signs a body"));
    let mut o = opts(Scheme::Header, &["k"]);
    o.header = Some("X-Signature".into());
    assert!(compile(&o, "s", false).is_ok());
    o.over = Some(Over::Body);
    assert!(no_body(o).contains("over = \"url\""));
    // Debug output never holds a secret.
    let d = format!("{:?}", opts(Scheme::Header, &["TOPSECRET-SIGNING"]));
    assert!(!d.contains("TOPSECRET"), "{d}");
}
