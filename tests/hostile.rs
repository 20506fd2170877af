//! Hostile input at scale: arbitrary bytes, arbitrary JSON and arbitrary valid-shaped events
//! through parsing, routing and every renderer. Never a panic; either a request to the
//! destination's own host or a reasoned rejection.

mod common;

use std::sync::OnceLock;

use common::config::load_with_secret;
use common::{Callback, ConfigBuilder, Dest, Tracker};
use postback_relay::config::Config;
use postback_relay::contract::event;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::{Value, json};

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let text = std::fs::read_to_string("tests/fixtures/all-kinds.toml").unwrap();
        load_with_secret(&text, "hostile-api-key")
    })
}

const HOSTS: [&str; 6] = [
    "a.pwspace.com",
    "trackerdomain.com",
    "www.publisher-domain.com",
    "tracking.affiliate.example",
    "hooks.partner.example",
    "tracker.example.com",
];

/// Every destination the event matches: render, and check what came out. Returns the
/// destinations that rendered a request.
fn route_and_render(body: &[u8]) -> Result<Vec<String>, TestCaseError> {
    let Ok(e) = event::parse(body, 1 << 20) else {
        return Ok(Vec::new());
    };
    let mut rendered = Vec::new();
    for d in config().destinations.iter().filter(|d| d.matches(&e)) {
        match d.render(&e) {
            Ok(r) => {
                let url = url::Url::parse(&r.url)
                    .map_err(|err| TestCaseError::fail(format!("{err}: {}", r.url)))?;
                // Shown is sent: the client's parser keeps the URL as it is.
                prop_assert_eq!(url.as_str(), r.url.as_str());
                prop_assert!(
                    HOSTS.contains(&url.host_str().unwrap_or("")),
                    "{} went elsewhere",
                    r.url
                );
                prop_assert!(!r.redacted().url.contains("hostile-api-key"));
                let shown = r.shown(&config().secrets);
                prop_assert!(
                    !format!("{shown:?}").contains("hostile-api-key"),
                    "a secret shown: {shown:?}"
                );
                if let Some(b) = &r.body
                    && r.headers
                        .get("Content-Type")
                        .is_some_and(|c| c == "application/json")
                {
                    prop_assert!(
                        serde_json::from_str::<Value>(b).is_ok(),
                        "a JSON body parses"
                    );
                }
                rendered.push(d.name.clone());
            }
            // A reasoned rejection is fine; its message must say something.
            Err(err) => prop_assert!(!err.to_string().is_empty()),
        }
    }
    Ok(rendered)
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Strings that try to break out: reserved URL characters, placeholders of every syntax,
/// encodings, Unicode, control characters, long values.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,64}",
        "[&=#?/%+ !{}-]{0,16}",
        Just("!!!commission!!!".to_owned()),
        Just("#affid#".to_owned()),
        Just("{event_id}".to_owned()),
        Just("%41%ZZ%".to_owned()),
        Just("Österreich 🎉".to_owned()),
        Just("a\u{0}b\u{7f}".to_owned()),
        "x{1000,2100}",
    ]
}

/// Mostly values an event accepts (printable, with every URL-reserved character and
/// Unicode), sometimes anything at all.
fn value_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[!-~][ -~]{0,40}",
        2 => "[!-~\u{e9}\u{d6}\u{1f389}]{1,12}",
        1 => hostile_text(),
    ]
}

fn money() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => "[0-9]{1,10}(\\.[0-9]{1,4})?".prop_map(Value::String),
        1 => hostile_text().prop_map(Value::String),
        2 => (0u32..100_000).prop_map(|n| json!(n)),
    ]
}

