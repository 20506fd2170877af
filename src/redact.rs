//! Secrets out of every string the relay writes. The configuration knows its secrets (values
//! read from the environment, API keys, passwords in broker and store URLs); a partner may
//! echo them back (an error page repeating the path that holds an API key), and an error
//! message may carry a URL. [`Secrets::scrub`] replaces each of them, in every form it can
//! take on the way (as written, percent-encoded in either case, form-encoded, JSON-escaped),
//! with `REDACTED`.

use std::borrow::Cow;

use crate::partner::encode::encode_component;

/// Shown in place of a secret.
pub const REDACTED: &str = "REDACTED";

/// The secrets of one configuration, in every form they can be written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Secrets {
    /// Longest first, so that a form containing another is replaced whole.
    forms: Vec<String>,
}

impl Secrets {
    /// Shorter values are not treated as secrets: replacing them everywhere would mangle
    /// ordinary text. API keys are redacted from requests whatever their length.
    pub const MIN_LEN: usize = 4;

    pub fn new<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> Secrets {
        let mut s = Secrets::default();
        for v in values {
            s.add(v.as_ref());
        }
        s
    }

    /// Adds a secret, with the forms it can be written in.
    pub fn add(&mut self, value: &str) {
        if value.chars().count() < Self::MIN_LEN {
            return;
        }
        let encoded = encode_component(value);
        let lower = lower_hex(&encoded);
        let form = url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>();
        let json = serde_json::to_string(value).unwrap_or_default();
        let json = json.trim_matches('"').to_owned();
        for f in [value.to_owned(), encoded, lower, form, json] {
            if !f.is_empty() && !self.forms.contains(&f) {
                self.forms.push(f);
            }
        }
        self.forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    }

    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// `text` with every secret replaced by `REDACTED`.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for f in &self.forms {
            if out.contains(f.as_str()) {
                out = Cow::Owned(out.replace(f.as_str(), REDACTED));
            }
        }
        out
    }

    /// Scrubs a string in place.
    pub fn scrub_in_place(&self, text: &mut String) {
        if let Cow::Owned(clean) = self.scrub(text) {
            *text = clean;
        }
    }
}

/// `%2F` as `%2f`: a partner may echo percent-encoding in lower case.
fn lower_hex(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut rest = encoded;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let (esc, tail) = rest[i..].split_at(3.min(rest.len() - i));
        out.push_str(&esc.to_ascii_lowercase());
        rest = tail;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_a_secret_is_replaced() {
        let s = Secrets::new(["k3y/with space+plus\"q"]);
        for text in [
            "Cannot GET /k3y/with space+plus\"q/s2s",
            "Cannot GET /k3y%2Fwith%20space%2Bplus%22q/s2s",
            "Cannot GET /k3y%2fwith%20space%2bplus%22q/s2s",
            "token=k3y%2Fwith+space%2Bplus%22q",
            r#"{"key":"k3y/with space+plus\"q"}"#,
        ] {
            let clean = s.scrub(text);
            assert!(clean.contains(REDACTED), "{text} -> {clean}");
            assert!(!clean.contains("k3y"), "{text} -> {clean}");
        }
        assert_eq!(s.scrub("nothing here"), "nothing here");
    }

    #[test]
    fn short_values_are_not_secrets_and_longer_forms_go_first() {
        assert!(Secrets::new(["abc"]).is_empty());
        let s = Secrets::new(["abcd", "abcdef"]);
        assert_eq!(s.scrub("x abcdef y abcd"), "x REDACTED y REDACTED");
    }
}
