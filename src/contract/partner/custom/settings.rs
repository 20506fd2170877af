//! A preset's settings: what each kind holds (where the tracker is, a path segment, a value of
//! the query), how a given value is checked, and how it is written where the preset's text
//! puts it, so that no setting can change the shape of the URL around it.

use serde::Deserialize;

use super::header_text;
use crate::contract::partner::encode_component;

/// What a setting holds, which says how its value is checked and where it may stand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingKind {
    /// Where the tracker is: an http or https URL with a host and, for a tracker in a
    /// subfolder, a path; it begins the URL. A trailing `/` is dropped.
    Origin,
    /// One path segment (a postback key): RFC 3986 unreserved characters only.
    Segment,
    /// Any text (an id, a token): percent-encoded in the query, so that it stays data.
    Value,
}

/// A setting a preset asks for: `[settings.NAME]` in its file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setting {
    pub kind: SettingKind,
    /// What to give, as the user is told when it is missing.
    pub about: String,
    /// Whether it may be left out: a parameter of the query that holds it is then left out.
    #[serde(default)]
    pub optional: bool,
    /// The value when none is given.
    #[serde(default)]
    pub default: Option<String>,
}

impl Setting {
    pub fn required(&self) -> bool {
        !self.optional && self.default.is_none()
    }
}

/// Where a setting stands in the preset's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// The start of the URL: its scheme and host.
    Start,
    /// The URL's path.
    Path,
    /// The URL's query.
    Query,
    Header,
    /// A body, whose serializer (JSON, form) writes what it holds, or the partner's own text.
    Body,
}

const ORIGIN: &str = "expected an origin: an http or https URL with a host and, if the tracker lives in a subfolder, its path (like https://tracker.example.com or https://example.com/tracker), without user, password, query, fragment, `.` or `..` segments";

const SEGMENT: &str = "expected a path segment: letters, digits, `-`, `.`, `_` and `~` only (RFC 3986 unreserved), not `.` or `..`";

impl SettingKind {
    /// A value as given, checked for what it is: what the preset's text gets (an origin as
    /// the HTTP client writes it, without its trailing `/`), or why it is not one.
    pub fn check(self, v: &str) -> Result<String, String> {
        match self {
            SettingKind::Origin => origin(v).map_err(|problem| format!("{problem}; {ORIGIN}")),
            SettingKind::Segment => segment(v)
                .map(|()| v.to_owned())
                .map_err(|problem| format!("{problem}; {SEGMENT}")),
            // Plain text without control characters, which every setting is checked for.
            SettingKind::Value => Ok(v.to_owned()),
        }
    }

    /// The text standing for a checked value `v` of setting `name` at `place`, or why it
    /// cannot stand there.
    pub fn write(self, name: &str, v: &str, place: Place) -> Result<String, String> {
        match (self, place) {
            (SettingKind::Origin, Place::Start) => Ok(v.to_owned()),
            (SettingKind::Origin, _) => Err(format!(
                "setting {name} is an origin (where the tracker is): it may only begin the URL"
            )),
            (SettingKind::Segment, Place::Start) => Err(format!(
                "setting {name} is a path segment: the URL begins with an origin"
            )),
            (SettingKind::Segment, _) => Ok(v.to_owned()),
            (SettingKind::Value, Place::Query) => Ok(encode_component(v)),
            (SettingKind::Value, Place::Header) => Ok(header_text(v)),
            (SettingKind::Value, Place::Body) => Ok(v.to_owned()),
            (SettingKind::Value, Place::Start | Place::Path) => Err(format!(
                "setting {name} is a value, for the query, a header or a body, not the URL's path (a segment is)"
            )),
        }
    }
}

fn origin(v: &str) -> Result<String, String> {
    let u = url::Url::parse(v).map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("is an {} URL", u.scheme()));
    }
    if u.host().is_none() {
        return Err("has no host".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("holds a user or password".into());
    }
    if u.query().is_some() {
        return Err("holds a query (`?`)".into());
    }
    if u.fragment().is_some() {
        return Err("holds a fragment (`#`)".into());
    }
    // The parser has removed them already: they are looked for in the text as given (where
    // `\` is a `/` to the parser, and `%2e` a dot).
    let dot = v.split(['/', '\\']).any(|s| {
        let s = percent_encoding::percent_decode_str(s).decode_utf8_lossy();
        s == "." || s == ".."
    });
    if dot {
        return Err("holds a `.` or `..` path segment".into());
    }
    let mut sent = u.as_str().to_owned();
    while sent.ends_with('/') {
        sent.pop();
    }
    if u.path().trim_end_matches('/').contains("//") {
        return Err("holds an empty path segment (`//`)".into());
    }
    Ok(sent)
}

fn segment(v: &str) -> Result<(), String> {
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._~".contains(*c)))
    {
        return Err(format!("holds {c:?}"));
    }
    match v {
        "." | ".." => Err(format!("is `{v}`")),
        _ => Ok(()),
    }
}
