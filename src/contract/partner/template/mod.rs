//! One template engine for every placeholder syntax the partners use: `!!!name!!!` (publisher
//! callbacks), `#name#` (tracker postbacks), `{name}` (extra parameters) and `[name]`
//! (template destinations may choose any of the four).
//!
//! Rules, each tested below:
//! - templates are parsed once, at config load; a placeholder the destination does not know,
//!   or written in the wrong case, is a config error there, not a surprise at send time; so
//!   is text that means a known placeholder but is none (`{click-id}`, `{click_id&`,
//!   `!!!click_id!!!` in a brace template), which would be sent as written;
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

use super::encode_component;

/// The placeholder syntaxes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Syntax {
    /// `!!!name!!!`, as in Awin-style transaction notifications.
    Bang,
    /// `#name#`, as in Espace-plus tracker postbacks.
    Hash,
    /// `{name}`.
    Brace,
    /// `[name]`.
    Bracket,
}

impl Syntax {
    fn delimiters(self) -> (&'static str, &'static str) {
        match self {
            Syntax::Bang => ("!!!", "!!!"),
            Syntax::Hash => ("#", "#"),
            Syntax::Brace => ("{", "}"),
            Syntax::Bracket => ("[", "]"),
        }
    }

    pub fn show(self, name: &str) -> String {
        let (open, close) = self.delimiters();
        format!("{open}{name}{close}")
    }

    /// The opening delimiter.
    pub fn open(self) -> &'static str {
        self.delimiters().0
    }

    /// Whether `text` holds this syntax's opening delimiter.
    pub fn opens_in(self, text: &str) -> bool {
        text.contains(self.open())
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
    /// Leave out the field that holds it (a query parameter, a header, a body field).
    /// Template destinations only; a value in the URL path cannot be left out, so there it
    /// fails the delivery.
    Skip,
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

/// Why a template cannot be used. `at` is always the placeholder's position in the template,
/// in characters from 1, and `shown` the text there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown placeholder {shown} at character {at}{hint}")]
    Unknown {
        shown: String,
        hint: String,
        at: usize,
    },
    /// A known name between the delimiters, written so that it is no name (`{click-id}`,
    /// `{ click_id }`, a look-alike letter): it would be sent as written.
    #[error("malformed placeholder {shown} at character {at} (did you mean {meant}?)")]
    Malformed {
        shown: String,
        meant: String,
        at: usize,
    },
    /// A known name after an opening delimiter that is never closed (`{click_id&`).
    #[error("unclosed placeholder {shown} at character {at} (did you mean {meant}?)")]
    Unclosed {
        shown: String,
        meant: String,
        at: usize,
    },
    /// A known name in another syntax's delimiters (`!!!click_id!!!` in a brace template).
    #[error(
        "placeholder {shown} at character {at} is not in this template's syntax (did you mean {meant}?)"
    )]
    OtherSyntax {
        shown: String,
        meant: String,
        at: usize,
    },
}

impl TemplateError {
    /// The message, and under it the template with the placeholder pointed at: what
    /// `check-config` prints.
    pub fn pointed(&self, text: &str) -> String {
        let (TemplateError::Unknown { shown, at, .. }
        | TemplateError::Malformed { shown, at, .. }
        | TemplateError::Unclosed { shown, at, .. }
        | TemplateError::OtherSyntax { shown, at, .. }) = self;
        format!("{self}\n{}", point(text, *at, shown.chars().count()))
    }
}

/// Two lines: the template (whole, so that a secret in it is found and redacted whole by
/// the config's errors), and carets under the `len` characters at character `at` (from 1).
/// Control characters are shown as spaces, so the lines stay two.
pub fn point(text: &str, at: usize, len: usize) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let start = at.saturating_sub(1).min(line.chars().count());
    format!(
        "    {line}\n    {}{}",
        " ".repeat(start),
        "^".repeat(len.max(1))
    )
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

/// Whether `known` takes `name`: the name itself, a prefix entry (`params.*`) or `*`.
fn accepts(known: &[&str], name: &str) -> bool {
    known.iter().any(|k| {
        *k == "*"
            || *k == name
            || k.strip_suffix('*')
                .is_some_and(|p| p.ends_with('.') && name.starts_with(p) && name.len() > p.len())
    })
}

impl Template {
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
        self.render_with(value, missing, &|v| encode_component(v))
    }

    /// Fills the template with values as they are, for a body that a serializer escapes.
    pub fn render_raw(
        &self,
        value: &dyn Fn(&str) -> Option<String>,
        missing: Missing,
    ) -> Result<String, MissingValue> {
        self.render_with(value, missing, &|v| v.to_owned())
    }

    /// Fills the template, each value written by `encode`.
    pub fn render_with(
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
                    (None, Missing::Fail | Missing::Skip) => {
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

    /// Whether two placeholders follow each other with no text between (which `extract`
    /// cannot split).
    pub fn has_adjacent_placeholders(&self) -> bool {
        self.parts
            .windows(2)
            .any(|w| matches!(w, [Part::Placeholder(_), Part::Placeholder(_)]))
    }
}

/// A placeholder with no value under [`Missing::Fail`] (or [`Missing::Skip`], to the
/// caller that leaves its field out).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("placeholder {0} has no value for this event")]
pub struct MissingValue(pub String);

mod near_miss;
mod parse;
mod url;

pub use url::{QueryPair, RewrittenValue};

#[cfg(test)]
mod tests;
