//! Macros of the destination's own (times, amounts, less, omit) and the status through its map.

use serde_json::json;

use super::{event, load, ok, order, render};
use crate::contract::partner::RenderError;

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
