//! Percent-encoding of one value, for a URL query or path: the one way every partner kind
//! writes a value into a URL, and the way the redactor recognises a secret written there.

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
