//! A template that is a URL: written as the HTTP client sends it, filled so that what is shown
//! is what is sent, and kept from choosing where the request goes.

use super::{Missing, Part, Template};
use crate::contract::partner::RenderError;

impl Template {
    /// Fills a URL template, each value percent-encoded once, and checks that the HTTP client
    /// sends the result as it is. Its URL parser removes `.` and `..` path segments (`%2e`
    /// counting as a dot): a value that makes one would send the request to another path
    /// than shown, and is refused, naming its placeholder.
    pub fn render_url(
        &self,
        value: &dyn Fn(&str) -> Option<String>,
        missing: Missing,
    ) -> Result<String, RenderError> {
        let url = self.render(value, missing)?;
        if sent_as_is(&url) {
            return Ok(url);
        }
        // Which value is it? With every value put aside ("x") the URL is sent as it is; the
        // values come back one by one, in order, until one makes it rewritten.
        let mut back: Vec<&str> = Vec::new();
        for name in self.placeholders() {
            if back.contains(&name) {
                continue;
            }
            back.push(name);
            let some_back = |n: &str| {
                if back.contains(&n) {
                    value(n)
                } else {
                    Some("x".to_owned())
                }
            };
            if self
                .render(&some_back, missing)
                .is_ok_and(|u| !sent_as_is(&u))
            {
                let v = value(name).unwrap_or_default();
                let mut shown: String = v.chars().take(SHOWN_VALUE_CHARS).collect();
                if shown.len() < v.len() {
                    shown.push('…');
                }
                return Err(RewrittenValue {
                    placeholder: self.syntax.show(name),
                    value: shown,
                }
                .into());
            }
        }
        // No one value's doing: the request's own check refuses it, showing the URL.
        Ok(url)
    }

    /// For a URL template: the same template with its text written as the HTTP client sends
    /// it (scheme and host in lower case, a default port left out, characters it would
    /// percent-encode encoded, dot segments of the text resolved), so that what is rendered
    /// is what is sent. Refuses a fragment (never sent) and text that the client would
    /// rewrite across a placeholder (`!!!x!!!/..` removes it).
    pub fn as_sent(&self) -> Result<Template, String> {
        // Each placeholder stands as a marker the parser keeps as it is (letters and digits),
        // made of letters the template's text does not hold in that order.
        let whole: String = self
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Text(t) => Some(t.as_str()),
                Part::Placeholder(_) => None,
            })
            .collect();
        let mut stem = String::from("zq");
        while whole.to_ascii_lowercase().contains(&stem) {
            stem.push('x');
        }
        let marker = |i: usize| format!("{stem}{i}{stem}");
        let mut text = String::new();
        let mut names = Vec::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => text.push_str(t),
                Part::Placeholder(name) => {
                    text.push_str(&marker(names.len()));
                    names.push(name.as_str());
                }
            }
        }
        let parsed = url::Url::parse(&text).map_err(|e| format!("not a URL: {e}"))?;
        if parsed.fragment().is_some() {
            return Err("has a fragment (#...), which the HTTP client never sends".into());
        }
        let sent = parsed.as_str();
        let shown = || {
            names.iter().enumerate().fold(sent.to_owned(), |s, (i, n)| {
                s.replace(&marker(i), &self.syntax.show(n))
            })
        };
        let mut parts = Vec::new();
        let mut rest = sent;
        for (i, name) in names.iter().enumerate() {
            let m = marker(i);
            let at = match rest.find(&m) {
                Some(at) if sent.matches(&m).count() == 1 => at,
                _ => {
                    return Err(format!(
                        "the HTTP client would send it as {}, without {}",
                        shown(),
                        self.syntax.show(name)
                    ));
                }
            };
            if at > 0 {
                parts.push(Part::Text(rest[..at].to_owned()));
            }
            parts.push(Part::Placeholder((*name).to_owned()));
            rest = &rest[at + m.len()..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template {
            syntax: self.syntax,
            parts,
        })
    }

    /// For a URL template: checks that no placeholder can change where the request goes
    /// (scheme, host, port), and returns the URL as rendered with sample values.
    pub fn fixed_origin(&self) -> Result<url::Url, String> {
        let sample = |v: &'static str| {
            let text = self
                .render(&|_| Some(v.to_owned()), Missing::Empty)
                .expect("empty policy never fails");
            url::Url::parse(&text).map_err(|e| format!("not a URL: {e}"))
        };
        let (a, b) = (sample("a")?, sample("b.example")?);
        // The user and password too: the HTTP client takes them out of the URL, decoded, into
        // an Authorization header.
        let origin = |u: &url::Url| {
            (
                u.scheme().to_owned(),
                u.username().to_owned(),
                u.password().map(str::to_owned),
                u.host_str().map(str::to_owned),
                u.port(),
            )
        };
        if origin(&a) != origin(&b) {
            return Err(
                "placeholders may appear in the path or the query, not in the scheme, user, password, host or port"
                    .into(),
            );
        }
        if !matches!(a.scheme(), "http" | "https") || a.host().is_none() {
            return Err("must be an http:// or https:// URL".into());
        }
        Ok(a)
    }
}

