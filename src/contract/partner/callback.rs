//! Publisher callbacks in the Awin Transaction Notification style
//! (specs/awin-transaction-notification.en.txt): here the relay is the network, calling the
//! publisher's callback URL on each transaction.
//!
//! - GET: the URL is a template with 25 case-sensitive `!!!name!!!` placeholders, in the path
//!   or the query.
//! - POST: `application/x-www-form-urlencoded; charset=UTF-8`, one field `AwinTransactionPush`
//!   holding a JSON object whose values are strings; keys without a value are left out.
//! - Dates `YYYY-MM-DD HH:MM:SS` in UTC; amounts with two decimals; currencies upper case.
//! - Only ports 80 and 443 ("Supported ports are 80 and 443").

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::template::{Missing, Syntax, Template};
use super::{HttpMethod, Method, RenderError, Rendered};
use super::{KeyError, key_err};
use crate::contract::event::ConversionEvent;

/// The document's GET placeholders, in its table's order. (The table lists 24; `ip` appears
/// only in the POST example data.)
pub const PLACEHOLDERS: [&str; 24] = [
    "affiliateId",
    "bannerId",
    "clickRef",
    "clickRef2",
    "clickRef3",
    "clickRef4",
    "clickRef5",
    "clickRef6",
    "clickThroughTime",
    "clickTime",
    "commission",
    "commissionGroups",
    "groupId",
    "merchantId",
    "phrase",
    "products",
    "searchEngine",
    "transactionAmount",
    "transactionDate",
    "transactionId",
    "url",
    "transactionCurrency",
    "trackedCurrency",
    "trackedAmount",
];

/// Keys of the `AwinTransactionPush` object, in the order of the document's example data.
const POST_KEYS: [&str; 25] = [
    "transactionId",
    "transactionDate",
    "transactionCurrency",
    "transactionAmount",
    "trackedCurrency",
    "trackedAmount",
    "affiliateId",
    "merchantId",
    "groupId",
    "bannerId",
    "clickRef",
    "clickRef2",
    "clickRef3",
    "clickRef4",
    "clickRef5",
    "clickRef6",
    "clickThroughTime",
    "ip",
    "commission",
    "clickTime",
    "url",
    "phrase",
    "searchEngine",
    "commissionGroups",
    "products",
];

/// Click source data, sent only when the publisher asked for it.
const CLICK_SOURCE: [&str; 4] = ["clickTime", "url", "phrase", "searchEngine"];

/// Values that are JSON arrays, not strings.
const JSON_VALUES: [&str; 2] = ["commissionGroups", "products"];

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// The publisher's callback URL; a template with `!!!name!!!` placeholders for GET.
    pub url: String,
    #[serde(default)]
    pub method: HttpMethod,
    /// `!!!merchantId!!!` when the event has no `attribution.params.merchantId`.
    #[serde(default)]
    pub merchant_id: Option<String>,
    /// Send product data (`!!!products!!!`).
    #[serde(default = "yes")]
    pub product_data: bool,
    /// Send click source data (`!!!clickTime!!!`, `!!!url!!!`, `!!!phrase!!!`,
    /// `!!!searchEngine!!!`).
    #[serde(default = "yes")]
    pub click_source_data: bool,
    /// Accept ports other than 80 and 443. For sandboxes and tests only: the format supports
    /// 80 and 443.
    #[serde(default)]
    pub allow_any_port: bool,
    /// An HMAC-SHA256 signature on each call (see `partner::sign`).
    #[serde(default)]
    pub signature: Option<super::sign::Options>,
}

/// A checked callback destination.
#[derive(PartialEq, Clone, Debug)]
pub struct Callback {
    url: Template,
    method: HttpMethod,
    merchant_id: Option<String>,
    product_data: bool,
    click_source_data: bool,
    allow_any_port: bool,
}

pub fn compile(o: Option<&Options>) -> Result<Callback, KeyError> {
    let o = o.ok_or_else(|| key_err("callback", "required for kind callback (url)"))?;
    let key = "callback.url";
    let url = Template::parse(&o.url, Syntax::Bang, &PLACEHOLDERS)
        .map_err(|e| key_err(key, e.to_string()))?
        .as_sent()
        .map_err(|e| key_err(key, e))?;
    // The scheme, host and port are fixed text: a value can never change where the call goes.
    let parsed = url.fixed_origin().map_err(|e| key_err(key, e))?;
    let port = parsed.port_or_known_default();
    if !o.allow_any_port && !matches!(port, Some(80 | 443)) {
        return Err(key_err(
            key,
            format!(
                "port {} is not supported: publisher callbacks use ports 80 and 443 only",
                port.unwrap_or(0)
            ),
        ));
    }
    Ok(Callback {
        url,
        method: o.method,
        merchant_id: o.merchant_id.clone(),
        product_data: o.product_data,
        click_source_data: o.click_source_data,
        allow_any_port: o.allow_any_port,
    })
}

/// `%Y-%m-%d %H:%i:%s`, UTC.
fn date(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Arrays of objects with string values, as in the document's example data: numbers and
/// booleans inside become strings (numbers keep their exact digits).
fn stringify(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Number(n) => Value::String(n.to_string()),
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Array(a) => Value::Array(a.iter().map(stringify).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), stringify(v))).collect())
        }
        other => other.clone(),
    }
}

