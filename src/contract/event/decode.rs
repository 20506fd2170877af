//! From a message body to an event, in one pass over the text: the producer's content encoding
//! undone (gzip or deflate, bounded by the size limit), a leading byte order mark skipped (as
//! .NET's UTF-8 encoder writes one), the whole body checked to be UTF-8, and the JSON read
//! into the contract. The event's text is kept as published, for retries and dead letters.

use std::borrow::Cow;
use std::io::Read as _;

use serde_json::value::RawValue;

use super::{ConversionEvent, ParseError};

/// A body read into an event, with the event's JSON text as published.
#[derive(Debug)]
pub struct Decoded {
    pub event: ConversionEvent,
    pub raw: Box<RawValue>,
}

/// How a producer encoded a body (AMQP `content-encoding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    /// zlib, as HTTP's `deflate` is; a raw deflate stream is accepted too.
    Deflate,
}

impl Encoding {
    /// The encoding a `content-encoding` property names; an unknown one is an invalid event
    /// that says which it was.
    pub fn named(content_encoding: Option<&str>) -> Result<Encoding, ParseError> {
        let name = content_encoding.unwrap_or("").trim();
        match name.to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(Encoding::Identity),
            "gzip" | "x-gzip" => Ok(Encoding::Gzip),
            "deflate" => Ok(Encoding::Deflate),
            _ => Err(ParseError::Encoding(name.chars().take(64).collect())),
        }
    }
}

/// The body with its content encoding undone; never more than `max_bytes` of it.
pub fn inflate(
    body: &[u8],
    encoding: Encoding,
    max_bytes: usize,
) -> Result<Cow<'_, [u8]>, ParseError> {
    let too_large = |size| ParseError::TooLarge {
        size,
        limit: max_bytes,
    };
    if body.len() > max_bytes {
        return Err(too_large(body.len()));
    }
    // One byte over the limit tells a body that is too large; a compressed bomb stops there.
    let limit = max_bytes as u64 + 1;
    let inflated = match encoding {
        Encoding::Identity => return Ok(Cow::Borrowed(body)),
        Encoding::Gzip => read_limited(&mut flate2::read::MultiGzDecoder::new(body), limit),
        Encoding::Deflate => inflate_deflate(body, limit),
    }
    .map_err(|e| ParseError::Inflate {
        encoding: match encoding {
            Encoding::Gzip => "gzip",
            _ => "deflate",
        },
        error: e.to_string(),
    })?;
    if inflated.len() > max_bytes {
        return Err(too_large(inflated.len()));
    }
    Ok(Cow::Owned(inflated))
}

fn read_limited(r: &mut dyn std::io::Read, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    r.take(limit).read_to_end(&mut out)?;
    Ok(out)
}

/// A deflate stream, zlib-wrapped (as HTTP's `deflate` is) or raw. The stream ends by itself:
/// bytes after its end are not part of the event, and are refused rather than dropped.
fn inflate_deflate(body: &[u8], limit: u64) -> std::io::Result<Vec<u8>> {
    let ends_there = |out: Vec<u8>, rest: usize| {
        if (out.len() as u64) < limit && rest > 0 {
            Err(std::io::Error::other(format!(
                "{rest} bytes follow the end of the compressed data"
            )))
        } else {
            Ok(out)
        }
    };
    let mut zlib = flate2::bufread::ZlibDecoder::new(body);
    match read_limited(&mut zlib, limit) {
        Ok(out) => ends_there(out, zlib.get_ref().len()),
        Err(_) => {
            let mut raw = flate2::bufread::DeflateDecoder::new(body);
            let out = read_limited(&mut raw, limit)?;
            ends_there(out, raw.get_ref().len())
        }
    }
}

/// Reads a (decoded) body into an event; `max_bytes` bounds it first.
pub fn decode(body: &[u8], max_bytes: usize) -> Result<Decoded, ParseError> {
    if body.len() > max_bytes {
        return Err(ParseError::TooLarge {
            size: body.len(),
            limit: max_bytes,
        });
    }
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let text = std::str::from_utf8(body).map_err(|e| ParseError::NotUtf8 {
        at: e.valid_up_to(),
    })?;
    let raw: Box<RawValue> =
        serde_json::from_str(text).map_err(|e| ParseError::NotJson(e.to_string()))?;
    Ok(Decoded {
        event: from_raw(&raw)?,
        raw,
    })
}

