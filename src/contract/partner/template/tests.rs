//! Tests of `template`.

use super::*;
use crate::contract::partner::RenderError;

const KNOWN: &[&str] = &["clickRef", "commission", "merchantId"];

fn values(name: &str) -> Option<String> {
    match name {
        "clickRef" => Some("a&b=c#d !!!commission!!!".into()),
        "commission" => Some("1.64".into()),
        _ => None,
    }
}

#[test]
fn fills_and_encodes_each_value_once() {
    let t = Template::parse(
        "http://x/!!!merchantId!!!/p?clk=!!!clickRef!!!&com=!!!commission!!!",
        Syntax::Bang,
        KNOWN,
    )
    .unwrap();
    assert_eq!(
        t.render(&values, Missing::Empty).unwrap(),
        "http://x//p?clk=a%26b%3Dc%23d%20%21%21%21commission%21%21%21&com=1.64"
    );
    assert_eq!(
        t.render(&values, Missing::Fail),
        Err(MissingValue("!!!merchantId!!!".into()))
    );
    let encoded = |_: &str| Some("100%25 ok".to_owned());
    let t = Template::parse("{clickRef}", Syntax::Brace, KNOWN).unwrap();
    assert_eq!(t.render(&encoded, Missing::Fail).unwrap(), "100%2525%20ok");
}

#[test]
fn url_values_the_client_would_rewrite_are_refused_by_name() {
    let t = Template::parse(
        "http://x/!!!merchantId!!!/p/!!!clickRef!!!.!!!commission!!!?c=!!!clickRef!!!",
        Syntax::Bang,
        KNOWN,
    )
    .unwrap();
    let with = |m: &'static str, c: &'static str, k: &'static str| {
        move |n: &str| {
            let v = match n {
                "merchantId" => m,
                "clickRef" => c,
                _ => k,
            };
            Some(v.to_owned())
        }
    };
    let url = |m, c, k| t.render_url(&with(m, c, k), Missing::Fail);
    assert_eq!(url("3661", "a", "1").unwrap(), "http://x/3661/p/a.1?c=a");
    // Dots that are not a whole segment, or in the query, are data.
    assert_eq!(url("...", "..", "1").unwrap(), "http://x/.../p/...1?c=..");
    let refused = |m, c, k| match url(m, c, k) {
        Err(RenderError::RewrittenValue(v)) => (v.placeholder, v.value),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        refused("..", "a", "1"),
        ("!!!merchantId!!!".into(), "..".into())
    );
    assert_eq!(
        refused(".", "a", "1"),
        ("!!!merchantId!!!".into(), ".".into())
    );
    // Two values make a dot segment together: the one that completes it is named.
    assert_eq!(
        refused("3661", ".", ""),
        ("!!!commission!!!".into(), "".into())
    );
    // Several at once: the first.
    assert_eq!(
        refused("..", ".", ""),
        ("!!!merchantId!!!".into(), "..".into())
    );
    let long = ".".repeat(100);
    let t = Template::parse("http://x/a{clickRef}", Syntax::Brace, KNOWN).unwrap();
    assert!(t.render_url(&|_| Some(long.clone()), Missing::Fail).is_ok());
}

#[test]
fn url_templates_are_stored_as_the_client_sends_them() {
    let t = Template::parse(
        "HTTP://X.Example:80/a b/!!!clickRef!!!/./?q=!!!clickRef!!!'",
        Syntax::Bang,
        KNOWN,
    )
    .unwrap()
    .as_sent()
    .unwrap();
    assert_eq!(
        t.render_url(&|_| Some("v".into()), Missing::Fail).unwrap(),
        "http://x.example/a%20b/v/?q=v%27"
    );
    assert_eq!(t.placeholders().count(), 2);
    let as_sent = |text: &str| {
        Template::parse(text, Syntax::Hash, &["*"])
            .unwrap()
            .as_sent()
            .map(|t| t.render(&|n| Some(n.to_owned()), Missing::Fail).unwrap())
    };
    assert_eq!(as_sent("http://x/#a#/#b#").unwrap(), "http://x/a/b");
    assert!(
        as_sent("http://x/?c=#a#&d=1#top")
            .unwrap_err()
            .contains("fragment")
    );
    let e = as_sent("http://x/#a#/../#b#").unwrap_err();
    assert!(
        e.contains("without #a#") && e.contains("http://x/#b#"),
        "{e}"
    );
    assert!(as_sent("not a url #a#").unwrap_err().contains("not a URL"));
}

