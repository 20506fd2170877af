//! HOQU S2S postbacks (specs/hoqu-s2s.ru.txt).
//!
//! - GET `{base}/{api_key}/s2s?click_id=&request_id=&action=&price=&status=`, or POST to
//!   `{base}/{api_key}` with `Content-Type: application/json` and the same fields ("Пример
//!   POST-запроса: Host: `https://trackerdomain.com/advertiser_api_key`"). POST is offered for
//!   a new conversion only ("Сообщить платформе о новой конверсии ... POST или GET-запрос");
//!   a status update is a GET ("Для того чтобы обновить статус заявки на платформе, нужно
//!   отправить GET-запрос"), and the document gives no POST for recurring payments' customers.
//! - `request_id` is the advertiser's conversion ID (`order.id`, required): HOQU drops
//!   duplicates by it and confirms or rejects by it, so a status update repeats the same
//!   `click_id` + `request_id`.
//! - Required: fixed CPA `click_id, request_id, action, status`; percentage CPA adds `price`;
//!   recurring payments add `customer_id` to leads and add customers with
//!   `customer_id, click_id, status=activate|deactivate`.
//! - The API key sits in the URL path: it is a secret, redacted wherever a request is shown.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::template::{Missing, Syntax, Template};
use super::{HttpMethod, Method, RenderError, Rendered, encode_component, fields, join, required};
use super::{KeyError, Kind, key_err};
use crate::contract::event::{ConversionEvent, EventType};

/// How the offer pays, which decides the required parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Payout {
    /// Fixed CPA: `price` is sent when known, not required.
    Fixed,
    /// Percentage CPA: `price` (the full amount paid) is required.
    Percentage,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// The advertiser API key from HOQU; use `${HOQU_API_KEY}`.
    pub api_key: String,
    /// How a new conversion is sent; status updates and customers always go by GET.
    #[serde(default)]
    pub method: HttpMethod,
    pub payout: Payout,
    /// Recurring payments: leads carry `customer_id`, and `customer_status` events add or
    /// remove a customer.
    #[serde(default)]
    pub recurring: bool,
    /// The payout name (`action`) from the offer card, when the event has no `action`.
    #[serde(default)]
    pub action: Option<String>,
    /// Extra parameters from the offer's template: name -> value template over event fields,
    /// e.g. `sub1 = "{params.sub1}"`.
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
    /// How long a status update waits for its conversion to be sent first (then it goes
    /// anyway: "Рекламодатель может сразу передавать финальный статус").
    #[serde(default = "default_status_wait")]
    pub status_wait_secs: u64,
}

fn default_status_wait() -> u64 {
    300
}

/// A checked HOQU destination.
#[derive(PartialEq, Clone, Debug)]
pub struct Hoqu {
    base_url: String,
    api_key: String,
    method: HttpMethod,
    payout: Payout,
    recurring: bool,
    action: Option<String>,
    extra: Vec<(String, Template)>,
    status_wait_secs: u64,
}

/// Parameters HOQU defines; extra parameters may not reuse them.
const RESERVED: &[&str] = &[
    "click_id",
    "request_id",
    "action",
    "price",
    "status",
    "customer_id",
];

