//! Checking a `[destinations.template]` table at load into the destination it describes.

use super::macros::Macros;
use super::{Body, Compiled, Custom, Json, Options, preset};
use crate::contract::partner::template::{Syntax, Template, TemplateError};
use crate::contract::partner::{KeyError, Method, key_err, sign};

/// Headers a template may not set: the HTTP client writes them from the request.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "trailer",
];

fn parse(
    key: &str,
    text: &str,
    syntax: Syntax,
    known: &[&str],
    used: &mut Vec<String>,
) -> Result<Template, KeyError> {
    let t = Template::parse(text, syntax, known)
        .map_err(|e: TemplateError| key_err(key, e.pointed(text)))?;
    for p in t.placeholders() {
        if !used.iter().any(|u| u == p) {
            used.push(p.to_owned());
        }
    }
    Ok(t)
}

pub fn compile(o: Option<&Options>) -> Result<Compiled, KeyError> {
    let o = o.ok_or_else(|| {
        key_err(
            "template",
            "required for kind template (a preset, or syntax and url)",
        )
    })?;
    let resolved = preset::resolve(o)?;
    let o = &resolved.options;
    let syntax = o.syntax.ok_or_else(|| {
        key_err(
            "template.syntax",
            "required: brace ({name}), hash (#name#), bang (!!!name!!!) or bracket ([name]), as the partner documents its macros",
        )
    })?;
    let method = o.method.unwrap_or(Method::Get);
    let macros = Macros::compile(&o.macros, &o.status_map, &o.status_by_type)?;
    let known = macros.known();
    let mut used = Vec::new();

    let text = o
        .url
        .as_deref()
        .ok_or_else(|| key_err("template.url", "required: the partner's postback URL"))?;
    let url = parse("template.url", text, syntax, &known, &mut used)?
        .as_sent()
        .map_err(|e| key_err("template.url", e))?;
    let origin = url.fixed_origin().map_err(|e| key_err("template.url", e))?;
    if !origin.username().is_empty() || origin.password().is_some() {
        return Err(key_err(
            "template.url",
            "holds a user or password, which the HTTP client would send as an Authorization header, not in the URL shown; write the header in template.headers",
        ));
    }
    let (base, query) = url.split_query();

    let mut headers = Vec::new();
    let signed: Vec<String> = o.signature.iter().flat_map(sign::writes).collect();
    for (name, value) in &o.headers {
        let key = format!("template.headers.{name}");
        let lower = name.to_ascii_lowercase();
        if o.headers
            .keys()
            .filter(|h| h.to_ascii_lowercase() == lower)
            .count()
            > 1
        {
            return Err(key_err(
                &key,
                "appears twice (header names are matched without regard to case)",
            ));
        }
        if signed.contains(&lower) {
            return Err(key_err(&key, "is written by the signature"));
        }
        reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| key_err(&key, format!("{name:?} is not an HTTP header name")))?;
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(key_err(
                &key,
                "is written by the HTTP client from the request; a template may not set it",
            ));
        }
        headers.push((name.clone(), parse(&key, value, syntax, &known, &mut used)?));
    }
    let has_header = |headers: &[(String, Template)], n: &str| {
        headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(n))
    };

    let body = match &o.body {
        None => None,
        Some(b) => {
            if method == Method::Get {
                return Err(key_err(
                    "template.body",
                    "a GET request has no body: set method = \"POST\" or \"PUT\"",
                ));
            }
            let given = [b.json.is_some(), b.form.is_some(), b.text.is_some()];
            if given.iter().filter(|g| **g).count() != 1 {
                return Err(key_err(
                    "template.body",
                    "give exactly one of json, form or text",
                ));
            }
            if b.content_type.is_some() && b.text.is_none() {
                return Err(key_err(
                    "template.body.content_type",
                    "is for a text body; json and form bodies have their own",
                ));
            }
            let (body, content_type) = if let Some(j) = &b.json {
                let body = Body::Json(json(
                    j,
                    "template.body.json",
                    syntax,
                    &known,
                    &macros,
                    &mut used,
                )?);
                (body, "application/json".to_owned())
            } else if let Some(f) = &b.form {
                let mut fields = Vec::new();
                for (k, v) in f {
                    let key = format!("template.body.form.{k}");
                    let serde_json::Value::String(v) = v else {
                        return Err(key_err(key, "a form field's value is a string"));
                    };
                    fields.push((k.clone(), parse(&key, v, syntax, &known, &mut used)?));
                }
                (
                    Body::Form(fields),
                    "application/x-www-form-urlencoded".to_owned(),
                )
            } else {
                let text = b.text.as_deref().unwrap_or_default();
                let t = parse("template.body.text", text, syntax, &known, &mut used)?;
                let ct = b
                    .content_type
                    .clone()
                    .unwrap_or_else(|| "text/plain; charset=utf-8".to_owned());
                reqwest::header::HeaderValue::from_str(&ct).map_err(|_| {
                    key_err(
                        "template.body.content_type",
                        "is not valid in an HTTP header",
                    )
                })?;
                // A text body holds each value as it is: sent as JSON or a form, a value
                // could add to its structure. The type may come from either key.
                if t.placeholders().next().is_some() {
                    let header = o
                        .headers
                        .iter()
                        .find(|(h, _)| h.eq_ignore_ascii_case("content-type"))
                        .map(|(h, v)| (format!("template.headers.{h}"), v.as_str()));
                    let given = b
                        .content_type
                        .as_deref()
                        .map(|ct| ("template.body.content_type".to_owned(), ct));
                    for (key, ct) in given.into_iter().chain(header) {
                        if let Some(refusal) = structured_text(ct) {
                            return Err(key_err(key, refusal));
                        }
                    }
                }
                (Body::Text(t), ct)
            };
            if !has_header(&headers, "content-type") {
                headers.push((
                    "Content-Type".to_owned(),
                    Template::parse(&content_type, Syntax::Bang, &[])
                        .map_err(|e| key_err("template.body", e.to_string()))?,
                ));
            }
            Some(body)
        }
    };
    Ok(Compiled {
        custom: Custom {
            syntax,
            method,
            base,
            query,
            headers,
            body,
            status_order: o.status_order.unwrap_or(true) && macros.sends_status(&used),
            macros,
            used,
        },
        routes: resolved.conversions,
        missing: resolved.missing,
        signature: o.signature.clone(),
    })
}

