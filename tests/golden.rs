//! Every example request in the partner documents, reproduced byte for byte, and hostile values
//! for each kind. Pure rendering: no broker, no network.

mod common;

use common::config::{example_with, load_with_secret};
use common::{Callback, ConfigBuilder, Dest, Event, Hoqu, Tracker};
use postback_relay::config::DestinationConfig;
use postback_relay::contract::event::{self, ConversionEvent};
use postback_relay::contract::partner::{Method, RenderError, Request};
use serde_json::{Value, json};

/// `d` loaded on its own, as the relay loads it.
fn destination(d: Dest) -> DestinationConfig {
    ConfigBuilder::new().destination(d).load_destination()
}

/// What loading `d` on its own says; it must be refused.
fn config_error(d: Dest) -> String {
    ConfigBuilder::new().destination(d).error()
}

fn render(d: &DestinationConfig, e: &ConversionEvent) -> Request {
    d.render(e).unwrap_or_else(|err| panic!("{err}"))
}

/// The query parameters of a URL, decoded.
fn params(url: &str) -> Vec<(String, String)> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param(url: &str, name: &str) -> String {
    params(url)
        .into_iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("{name} not in {url}"))
        .1
}

/// Values a producer might send that must arrive intact and inert.
fn hostile() -> Vec<String> {
    vec![
        "a&b=c#d".into(),
        "100%".into(),
        "%41%42".into(),
        "!!!commission!!!".into(),
        "#affid#".into(),
        "{click_id}".into(),
        "Österreich".into(),
        "🎉 party".into(),
        "with spaces".into(),
        "a+b".into(),
        "../../etc/passwd?x=1".into(),
        "x".repeat(2048),
    ]
}

// ---------------------------------------------------------------- Powerspace

fn powerspace() -> Dest {
    Dest::powerspace("powerspace", "https://a.pwspace.com")
}

fn ps_event(kind: &str, click: &str, amount: Option<&str>) -> ConversionEvent {
    Event::powerspace("e1", kind, click, amount).parsed()
}

#[test]
fn powerspace_document_examples() {
    let d = destination(powerspace());
    let cases = [
        (
            "lead",
            "abc123xyz789",
            None,
            "https://a.pwspace.com/ld?qci=abc123xyz789",
        ),
        (
            "order",
            "abc123xyz789",
            Some("89.99"),
            "https://a.pwspace.com/ord?qci=abc123xyz789&ov=89.99",
        ),
        (
            "order",
            "abc123xyz789",
            Some("159.99"),
            "https://a.pwspace.com/ord?qci=abc123xyz789&ov=159.99",
        ),
        (
            "lead",
            "test_click_id_123",
            None,
            "https://a.pwspace.com/ld?qci=test_click_id_123",
        ),
        (
            "order",
            "test_click_id_123",
            Some("99.99"),
            "https://a.pwspace.com/ord?qci=test_click_id_123&ov=99.99",
        ),
        // "ex: 49.99, 125.50": two decimals, rounded half-up.
        (
            "order",
            "c",
            Some("125.5"),
            "https://a.pwspace.com/ord?qci=c&ov=125.50",
        ),
        (
            "order",
            "c",
            Some("30"),
            "https://a.pwspace.com/ord?qci=c&ov=30.00",
        ),
        (
            "order",
            "c",
            Some("10.005"),
            "https://a.pwspace.com/ord?qci=c&ov=10.01",
        ),
        ("order", "c", None, "https://a.pwspace.com/ord?qci=c"),
    ];
    for (kind, click, amount, url) in cases {
        let r = render(&d, &ps_event(kind, click, amount));
        assert_eq!(
            (r.method, r.url.as_str(), r.body.as_deref()),
            (Method::Get, url, None)
        );
        assert!(r.headers.is_empty());
    }
}

