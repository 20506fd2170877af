//! README's template destination examples load as written, and the output it shows is what
//! `render` prints for them.

mod common;

use postback_relay::config::Config;

/// The fenced blocks of README.md: (language, text).
fn blocks() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let mut out = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if let Some(lang) = line.strip_prefix("```") {
            let text: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            out.push((lang.to_owned(), text.join("\n") + "\n"));
        }
    }
    out
}

#[test]
fn every_destination_example_loads_and_renders_as_shown() {
    let blocks = blocks();
    let examples: Vec<usize> = blocks
        .iter()
        .enumerate()
        .filter(|(_, (lang, text))| lang == "toml" && text.contains("[[destinations]]"))
        .map(|(i, _)| i)
        .collect();
    assert!(examples.len() >= 5, "README's destination examples");
    let (mut templates, mut rendered) = (0, 0);
    for i in examples {
        let text = &blocks[i].1;
        let config = Config::from_toml(text, &|_| Some("c2VjcmV0LWZyb20tZW52".into()))
            .unwrap_or_else(|e| panic!("README example does not load: {e}\n{text}"));
        if !text.contains("kind = \"template\"") {
            continue;
        }
        templates += 1;
        // An example followed by output: that output is what render prints.
        let Some((lang, shown)) = blocks.get(i + 1) else {
            continue;
        };
        if !lang.is_empty() || !shown.starts_with(&config.destinations[0].name) {
            continue;
        }
        let event = std::fs::read("examples/events/keitaro-order.json").unwrap();
        let e = postback_relay::contract::event::parse(&event, 1 << 20).unwrap();
        let r = config.destinations[0].render(&e).unwrap();
        assert_eq!(
            shown,
            &format!("{}\t{} {}\n", r.destination, r.method, r.url)
        );
        rendered += 1;
    }
    assert!(
        templates >= 2 && rendered >= 1,
        "README's template examples"
    );
}
