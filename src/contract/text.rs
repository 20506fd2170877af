//! Text from outside shown to people: what a producer or a partner wrote (an event id, a
//! partner's answer) must not drive the operator's terminal (move the cursor, clear the
//! screen) nor read other than it is (a right-to-left override that reverses what follows, a
//! zero-width character that makes two ids look the same). The commands print it and the
//! console renders it through [`printable`].

use std::borrow::Cow;

/// Whether `c` is a control character, or one that changes how the text around it reads
/// without being seen: the bidirectional marks, embeddings, overrides and isolates, the
/// zero-width characters, the byte-order mark, the invisible operators and the soft hyphen.
pub fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// `text` with each [`hidden`] character escaped (`\u{1b}`, `\u{202e}`, `\n`), the rest as it
/// is.
pub fn printable(text: &str) -> Cow<'_, str> {
    escaped(text, |_| false)
}

/// As [`printable`], but line breaks and tabs are kept: for a page whose text keeps its
/// lines (a request, a partner's answer, an event in a `<pre>`).
pub fn printable_lines(text: &str) -> Cow<'_, str> {
    escaped(text, |c| matches!(c, '\n' | '\r' | '\t'))
}

fn escaped(text: &str, keep: fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| hidden(c) && !keep(c)) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !hidden(c) || keep(c) {
            out.push(c);
        } else if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.extend(c.escape_unicode());
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_invisible_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(printable("plain, é ✓ مرحبا"), "plain, é ✓ مرحبا");
        assert!(matches!(printable("plain"), Cow::Borrowed(_)));
        assert_eq!(
            printable("x\u{1b}]0;PWNED\u{7}\u{1b}[2J\r\n"),
            "x\\u{1b}]0;PWNED\\u{7}\\u{1b}[2J\\r\\n"
        );
        assert_eq!(
            printable("order-\u{202e}deliver\u{200b}ed"),
            "order-\\u{202e}deliver\\u{200b}ed"
        );
        assert_eq!(
            printable("\u{feff}a\u{2066}b\u{2069}"),
            "\\u{feff}a\\u{2066}b\\u{2069}"
        );
        assert_eq!(
            printable_lines("{\n\t\"id\": \"\u{202e}x\u{1b}\"\r\n}"),
            "{\n\t\"id\": \"\\u{202e}x\\u{1b}\"\r\n}"
        );
    }
}
