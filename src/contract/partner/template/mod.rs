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

/// The known name closest to `name`, when it is close enough to be a typo.
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .filter(|k| !k.ends_with('*'))
        .map(|k| (strsim::levenshtein(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4) && *d < k.len())
        .min()
        .map(|(_, k)| k)
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

/// The Latin letter (or `-`) a character imitates: Cyrillic and Greek look-alikes, full-width
/// forms and dashes, as a name copied from a document or typed on another keyboard holds them.
fn look_alike(c: char) -> Option<char> {
    Some(match c {
        'а' => 'a',
        'е' => 'e',
        'о' | 'ο' => 'o',
        'р' | 'ρ' => 'p',
        'с' | 'ϲ' => 'c',
        'у' => 'y',
        'х' | 'χ' => 'x',
        'ѕ' => 's',
        'і' | 'ι' => 'i',
        'ј' => 'j',
        'ԁ' => 'd',
        'һ' => 'h',
        'ԛ' => 'q',
        'ԝ' => 'w',
        'ӏ' => 'l',
        'ν' => 'v',
        'κ' => 'k',
        'А' | 'Α' => 'A',
        'В' | 'Β' => 'B',
        'Е' | 'Ε' => 'E',
        'К' | 'Κ' => 'K',
        'М' | 'Μ' => 'M',
        'Н' | 'Η' => 'H',
        'О' | 'Ο' => 'O',
        'Р' | 'Ρ' => 'P',
        'С' | 'Ϲ' => 'C',
        'Т' | 'Τ' => 'T',
        'Х' | 'Χ' => 'X',
        'Ѕ' => 'S',
        'І' | 'Ι' => 'I',
        'Ј' => 'J',
        'Ү' | 'Υ' => 'Y',
        'Ζ' => 'Z',
        'Ν' => 'N',
        '\u{2010}'..='\u{2015}' | '\u{2212}' => '-',
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0)?,
        _ => return None,
    })
}

/// Characters that show as nothing: zero-width spaces and joiners, the soft hyphen.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}'
    )
}

/// The known name `text` means, when it is a near miss of one: the same once spaces and
/// invisible characters are taken out, look-alikes read as the letters they imitate and `-`
/// as `_`; or the same in another case; or one edit away per four letters of the name
/// (`clik_id`). A template that defines its own names (`*`) has no near misses.
fn meant(text: &str, known: &[&str]) -> Option<String> {
    if known.contains(&"*") {
        return None;
    }
    let name: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && !invisible(*c))
        .map(|c| match look_alike(c).unwrap_or(c) {
            '-' => '_',
            c => c,
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) || !name.chars().all(is_name_char) {
        return None;
    }
    if accepts(known, &name) {
        return Some(name);
    }
    let names = || known.iter().filter(|k| !k.ends_with('*'));
    if let Some(k) = names().find(|k| k.eq_ignore_ascii_case(&name)) {
        return Some((*k).to_owned());
    }
    names()
        .map(|k| (strsim::levenshtein(&name, k), *k))
        .filter(|(d, k)| *d <= k.len() / 4)
        .min()
        .map(|(_, k)| k.to_owned())
}

/// What may follow a placeholder left open (`{click_id&o=1`, `!!!click_id!!`, `{click_id` at
/// the end): punctuation that ends a value in a URL, a header or a body. A name followed by
/// a letter or `:` (`{status: ok}`, `#type of`) is text.
const ENDS_A_VALUE: &[char] = &[
    '&', '/', '?', '=', ';', ',', '"', '\'', '<', '>', ')', '{', '}', '[', ']', '!', '#', '|',
];

/// After an opening delimiter that opens no placeholder (`after` is the text that follows it,
/// `at` its position): a known name written wrong up to the closing delimiter, or left open.
fn near_miss(after: &str, syntax: Syntax, known: &[&str], at: usize) -> Option<TemplateError> {
    let (open, close) = syntax.delimiters();
    if let Some(end) = after.find(close).filter(|e| *e > 0) {
        let inner = &after[..end];
        if let Some(name) = meant(inner, known) {
            return Some(TemplateError::Malformed {
                shown: format!("{open}{inner}{close}"),
                meant: syntax.show(&name),
                at,
            });
        }
    }
    let start = after.len() - after.trim_start().len();
    let len = after[start..]
        .find(|c: char| !(is_name_char(c) || c == '-' || look_alike(c).is_some() || invisible(c)))
        .unwrap_or(after.len() - start);
    let run = &after[start..start + len];
    let next = after[start + len..].trim_start().chars().next();
    if run.is_empty() || next.is_some_and(|c| !ENDS_A_VALUE.contains(&c)) {
        return None;
    }
    let name = meant(run, known)?;
    Some(TemplateError::Unclosed {
        shown: format!("{open}{}", &after[..start + len]),
        meant: syntax.show(&name),
        at,
    })
}

