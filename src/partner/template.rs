//! One template engine for every placeholder syntax the partners use: `!!!name!!!` (publisher
//! callbacks), `#name#` (tracker postbacks) and `{name}` (extra parameters).
//!
//! Rules, each tested below:
//! - templates are parsed once, at config load; a placeholder the destination does not know,
//!   or written in the wrong case, is a config error there, not a surprise at send time;
//! - rendering is one pass: a value is never scanned for placeholders, so `!!!x!!!` or `#x#`
//!   inside a click ID stays data;
//! - every value is percent-encoded exactly once where it lands (UTF-8, space as `%20`, and
//!   `&`, `=`, `#`, `%`, `+`, `/` encoded), so it cannot end its parameter or add another;
//! - the template's own text is kept as written: no HTML unescaping, no re-encoding;
//! - a known placeholder with no value renders empty or fails the delivery, as the destination
//!   says; it is never sent literally;
//! - a URL is rendered as the HTTP client sends it: the template's text is stored in that
//!   form at load, and a value the client's URL normalization would rewrite (a `.` or `..`
//!   path segment, which it removes) is refused, naming its placeholder.

use serde::Deserialize;

use super::{RenderError, encode_component};

/// The placeholder syntaxes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// `!!!name!!!`, as in Awin-style transaction notifications.
    Bang,
    /// `#name#`, as in Espace-plus tracker postbacks.
    Hash,
    /// `{name}`.
    Brace,
}

impl Syntax {
    fn delimiters(self) -> (&'static str, &'static str) {
        match self {
            Syntax::Bang => ("!!!", "!!!"),
            Syntax::Hash => ("#", "#"),
            Syntax::Brace => ("{", "}"),
        }
    }

    pub fn show(self, name: &str) -> String {
        let (open, close) = self.delimiters();
        format!("{open}{name}{close}")
    }
}

/// What to do with a known placeholder that has no value for an event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    /// Render it as an empty string.
    #[default]
    Empty,
    /// Fail the delivery (`render_error`), naming the placeholder.
    Fail,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Placeholder(String),
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    syntax: Syntax,
    parts: Vec<Part>,
}

/// Why a template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown placeholder {shown}{hint}")]
    Unknown { shown: String, hint: String },
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

