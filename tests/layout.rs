//! What README's code layout promises: every file in `src/` is read in a sitting (400 lines at
//! most, test modules included), and each of the crate's layers uses only the layers it
//! names (no arrow runs back up).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 400;

/// Each layer, and the layers its code (tests left out) may use.
const MAY_USE: &[(&str, &[&str])] = &[
    ("contract", &[]),
    ("config", &["contract"]),
    ("shared", &["contract", "config"]),
    ("journal", &["contract", "config"]),
    ("relay", &["contract", "config", "shared", "journal"]),
    (
        "operate",
        &["contract", "config", "relay", "shared", "journal"],
    ),
    ("interfaces", &["contract", "config", "relay"]),
];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its inline test module (`#[cfg(test)] mod x { .. }` to the end).
fn without_tests(text: &str) -> &str {
    let mut from = 0;
    while let Some(at) = text[from..].find("#[cfg(test)]") {
        let start = from + at;
        let next = text[start + "#[cfg(test)]".len()..].trim_start();
        let line = next.lines().next().unwrap_or("");
        if line.contains("mod ") && line.trim_end().ends_with('{') {
            return &text[..start];
        }
        from = start + 1;
    }
    text
}

/// Whether a file is a test module of its own (`tests.rs`, or under a `tests/` folder).
fn is_test_file(rel: &Path) -> bool {
    rel.file_name().is_some_and(|n| n == "tests.rs")
        || rel.parent().is_some_and(|p| p.iter().any(|c| c == "tests"))
}

/// The top-level modules a file's code names through `crate::`.
fn used(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    code.match_indices("crate::")
        .map(|(i, m)| {
            code[i + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect()
        })
        .filter(|name: &String| !name.is_empty())
        .collect()
}

#[test]
fn every_file_in_src_is_read_in_a_sitting() {
    let mut all = Vec::new();
    files(Path::new("src"), &mut all);
    let long: BTreeMap<String, usize> = all
        .iter()
        .map(|p| {
            let lines = std::fs::read_to_string(p).unwrap().lines().count();
            (p.display().to_string(), lines)
        })
        .filter(|(_, lines)| *lines > MAX_LINES)
        .collect();
    assert!(all.len() > 100, "read {} files", all.len());
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}

#[test]
fn each_layer_uses_only_the_layers_it_names() {
    let layers: BTreeMap<&str, &[&str]> = MAY_USE.iter().copied().collect();
    let lib = std::fs::read_to_string("src/lib.rs").unwrap();
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    // The table of contents, in reading order: the relay before the state it uses.
    assert_eq!(
        declared,
        [
            "contract",
            "config",
            "relay",
            "shared",
            "journal",
            "operate",
            "interfaces"
        ]
    );
    assert!(declared.iter().all(|d| layers.contains_key(d)));

    let mut all = Vec::new();
    files(Path::new("src"), &mut all);
    let mut wrong = Vec::new();
    for path in &all {
        let rel = path.strip_prefix("src").unwrap();
        let Some(layer) = rel.iter().next().and_then(|c| c.to_str()) else {
            continue;
        };
        let Some(allowed) = layers.get(layer) else {
            continue; // lib.rs, main.rs and the binary's cli/
        };
        if is_test_file(rel) {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        for name in used(without_tests(&text)) {
            if name != layer && !allowed.contains(&name.as_str()) {
                wrong.push(format!("{} uses crate::{name}", path.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "arrows that run back up:\n{}",
        wrong.join("\n")
    );
}
