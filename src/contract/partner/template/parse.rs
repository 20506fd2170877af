//! Parsing a template at load: its placeholders checked against the names the destination knows.

use super::near_miss::{near_miss, other_syntax};
use super::{Part, Syntax, Template, TemplateError, accepts, is_name_char};

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
}

/// The position, in characters from 1, of byte `start` of `rest`, a tail of `text`.
fn position(text: &str, rest: &str, start: usize) -> usize {
    let offset = text.len() - rest.len() + start;
    text[..offset].chars().count() + 1
}