impl Template {
    /// Parses `text`, accepting only the placeholder names in `known` (case-sensitive). A
    /// known entry ending in `.*` accepts any name with that prefix (`params.*`); `["*"]`
    /// accepts every name (a structure that defines its own names).
    pub fn parse(text: &str, syntax: Syntax, known: &[&str]) -> Result<Template, TemplateError> {
        let accepts = |name: &str| {
            known.iter().any(|k| {
                *k == "*"
                    || *k == name
                    || k.strip_suffix('*').is_some_and(|p| {
                        p.ends_with('.') && name.starts_with(p) && name.len() > p.len()
                    })
            })
        };
        let (open, close) = syntax.delimiters();
        let mut parts = Vec::new();
        let mut text_buf = String::new();
        let mut rest = text;
        while let Some(start) = rest.find(open) {
            let after = &rest[start + open.len()..];
            // A placeholder is a name between the delimiters; anything else is text.
            let name_len = after
                .find(close)
                .filter(|&end| end > 0 && after[..end].chars().all(is_name_char));
            match name_len {
                Some(end) => {
                    let name = &after[..end];
                    if !accepts(name) {
                        let hint = known
                            .iter()
                            .find(|k| k.eq_ignore_ascii_case(name))
                            .map(|k| {
                                format!(
                                    " (placeholders are case-sensitive: did you mean {}?)",
                                    syntax.show(k)
                                )
                            })
                            .unwrap_or_else(|| {
                                let list: Vec<String> =
                                    known.iter().map(|k| syntax.show(k)).collect();
                                format!("; known: {}", list.join(", "))
                            });
                        return Err(TemplateError::Unknown {
                            shown: syntax.show(name),
                            hint,
                        });
                    }
                    text_buf.push_str(&rest[..start]);
                    if !text_buf.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text_buf)));
                    }
                    parts.push(Part::Placeholder(name.to_owned()));
                    rest = &after[end + close.len()..];
                }
                None => {
                    // `!!!` never occurs in a URL by chance: a `!!!...!!!` span that is not a
                    // name is a mistyped placeholder, and must not be sent as it is.
                    if syntax == Syntax::Bang
                        && let Some(end) = after.find(close).filter(|e| *e > 0)
                    {
                        return Err(TemplateError::Unknown {
                            shown: syntax.show(&after[..end]),
                            hint: " (placeholder names are letters and digits only)".into(),
                        });
                    }
                    text_buf.push_str(&rest[..start + open.len()]);
                    rest = after;
                }
            }
        }
        text_buf.push_str(rest);
        if !text_buf.is_empty() {
            parts.push(Part::Text(text_buf));
        }
        Ok(Template { syntax, parts })
    }

    /// The placeholder names, in order of appearance.
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Placeholder(n) => Some(n.as_str()),
            Part::Text(_) => None,
        })
    }

    /// Fills the template: each value percent-encoded once, in one pass.
    pub fn render(
        &self,
        value: &dyn Fn(&str) -> Option<String>,
        missing: Missing,
    ) -> Result<String, MissingValue> {
        self.fill(value, missing, &|v| encode_component(v))
    }

    /// Fills a URL template, each value percent-encoded once, and checks that the HTTP client
    /// sends the result as it is. Its URL parser removes `.` and `..` path segments (`%2e`
    /// counting as a dot): a value that makes one would send the request to another path
    /// than shown, and is refused, naming its placeholder.
    pub fn render_url(
        &self,
        value: &dyn Fn(&str) -> Option<String>,
        missing: Missing,
    ) -> Result<String, RenderError> {
        let url = self.render(value, missing)?;
        if sent_as_is(&url) {
            return Ok(url);
        }
        // Which value is it? With every value put aside ("x") the URL is sent as it is; the
        // values come back one by one, in order, until one makes it rewritten.
        let mut back: Vec<&str> = Vec::new();
        for name in self.placeholders() {
            if back.contains(&name) {
                continue;
            }
            back.push(name);
            let some_back = |n: &str| {
                if back.contains(&n) {
                    value(n)
                } else {
                    Some("x".to_owned())
                }
            };
            if self
                .render(&some_back, missing)
                .is_ok_and(|u| !sent_as_is(&u))
            {
                let v = value(name).unwrap_or_default();
                let mut shown: String = v.chars().take(SHOWN_VALUE_CHARS).collect();
                if shown.len() < v.len() {
                    shown.push('…');
                }
                return Err(RewrittenValue {
                    placeholder: self.syntax.show(name),
                    value: shown,
                }
                .into());
            }
        }
        // No one value's doing: the request's own check refuses it, showing the URL.
        Ok(url)
    }

    /// For a URL template: the same template with its text written as the HTTP client sends
    /// it (scheme and host in lower case, a default port left out, characters it would
    /// percent-encode encoded, dot segments of the text resolved), so that what is rendered
    /// is what is sent. Refuses a fragment (never sent) and text that the client would
    /// rewrite across a placeholder (`!!!x!!!/..` removes it).
    pub fn as_sent(&self) -> Result<Template, String> {
        // Each placeholder stands as a marker the parser keeps as it is (letters and digits).
        let marker = |i: usize| format!("zq{i}qz");
        let mut text = String::new();
        let mut names = Vec::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => text.push_str(t),
                Part::Placeholder(name) => {
                    text.push_str(&marker(names.len()));
                    names.push(name.as_str());
                }
            }
        }
        let parsed = url::Url::parse(&text).map_err(|e| format!("not a URL: {e}"))?;
        if parsed.fragment().is_some() {
            return Err("has a fragment (#...), which the HTTP client never sends".into());
        }
        let sent = parsed.as_str();
        let shown = || {
            names.iter().enumerate().fold(sent.to_owned(), |s, (i, n)| {
                s.replace(&marker(i), &self.syntax.show(n))
            })
        };
        let mut parts = Vec::new();
        let mut rest = sent;
        for (i, name) in names.iter().enumerate() {
            let m = marker(i);
            let at = match rest.find(&m) {
                Some(at) if sent.matches(&m).count() == 1 => at,
                _ => {
                    return Err(format!(
                        "the HTTP client would send it as {}, without {}",
                        shown(),
                        self.syntax.show(name)
                    ));
                }
            };
            if at > 0 {
                parts.push(Part::Text(rest[..at].to_owned()));
            }
            parts.push(Part::Placeholder((*name).to_owned()));
            rest = &rest[at + m.len()..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template {
            syntax: self.syntax,
            parts,
        })
    }

    /// Fills the template with values as they are, for a body that a serializer escapes.
    pub fn render_raw(
        &self,
        value: &dyn Fn(&str) -> Option<String>,
        missing: Missing,
    ) -> Result<String, MissingValue> {
        self.fill(value, missing, &|v| v.to_owned())
    }

    fn fill(
        &self,
        value: &dyn Fn(&str) -> Option<String>,
        missing: Missing,
        encode: &dyn Fn(&str) -> String,
    ) -> Result<String, MissingValue> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Placeholder(name) => match (value(name), missing) {
                    (Some(v), _) => out.push_str(&encode(&v)),
                    (None, Missing::Empty) => {}
                    (None, Missing::Fail) => {
                        return Err(MissingValue(self.syntax.show(name)));
                    }
                },
            }
        }
        Ok(out)
    }

    /// Matches `input` against this template, returning each placeholder's text: the inverse
    /// of rendering, for structures like `#affid#-#TransID#-#clickId#`. A placeholder takes
    /// the shortest text up to the next literal; the last one takes the rest.
    pub fn extract(&self, input: &str) -> Result<Vec<(String, String)>, String> {
        let mut values = Vec::new();
        let mut rest = input;
        let mut pending: Option<&str> = None;
        for p in &self.parts {
            match p {
                Part::Text(t) => match pending.take() {
                    Some(name) => {
                        let at = rest.find(t.as_str()).ok_or_else(|| {
                            format!("expected {t:?} after {}", self.syntax.show(name))
                        })?;
                        values.push((name.to_owned(), rest[..at].to_owned()));
                        rest = &rest[at + t.len()..];
                    }
                    None => {
                        rest = rest
                            .strip_prefix(t.as_str())
                            .ok_or_else(|| format!("expected it to start with {t:?}"))?;
                    }
                },
                Part::Placeholder(name) => {
                    if let Some(prev) = pending {
                        return Err(format!(
                            "{} and {} have nothing between them to tell them apart",
                            self.syntax.show(prev),
                            self.syntax.show(name)
                        ));
                    }
                    pending = Some(name);
                }
            }
        }
        match pending {
            Some(name) => values.push((name.to_owned(), rest.to_owned())),
            None if !rest.is_empty() => return Err(format!("unexpected {rest:?} at the end")),
            None => {}
        }
        Ok(values)
    }

    /// For a URL template: checks that no placeholder can change where the request goes
    /// (scheme, host, port), and returns the URL as rendered with sample values.
    pub fn fixed_origin(&self) -> Result<url::Url, String> {
        let sample = |v: &'static str| {
            let text = self
                .render(&|_| Some(v.to_owned()), Missing::Empty)
                .expect("empty policy never fails");
            url::Url::parse(&text).map_err(|e| format!("not a URL: {e}"))
        };
        let (a, b) = (sample("a")?, sample("b.example")?);
        let origin = |u: &url::Url| {
            (
                u.scheme().to_owned(),
                u.host_str().map(str::to_owned),
                u.port(),
            )
        };
        if origin(&a) != origin(&b) {
            return Err(
                "placeholders may appear in the path or the query, not in the scheme, host or port"
                    .into(),
            );
        }
        if !matches!(a.scheme(), "http" | "https") || a.host().is_none() {
            return Err("must be an http:// or https:// URL".into());
        }
        Ok(a)
    }

    /// Whether two placeholders follow each other with no text between (which `extract`
    /// cannot split).
    pub fn has_adjacent_placeholders(&self) -> bool {
        self.parts
            .windows(2)
            .any(|w| matches!(w, [Part::Placeholder(_), Part::Placeholder(_)]))
    }
}

/// A placeholder with no value under [`Missing::Fail`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("placeholder {0} has no value for this event")]
pub struct MissingValue(pub String);

/// How much of a refused value an error shows.
const SHOWN_VALUE_CHARS: usize = 64;

/// A value the HTTP client would not send as rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "placeholder {placeholder} is {value:?}: the HTTP client would rewrite the URL around it (it removes `.` and `..` path segments), sending the request to another path than shown"
)]
pub struct RewrittenValue {
    pub placeholder: String,
    /// The value, cut to its first 64 characters.
    pub value: String,
}

/// Whether the HTTP client's URL parser keeps `url` exactly as it is.
fn sent_as_is(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| u.as_str() == url)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