#[test]
fn powerspace_routes_and_order_value_options() {
    let d = destination(
        powerspace()
            .conversion("registration", "lead")
            .conversion("signup", "order")
            .exclude(true, true),
    );
    let r = render(&d, &ps_event("registration", "c", None));
    assert_eq!(r.url, "https://a.pwspace.com/ld?qci=c");
    // The client sends the URL render parsed while checking it, not a second parse.
    assert_eq!(
        r.parsed_url.as_ref().map(|u| u.as_str()),
        Some(r.url.as_str())
    );
    assert_eq!(r.redacted().parsed_url, None);
    let mut e = ps_event("signup", "c", Some("100.00"));
    let o = e.order.as_mut().unwrap();
    o.shipping = Some("4.99".parse().unwrap());
    o.tax = Some("15.00".parse().unwrap());
    assert_eq!(
        render(&d, &e).url,
        "https://a.pwspace.com/ord?qci=c&ov=80.01"
    );
    o_too_much(&d);
    let e = config_error(powerspace().conversion("rebill", "refund"));
    assert!(
        e.contains("conversions.rebill") && e.contains("refund"),
        "{e}"
    );
}

fn o_too_much(d: &DestinationConfig) {
    let mut e = ps_event("order", "c", Some("1.00"));
    e.order.as_mut().unwrap().shipping = Some("4.99".parse().unwrap());
    assert!(matches!(d.render(&e), Err(RenderError::Invalid(_))));
}

#[test]
fn powerspace_hostile_click_ids() {
    let d = destination(powerspace());
    for v in hostile() {
        let url = render(&d, &ps_event("order", &v, Some("1"))).url;
        assert_eq!(
            params(&url),
            vec![("qci".into(), v.clone()), ("ov".into(), "1.00".into())],
            "{url}"
        );
    }
    // An empty click ID never reaches a renderer: the event is invalid.
    let body = br#"{"event_id":"e","type":"lead","occurred_at":"2026-11-22T10:00:00Z","attribution":{"network":"powerspace","click_id":""}}"#;
    assert!(event::parse(body, 1 << 20).is_err());
}

// ---------------------------------------------------------------- HOQU

/// The document's advertiser, sending by `method` with `payout`, action "lead".
fn advertiser(method: &str, payout: &str) -> Hoqu {
    Hoqu::new("advertiser_api_key", payout)
        .method(method)
        .action("lead")
}

fn hoqu(options: Hoqu) -> DestinationConfig {
    destination(Dest::hoqu("hoqu", "https://trackerdomain.com", options))
}

fn hoqu_event(kind: &str, request_id: &str, status: Option<&str>) -> ConversionEvent {
    Event::hoqu_example(kind, request_id)
        .status(status)
        .parsed()
}

#[test]
fn hoqu_document_get_examples() {
    let d = hoqu(advertiser("get", "percentage"));
    let base = "https://trackerdomain.com/advertiser_api_key/s2s?click_id=c7e2206f-03af-49fa-9046-dd6aeaa44e9b&request_id=12345&action=lead&price=30&status=";
    // A new conversion is sent on hold; then the same click_id + request_id with the final
    // status, from the merchant's status through the document's table.
    let cases = [
        (hoqu_event("lead", "12345", None), "hold"),
        (
            hoqu_event("order_status", "12345", Some("paid")),
            "approved",
        ),
        (
            hoqu_event("order_status", "12345", Some("Refunded")),
            "rejected",
        ),
        (hoqu_event("order", "12345", Some("pending")), "hold"),
    ];
    for (e, status) in cases {
        let r = render(&d, &e);
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.url, format!("{base}{status}"));
        assert!(r.body.is_none());
    }
}

#[test]
fn hoqu_document_post_example() {
    let d = hoqu(advertiser("post", "percentage"));
    let r = render(&d, &hoqu_event("lead", "94583", None));
    assert_eq!(r.method, Method::Post);
    assert_eq!(r.url, "https://trackerdomain.com/advertiser_api_key");
    assert_eq!(
        r.headers.get("Content-Type").map(String::as_str),
        Some("application/json")
    );
    assert_eq!(
        r.body.as_deref(),
        Some(
            r#"{"click_id":"c7e2206f-03af-49fa-9046-dd6aeaa44e9b","request_id":"94583","action":"lead","price":30,"status":"hold"}"#
        )
    );
}