pub fn compile(
    o: Option<&Options>,
    base_url: &str,
    conversions: &BTreeMap<EventType, String>,
    routes: &mut BTreeMap<EventType, String>,
) -> Result<Hoqu, KeyError> {
    let at = |k: &str| k.to_owned();
    let o = o.ok_or_else(|| key_err(at("hoqu"), "required for kind hoqu (api_key, payout)"))?;
    if o.api_key.trim().is_empty() {
        return Err(key_err(at("hoqu.api_key"), "must not be empty"));
    }
    // The key is a path segment: the HTTP client removes a `.` or `..` one, and would call
    // another path than shown.
    if matches!(o.api_key.as_str(), "." | "..") {
        return Err(key_err(
            at("hoqu.api_key"),
            "must not be a dot segment, which the HTTP client removes from the URL path",
        ));
    }
    let mut extra = Vec::new();
    for (name, text) in &o.extra {
        if RESERVED.contains(&name.as_str()) || name.is_empty() {
            return Err(key_err(
                at(&format!("hoqu.extra.{name}")),
                "is a parameter HOQU defines; pick another name",
            ));
        }
        let t = Template::parse(text, Syntax::Brace, fields::EVENT_FIELDS)
            .map_err(|e| key_err(at(&format!("hoqu.extra.{name}")), e.to_string()))?;
        extra.push((name.clone(), t));
    }
    if o.recurring && !conversions.contains_key(&EventType::CustomerStatus) {
        routes.insert(EventType::CustomerStatus, "customer".into());
    }
    if !o.recurring && routes.values().any(|c| c == "customer") {
        return Err(key_err(
            at("conversions"),
            "`customer` is for recurring payments: set hoqu.recurring = true",
        ));
    }
    Ok(Hoqu {
        base_url: base_url.to_owned(),
        api_key: o.api_key.clone(),
        method: o.method,
        payout: o.payout,
        recurring: o.recurring,
        action: o.action.clone(),
        extra,
        status_wait_secs: o.status_wait_secs,
    })
}

/// A parameter value: text, or a number (`price`, a JSON number in POST bodies).
enum Param {
    Text(String),
    Number(String),
}

impl Param {
    fn as_str(&self) -> &str {
        match self {
            Param::Text(s) | Param::Number(s) => s,
        }
    }
}

/// Serializes parameters as a JSON object in the document's order.
struct JsonBody<'a>(&'a [(String, Param)]);

impl Serialize for JsonBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            match v {
                Param::Text(t) => map.serialize_entry(k, t)?,
                Param::Number(n) => {
                    let n: serde_json::Number = n.parse().map_err(serde::ser::Error::custom)?;
                    map.serialize_entry(k, &n)?
                }
            }
        }
        map.end()
    }
}

impl Hoqu {
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    pub fn status_wait_secs(&self) -> u64 {
        self.status_wait_secs
    }

    /// The HOQU status `event` is sent with, and whether it is an update; `None` for customer
    /// events and statuses outside the table (those are render errors).
    pub fn status_for(
        &self,
        event: &ConversionEvent,
        conversion: &str,
    ) -> Option<(&'static str, bool)> {
        let merchant = event.order.as_ref().and_then(|o| o.status.as_deref());
        match (conversion, merchant) {
            ("conversion", Some(s)) => map_status(s).map(|st| (st, false)),
            ("conversion", None) => Some(("hold", false)),
            ("status_update", Some(s)) => map_status(s).map(|st| (st, true)),
            _ => None,
        }
    }

    pub(crate) fn render(
        &self,
        event: &ConversionEvent,
        conversion: &str,
        missing: Missing,
    ) -> Result<Rendered, RenderError> {
        let a = required(Kind::Hoqu, "attribution", event.attribution.as_ref())?;
        let order = event.order.as_ref();
        let price = match (order.and_then(|o| o.amount), self.payout) {
            // "полную сумму заработка с лида": the full amount, before any commission.
            (Some(m), _) => Some(Param::Number(m.plain2())),
            (None, Payout::Percentage) => {
                return Err(RenderError::Invalid(
                    "order.amount is required: a percentage payout needs HOQU's price".into(),
                ));
            }
            (None, Payout::Fixed) => None,
        };
        let mut params = if conversion == "customer" {
            customer_params(event, &a.click_id, price)?
        } else {
            self.conversion_params(event, &a.click_id, conversion, price)?
        };
        for (name, t) in &self.extra {
            let v = t.render_raw(&|n| fields::value(event, n), missing)?;
            // A name=value pair with nothing to say is left out rather than sent empty.
            if !v.is_empty() {
                params.push((name.clone(), Param::Text(v)));
            }
        }
        // POST only where the document offers it: a new conversion.
        let method = match conversion {
            "conversion" => self.method,
            _ => HttpMethod::Get,
        };
        self.request(method, &params)
    }

