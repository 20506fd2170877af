//! Presets: each loads and asks for its settings, which stand only where their kind allows.

use super::{load, ok, order};

#[test]
fn every_preset_loads_and_asks_for_its_settings() {
    for (name, _) in super::preset::PRESETS {
        let p = super::preset::get(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!p.docs.is_empty() && !p.description.is_empty(), "{name}");
        for (k, setting) in &p.settings {
            assert!(!setting.about.is_empty(), "{name}.{k}");
            if let Some(d) = &setting.default {
                setting
                    .kind
                    .check(d)
                    .unwrap_or_else(|e| panic!("{name}.{k}: {e}"));
            }
        }
        let e = load(&format!("[destinations.template]\npreset = \"{name}\"\n")).unwrap_err();
        assert!(
            e.contains("template.settings.") && e.contains("required by preset"),
            "{name}: {e}"
        );
    }
    let e = load(
        "[destinations.template]\npreset = \"voluum\"\nsettings = { tracking_domain = \"https://{click_id}.example\" }\n",
    )
    .unwrap_err();
    assert!(e.contains("not a template"), "{e}");
    let e = load("[destinations.template]\npreset = \"voluum\"\nsettings = { domain = \"x\" }\n")
        .unwrap_err();
    assert!(
        e.contains("has no such setting (it has: tracking_domain)"),
        "{e}"
    );
}

#[test]
fn preset_settings_stand_only_where_their_kind_allows() {
    let keitaro = "[destinations.template]\npreset = \"keitaro\"\nsettings = { tracker = \"https://t.example.com\", postback_key = \"k\" }\n";
    let e = load(&format!(
        "{keitaro}url = \"https://x.example/<<tracker>>\"\n"
    ))
    .unwrap_err();
    assert!(
        e.contains("template.url`: setting tracker is an origin (where the tracker is): it may only begin the URL"),
        "{e}"
    );
    let e = load(&format!("{keitaro}url = \"<<postback_key>>/x\"\n")).unwrap_err();
    assert!(e.contains("setting postback_key is a path segment"), "{e}");
    // A segment stands as it is in the path or the query.
    let r = ok(
        &format!("{keitaro}url = \"<<tracker>>/a/<<postback_key>>?k=<<postback_key>>\"\n"),
        &order(),
    );
    assert_eq!(r.url, "https://t.example.com/a/k?k=k");
    let everflow = "[destinations.template]\npreset = \"everflow\"\nsettings = { tracking_domain = \"https://t.example.com\", network_id = \"a b%&\" }\n";
    let e = load(&format!(
        "{everflow}url = \"<<tracking_domain>>/<<network_id>>\"\n"
    ))
    .unwrap_err();
    assert!(
        e.contains("template.url`: setting network_id is a value, for the query, a header or a body, not the URL's path"),
        "{e}"
    );
    // A value is written for where it stands: encoded in the query and a header, as it is
    // in a body, whose serializer writes it.
    let r = ok(
        &format!(
            "{everflow}method = \"POST\"\nurl = \"<<tracking_domain>>/?n=<<network_id>>\"\nheaders = {{ X-Net = \"<<network_id>>\" }}\nbody = {{ json = {{ n = \"<<network_id>>\" }} }}\n"
        ),
        &order(),
    );
    assert_eq!(r.url, "https://t.example.com/?n=a%20b%25%26");
    assert_eq!(r.headers["X-Net"], "a b%25&");
    assert_eq!(r.body.as_deref(), Some(r#"{"n":"a b%&"}"#));
    // An optional setting not given leaves out its query parameter, and only a query
    // parameter can be left out.
    let r = ok(
        &format!("{everflow}url = \"<<tracking_domain>>/?t=<<verification_token>>&n=1\"\n"),
        &order(),
    );
    assert_eq!(r.url, "https://t.example.com/?n=1");
    let r = ok(
        &format!("{everflow}url = \"<<tracking_domain>>/?t=<<verification_token>>\"\n"),
        &order(),
    );
    assert_eq!(r.url, "https://t.example.com/");
    let e = load(&format!(
        "{everflow}headers = {{ X-T = \"<<verification_token>>\" }}\n"
    ))
    .unwrap_err();
    assert!(
        e.contains("template.headers.X-T`: setting verification_token is optional: it may only stand in the URL's query"),
        "{e}"
    );
    // A default stands for a setting not given.
    let binom = "[destinations.template]\npreset = \"binom\"\nsettings = { tracker = \"https://t.example.com\" }\nurl = \"<<tracker>>/<<path>>\"\n";
    assert_eq!(ok(binom, &order()).url, "https://t.example.com/click.php");
}