#[test]
fn hoqu_api_key_is_redacted_unless_asked() {
    let d = hoqu(advertiser("get", "fixed"));
    let r = render(&d, &hoqu_event("lead", "1", None));
    assert!(r.url.contains("/advertiser_api_key/"));
    let shown = r.redacted();
    assert!(!shown.url.contains("advertiser_api_key"), "{}", shown.url);
    assert!(
        shown
            .url
            .starts_with("https://trackerdomain.com/REDACTED/s2s?"),
        "{}",
        shown.url
    );
    assert!(
        !serde_json::to_string(&shown)
            .unwrap()
            .contains("advertiser_api_key")
    );
}

#[test]
fn hoqu_payout_models() {
    // Percentage: price required.
    let d = hoqu(advertiser("get", "percentage"));
    let mut e = hoqu_event("lead", "1", None);
    e.order.as_mut().unwrap().amount = None;
    let err = d.render(&e).unwrap_err().to_string();
    assert!(
        err.contains("order.amount") && err.contains("percentage"),
        "{err}"
    );
    // Fixed: price optional.
    let d = hoqu(advertiser("get", "fixed"));
    assert!(!render(&d, &e).url.contains("price="));

    // Recurring: leads carry customer_id; customers are added and removed.
    let d = hoqu(advertiser("get", "fixed").recurring());
    let mut lead = hoqu_event("lead", "7", None);
    lead.customer = Some(serde_json::from_value(json!({"id": "cust-77"})).unwrap());
    assert!(
        render(&d, &lead)
            .url
            .ends_with("&action=lead&price=30&status=hold&customer_id=cust-77")
    );
    let customer = Event::attributed("c1", "customer_status", "hoqu", "ck")
        .customer("cust-77")
        .customer_status("Activate")
        .parsed();
    assert_eq!(
        render(&d, &customer).url,
        "https://trackerdomain.com/advertiser_api_key/s2s?customer_id=cust-77&click_id=ck&status=activate"
    );
    let mut bad = customer.clone();
    bad.customer.as_mut().unwrap().status = Some("paused".into());
    assert!(d.render(&bad).unwrap_err().to_string().contains("paused"));
    let e = config_error(
        Dest::hoqu("h", "https://trackerdomain.com", Hoqu::new("k", "fixed"))
            .conversion("customer_status", "customer"),
    );
    assert!(e.contains("recurring"), "{e}");
}

#[test]
fn hoqu_statuses_outside_the_table_are_refused_not_guessed() {
    let d = hoqu(advertiser("get", "fixed"));
    let err = d
        .render(&hoqu_event("order_status", "1", Some("on its way")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"on its way\"") && err.contains("status table"),
        "{err}"
    );
    // A lead needs its conversion id too: the update that follows repeats it.
    let mut lead = hoqu_event("lead", "1", None);
    lead.order.as_mut().unwrap().id = None;
    assert!(
        d.render(&lead)
            .unwrap_err()
            .to_string()
            .contains("order.id")
    );
    // An update must name the conversion it updates.
    let mut e = hoqu_event("order_status", "1", Some("paid"));
    e.order.as_mut().unwrap().id = None;
    assert!(d.render(&e).unwrap_err().to_string().contains("order.id"));
}

#[test]
fn hoqu_extra_parameters_and_action() {
    let d = hoqu(
        advertiser("get", "fixed")
            .extra("sub1", "{params.sub1}")
            .extra("currency", "{currency}"),
    );
    let mut e = hoqu_event("lead", "1", None);
    e.attribution
        .as_mut()
        .unwrap()
        .params
        .insert("sub1".into(), "a&b".into());
    e.action = Some("sale".into());
    let url = render(&d, &e).url;
    assert_eq!(param(&url, "sub1"), "a&b");
    assert!(!url.contains("currency="), "known but absent: left out");
    assert_eq!(
        param(&url, "action"),
        "sale",
        "the event's action wins over the default"
    );
    let e = config_error(Dest::hoqu(
        "h",
        "https://trackerdomain.com",
        Hoqu::new("k", "fixed").extra("sub1", "{Order_Id}"),
    ));
    assert!(
        e.contains("hoqu.extra.sub1") && e.contains("{Order_Id}"),
        "{e}"
    );
}

