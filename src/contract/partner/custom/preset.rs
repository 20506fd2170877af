//! Presets: template destinations for well-known networks and trackers, as data files in
//! `presets/` (built into the binary). A preset holds a `[template]` table like a
//! destination's, the settings it needs from the user (written `<<name>>` in its text, each
//! of a kind that says how it is checked and written), and the event types it takes. A
//! destination that names a preset may change or add any key.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Options;
use super::settings::{Place, Setting};
use crate::contract::event::EventType;
use crate::contract::partner::template::Missing;
use crate::contract::partner::{KeyError, key_err};

/// Every preset: its name and its file.
pub const PRESETS: &[(&str, &str)] = &[
    ("binom", include_str!("../../../../presets/binom.toml")),
    (
        "everflow",
        include_str!("../../../../presets/everflow.toml"),
    ),
    ("keitaro", include_str!("../../../../presets/keitaro.toml")),
    ("voluum", include_str!("../../../../presets/voluum.toml")),
];

/// A preset file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    pub description: String,
    /// The public documents it follows.
    pub docs: Vec<String>,
    /// The `missing` rule of a destination that sets none.
    #[serde(default)]
    pub missing: Option<Missing>,
    /// Setting name -> what it is and what to give.
    #[serde(default)]
    pub settings: BTreeMap<String, Setting>,
    /// Event type -> what the partner is told (`conversion`): the types it takes.
    pub conversions: BTreeMap<EventType, String>,
    pub template: Options,
}

/// A preset by name.
pub fn get(name: &str) -> Result<Preset, KeyError> {
    let (_, text) = PRESETS.iter().find(|(n, _)| *n == name).ok_or_else(|| {
        let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
        key_err(
            "template.preset",
            format!("no preset {name:?} (presets: {})", names.join(", ")),
        )
    })?;
    toml::from_str(text).map_err(|e| {
        key_err(
            "template.preset",
            format!("preset {name} does not load: {e}"),
        )
    })
}

/// A template table with its preset applied.
pub struct Resolved {
    pub options: Options,
    /// The preset's event types, when there is a preset.
    pub conversions: Option<BTreeMap<EventType, String>>,
    pub missing: Option<Missing>,
}

const OPEN: &str = "<<";
const CLOSE: &str = ">>";