/// A non-empty list of objects as a JSON array of string-valued objects.
fn json_list(items: &[serde_json::Map<String, serde_json::Value>]) -> Option<Field> {
    (!items.is_empty()).then(|| {
        Field::Json(serde_json::Value::Array(
            items
                .iter()
                .map(|m| stringify(&serde_json::Value::Object(m.clone())))
                .collect(),
        ))
    })
}

enum Field {
    Text(String),
    Json(serde_json::Value),
}

impl Callback {
    /// The value of a placeholder for `event`, or `None` when not available (or not shared).
    fn field(&self, event: &ConversionEvent, name: &str) -> Option<Field> {
        if (!self.product_data && name == "products")
            || (!self.click_source_data && CLICK_SOURCE.contains(&name))
        {
            return None;
        }
        let a = event.attribution.as_ref();
        let o = event.order.as_ref();
        let param = |k: &str| {
            a.and_then(|a| a.params.get(k))
                .filter(|v| !v.is_empty())
                .cloned()
        };
        let text = |v: Option<String>| v.map(Field::Text);
        match name {
            "affiliateId" => text(a.and_then(|a| a.publisher_id.clone())),
            "merchantId" => text(param("merchantId").or_else(|| self.merchant_id.clone())),
            "clickThroughTime" => text(a.and_then(|a| a.clicked_at.as_ref()).map(date)),
            "clickTime" => {
                text(param("clickTime").or_else(|| a.and_then(|a| a.clicked_at.as_ref()).map(date)))
            }
            "commission" => text(o.and_then(|o| o.commission).map(|m| m.fixed2())),
            "transactionAmount" => text(o.and_then(|o| o.amount).map(|m| m.fixed2())),
            "transactionDate" => text(Some(date(&event.occurred_at))),
            "transactionId" => text(Some(
                o.and_then(|o| o.id.clone())
                    .unwrap_or_else(|| event.event_id.clone()),
            )),
            "transactionCurrency" => text(
                o.and_then(|o| o.currency.as_ref())
                    .map(|c| c.as_str().to_owned()),
            ),
            // "only available if it's a different currency compared to the Advertiser's
            // program currency".
            "trackedCurrency" | "trackedAmount" => {
                let o = o?;
                let tracked = o.tracked_currency.as_ref()?;
                if o.currency.as_ref() == Some(tracked) {
                    return None;
                }
                if name == "trackedCurrency" {
                    text(Some(tracked.as_str().to_owned()))
                } else {
                    text(o.tracked_amount.map(|m| m.fixed2()))
                }
            }
            "commissionGroups" => o.and_then(|o| json_list(&o.commission_groups)),
            "products" => o.and_then(|o| json_list(&o.products)),
            // Attribution and click source data the producer passes through params.
            _ => text(param(name)),
        }
    }

    pub(crate) fn render(
        &self,
        event: &ConversionEvent,
        missing: Missing,
    ) -> Result<Rendered, RenderError> {
        let text_of = |name: &str| {
            self.field(event, name).map(|f| match f {
                Field::Text(t) => t,
                Field::Json(v) => php_json(&v),
            })
        };
        let url = self.url.render_url(&text_of, missing)?;
        // The host and port are template text, checked at load; check again what is sent.
        if !self.allow_any_port {
            let port = url::Url::parse(&url)
                .ok()
                .and_then(|u| u.port_or_known_default());
            if !matches!(port, Some(80 | 443)) {
                return Err(RenderError::Invalid(format!(
                    "callback URL {url:?} is not on port 80 or 443"
                )));
            }
        }
        Ok(match self.method {
            HttpMethod::Get => Rendered {
                method: Method::Get,
                url,
                headers: BTreeMap::new(),
                body: None,
            },
            HttpMethod::Post => {
                let push = self.transaction_push(event);
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("AwinTransactionPush", &push)
                    .finish();
                Rendered {
                    method: Method::Post,
                    url,
                    headers: BTreeMap::from([(
                        "Content-Type".into(),
                        "application/x-www-form-urlencoded; charset=UTF-8".into(),
                    )]),
                    body: Some(body),
                }
            }
        })
    }

    /// The `AwinTransactionPush` JSON: the available keys in the document's order.
    pub fn transaction_push(&self, event: &ConversionEvent) -> String {
        let fields: Vec<(&str, Field)> = POST_KEYS
            .iter()
            .filter_map(|k| self.field(event, k).map(|f| (*k, f)))
            .collect();
        debug_assert!(
            fields
                .iter()
                .all(|(k, f)| matches!(f, Field::Json(_)) == JSON_VALUES.contains(k))
        );
        php_json(&Ordered(&fields))
    }
}

struct Ordered<'a>(&'a [(&'a str, Field)]);

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            match v {
                Field::Text(t) => map.serialize_entry(k, t)?,
                Field::Json(j) => map.serialize_entry(k, j)?,
            }
        }
        map.end()
    }
}

/// JSON as the document's example shows it (PHP's `json_encode`): `/` written `\/` and
/// non-ASCII characters as `\uXXXX`. Any JSON parser reads it back to the same values.
pub fn php_json<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PhpFormatter);
    value
        .serialize(&mut ser)
        .expect("serializing to memory cannot fail");
    String::from_utf8(out).expect("escaped JSON is ASCII")
}

struct PhpFormatter;

impl serde_json::ser::Formatter for PhpFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        for c in fragment.chars() {
            match c {
                '/' => w.write_all(b"\\/")?,
                c if c.is_ascii() => w.write_all(&[c as u8])?,
                c => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        write!(w, "\\u{u:04x}")?;
                    }
                }
            }
        }
        Ok(())
    }
}