fn shaped_event() -> impl Strategy<Value = Value> {
    (
        (
            value_text(),
            prop::sample::select(vec![
                "lead", "order", "order_status", "registration", "trial", "signup", "rebill", "customer_status",
            ]),
            prop::sample::select(vec!["powerspace", "hoqu", "awin", "espace-plus", "template", "other"]),
            value_text(),
            prop::option::of(value_text()),
            prop::option::of(prop_oneof![
                3 => ("[a-z0-9]{1,6}", "[a-z0-9]{1,6}", value_text()).prop_map(|(a, b, c)| format!("trID_1234567_{a}-{b}-{c}_trID")),
                1 => value_text().prop_map(|t| format!("trID_1234567_{t}_trID")),
            ]),
        ),
        (
            prop::option::of(value_text()),
            money(),
            prop::option::of(money()),
            prop::option::of(prop::sample::select(vec!["paid", "PENDING", "refunded", "on its way", ""])),
            prop::collection::btree_map("[a-zA-Z0-9]{1,8}", value_text(), 0..4),
            prop::option::of(prop::sample::select(vec!["activate", "deactivate", "paused"])),
            prop::option::of(value_text()),
        ),
    )
        .prop_map(|((id, kind, network, click, publisher, tracker), (order_id, amount, shipping, status, params, cstatus, action))| {
            let mut order = json!({ "amount": amount, "currency": "EUR", "products": [{"n": id.clone(), "q": 2}] });
            if let Some(o) = order_id {
                order["id"] = json!(o);
            }
            if let Some(s) = shipping {
                order["shipping"] = s;
            }
            if let Some(s) = status {
                order["status"] = json!(s);
            }
            let mut attribution = json!({ "network": network, "click_id": click, "params": params });
            if let Some(p) = publisher {
                attribution["publisher_id"] = json!(p);
            }
            if let Some(t) = tracker {
                attribution["tracker"] = json!(t);
            }
            let mut e = json!({
                "event_id": id, "type": kind, "occurred_at": "2026-11-22T10:00:00+02:00",
                "attribution": attribution, "order": order,
                "customer": { "id": "c-1" }
            });
            if let Some(s) = cstatus {
                e["customer"]["status"] = json!(s);
            }
            if let Some(a) = action {
                e["action"] = json!(a);
            }
            e
        })
}

/// Destinations with a placeholder in every position of a URL: a whole path segment, a
/// segment with text before or after, two in one segment, the query.
fn every_position() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        ConfigBuilder::new()
            .destination(Dest::callback(
                "publisher",
                Callback::new("http://www.publisher-domain.com/!!!merchantId!!!/!!!clickRef!!!/a!!!clickRef2!!!/!!!clickRef3!!!b/!!!clickRef4!!!.!!!clickRef5!!!/!!!clickRef6!!!!!!bannerId!!!/x?p=!!!phrase!!!&g=!!!groupId!!!"),
            ))
            .destination(Dest::tracker(
                "affiliate",
                Tracker::new("#affid#-#TransID#-#clickId#").url("https://tracking.affiliate.example/#affid#/#TransID#./#order_id#/x?c=#clickId#"),
            ))
            .load()
    })
}

/// Values aimed at URL normalization: dot segments and their encoded look-alikes, and the
/// rest of the hostile text.
fn path_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["", ".", "..", "...", "%2e", "%2E%2E", ".%2E", "%2e.", "./", "/..", "\\..", "a", "~"]).prop_map(str::to_owned),
        2 => "[.%2eE/\\\\]{0,4}",
        1 => hostile_text().prop_filter("no separator, printable", |t| !t.contains('-') && !t.chars().any(char::is_control) && t.chars().count() <= 4096),
    ]
}