#[test]
fn hoqu_status_updates_and_customers_go_by_get_whatever_the_method() {
    // "Для того чтобы обновить статус заявки на платформе, нужно отправить GET-запрос": the
    // document offers POST for a new conversion only.
    let d = hoqu(advertiser("post", "percentage").recurring());
    let update = "https://trackerdomain.com/advertiser_api_key/s2s?click_id=c7e2206f-03af-49fa-9046-dd6aeaa44e9b&request_id=12345&action=lead&price=30&status=";
    for (status, hoqu_status) in [("paid", "approved"), ("refunded", "rejected")] {
        let r = render(&d, &hoqu_event("order_status", "12345", Some(status)));
        assert_eq!(
            (r.method, r.url, r.body),
            (Method::Get, format!("{update}{hoqu_status}"), None)
        );
        assert!(r.headers.is_empty());
    }
    let customer = Event::attributed("c1", "customer_status", "hoqu", "ck")
        .amount("30.00")
        .customer("cust-77")
        .customer_status("deactivate")
        .parsed();
    let r = render(&d, &customer);
    assert_eq!(
        (r.method, r.url.as_str(), r.body),
        (
            Method::Get,
            "https://trackerdomain.com/advertiser_api_key/s2s?customer_id=cust-77&click_id=ck&price=30&status=deactivate",
            None
        )
    );
    // A new conversion goes by POST, a final status too.
    let mut lead = hoqu_event("order", "94583", Some("paid"));
    lead.customer = Some(serde_json::from_value(json!({"id": "cust-77"})).unwrap());
    let r = render(&d, &lead);
    assert_eq!(r.method, Method::Post);
    assert_eq!(r.url, "https://trackerdomain.com/advertiser_api_key");
}