#[test]
fn unknown_or_miscased_placeholders_are_refused() {
    let e = Template::parse("?c=!!!clickref!!!", Syntax::Bang, KNOWN).unwrap_err();
    assert!(e.to_string().contains("did you mean !!!clickRef!!!"), "{e}");
    let e = Template::parse("?c=#nope#", Syntax::Hash, KNOWN).unwrap_err();
    assert!(
        e.to_string().contains("#nope#") && e.to_string().contains("known"),
        "{e}"
    );
}

#[test]
fn prefixed_names() {
    let known = ["event_id", "params.*"];
    let t = Template::parse("{params.sub1}-{event_id}", Syntax::Brace, &known).unwrap();
    assert_eq!(
        t.placeholders().collect::<Vec<_>>(),
        ["params.sub1", "event_id"]
    );
    assert!(Template::parse("{params.}", Syntax::Brace, &known).is_err());
    assert!(Template::parse("{paramsx}", Syntax::Brace, &known).is_err());
}

#[test]
fn mistyped_bang_placeholders_are_refused() {
    for t in ["?c=!!!click Ref!!!", "?c=!!!clickRef-2!!!"] {
        assert!(Template::parse(t, Syntax::Bang, KNOWN).is_err(), "{t}");
    }
    // A lone "!!!" is text.
    assert!(Template::parse("?c=wow!!!", Syntax::Bang, KNOWN).is_ok());
}

#[test]
fn text_that_is_not_a_placeholder_stays_as_written() {
    // A fragment, HTML entities and lone delimiters are text.
    let t = Template::parse(
        "http://x/?a=1&amp;b=2#top!! {not a name}",
        Syntax::Hash,
        KNOWN,
    )
    .unwrap();
    assert_eq!(t.placeholders().count(), 0);
    assert_eq!(
        t.render(&values, Missing::Fail).unwrap(),
        "http://x/?a=1&amp;b=2#top!! {not a name}"
    );
    let t = Template::parse("#commission#", Syntax::Hash, KNOWN).unwrap();
    assert_eq!(t.placeholders().collect::<Vec<_>>(), ["commission"]);
}

#[test]
fn extracts_values_from_structures() {
    let known = ["*"];
    let s = Template::parse(
        "#affid#-#TransID#-#clickId#-#whateverId#",
        Syntax::Hash,
        &known,
    )
    .unwrap();
    assert_eq!(
        s.extract("aff9-tx77-ck42-w1").unwrap(),
        vec![
            ("affid".into(), "aff9".into()),
            ("TransID".into(), "tx77".into()),
            ("clickId".into(), "ck42".into()),
            ("whateverId".into(), "w1".into())
        ]
    );
    // The last placeholder takes the rest, separators included.
    assert_eq!(s.extract("a-b-c-d-e").unwrap()[3].1, "d-e");
    assert!(s.extract("a-b").is_err());
    let fixed = Template::parse("1234567_#affid#", Syntax::Hash, &known).unwrap();
    assert_eq!(
        fixed.extract("1234567_x").unwrap(),
        vec![("affid".into(), "x".into())]
    );
    assert!(fixed.extract("7654321_x").is_err());
    let adjacent = Template::parse("#affid##clickId#", Syntax::Hash, &known).unwrap();
    assert!(adjacent.has_adjacent_placeholders());
}

