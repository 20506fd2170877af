//! Secrets out of every string the relay writes. The configuration knows its secrets (values
//! read from the environment, API keys, passwords in broker and store URLs); a partner may
//! echo them back (an error page repeating the path that holds an API key), and an error
//! message may carry a URL. [`Secrets::scrub`] replaces each of them with `REDACTED`, in each
//! form common encoders write it: as written; percent-encoded in upper or lower case, with or
//! without `/` left alone (Python's `quote`) or JavaScript's `encodeURIComponent` set;
//! form-encoded; and JSON-escaped, also with `\/` (PHP) and with non-ASCII as `\uXXXX`.

use std::borrow::Cow;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::contract::encode::encode_component;

/// Shown in place of a secret.
pub const REDACTED: &str = "REDACTED";

/// What Python's `urllib.parse.quote` leaves alone: the unreserved characters and `/`.
const QUOTE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');
/// What JavaScript's `encodeURIComponent` leaves alone.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*');

/// What the URL parser percent-encodes in a path (the WHATWG path set), and in a query.
const URL_PATH: &AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');
const URL_QUERY: &AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>');

/// The secrets of one configuration, in every form they can be written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Secrets {
    forms: Vec<String>,
}

impl Secrets {
    /// Shorter values are not treated as secrets, wherever they come from: replacing them
    /// everywhere would mangle ordinary text. API keys are still redacted from the requests
    /// they sit in whatever their length ([`crate::contract::partner::Request::redacted`]).
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
        let json = json_inner(value);
        let ascii_json = ascii_escaped(&json);
        let mut forms = vec![
            value.to_owned(),
            url::form_urlencoded::byte_serialize(value.as_bytes()).collect(),
            json.replace('/', "\\/"),
            ascii_escaped(&json).replace('/', "\\/"),
            json,
            ascii_json,
        ];
        for encoded in [
            encode_component(value),
            utf8_percent_encode(value, QUOTE).to_string(),
            utf8_percent_encode(value, URI_COMPONENT).to_string(),
            utf8_percent_encode(value, URL_PATH).to_string(),
            utf8_percent_encode(value, URL_QUERY).to_string(),
        ] {
            forms.push(lower_hex(&encoded));
            forms.push(encoded);
        }
        for f in forms {
            if !f.is_empty() && !self.forms.contains(&f) {
                self.forms.push(f);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// These secrets, and each of their forms as an HTML page writes it (`&`, `<`, `>` and
    /// `"` escaped): for scrubbing a rendered page, where a secret holding one of those
    /// characters no longer reads as itself.
    pub fn with_html_forms(&self) -> Secrets {
        let mut all = self.clone();
        for f in &self.forms {
            let html = f
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;");
            if !all.forms.contains(&html) {
                all.forms.push(html);
            }
        }
        all
    }

    /// `text` with every secret replaced by `REDACTED`. Where two secrets overlap, the whole
    /// overlapping stretch goes.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut found: Vec<(usize, usize)> = self
            .forms
            .iter()
            .flat_map(|f| {
                text.match_indices(f.as_str())
                    .map(|(i, m)| (i, i + m.len()))
            })
            .collect();
        if found.is_empty() {
            return Cow::Borrowed(text);
        }
        found.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        let mut i = 0;
        while i < found.len() {
            let (start, mut end) = found[i];
            while i + 1 < found.len() && found[i + 1].0 <= end {
                i += 1;
                end = end.max(found[i].1);
            }
            out.push_str(&text[at..start]);
            out.push_str(REDACTED);
            at = end;
            i += 1;
        }
        out.push_str(&text[at..]);
        Cow::Owned(out)
    }

    /// Scrubs a string in place.
    pub fn scrub_in_place(&self, text: &mut String) {
        if let Cow::Owned(clean) = self.scrub(text) {
            *text = clean;
        }
    }

    /// Scrubs `text` whole, then keeps at most `max` bytes of it (on a character boundary). If
    /// what is kept ends with the start of a secret that the cut left incomplete, that start
    /// goes too. Scrubbing before cutting is what catches a secret across the cut.
    pub fn scrub_and_cut(&self, text: &str, max: usize) -> String {
        let clean = self.scrub(text);
        let mut end = clean.len().min(max);
        while !clean.is_char_boundary(end) {
            end -= 1;
        }
        let kept = &clean[..end];
        if end < clean.len() {
            for f in &self.forms {
                for n in (Self::MIN_LEN..f.len()).rev() {
                    if f.is_char_boundary(n) && kept.ends_with(&f[..n]) {
                        return format!("{}{REDACTED}", &kept[..kept.len() - n]);
                    }
                }
            }
        }
        kept.to_owned()
    }
}

/// A string as JSON writes it, without the quotes.
fn json_inner(value: &str) -> String {
    let json = serde_json::to_string(value).unwrap_or_default();
    json[1..json.len().saturating_sub(1).max(1)].to_owned()
}

/// JSON text with every non-ASCII character written `\uXXXX` (lower-case hex, surrogate pairs
/// beyond the basic plane), as ASCII-only encoders write it.
fn ascii_escaped(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
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
    fn a_secret_is_found_in_a_page_that_escaped_it() {
        let s = Secrets::new([r#"a&b<c>d"e"#]).with_html_forms();
        let page = maud::html! { td { "order " (r#"x-a&b<c>d"e-y"#) } }.into_string();
        assert!(page.contains("&amp;"), "{page}");
        let clean = s.scrub(&page);
        assert_eq!(clean, "<td>order x-REDACTED-y</td>");
        let plain = Secrets::new([r#"a&b<c>d"e"#]);
        assert!(
            !plain.scrub(&page).contains(REDACTED),
            "the raw form alone misses it"
        );
    }

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
    fn what_other_encoders_write_is_replaced_too() {
        let secrets = Secrets::new(["hq-Secret/Key 42", "clé-secrète", "a!b'(c)*d"]);
        for answer in [
            // PHP's json_encode.
            r#"{"path":"\/s2s\/hq-Secret\/Key 42\/lead"}"#,
            // Python's quote.
            "404: no route for /hq-Secret/Key%2042/s2s",
            // ASCII-only JSON.
            r#"{"token":"cl\u00e9-secr\u00e8te"}"#,
            // PHP again: both at once.
            r#"{"token":"cl\u00e9-secr\u00e8te","p":"\/hq-Secret\/Key 42"}"#,
            // encodeURIComponent.
            "?t=a!b'(c)*d",
        ] {
            let shown = secrets.scrub(answer);
            assert!(
                !shown.contains("hq-Secret") && !shown.contains("secr") && !shown.contains("b'("),
                "{answer} -> {shown}"
            );
        }
    }

    #[test]
    fn overlapping_secrets_go_whole() {
        let s = Secrets::new(["abcd1234", "1234wxyz"]);
        assert_eq!(s.scrub("x abcd1234wxyz y"), "x REDACTED y");
    }

    #[test]
    fn short_values_are_not_secrets_and_longer_forms_go_first() {
        assert!(Secrets::new(["abc"]).is_empty());
        let s = Secrets::new(["abcd", "abcdef"]);
        assert_eq!(s.scrub("x abcdef y abcd"), "x REDACTED y REDACTED");
    }

    #[test]
    fn a_secret_across_the_cut_is_scrubbed() {
        let s = Secrets::new(["cbTokenSECRET0123456789"]);
        let text = format!("{}tok=cbTokenSECRET0123456789&x=1", "o".repeat(20));
        // Cut inside the secret: scrubbed before the cut, nothing of it stays.
        assert_eq!(
            s.scrub_and_cut(&text, 32),
            format!("{}tok=REDACTED", "o".repeat(20))
        );
        // A secret only partly in the text, its start at the very end.
        let partial = format!("{}tok=cbTokenSEC", "o".repeat(20));
        assert_eq!(
            s.scrub_and_cut(&format!("{partial}RET"), 35),
            format!("{}tok=REDACTED", "o".repeat(20))
        );
        assert_eq!(Secrets::default().scrub_and_cut("é", 1), "");
    }
}