/// Why a text body with macros cannot be sent as `content_type`, when it is JSON
/// (`application/json`, any `+json` type) or a form: its values go in as they are, so a
/// value could add to the structure. Media types are matched without regard to case and
/// without their parameters (`; charset=utf-8`).
fn structured_text(content_type: &str) -> Option<String> {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let json = media.ends_with("/json") || media.ends_with("+json") || media.ends_with("/x-json");
    let (adds, instead) = if json {
        (
            "close its string and add members (`\",\"payout\":\"9999`)",
            "body.json",
        )
    } else if media == "application/x-www-form-urlencoded" {
        ("add fields (`&payout=9999`)", "body.form")
    } else {
        return None;
    };
    Some(format!(
        "{content_type:?} with macros in a text body: a text body holds each value as it is, so a value (a click id comes from a landing URL, so from anyone) could {adds}; write the body as {instead}, which encodes each value"
    ))
}

fn json(
    v: &serde_json::Value,
    key: &str,
    syntax: Syntax,
    known: &[&str],
    macros: &Macros,
    used: &mut Vec<String>,
) -> Result<Json, KeyError> {
    use serde_json::Value;
    Ok(match v {
        Value::String(s) => {
            let t = parse(key, s, syntax, known, used)?;
            match t.only_placeholder() {
                Some(name) if macros.is_number(name) => Json::Number(name.to_owned()),
                _ => Json::Text(t),
            }
        }
        Value::Array(items) => Json::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| json(v, &format!("{key}[{i}]"), syntax, known, macros, used))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Json::Object(
            m.iter()
                .map(|(k, v)| {
                    json(v, &format!("{key}.{k}"), syntax, known, macros, used)
                        .map(|j| (k.clone(), j))
                })
                .collect::<Result<_, _>>()?,
        ),
        other => Json::Value(other.clone()),
    })
}