#[test]
fn malformed_unclosed_and_foreign_placeholders_are_refused_with_a_suggestion() {
    let known = ["click_id", "order_id", "amount", "tax", "params.*"];
    let refused = |text: &str, syntax: Syntax| match Template::parse(text, syntax, &known) {
        Err(e) => e.to_string(),
        Ok(t) => panic!("{text:?} was taken: {t:?}"),
    };
    let cases: &[(&str, Syntax, &str)] = &[
        // Mustache's double braces would send the value in braces.
        (
            "?c={{click_id}}",
            Syntax::Brace,
            "malformed placeholder {{click_id}} at character 4 (did you mean {click_id}?)",
        ),
        (
            "?c=[[click_id]]",
            Syntax::Bracket,
            "malformed placeholder [[click_id]] at character 4 (did you mean [click_id]?)",
        ),
        (
            "?c={click-id}",
            Syntax::Brace,
            "malformed placeholder {click-id} at character 4 (did you mean {click_id}?)",
        ),
        (
            "?c={ click_id }",
            Syntax::Brace,
            "malformed placeholder { click_id } at character 4 (did you mean {click_id}?)",
        ),
        // A Cyrillic "с" (U+0441) in place of the Latin "c".
        (
            "?c={\u{441}lick_id}",
            Syntax::Brace,
            "malformed placeholder {\u{441}lick_id} at character 4 (did you mean {click_id}?)",
        ),
        (
            "?c={clik-id}",
            Syntax::Brace,
            "malformed placeholder {clik-id} at character 4 (did you mean {click_id}?)",
        ),
        (
            "?c={click_id",
            Syntax::Brace,
            "unclosed placeholder {click_id at character 4 (did you mean {click_id}?)",
        ),
        (
            "?c={click_id&o={order_id}",
            Syntax::Brace,
            "unclosed placeholder {click_id at character 4 (did you mean {click_id}?)",
        ),
        (
            "?c={click_id {order_id}",
            Syntax::Brace,
            "unclosed placeholder {click_id at character 4 (did you mean {click_id}?)",
        ),
        (
            "?c=!!!click_id!!",
            Syntax::Bang,
            "unclosed placeholder !!!click_id at character 4 (did you mean !!!click_id!!!?)",
        ),
        (
            "?c=!!!click_id!!&o=!!!order_id!!!",
            Syntax::Bang,
            "unclosed placeholder !!!click_id at character 4 (did you mean !!!click_id!!!?)",
        ),
        (
            "?c=#click_id",
            Syntax::Hash,
            "unclosed placeholder #click_id at character 4 (did you mean #click_id#?)",
        ),
        (
            "?c={click_id}",
            Syntax::Bracket,
            "placeholder {click_id} at character 4 is not in this template's syntax (did you mean [click_id]?)",
        ),
        (
            "?c=!!!click_id!!!",
            Syntax::Brace,
            "placeholder !!!click_id!!! at character 4 is not in this template's syntax (did you mean {click_id}?)",
        ),
        (
            "é=#order_id#",
            Syntax::Brace,
            "placeholder #order_id# at character 3 is not in this template's syntax (did you mean {order_id}?)",
        ),
        (
            "?c=[click_id]",
            Syntax::Hash,
            "placeholder [click_id] at character 4 is not in this template's syntax (did you mean #click_id#?)",
        ),
        (
            "?s={params.sub1}",
            Syntax::Bang,
            "placeholder {params.sub1} at character 4 is not in this template's syntax (did you mean !!!params.sub1!!!?)",
        ),
    ];
    for (text, syntax, want) in cases {
        assert_eq!(refused(text, *syntax), *want, "{text:?}");
    }
    // Every kind's syntax alike: a publisher callback's URL, say.
    for (text, want) in [
        (
            "?c=!!!clickRef!!",
            "unclosed placeholder !!!clickRef at character 4",
        ),
        (
            "?c=!!!click Ref!!!",
            "malformed placeholder !!!click Ref!!!",
        ),
        (
            "?c={clickRef}",
            "placeholder {clickRef} at character 4 is not",
        ),
    ] {
        let e = Template::parse(text, Syntax::Bang, KNOWN)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(want), "{text:?}: {e}");
    }
    // check-config's pointed line: the carets under the whole malformed placeholder.
    let e = Template::parse("?c={ click_id }&x=1", Syntax::Brace, &known).unwrap_err();
    assert_eq!(
        e.pointed("?c={ click_id }&x=1"),
        format!(
            "{e}\n    ?c={{ click_id }}&x=1\n       {}",
            "^".repeat("{ click_id }".len())
        )
    );
}

#[test]
fn text_that_only_looks_like_a_placeholder_stays_text() {
    let known = ["click_id", "order_id", "amount", "tax", "type", "status"];
    for (text, syntax) in [
        // PHP-style array keys in a query, beside brace placeholders.
        ("?data[order_id]={order_id}&d[a][click_id]=1", Syntax::Brace),
        ("?data[order_id]=#order_id#", Syntax::Hash),
        // Braces in a text body: JSON, code, an empty pair.
        (r#"{"click": "{click_id}", "n": {"a": 1}}"#, Syntax::Brace),
        ("if (x) { return {order_id}; } {} { }", Syntax::Brace),
        ("{status: ok} {a b}", Syntax::Brace),
        // `#` in text, under hash and brace.
        ("order #12 #tag, a #type of thing: #order_id#", Syntax::Hash),
        ("#fff #1 {order_id}", Syntax::Brace),
        ("wow!!! and more", Syntax::Bang),
        // Another syntax's delimiters around what is no macro.
        ("{nope} [x] !!!z!!!", Syntax::Hash),
        ("http://[::1]:8080/p?c={click_id}", Syntax::Brace),
    ] {
        let t = Template::parse(text, syntax, &known);
        assert!(t.is_ok(), "{text:?}: {t:?}");
    }
    // A structure defines its own names: nothing is a near miss of them.
    assert!(Template::parse("#a-b# #c", Syntax::Hash, &["*"]).is_ok());
}