/// Reads JSON text already checked to be JSON (a delivery message's event) into an event.
pub fn from_raw(raw: &RawValue) -> Result<ConversionEvent, ParseError> {
    let text = raw.get();
    // serde would also read a struct from a JSON array; an event is an object, nothing else.
    if !text.starts_with('{') {
        return Err(ParseError::invalid(
            ".",
            format!("an event must be a JSON object, found {}", kind_of(text)),
        ));
    }
    // The fast path first; only a body that fails is read again to name the failing field.
    let event = match serde_json::from_str::<ConversionEvent>(text) {
        Ok(event) => event,
        Err(_) => {
            let mut de = serde_json::Deserializer::from_str(text);
            match serde_path_to_error::deserialize::<_, ConversionEvent>(&mut de) {
                Ok(e) => e,
                Err(err) => {
                    let path = err.path().to_string();
                    let inner = err.into_inner();
                    return Err(match inner.classify() {
                        serde_json::error::Category::Data => ParseError::Invalid {
                            path,
                            message: super::strip_position(&inner),
                        },
                        _ => ParseError::NotJson(inner.to_string()),
                    });
                }
            }
        }
    };
    event.validate()?;
    Ok(event)
}

/// The kind of JSON value a text holds, from its first character.
fn kind_of(text: &str) -> &'static str {
    match text.as_bytes().first() {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    const EVENT: &str = r#"{"event_id":"e1","type":"lead","occurred_at":"2026-11-22T10:00:00Z"}"#;

    #[test]
    fn encodings_are_undone_and_unknown_ones_named() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(EVENT.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let body = inflate(&gz, Encoding::named(Some("GZIP")).unwrap(), 1 << 20).unwrap();
        assert_eq!(decode(&body, 1 << 20).unwrap().event.event_id, "e1");
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(EVENT.as_bytes()).unwrap();
        let raw = raw.finish().unwrap();
        assert_eq!(
            &*inflate(&raw, Encoding::Deflate, 1 << 20).unwrap(),
            EVENT.as_bytes()
        );
        let e = Encoding::named(Some("br")).unwrap_err();
        assert!(e.to_string().contains("\"br\""), "{e}");
        assert_eq!(e.reason(), crate::contract::reason::Reason::InvalidEvent);
        assert!(matches!(
            inflate(b"not gzip", Encoding::Gzip, 1 << 20),
            Err(ParseError::Inflate { .. })
        ));
    }

    #[test]
    fn bytes_after_a_deflate_stream_are_refused() {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(EVENT.as_bytes()).unwrap();
        let z = z.finish().unwrap();
        let mut two = z.clone();
        two.extend_from_slice(&z);
        let mut garbage = z.clone();
        garbage.extend_from_slice(b"TRAILING GARBAGE");
        for body in [two, garbage] {
            let e = inflate(&body, Encoding::Deflate, 1 << 20).unwrap_err();
            assert!(e.to_string().contains("follow the end"), "{e}");
        }
        assert_eq!(
            &*inflate(&z, Encoding::Deflate, 1 << 20).unwrap(),
            EVENT.as_bytes()
        );
    }

    #[test]
    fn a_compressed_bomb_stops_at_the_limit() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b' '; 8 << 20]).unwrap();
        let gz = gz.finish().unwrap();
        assert!(gz.len() < 64 * 1024);
        assert_eq!(
            inflate(&gz, Encoding::Gzip, 1 << 20).unwrap_err(),
            ParseError::TooLarge {
                size: (1 << 20) + 1,
                limit: 1 << 20
            }
        );
    }

    #[test]
    fn a_byte_order_mark_is_skipped_and_bad_utf8_anywhere_is_named() {
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(EVENT.as_bytes());
        assert_eq!(decode(&bom, 1 << 20).unwrap().raw.get(), EVENT);
        let mut bad = EVENT.trim_end_matches('}').as_bytes().to_vec();
        bad.extend_from_slice(b",\"ignored\":\"\xff\"}");
        let e = decode(&bad, 1 << 20).unwrap_err();
        assert_eq!(
            e,
            ParseError::NotUtf8 {
                at: EVENT.len() + 11
            }
        );
        assert!(e.to_string().contains("UTF-8"), "{e}");
        assert_eq!(e.reason(), crate::contract::reason::Reason::InvalidEvent);
    }
}