    /// A conversion's parameters, or a status update's: "click_id, request_id, action,
    /// [price], status", and the customer for a recurring lead.
    fn conversion_params(
        &self,
        event: &ConversionEvent,
        click_id: &str,
        conversion: &str,
        price: Option<Param>,
    ) -> Result<Vec<(String, Param)>, RenderError> {
        let order = event.order.as_ref();
        // HOQU drops duplicates and applies status updates by request_id: it must be the
        // conversion's own id, the same for the conversion and its later updates.
        let request_id = order
            .and_then(|o| o.id.clone())
            .ok_or(RenderError::Missing {
                kind: Kind::Hoqu,
                field: "order.id (HOQU's request_id, which status updates repeat)",
            })?;
        let action =
            event
                .action
                .clone()
                .or_else(|| self.action.clone())
                .ok_or(RenderError::Missing {
                    kind: Kind::Hoqu,
                    field: "action (or hoqu.action in the config)",
                })?;
        let status = status_param(order.and_then(|o| o.status.as_deref()), conversion)?;
        let mut params = vec![
            ("click_id".to_owned(), Param::Text(click_id.to_owned())),
            ("request_id".to_owned(), Param::Text(request_id)),
            ("action".to_owned(), Param::Text(action)),
        ];
        if let Some(p) = price {
            params.push(("price".into(), p));
        }
        params.push(("status".into(), Param::Text(status.to_owned())));
        // "Для добавления лида: click_id, request_id, action, status, customer_id".
        if self.recurring && event.kind == crate::contract::event::EventType::Lead {
            let c = event.customer.as_ref().and_then(|c| c.id.clone());
            params.push((
                "customer_id".into(),
                Param::Text(required(Kind::Hoqu, "customer.id", c)?),
            ));
        }
        Ok(params)
    }

    /// The request for `params`: a GET with a query, or a POST with a JSON body.
    fn request(
        &self,
        method: HttpMethod,
        params: &[(String, Param)],
    ) -> Result<Rendered, RenderError> {
        let key = encode_component(&self.api_key);
        Ok(match method {
            HttpMethod::Get => {
                let query: Vec<String> = params
                    .iter()
                    .map(|(k, v)| {
                        format!("{}={}", encode_component(k), encode_component(v.as_str()))
                    })
                    .collect();
                Rendered {
                    method: Method::Get,
                    url: join(&self.base_url, &format!("/{key}/s2s?{}", query.join("&"))),
                    headers: BTreeMap::new(),
                    body: None,
                }
            }
            HttpMethod::Post => Rendered {
                method: Method::Post,
                url: join(&self.base_url, &format!("/{key}")),
                headers: BTreeMap::from([("Content-Type".into(), "application/json".into())]),
                body: Some(
                    serde_json::to_string(&JsonBody(params))
                        .map_err(|e| RenderError::Invalid(e.to_string()))?,
                ),
            },
        })
    }
}

/// A customer's parameters (recurring payments): "customer_id, click_id, [price],
/// status=activate|deactivate".
fn customer_params(
    event: &ConversionEvent,
    click_id: &str,
    price: Option<Param>,
) -> Result<Vec<(String, Param)>, RenderError> {
    let c = event.customer.as_ref();
    let customer_id = required(Kind::Hoqu, "customer.id", c.and_then(|c| c.id.clone()))?;
    let status = required(
        Kind::Hoqu,
        "customer.status",
        c.and_then(|c| c.status.clone()),
    )?;
    let status = match status.trim().to_lowercase().as_str() {
        s @ ("activate" | "deactivate") => s.to_owned(),
        _ => {
            return Err(RenderError::Invalid(format!(
                "customer.status {status:?} must be activate or deactivate"
            )));
        }
    };
    let mut params = vec![
        ("customer_id".to_owned(), Param::Text(customer_id)),
        ("click_id".to_owned(), Param::Text(click_id.to_owned())),
    ];
    if let Some(p) = price {
        params.push(("price".into(), p));
    }
    params.push(("status".into(), Param::Text(status)));
    Ok(params)
}

mod status;

use status::status_param;
pub use status::{STATUS_TABLE, map_status};

#[cfg(test)]
mod tests;
