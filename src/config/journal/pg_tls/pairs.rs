//! The URL's `name=value` pairs, in either of the forms tokio-postgres reads, each with where
//! it stands, so that the relay's own can be taken out and the rest handed on as written.

use super::PgUrlError;

/// One `name=value` of the URL, decoded, and where it stands in the text.
pub(super) struct Pair {
    pub name: String,
    pub value: String,
    pub raw: std::ops::Range<usize>,
}

/// A URL's query, `name=value` pairs separated by `&`, percent-decoded; `offset` is where the
/// query starts in the URL.
pub(super) fn url_pairs(query: &str, offset: usize) -> Result<Vec<Pair>, PgUrlError> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut out = Vec::new();
    let mut at = offset;
    for part in query.split('&') {
        let raw = at..at + part.len();
        at += part.len() + 1;
        if part.is_empty() {
            continue;
        }
        let (name, value) = part.split_once('=').ok_or(PgUrlError::Syntax)?;
        out.push(Pair {
            name: decode(name),
            value: decode(value),
            raw,
        });
    }
    Ok(out)
}

/// libpq's `name=value name='quoted value'` form, as tokio-postgres reads it: spaces around
/// `=` allowed, `\` escaping the next character.
pub(super) fn key_value_pairs(text: &str) -> Result<Vec<Pair>, PgUrlError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_spaces = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    loop {
        i = skip_spaces(i);
        if i >= bytes.len() {
            return Ok(out);
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let name = text[start..i].to_owned();
        i = skip_spaces(i);
        if bytes.get(i) != Some(&b'=') || name.is_empty() {
            return Err(PgUrlError::Syntax);
        }
        i = skip_spaces(i + 1);
        let mut value = Vec::new();
        let quoted = bytes.get(i) == Some(&b'\'');
        if quoted {
            i += 1;
        }
        loop {
            match bytes.get(i) {
                None if quoted => return Err(PgUrlError::Syntax),
                None => break,
                Some(b'\'') if quoted => {
                    i += 1;
                    break;
                }
                Some(c) if !quoted && c.is_ascii_whitespace() => break,
                Some(b'\\') => {
                    value.push(*bytes.get(i + 1).ok_or(PgUrlError::Syntax)?);
                    i += 2;
                }
                Some(c) => {
                    value.push(*c);
                    i += 1;
                }
            }
        }
        out.push(Pair {
            name,
            value: String::from_utf8_lossy(&value).into_owned(),
            raw: start..i,
        });
    }
}
