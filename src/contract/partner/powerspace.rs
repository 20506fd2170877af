//! Powerspace S2S (specs/powerspace-s2s.fr.txt): `GET /ld?qci={clickId}` for a lead,
//! `GET /ord?qci={clickId}&ov={order value}` for an order. The click ID is the only
//! authentication; `ov` is a decimal with a dot ("49.99, pas 4999").

use serde::Deserialize;

use super::{Kind, RenderError, encode_component, join, required};
use crate::contract::event::{ConversionEvent, Money};

#[derive(Clone, Debug, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    /// Send `ov` without `order.shipping` ("Excluez les frais de port si demandé").
    pub exclude_shipping: bool,
    /// Send `ov` without `order.tax` ("Incluez les taxes selon votre configuration").
    pub exclude_tax: bool,
}

/// A checked Powerspace destination.
#[derive(PartialEq, Clone, Debug)]
pub struct Powerspace {
    base_url: String,
    options: Options,
}

pub fn compile(base_url: &str, options: Options) -> Powerspace {
    Powerspace {
        base_url: base_url.to_owned(),
        options,
    }
}

/// What the partner's status codes mean, from the document's "Codes de réponse" table; used to
/// make dead-letter details actionable.
pub fn explain_status(status: u16) -> Option<&'static str> {
    match status {
        400 => Some("click ID missing or invalid"),
        404 => Some("click ID expired or unknown"),
        _ => None,
    }
}

impl Powerspace {
    /// The request URL for `event`, sent as a `lead` or an `order`.
    pub fn url(&self, event: &ConversionEvent, conversion: &str) -> Result<String, RenderError> {
        url(&self.base_url, &self.options, event, conversion)
    }
}

fn url(
    base_url: &str,
    opts: &Options,
    event: &ConversionEvent,
    conversion: &str,
) -> Result<String, RenderError> {
    let click = event.attribution.as_ref().map(|a| a.click_id.as_str());
    let qci = encode_component(required(Kind::Powerspace, "attribution.click_id", click)?);
    let path = match conversion {
        "lead" => format!("/ld?qci={qci}"),
        _ => match order_value(opts, event)? {
            // "Utilisez le format décimal (ex: 49.99, pas 4999)": two digits, as the examples.
            Some(ov) => format!("/ord?qci={qci}&ov={}", ov.fixed2()),
            // `ov` is optional in the document ("Recommandé"): an order without an amount is
            // still a conversion.
            None => format!("/ord?qci={qci}"),
        },
    };
    Ok(join(base_url, &path))
}

/// The order value: the amount paid, less shipping and tax when the destination says so
/// ("Excluez les frais de port si demandé", "Incluez les taxes selon votre configuration").
fn order_value(opts: &Options, event: &ConversionEvent) -> Result<Option<Money>, RenderError> {
    let Some(order) = &event.order else {
        return Ok(None);
    };
    let Some(mut value) = order.amount else {
        return Ok(None);
    };
    for (exclude, part, name) in [
        (opts.exclude_shipping, order.shipping, "order.shipping"),
        (opts.exclude_tax, order.tax, "order.tax"),
    ] {
        if let (true, Some(part)) = (exclude, part) {
            value = value.checked_sub(part).ok_or_else(|| {
                RenderError::Invalid(format!(
                    "{name} ({part}) is larger than what is left of order.amount ({value})"
                ))
            })?;
        }
    }
    Ok(Some(value))
}