/// Renders `event` for each destination of [`every_position`] it matches: what is rendered
/// is what the client sends, and a refusal names the placeholder whose value it is.
fn sent_as_shown(event: &Value, values: &[String]) -> Result<u32, TestCaseError> {
    let Ok(e) = event::parse(&serde_json::to_vec(event).unwrap(), 1 << 20) else {
        return Ok(0);
    };
    let mut sent = 0;
    for d in every_position()
        .destinations
        .iter()
        .filter(|d| d.matches(&e))
    {
        match d.render(&e) {
            Ok(r) => {
                let url = url::Url::parse(&r.url)
                    .map_err(|err| TestCaseError::fail(format!("{err}: {}", r.url)))?;
                prop_assert_eq!(url.as_str(), r.url.as_str());
                prop_assert!(url.fragment().is_none());
                sent += 1;
            }
            Err(err) => {
                // Only a value of dots (or nothing, next to a dot in the template) makes a
                // dot segment; the refusal says which placeholder it is.
                let msg = err.to_string();
                prop_assert!(values.iter().any(|v| v.chars().all(|c| c == '.')), "{msg}");
                prop_assert!(
                    msg.contains("placeholder !!!") || msg.contains("placeholder #"),
                    "{msg}"
                );
            }
        }
    }
    Ok(sent)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn callback_urls_are_sent_as_shown(values in prop::collection::vec(path_text(), 10)) {
        let names = ["merchantId", "clickRef", "clickRef2", "clickRef3", "clickRef4", "clickRef5", "clickRef6", "bannerId", "phrase", "groupId"];
        let params: serde_json::Map<String, Value> = names.iter().zip(&values).map(|(k, v)| (k.to_string(), json!(v))).collect();
        let e = json!({
            "event_id": "e", "type": "order", "occurred_at": "2026-11-22T10:00:00Z",
            "attribution": { "network": "awin", "click_id": "c", "params": params }
        });
        sent_as_shown(&e, &values)?;
    }

    #[test]
    fn tracker_urls_are_sent_as_shown(values in prop::collection::vec(path_text(), 4)) {
        let e = json!({
            "event_id": "e", "type": "signup", "occurred_at": "2026-11-22T10:00:00Z",
            "attribution": { "network": "espace-plus", "click_id": "c", "tracker": format!("trID_{}-{}-{}_trID", values[0], values[1], values[2]) },
            "order": { "id": values[3] }
        });
        sent_as_shown(&e, &values)?;
    }

    #[test]
    fn arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        route_and_render(&body)?;
    }

    #[test]
    fn arbitrary_json(v in any_json()) {
        route_and_render(&serde_json::to_vec(&v).unwrap())?;
    }

    #[test]
    fn arbitrary_valid_shaped_events(v in shaped_event()) {
        route_and_render(&serde_json::to_vec(&v).unwrap())?;
    }

    #[test]
    fn values_arrive_intact_and_inert(click in hostile_text().prop_filter("a valid click id", |c| {
        !c.trim().is_empty() && !c.chars().any(char::is_control) && c.chars().count() <= 4096
    })) {
        // Whatever the click ID holds, Powerspace receives exactly it as qci, and nothing else.
        let body = serde_json::to_vec(&json!({
            "event_id": "e", "type": "lead", "occurred_at": "2026-11-22T10:00:00Z",
            "attribution": { "network": "powerspace", "click_id": click }
        })).unwrap();
        let e = event::parse(&body, 1 << 20).unwrap();
        let r = config().destinations[0].render(&e).unwrap();
        let pairs: Vec<(String, String)> = url::Url::parse(&r.url).unwrap().query_pairs().into_owned().collect();
        prop_assert_eq!(pairs, vec![("qci".to_owned(), click)]);
    }
}

/// A template destination with one value in every position: a path segment, a segment
/// with text around it, the query, a header, the JSON body, the form body.
fn template_everywhere() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let json = Dest::template(
            "json",
            "template",
            r#"
syntax = "brace"
method = "POST"
url = "https://hooks.partner.example/in/{click_id}/a{click_id}b?c={click_id}&fixed=1"
headers = { "X-Click" = "{click_id}" }
body = { json = { click = "{click_id}", nested = { list = ["{click_id}"] } } }
"#,
        );
        let form = Dest::template(
            "form",
            "template",
            r##"
syntax = "hash"
method = "PUT"
url = "https://hooks.partner.example/f?c=#click_id#"
body = { form = { click = "#click_id#", fixed = "1" } }
"##,
        );
        ConfigBuilder::new()
            .destination(json)
            .destination(form)
            .load()
    })
}

fn percent_decoded(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .unwrap()
        .into_owned()
}