/// Applies `o`'s preset, if it names one: the preset's table, with `o`'s keys over it (a
/// table such as `headers` or `status_map` key by key), and the settings put in its text,
/// each checked for its kind and written for where it stands.
pub fn resolve(o: &Options) -> Result<Resolved, KeyError> {
    let Some(name) = &o.preset else {
        if let Some(k) = o.settings.keys().next() {
            return Err(key_err(
                format!("template.settings.{k}"),
                "settings are for a preset; this destination names none",
            ));
        }
        return Ok(Resolved {
            options: o.clone(),
            conversions: None,
            missing: None,
        });
    };
    let preset = get(name)?;
    for (k, v) in &o.settings {
        let key = format!("template.settings.{k}");
        if !preset.settings.contains_key(k) {
            let known: Vec<&str> = preset.settings.keys().map(String::as_str).collect();
            return Err(key_err(
                key,
                format!(
                    "preset {name} has no such setting (it has: {})",
                    known.join(", ")
                ),
            ));
        }
        if v.trim().is_empty() {
            return Err(key_err(key, "is empty"));
        }
        if v.contains(OPEN) || v.chars().any(char::is_control) {
            return Err(key_err(
                key,
                "must be plain text (no `<<`, no control characters)",
            ));
        }
    }
    let p = preset.template;
    let merged = |mut a: BTreeMap<String, String>, b: &BTreeMap<String, String>| {
        a.extend(b.iter().map(|(k, v)| (k.clone(), v.clone())));
        a
    };
    let mut macros = p.macros;
    macros.extend(o.macros.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut status_by_type = p.status_by_type;
    status_by_type.extend(o.status_by_type.iter().map(|(k, v)| (*k, v.clone())));
    let mut options = Options {
        preset: None,
        settings: BTreeMap::new(),
        syntax: o.syntax.or(p.syntax),
        method: o.method.or(p.method),
        url: o.url.clone().or(p.url),
        headers: merged(p.headers, &o.headers),
        body: o.body.clone().or(p.body),
        macros,
        status_map: {
            // Statuses are matched without regard to case: the user's entry replaces the
            // preset's in any case.
            let mut m = p.status_map;
            m.retain(|k, _| {
                !o.status_map
                    .keys()
                    .any(|u| u.trim().eq_ignore_ascii_case(k.trim()))
            });
            merged(m, &o.status_map)
        },
        status_by_type,
        signature: o.signature.clone().or(p.signature),
        status_order: o.status_order.or(p.status_order),
    };
    // Each setting given, or its default, checked for what it is; a value may not hold a
    // macro, since settings go in as text before the templates are read.
    let syntax = options.syntax;
    let mut values: BTreeMap<&str, String> = BTreeMap::new();
    for (k, setting) in &preset.settings {
        let Some(v) = o.settings.get(k).or(setting.default.as_ref()) else {
            continue;
        };
        let key = format!("template.settings.{k}");
        if syntax.is_some_and(|s| s.opens_in(v)) {
            return Err(key_err(
                key,
                "holds the macro syntax's delimiter: a setting is text, not a template",
            ));
        }
        values.insert(k, setting.kind.check(v).map_err(|m| key_err(key, m))?);
    }
    // One piece of text with its settings written in, `None` when it holds an optional
    // setting not given (which only a parameter of the query can be left out for).
    let fill = |key: &str,
                text: &str,
                place: &dyn Fn(usize) -> Place|
     -> Result<Option<String>, KeyError> {
        let mut out = String::new();
        let mut at = 0;
        while let Some(i) = text[at..].find(OPEN) {
            let start = at + i;
            out.push_str(&text[at..start]);
            let after = &text[start + OPEN.len()..];
            let end = after.find(CLOSE).ok_or_else(|| {
                key_err(key, format!("`{OPEN}` without `{CLOSE}` in preset {name}"))
            })?;
            let setting = &after[..end];
            let described = preset.settings.get(setting).ok_or_else(|| {
                key_err(
                    key,
                    format!("preset {name} uses an undeclared setting {setting:?}"),
                )
            })?;
            let place = place(start);
            match values.get(setting) {
                Some(v) => out.push_str(
                    &described
                        .kind
                        .write(setting, v, place)
                        .map_err(|m| key_err(key, m))?,
                ),
                None if described.required() => {
                    return Err(key_err(
                        format!("template.settings.{setting}"),
                        format!("required by preset {name}: {}", described.about),
                    ));
                }
                None if place == Place::Query => return Ok(None),
                None => {
                    return Err(key_err(
                        key,
                        format!(
                            "setting {setting} is optional: it may only stand in the URL's query, whose parameter is left out without it"
                        ),
                    ));
                }
            }
            at = start + OPEN.len() + end + CLOSE.len();
        }
        out.push_str(&text[at..]);
        Ok(Some(out))
    };
    // Outside the query, nothing is left out: an optional setting there is refused above.
    let fill_all = |key: &str, text: &str, place: Place| -> Result<String, KeyError> {
        Ok(fill(key, text, &|_| place)?.unwrap_or_default())
    };
    if let Some(u) = &options.url {
        let key = "template.url";
        let (path, query) = match u.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (u.as_str(), None),
        };
        let start = |i: usize| if i == 0 { Place::Start } else { Place::Path };
        let mut url = fill(key, path, &start)?.unwrap_or_default();
        if let Some(query) = query {
            let mut kept = Vec::new();
            for pair in query.split('&') {
                kept.extend(fill(key, pair, &|_| Place::Query)?);
            }
            // Every parameter left out: no query at all.
            if !kept.is_empty() {
                url.push('?');
                url.push_str(&kept.join("&"));
            }
        }
        options.url = Some(url);
    }
    for (k, v) in options.headers.iter_mut() {
        *v = fill_all(&format!("template.headers.{k}"), v, Place::Header)?;
    }
    let fill_body = |key: &str, text: &str| fill_all(key, text, Place::Body);
    if let Some(b) = &mut options.body {
        if let Some(t) = &b.text {
            b.text = Some(fill_body("template.body.text", t)?);
        }
        if let Some(j) = &mut b.json {
            fill_json(j, "template.body.json", &fill_body)?;
        }
        if let Some(f) = &mut b.form {
            for (k, v) in f.iter_mut() {
                fill_json(v, &format!("template.body.form.{k}"), &fill_body)?;
            }
        }
    }
    Ok(Resolved {
        options,
        conversions: Some(preset.conversions),
        missing: preset.missing,
    })
}

fn fill_json(
    v: &mut serde_json::Value,
    key: &str,
    fill: &dyn Fn(&str, &str) -> Result<String, KeyError>,
) -> Result<(), KeyError> {
    use serde_json::Value;
    match v {
        Value::String(s) => *s = fill(key, s)?,
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                fill_json(item, &format!("{key}[{i}]"), fill)?;
            }
        }
        Value::Object(m) => {
            for (k, item) in m.iter_mut() {
                fill_json(item, &format!("{key}.{k}"), fill)?;
            }
        }
        _ => {}
    }
    Ok(())
}