/// One query parameter of a URL template: its key, and its value after the first `=` (none
/// for a parameter written without `=`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryPair {
    pub key: Template,
    pub value: Option<Template>,
}

impl Template {
    /// A URL template cut where its query starts and at each `&` of the query: the template
    /// up to the query, and each parameter (none when the URL has no `?`). Placeholders
    /// never hold `?`, `&` or `=`: those are cut in the text only. Empty parameters stay, so
    /// joining the parts with `?` and `&` gives back the text as written.
    pub fn split_query(&self) -> (Template, Option<Vec<QueryPair>>) {
        let piece = |parts: Vec<Part>| Template {
            syntax: self.syntax,
            parts,
        };
        let mut base = Vec::new();
        let mut pairs: Option<Vec<QueryPair>> = None;
        let mut key: Vec<Part> = Vec::new();
        let mut value: Option<Vec<Part>> = None;
        let push = |key: &mut Vec<Part>, value: &mut Option<Vec<Part>>, p: Part| match value {
            Some(v) => v.push(p),
            None => key.push(p),
        };
        for p in &self.parts {
            let mut text = match p {
                Part::Text(t) => t.as_str(),
                Part::Placeholder(_) => {
                    match &pairs {
                        Some(_) => push(&mut key, &mut value, p.clone()),
                        None => base.push(p.clone()),
                    }
                    continue;
                }
            };
            if pairs.is_none() {
                match text.split_once('?') {
                    Some((before, after)) => {
                        if !before.is_empty() {
                            base.push(Part::Text(before.to_owned()));
                        }
                        pairs = Some(Vec::new());
                        text = after;
                    }
                    None => {
                        base.push(p.clone());
                        continue;
                    }
                }
            }
            for (i, mut chunk) in text.split('&').enumerate() {
                if i > 0 {
                    pairs.get_or_insert_default().push(QueryPair {
                        key: piece(std::mem::take(&mut key)),
                        value: value.take().map(piece),
                    });
                }
                if value.is_none()
                    && let Some((k, v)) = chunk.split_once('=')
                {
                    if !k.is_empty() {
                        key.push(Part::Text(k.to_owned()));
                    }
                    value = Some(Vec::new());
                    chunk = v;
                }
                if !chunk.is_empty() {
                    push(&mut key, &mut value, Part::Text(chunk.to_owned()));
                }
            }
        }
        if let Some(pairs) = &mut pairs {
            pairs.push(QueryPair {
                key: piece(key),
                value: value.map(piece),
            });
        }
        (piece(base), pairs)
    }

    /// The one placeholder this template is, if it is nothing else.
    pub fn only_placeholder(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Placeholder(name)] => Some(name),
            _ => None,
        }
    }
}

/// How much of a refused value an error shows.
const SHOWN_VALUE_CHARS: usize = 64;

/// A value the HTTP client would not send as rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "placeholder {placeholder} is {value:?}: the HTTP client would rewrite the URL around it (it removes `.` and `..` path segments), sending the request to another path than shown"
)]
pub struct RewrittenValue {
    pub placeholder: String,
    /// The value, cut to its first 64 characters.
    pub value: String,
}

/// Whether the HTTP client's URL parser keeps `url` exactly as it is.
fn sent_as_is(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| u.as_str() == url)
}