/// The first placeholder of another syntax around a known name (`{click_id}` in a bracket
/// template). A `[name]` right after a letter, a digit, `_`, `.` or `]` is an index, as in
/// PHP-style array keys (`data[order_id]=`), not a placeholder.
fn other_syntax(text: &str, syntax: Syntax, known: &[&str]) -> Option<TemplateError> {
    if known.contains(&"*") {
        return None;
    }
    let mut first: Option<(usize, TemplateError)> = None;
    for other in [Syntax::Bang, Syntax::Hash, Syntax::Brace, Syntax::Bracket] {
        if other == syntax {
            continue;
        }
        let (open, close) = other.delimiters();
        let mut from = 0;
        while let Some(i) = text[from..].find(open) {
            let start = from + i;
            from = start + open.len();
            if first.as_ref().is_some_and(|(s, _)| *s < start) {
                break;
            }
            let Some(name) = text[from..]
                .find(close)
                .filter(|e| *e > 0)
                .map(|end| &text[from..from + end])
            else {
                continue;
            };
            let index = other == Syntax::Bracket
                && text[..start]
                    .chars()
                    .next_back()
                    .is_some_and(|c| is_name_char(c) || c == ']');
            if index || !name.chars().all(is_name_char) {
                continue;
            }
            let meant = if accepts(known, name) {
                Some(name)
            } else {
                known
                    .iter()
                    .find(|k| !k.ends_with('*') && k.eq_ignore_ascii_case(name))
                    .copied()
            };
            if let Some(meant) = meant {
                first = Some((
                    start,
                    TemplateError::OtherSyntax {
                        shown: other.show(name),
                        meant: syntax.show(meant),
                        at: text[..start].chars().count() + 1,
                    },
                ));
                break;
            }
        }
    }
    first.map(|(_, e)| e)
}

impl Template {
    /// Parses `text`, accepting only the placeholder names in `known` (case-sensitive). A
    /// known entry ending in `.*` accepts any name with that prefix (`params.*`); `["*"]`
    /// accepts every name (a structure that defines its own names).
    ///
    /// Text that means a known placeholder but is none is refused too, rather than sent as
    /// written on every event: a known name (or a near miss of one) written wrong between
    /// the delimiters (`{click-id}`, `{ click_id }`, a look-alike letter), left open
    /// (`{click_id&`), or in another syntax's delimiters (`!!!click_id!!!` in a brace
    /// template).
    pub fn parse(text: &str, syntax: Syntax, known: &[&str]) -> Result<Template, TemplateError> {
        let accepts = |name: &str| accepts(known, name);
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
                        let list = || {
                            let list: Vec<String> = known.iter().map(|k| syntax.show(k)).collect();
                            format!("; known: {}", list.join(", "))
                        };
                        let hint = known
                            .iter()
                            .find(|k| k.eq_ignore_ascii_case(name))
                            .map(|k| {
                                format!(
                                    " (placeholders are case-sensitive: did you mean {}?)",
                                    syntax.show(k)
                                )
                            })
                            .or_else(|| {
                                closest(name, known)
                                    .map(|k| format!(" (did you mean {}?)", syntax.show(k)))
                            })
                            .unwrap_or_else(list);
                        return Err(TemplateError::Unknown {
                            shown: syntax.show(name),
                            hint,
                            at: position(text, rest, start),
                        });
                    }
                    // `{{name}}`, as Mustache writes it, would send the value in braces.
                    let doubled = matches!(syntax, Syntax::Brace | Syntax::Bracket)
                        && text[..text.len() - rest.len() + start].ends_with(open)
                        && after[end + close.len()..].starts_with(close);
                    if doubled && !known.contains(&"*") {
                        return Err(TemplateError::Malformed {
                            shown: format!("{open}{open}{name}{close}{close}"),
                            meant: syntax.show(name),
                            at: position(text, rest, start) - 1,
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
                    if let Some(e) = near_miss(after, syntax, known, position(text, rest, start)) {
                        return Err(e);
                    }
                    // `!!!` never occurs in a URL by chance: a `!!!...!!!` span that is not a
                    // name is a mistyped placeholder, and must not be sent as it is.
                    if syntax == Syntax::Bang
                        && let Some(end) = after.find(close).filter(|e| *e > 0)
                    {
                        return Err(TemplateError::Unknown {
                            shown: syntax.show(&after[..end]),
                            hint: " (placeholder names are letters and digits only)".into(),
                            at: position(text, rest, start),
                        });
                    }
                    text_buf.push_str(&rest[..start + open.len()]);
                    rest = after;
                }
            }
        }
        if let Some(e) = other_syntax(text, syntax, known) {
            return Err(e);
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

/// The position, in characters from 1, of byte `start` of `rest`, a tail of `text`.
fn position(text: &str, rest: &str, start: usize) -> usize {
    let offset = text.len() - rest.len() + start;
    text[..offset].chars().count() + 1
}

/// A placeholder with no value under [`Missing::Fail`] (or [`Missing::Skip`], to the
/// caller that leaves its field out).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("placeholder {0} has no value for this event")]
pub struct MissingValue(pub String);

mod url;

pub use url::{QueryPair, RewrittenValue};

#[cfg(test)]
mod tests;