#[test]
fn the_example_hoqu_destination_does_what_its_comments_say() {
    for method in ["get", "post"] {
        let text = example_with("destinations.1.hoqu.method", method);
        let config = load_with_secret(&text, "advertiser_api_key");
        let d = config
            .destinations
            .iter()
            .find(|d| d.name == "hoqu")
            .unwrap();
        // request_id is order.id, required: no other field stands in for it.
        let lead = hoqu_event("lead", "12345", None);
        let r = render(d, &lead);
        let request_id = match method {
            "get" => param(&r.url, "request_id"),
            _ => serde_json::from_str::<Value>(r.body.as_deref().unwrap()).unwrap()["request_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        };
        assert_eq!(
            (request_id.as_str(), lead.event_id.as_str()),
            ("12345", "12345-lead")
        );
        let mut without = lead.clone();
        without.order.as_mut().unwrap().id = None;
        let err = d.render(&without).unwrap_err().to_string();
        assert!(err.contains("order.id"), "{err}");
        // Status updates go by GET, whatever `method` says.
        let r = render(d, &hoqu_event("order_status", "12345", Some("paid")));
        assert_eq!(r.method, Method::Get, "method = {method}");
    }
}

#[test]
fn hoqu_hostile_values() {
    for method in ["get", "post"] {
        let d = hoqu(advertiser(method, "fixed"));
        for v in hostile() {
            let mut e = hoqu_event("lead", &v, None);
            e.attribution.as_mut().unwrap().click_id = v.clone();
            let r = render(&d, &e);
            if method == "get" {
                assert_eq!(param(&r.url, "click_id"), v);
                assert_eq!(param(&r.url, "request_id"), v);
                assert_eq!(params(&r.url).len(), 5, "{}", r.url);
            } else {
                let body: Value = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
                assert_eq!(body["click_id"], json!(v));
                assert_eq!(body.as_object().unwrap().len(), 5);
            }
        }
    }
}

// ---------------------------------------------------------------- publisher callbacks

const AWIN_TEMPLATE: &str = "http://www.publisher-domain.com/!!!merchantId!!!/pixel.php?clk=!!!clickRef!!!&cnv=!!!transactionId!!!&com=!!!commission!!!";

/// The document's publisher, called by `method`.
fn publisher(method: &str) -> Callback {
    Callback::new(AWIN_TEMPLATE)
        .method(method)
        .merchant_id("3661")
}

fn callback(options: Callback) -> DestinationConfig {
    destination(Dest::callback("publisher-45628", options))
}

/// The document's example data as an event.
fn awin_event() -> ConversionEvent {
    Event::awin_example().parsed()
}

/// `echo $_POST["AwinTransactionPush"];` from the document, verbatim.
const AWIN_PUSH: &str = r#"{"transactionId":"105956531","transactionDate":"2013-06-13 12:05:00","transactionCurrency":"GBP","transactionAmount":"26.09","affiliateId":"45628","merchantId":"3661","groupId":"0","bannerId":"0","clickRef":"LINKCMP2013-06","clickThroughTime":"2013-06-13 12:00:00","ip":"127.0.0.1","commission":"1.64","clickTime":"2013-06-13 12:00:00","url":"http:\/\/www.publisher-domain.com\/advertiser\/product\/","phrase":"Electronic music","searchEngine":"MSN Live Search","commissionGroups":[{"id":"47963","name":"CD","code":"CD","description":"CD"},{"id":"47965","name":"DVD","code":"DVD","description":"DVD"}],"products":[{"productName":"The Knife \u2013 Silent Shout","unitPrice":"5.55","skuType":"","skuCode":"B000EMSUQA","quantity":"2","category":"Electronic Music","cgId":"47963"},{"productName":"Sigur Ros - Heima","unitPrice":"14.99","skuType":"","skuCode":"B000EMSUQA","quantity":"1","category":"Music DVD","cgId":"47965"}]}"#;

fn push_of(r: &Request) -> String {
    let body = r.body.as_deref().unwrap();
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(fields.len(), 1);
    assert_eq!(fields[0].0, "AwinTransactionPush");
    fields[0].1.clone()
}

#[test]
fn callback_document_get_example() {
    let r = render(&callback(publisher("get")), &awin_event());
    assert_eq!(r.method, Method::Get);
    assert_eq!(
        r.url,
        "http://www.publisher-domain.com/3661/pixel.php?clk=LINKCMP2013-06&cnv=105956531&com=1.64"
    );
}

#[test]
fn callback_document_post_example() {
    let r = render(&callback(publisher("post")), &awin_event());
    assert_eq!(r.method, Method::Post);
    assert_eq!(
        r.headers.get("Content-Type").map(String::as_str),
        Some("application/x-www-form-urlencoded; charset=UTF-8")
    );
    assert_eq!(push_of(&r), AWIN_PUSH);
}

#[test]
fn callback_tracked_currency_and_options() {
    let mut e = awin_event();
    let o = e.order.as_mut().unwrap();
    o.tracked_currency = Some(serde_json::from_value(json!("EUR")).unwrap());
    o.tracked_amount = Some("34.04".parse().unwrap());
    e.attribution
        .as_mut()
        .unwrap()
        .params
        .insert("clickRef4".into(), "User82828211".into());
    let push: Value =
        serde_json::from_str(&push_of(&render(&callback(publisher("post")), &e))).unwrap();
    let keys: Vec<&str> = push
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert!(keys.contains(&"trackedCurrency") && keys.contains(&"clickRef4"));
    assert_eq!(push["trackedAmount"], "34.04");

    // Same currency: no tracked values.
    e.order.as_mut().unwrap().tracked_currency =
        Some(serde_json::from_value(json!("GBP")).unwrap());
    let push: Value =
        serde_json::from_str(&push_of(&render(&callback(publisher("post")), &e))).unwrap();
    assert!(push.get("trackedCurrency").is_none() && push.get("trackedAmount").is_none());

    // Product and click source data only when the publisher asked.
    let d = callback(publisher("post").data(false, false));
    let push: Value = serde_json::from_str(&push_of(&render(&d, &awin_event()))).unwrap();
    for k in ["products", "clickTime", "url", "phrase", "searchEngine"] {
        assert!(push.get(k).is_none(), "{k}");
    }
    assert!(push.get("commissionGroups").is_some() && push.get("clickThroughTime").is_some());
}

#[test]
fn callback_templates_are_checked_at_load() {
    let with = |url: &str| config_error(Dest::callback("p", Callback::new(url)));
    let e = with("http://p.example/x?c=!!!clickref!!!");
    assert!(e.contains("did you mean !!!clickRef!!!"), "{e}");
    let e = with("http://p.example/x?c=!!!ip!!!");
    assert!(e.contains("unknown placeholder !!!ip!!!"), "{e}");
    let e = with("http://p.example:8080/x");
    assert!(e.contains("port 8080") && e.contains("80 and 443"), "{e}");
    let e = with("http://!!!merchantId!!!.example/x");
    assert!(
        e.contains("not in the scheme, user, password, host or port"),
        "{e}"
    );
    let e = with("ftp://p.example/x");
    assert!(e.contains("http"), "{e}");
    let ok = Dest::callback("p", Callback::new("https://p.example:443/!!!products!!!"));
    assert!(ConfigBuilder::new().destination(ok).loads());
}

#[test]
fn callback_missing_values_empty_or_fail() {
    let d = callback(publisher("get"));
    let mut e = awin_event();
    e.attribution.as_mut().unwrap().params.remove("clickRef");
    assert!(render(&d, &e).url.contains("?clk=&cnv="));
    let d = destination(
        Dest::callback("p", Callback::new(AWIN_TEMPLATE).merchant_id("3661")).missing("fail"),
    );
    let err = d.render(&e).unwrap_err().to_string();
    assert!(err.contains("!!!clickRef!!!"), "{err}");
}

#[test]
fn callback_hostile_values() {
    let d = callback(publisher("get"));
    let post = callback(publisher("post"));
    for v in hostile().into_iter().chain([String::new()]) {
        let mut e = awin_event();
        e.attribution
            .as_mut()
            .unwrap()
            .params
            .insert("clickRef".into(), v.clone());
        let url = render(&d, &e).url;
        let expected = if v.is_empty() { "" } else { v.as_str() };
        assert_eq!(param(&url, "clk"), expected, "{url}");
        assert_eq!(params(&url).len(), 3, "{url}");
        assert!(url.starts_with("http://www.publisher-domain.com/3661/pixel.php?"));
        let push: Value = serde_json::from_str(&push_of(&render(&post, &e))).unwrap();
        if v.is_empty() {
            assert!(push.get("clickRef").is_none(), "empty values are left out");
        } else {
            assert_eq!(push["clickRef"], json!(v));
        }
    }
}

// ---------------------------------------------------------------- tracker postbacks

fn tracker(options: Tracker) -> DestinationConfig {
    destination(Dest::tracker("affiliate-1234567", options))
}

fn tracker_event(kind: &str, tracker: &str) -> ConversionEvent {
    Event::tracker_example(kind, tracker).parsed()
}

const REVSHARE: &str = "#affid#-#TransID#-#clickId#-#whateverId#";
const POSTBACK: &str = "https://affiliate.example/postback?aff=#affid#&tx=#TransID#&click=#clickId#&w=#whateverId#&kind=#conversion#&amount=#amount#";

#[test]
fn tracker_revshare_structure() {
    let d = tracker(Tracker::new(REVSHARE).url(POSTBACK));
    for kind in ["registration", "trial", "signup", "rebill"] {
        let r = render(&d, &tracker_event(kind, "trID_aff9-tx77-ck42-w1_trID"));
        assert_eq!(
            r.url,
            format!(
                "https://affiliate.example/postback?aff=aff9&tx=tx77&click=ck42&w=w1&kind={kind}&amount=29.90"
            )
        );
    }
}

#[test]
fn tracker_fixed_payout_structure_and_per_kind_urls() {
    // "TRACKER = your Id (in our case 1234567) on our plateform followed by all params".
    let d = tracker(
        Tracker::new("1234567_#affid#-#TransID#-#clickId#")
            .url_for(
                "signup",
                "https://a.example/sale?a=#affid#&t=#TransID#&c=#clickId#",
            )
            .url_for("registration", "https://a.example/reg?c=#clickId#")
            .url("https://a.example/other?c=#clickId#&k=#conversion#"),
    );
    let t = "trID_1234567_aff9-tx77-ck42_trID";
    assert_eq!(
        render(&d, &tracker_event("signup", t)).url,
        "https://a.example/sale?a=aff9&t=tx77&c=ck42"
    );
    assert_eq!(
        render(&d, &tracker_event("registration", t)).url,
        "https://a.example/reg?c=ck42"
    );
    assert_eq!(
        render(&d, &tracker_event("rebill", t)).url,
        "https://a.example/other?c=ck42&k=rebill"
    );
    // Another affiliate's tracker does not fit.
    let err = d
        .render(&tracker_event("signup", "trID_7654321_aff9-tx77-ck42_trID"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("does not fit") && err.contains("1234567_"),
        "{err}"
    );
}

#[test]
fn tracker_that_does_not_fit_is_a_render_error() {
    let d = tracker(Tracker::new(REVSHARE).url(POSTBACK));
    for (t, why) in [
        ("aff9-tx77-ck42-w1", "trID_"),
        ("trID_aff9-tx77_trID", "does not fit"),
        ("trID_aff9-tx77-ck42-w1", "trID_"),
    ] {
        let err = d
            .render(&tracker_event("signup", t))
            .unwrap_err()
            .to_string();
        assert!(err.contains(why), "{t}: {err}");
    }
    let mut e = tracker_event("signup", "x");
    e.attribution.as_mut().unwrap().tracker = None;
    assert!(
        d.render(&e)
            .unwrap_err()
            .to_string()
            .contains("attribution.tracker")
    );
}

#[test]
fn tracker_config_is_checked_at_load() {
    let with = |structure: &str, urls: fn(Tracker) -> Tracker| {
        config_error(Dest::tracker("t", urls(Tracker::new(structure))).networks(&["e"]))
    };
    assert!(with(REVSHARE, |t| t.url("https://a.example/?x=#AffId#")).contains("#AffId#"));
    assert!(with("#affid##clickId#", |t| t.url("https://a.example/")).contains("separator"));
    assert!(with("#amount#-#x#", |t| t.url("https://a.example/")).contains("event field"));
    assert!(
        with(REVSHARE, |t| t.url_for("signup", "https://a.example/"))
            .contains("no postback URL for registration")
    );
    assert!(with(REVSHARE, |t| t.url("mailto:x@example.com")).contains("http"));
    // A value from the affiliate's link can never pick the host.
    let e = with(REVSHARE, |t| t.url("https://#affid#/postback?c=#clickId#"));
    assert!(
        e.contains("not in the scheme, user, password, host or port"),
        "{e}"
    );
}

#[test]
fn tracker_hostile_values() {
    let d = tracker(Tracker::new(REVSHARE).url(POSTBACK));
    for v in hostile().into_iter().chain([String::new()]) {
        // Hyphens separate the affiliate's values; anything else stays inside one.
        let v = v.replace('-', "_");
        let t = format!("trID_{v}-tx-ck-w_trID");
        let url = render(&d, &tracker_event("signup", &t)).url;
        assert_eq!(param(&url, "aff"), v, "{url}");
        assert_eq!(params(&url).len(), 6, "{url}");
    }
}

// ---------------------------------------------------------------- sent as shown

/// What `render` shows, and dead letters keep, must be what the HTTP client sends, byte for
/// byte. Its URL parser removes `.` and `..` path segments (`%2e` counting as a dot), so a
/// value that makes one would send the request to another path than shown.
#[test]
fn dot_segment_values_are_refused_naming_the_placeholder() {
    let d = callback(publisher("get"));
    let t = tracker(
        Tracker::new("#affid#-#TransID#")
            .url("https://affiliate.example/#affid#/postback?tx=#TransID#"),
    );
    for v in [".", ".."] {
        let mut e = awin_event();
        e.attribution
            .as_mut()
            .unwrap()
            .params
            .insert("merchantId".into(), v.into());
        let tracked = tracker_event("signup", &format!("trID_{v}-tx77_trID"));
        for (d, e, name) in [(&d, &e, "!!!merchantId!!!"), (&t, &tracked, "#affid#")] {
            match d.render(e) {
                Ok(r) => panic!(
                    "{v:?} rendered {}, which the client sends as {}",
                    r.url,
                    url::Url::parse(&r.url).unwrap()
                ),
                Err(err) => assert!(err.to_string().contains(name), "{err}"),
            }
        }
    }
}

#[test]
fn dot_look_alikes_are_sent_intact() {
    let d = callback(publisher("get"));
    for v in [
        "%2E%2E", "%2e", ".%2E", "...", "..a", "a..", "a/..", "../x", ". .",
    ] {
        let mut e = awin_event();
        e.attribution
            .as_mut()
            .unwrap()
            .params
            .insert("merchantId".into(), v.into());
        let r = render(&d, &e);
        let sent = url::Url::parse(&r.url).unwrap();
        assert_eq!(sent.as_str(), r.url);
        let segment = sent.path_segments().unwrap().next().unwrap();
        assert_eq!(
            percent_encoding::percent_decode_str(segment).decode_utf8_lossy(),
            v
        );
        assert!(sent.path().ends_with("/pixel.php"), "{}", r.url);
    }
}

#[test]
fn url_templates_are_kept_as_the_client_sends_them() {
    // The template's own text is stored as the client will send it: render shows what goes
    // out, not what the config says.
    let d = destination(Dest::callback(
        "p",
        Callback::new(
            "HTTPS://WWW.Publisher-Domain.com:443/a b/!!!clickRef!!!?c=!!!transactionId!!!&d=x y",
        ),
    ));
    assert_eq!(
        render(&d, &awin_event()).url,
        "https://www.publisher-domain.com/a%20b/LINKCMP2013-06?c=105956531&d=x%20y"
    );
    let d = destination(powerspace().base_url("HTTPS://A.PWSpace.com:443"));
    assert_eq!(
        render(&d, &ps_event("lead", "c", None)).url,
        "https://a.pwspace.com/ld?qci=c"
    );
    let d = destination(Dest::hoqu(
        "hoqu",
        "https://TrackerDomain.com/",
        Hoqu::new("advertiser_api_key", "fixed").action("lead"),
    ));
    assert!(
        render(&d, &hoqu_event("lead", "1", None))
            .url
            .starts_with("https://trackerdomain.com/advertiser_api_key/s2s?click_id=")
    );
}

#[test]
fn url_templates_the_client_would_change_are_refused_at_load() {
    let callback = |url: &str| config_error(Dest::callback("p", Callback::new(url)));
    let e = callback("http://p.example/x?c=!!!clickRef!!!#top");
    assert!(e.contains("callback.url") && e.contains("fragment"), "{e}");
    let e = callback("http://p.example/!!!clickRef!!!/../x");
    assert!(
        e.contains("callback.url") && e.contains("!!!clickRef!!!"),
        "{e}"
    );
    let e = config_error(
        Dest::tracker(
            "t",
            Tracker::new("#affid#").url("https://a.example/p?a=#affid#&x=1#frag"),
        )
        .networks(&["e"]),
    );
    assert!(e.contains("tracker.url") && e.contains("fragment"), "{e}");
    // An API key of `.` or `..` would be removed from the path; the error does not repeat it.
    for key in [".", ".."] {
        let e = config_error(Dest::hoqu(
            "h",
            "https://trackerdomain.com",
            Hoqu::new(key, "fixed"),
        ));
        assert!(
            e.contains("hoqu.api_key") && !e.contains(&format!("\"{key}\"")),
            "{e}"
        );
    }
}
