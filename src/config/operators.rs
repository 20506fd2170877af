//! The console's operators: who may use it, each with a name and an access token, and the
//! header an authenticating proxy in front of the console may name them in.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::{ConfigError, key_err};

/// Shortest access token taken: a shorter one can be guessed.
pub const MIN_TOKEN_CHARS: usize = 16;
/// Longest operator name: it is written with every action and shown on every page.
pub const MAX_NAME_CHARS: usize = 64;
/// The name `console.token` logs in as.
pub const DEFAULT_OPERATOR: &str = "operator";

/// `[[console.operators]]`: one person (or team) and their token.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    /// Written with each of their actions in the journal.
    pub name: String,
    /// Their access token, from the environment (`${ALICE_TOKEN}`).
    pub token: String,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: never printed, not even in a debug dump.
        f.debug_struct("Operator")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Why an operator name cannot be taken, or `None` when it can: non-empty, at most
/// [`MAX_NAME_CHARS`], no control or invisible characters (a name is shown to people).
pub fn name_problem(name: &str) -> Option<String> {
    let n = name.chars().count();
    if name.trim().is_empty() {
        return Some("is empty".into());
    }
    if n > MAX_NAME_CHARS {
        return Some(format!("is {n} characters long: at most {MAX_NAME_CHARS}"));
    }
    if name.chars().any(crate::contract::text::hidden) {
        return Some("holds a control or invisible character".into());
    }
    None
}

/// Every operator the console knows, `console.token` first (as [`DEFAULT_OPERATOR`]), and the
/// key each comes from.
pub fn all(token: Option<&str>, operators: &[Operator]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    if let Some(t) = token {
        out.push((
            "console.token".to_owned(),
            DEFAULT_OPERATOR.to_owned(),
            t.to_owned(),
        ));
    }
    for (i, o) in operators.iter().enumerate() {
        out.push((
            format!("console.operators[{i}]"),
            o.name.clone(),
            o.token.clone(),
        ));
    }
    out
}

/// Checks the console's operators: names that can be shown and differ, tokens long enough
/// and each used once. No error repeats a token.
pub fn check(
    token: Option<&str>,
    operators: &[Operator],
    header: Option<&str>,
) -> Result<(), ConfigError> {
    let mut names = BTreeSet::new();
    let mut tokens = BTreeSet::new();
    for (key, name, secret) in all(token, operators) {
        let n = secret.chars().count();
        if n < MIN_TOKEN_CHARS {
            let key = if key == "console.token" {
                key
            } else {
                format!("{key}.token")
            };
            return Err(key_err(
                key,
                format!("is {n} characters long: use at least {MIN_TOKEN_CHARS}"),
            ));
        }
        if key != "console.token"
            && let Some(why) = name_problem(&name)
        {
            return Err(key_err(format!("{key}.name"), format!("the name {why}")));
        }
        if !names.insert(name.clone()) {
            return Err(key_err(
                format!("{key}.name"),
                format!("{name:?} is used twice (console.token is named {DEFAULT_OPERATOR:?})"),
            ));
        }
        if !tokens.insert(secret) {
            return Err(key_err(
                format!("{key}.token"),
                "is the same token as another operator's: give each their own",
            ));
        }
    }
    if let Some(h) = header {
        let ok = !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(key_err(
                "console.operator_header",
                format!("{h:?} is not an HTTP header name"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, token: &str) -> Operator {
        Operator {
            name: name.into(),
            token: token.into(),
        }
    }

    fn error(r: Result<(), ConfigError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn operators_are_named_once_with_long_tokens_of_their_own() {
        let a = "alice-token-0123456789";
        let b = "bobs-token-9876543210";
        assert!(
            check(
                Some("console-token-abcdef"),
                &[op("alice", a), op("bob", b)],
                None
            )
            .is_ok()
        );
        let short = error(check(None, &[op("alice", "short-secret")], None));
        assert!(short.contains("console.operators[0].token"), "{short}");
        assert!(short.contains("12 characters"), "{short}");
        assert!(!short.contains("short-secret"), "no token echoed: {short}");
        let twice = error(check(None, &[op("alice", a), op("alice", b)], None));
        assert!(twice.contains("console.operators[1].name"), "{twice}");
        let named_like_the_token = error(check(Some(b), &[op("operator", a)], None));
        assert!(
            named_like_the_token.contains("used twice"),
            "{named_like_the_token}"
        );
        let shared = error(check(Some(a), &[op("bob", a)], None));
        assert!(shared.contains("same token"), "{shared}");
        assert!(!shared.contains(a), "no token echoed: {shared}");
        let hidden = error(check(None, &[op("al\u{202e}ice", a)], None));
        assert!(hidden.contains("invisible"), "{hidden}");
        assert!(error(check(None, &[op(" ", a)], None)).contains("empty"));
        let long = "x".repeat(MAX_NAME_CHARS + 1);
        assert!(error(check(None, &[op(&long, a)], None)).contains("at most"));
        assert!(error(check(Some("short"), &[], None)).contains("console.token"));
    }

    #[test]
    fn the_operator_header_is_a_header_name() {
        assert!(check(None, &[], Some("X-Forwarded-User")).is_ok());
        for bad in ["", "X User", "X-User:", "X\u{1}"] {
            assert!(check(None, &[], Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_token_is_never_in_a_debug_dump() {
        let dump = format!("{:?}", op("alice", "alice-token-0123456789"));
        assert!(
            dump.contains("alice") && !dump.contains("0123456789"),
            "{dump}"
        );
    }
}
