//! Rendering a template destination's request for an event: each value encoded for where it lands.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use super::macros::Context;
use super::{Body, Custom, Json};
use crate::contract::encode::header_text;
use crate::contract::event::ConversionEvent;
use crate::contract::partner::template::{Missing, MissingValue, Template};
use crate::contract::partner::{RenderError, Rendered, encode_component};

/// Fills one template with its values, each written by the encoder given.
type Fill<'a> = dyn Fn(&Template, &dyn Fn(&str) -> String) -> Result<String, Unfilled> + 'a;

/// A part of the request that could not be filled.
enum Unfilled {
    /// A macro without a value, under `skip`: leave the field out.
    Skip,
    Error(RenderError),
}

impl From<MissingValue> for Unfilled {
    fn from(e: MissingValue) -> Self {
        Unfilled::Error(e.into())
    }
}

impl Custom {
    pub(crate) fn render(
        &self,
        event: &ConversionEvent,
        conversion: &str,
        missing: Missing,
        now: DateTime<Utc>,
    ) -> Result<Rendered, RenderError> {
        let context = Context {
            event,
            conversion,
            now,
        };
        let mut values: HashMap<&str, Option<String>> = HashMap::new();
        for name in &self.used {
            values.insert(name, self.macros.value(name, &context)?);
        }
        let value = |n: &str| values.get(n).cloned().flatten();
        // Fills one field: under `skip`, a missing value leaves the field out.
        let fill = |t: &Template, encode: &dyn Fn(&str) -> String| -> Result<String, Unfilled> {
            match t.render_with(&value, missing, encode) {
                Ok(s) => Ok(s),
                Err(_) if missing == Missing::Skip => Err(Unfilled::Skip),
                Err(e) => Err(e.into()),
            }
        };
        let keep = |r: Result<String, Unfilled>| -> Result<Option<String>, RenderError> {
            match r {
                Ok(s) => Ok(Some(s)),
                Err(Unfilled::Skip) => Ok(None),
                Err(Unfilled::Error(e)) => Err(e),
            }
        };
        // The path cannot leave a segment out: there `skip` fails the delivery.
        let path_missing = match missing {
            Missing::Skip => Missing::Fail,
            m => m,
        };
        let mut url = self.base.render_url(&value, path_missing)?;
        if let Some(pairs) = &self.query {
            let mut sent = Vec::new();
            for p in pairs {
                let encode = &|v: &str| encode_component(v);
                let pair = fill(&p.key, encode).and_then(|k| match &p.value {
                    None => Ok(k),
                    Some(v) => fill(v, encode).map(|v| format!("{k}={v}")),
                });
                if let Some(pair) = keep(pair)? {
                    sent.push(pair);
                }
            }
            // Every parameter left out: no query at all.
            if !sent.is_empty() {
                url.push('?');
                url.push_str(&sent.join("&"));
            }
        }
        let mut headers = BTreeMap::new();
        for (name, t) in &self.headers {
            if let Some(v) = keep(fill(t, &header_text))? {
                headers.insert(name.clone(), v);
            }
        }
        let raw = &|v: &str| v.to_owned();
        let body = match &self.body {
            None => None,
            // A text body cannot leave a piece out: there `skip` fails the delivery.
            Some(Body::Text(t)) => Some(t.render_with(&value, path_missing, raw)?),
            Some(Body::Form(fields)) => {
                let mut ser = url::form_urlencoded::Serializer::new(String::new());
                for (k, t) in fields {
                    if let Some(v) = keep(fill(t, raw))? {
                        ser.append_pair(k, &v);
                    }
                }
                Some(ser.finish())
            }
            Some(Body::Json(j)) => {
                let v = match self.json(j, missing, &fill, &value)? {
                    Some(v) => v,
                    None => return Err(self.unfilled(j, &value)),
                };
                Some(serde_json::to_string(&v).expect("a JSON value serializes"))
            }
        };
        Ok(Rendered {
            method: self.method,
            url,
            headers,
            body,
        })
    }

    /// The refusal of a JSON part that `skip` would leave out where nothing can be: its
    /// first macro without a value.
    fn unfilled(&self, j: &Json, value: &dyn Fn(&str) -> Option<String>) -> RenderError {
        fn first(j: &Json, value: &dyn Fn(&str) -> Option<String>) -> Option<String> {
            match j {
                Json::Text(t) => t
                    .placeholders()
                    .find(|p| value(p).is_none())
                    .map(str::to_owned),
                Json::Number(n) => Some(n.clone()),
                Json::Value(_) => None,
                Json::Array(items) => items.iter().find_map(|i| first(i, value)),
                Json::Object(fields) => fields.iter().find_map(|(_, f)| first(f, value)),
            }
        }
        let name = first(j, value).unwrap_or_default();
        MissingValue(self.syntax.show(&name)).into()
    }

    /// A JSON body part, `None` when it is left out (`skip`). A number macro without a
    /// value is left out, written `null` (`empty`) or refused.
    fn json(
        &self,
        j: &Json,
        missing: Missing,
        fill: &Fill<'_>,
        value: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<serde_json::Value>, RenderError> {
        use serde_json::Value;
        Ok(match j {
            Json::Text(t) => match fill(t, &|v: &str| v.to_owned()) {
                Ok(s) => Some(Value::String(s)),
                Err(Unfilled::Skip) => None,
                Err(Unfilled::Error(e)) => return Err(e),
            },
            Json::Number(name) => match value(name) {
                Some(v) => Some(Value::Number(serde_json::from_str(&v).map_err(|_| {
                    RenderError::Invalid(format!("macro {name}: {v:?} is not a number"))
                })?)),
                None => match missing {
                    Missing::Skip => None,
                    Missing::Empty => Some(Value::Null),
                    Missing::Fail => {
                        return Err(MissingValue(self.syntax.show(name)).into());
                    }
                },
            },
            Json::Value(v) => Some(v.clone()),
            // An element of an array is a position, not a field: leaving it out would move
            // the others, so there `skip` fails the delivery.
            Json::Array(items) => {
                let mut out = Vec::new();
                for i in items {
                    match self.json(i, missing, fill, value)? {
                        Some(v) => out.push(v),
                        None => return Err(self.unfilled(i, value)),
                    }
                }
                Some(Value::Array(out))
            }
            Json::Object(fields) => {
                let mut out = serde_json::Map::new();
                for (k, f) in fields {
                    if let Some(v) = self.json(f, missing, fill, value)? {
                        out.insert(k.clone(), v);
                    }
                }
                Some(Value::Object(out))
            }
        })
    }
}