/// Renders a click ID through [`template_everywhere`]: it arrives as it is in every position,
/// and adds no segment, parameter, header or field. `None` when the event refuses it.
fn template_positions(click: &str) -> Result<Option<()>, TestCaseError> {
    let body = serde_json::to_vec(&json!({
        "event_id": "e", "type": "lead", "occurred_at": "2026-11-22T10:00:00Z",
        "attribution": { "network": "template", "click_id": click }
    }))
    .unwrap();
    let Ok(e) = event::parse(&body, 1 << 20) else {
        return Ok(None);
    };
    let [json_dest, form_dest] = &template_everywhere().destinations[..] else {
        unreachable!()
    };
    match json_dest.render(&e) {
        Ok(r) => {
            let u = url::Url::parse(&r.url).unwrap();
            prop_assert_eq!(u.host_str(), Some("hooks.partner.example"));
            let segments: Vec<&str> = u.path_segments().unwrap().collect();
            prop_assert_eq!(segments.len(), 3, "{}", r.url);
            prop_assert_eq!(percent_decoded(segments[1]), click);
            prop_assert_eq!(percent_decoded(segments[2]), format!("a{click}b"));
            let pairs: Vec<(String, String)> = u.query_pairs().into_owned().collect();
            prop_assert_eq!(
                pairs,
                vec![
                    ("c".to_owned(), click.to_owned()),
                    ("fixed".into(), "1".into())
                ]
            );
            prop_assert_eq!(percent_decoded(&r.headers["X-Click"]), click);
            prop_assert_eq!(r.headers.len(), 2, "{:?}", r.headers);
            let b: Value = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
            prop_assert_eq!(b, json!({ "click": click, "nested": { "list": [click] } }));
        }
        // Only a value of dots makes a dot segment, and the refusal names it.
        Err(err) => {
            prop_assert!(click.chars().all(|c| c == '.'), "{}", err);
            prop_assert!(err.to_string().contains("{click_id}"), "{}", err);
        }
    }
    let r = form_dest
        .render(&e)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let fields: Vec<(String, String)> =
        url::form_urlencoded::parse(r.body.as_deref().unwrap().as_bytes())
            .into_owned()
            .collect();
    prop_assert_eq!(
        fields,
        vec![
            ("click".to_owned(), click.to_owned()),
            ("fixed".into(), "1".into())
        ]
    );
    Ok(Some(()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn template_values_arrive_intact_in_every_position(click in prop_oneof![
        4 => value_text(),
        1 => path_text(),
    ]) {
        template_positions(&click)?;
    }
}

#[test]
fn the_position_strategy_reaches_sending_and_refusing() {
    // Guard against strategies that only ever refuse, or never make a dot segment.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut sent, mut tries) = (0, 0);
    for _ in 0..500 {
        let values = prop::collection::vec(path_text(), 4)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let e = json!({
            "event_id": "e", "type": "signup", "occurred_at": "2026-11-22T10:00:00Z",
            "attribution": { "network": "espace-plus", "click_id": "c", "tracker": format!("trID_{}-{}-{}_trID", values[0], values[1], values[2]) },
            "order": { "id": values[3] }
        });
        if event::parse(&serde_json::to_vec(&e).unwrap(), 1 << 20).is_ok() {
            tries += 1;
            sent += sent_as_shown(&e, &values).unwrap();
        }
    }
    assert!(sent >= 50 && tries - sent >= 50, "sent {sent} of {tries}");
}

#[test]
fn the_shaped_strategy_reaches_every_renderer() {
    // Guard against a strategy that only ever produces rejections.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut rendered = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..2000 {
        let v = shaped_event().new_tree(&mut runner).unwrap().current();
        for d in route_and_render(&serde_json::to_vec(&v).unwrap()).unwrap() {
            *rendered.entry(d).or_default() += 1;
        }
    }
    for d in &config().destinations {
        assert!(
            rendered.get(&d.name).copied().unwrap_or(0) >= 5,
            "{} barely reached: {rendered:?}",
            d.name
        );
    }
}
