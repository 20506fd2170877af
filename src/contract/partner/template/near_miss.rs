//! Text that means a known placeholder but is none: written wrong, left open, or in another syntax.

use super::{Syntax, TemplateError, accepts, is_name_char};

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
pub(super) fn near_miss(
    after: &str,
    syntax: Syntax,
    known: &[&str],
    at: usize,
) -> Option<TemplateError> {
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
pub(super) fn other_syntax(text: &str, syntax: Syntax, known: &[&str]) -> Option<TemplateError> {
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
