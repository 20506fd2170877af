//! Config errors of a template table: each points at what is wrong and never shows a secret.

use super::{load, ok, order};
use crate::config::Config;

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
