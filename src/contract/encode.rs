//! Percent-encoding of one value, for a URL query or path: the one way every partner kind
//! writes a value into a URL, and the way the redactor recognises a secret written there;
//! and a value as a header holds it.

/// Characters left as they are in a query value or path segment: RFC 3986 "unreserved".
/// Everything else, including `&`, `=`, `#`, `%`, `+` and space, is percent-encoded, so a value
/// can never end its parameter or start another.
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a value (UTF-8) for a URL query or path. Exactly once: a value that looks
/// encoded already (`%41`) is data and is encoded again (`%2541`).
pub fn encode_component(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, COMPONENT).to_string()
}

/// A value as a header holds it: `%`, control characters, non-ASCII and a space at either
/// end (which HTTP trims) percent-encoded (UTF-8), everything else as it is.
pub fn header_text(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let edge_space = c == ' ' && (i == 0 || i == last);
        if c == '%' || edge_space || !(c == ' ' || c.is_ascii_graphic()) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}
