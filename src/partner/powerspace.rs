//! Powerspace S2S (specs/powerspace-s2s.fr.txt): `GET /ld?qci={clickId}` for a lead,
//! `GET /ord?qci={clickId}&ov={order value}` for an order. The click ID is the only
//! authentication; `ov` is a decimal with a dot ("49.99, pas 4999").

use super::{Method, RenderError, Request, encode_component, join};
use crate::config::{DestinationConfig, Kind};
use crate::event::{ConversionEvent, EventType, Money};

/// What the partner's status codes mean, from the document's "Codes de réponse" table; used to
/// make dead-letter details actionable.
pub fn explain_status(status: u16) -> Option<&'static str> {
    match status {
        400 => Some("click ID missing or invalid"),
        404 => Some("click ID expired or unknown"),
        _ => None,
    }
}

pub fn render(dest: &DestinationConfig, event: &ConversionEvent) -> Result<Request, RenderError> {
    let attribution = event.attribution.as_ref().ok_or(RenderError::Missing {
        kind: Kind::Powerspace,
        field: "attribution.click_id",
    })?;
    let qci = encode_component(&attribution.click_id);
    let path = match event.kind {
        EventType::Lead => format!("/ld?qci={qci}"),
        EventType::Order => match order_value(dest, event)? {
            Some(ov) => format!("/ord?qci={qci}&ov={ov}"),
            // `ov` is optional in the document ("Recommandé"): an order without an amount is
            // still a conversion.
            None => format!("/ord?qci={qci}"),
        },
        other => {
            return Err(RenderError::UnsupportedType {
                kind: Kind::Powerspace,
                event_type: other.to_string(),
            });
        }
    };
    Ok(Request {
        destination: dest.name.clone(),
        method: Method::Get,
        url: join(&dest.base_url, &path),
        headers: Default::default(),
        body: None,
    })
}

/// The order value: the amount paid, less shipping and tax when the destination says so
/// ("Excluez les frais de port si demandé", "Incluez les taxes selon votre configuration").
fn order_value(
    dest: &DestinationConfig,
    event: &ConversionEvent,
) -> Result<Option<Money>, RenderError> {
    let Some(order) = &event.order else {
        return Ok(None);
    };
    let Some(mut value) = order.amount else {
        return Ok(None);
    };
    let opts = &dest.powerspace;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::destination;
    use crate::event;

    fn ev(kind: &str, click: &str, order: &str) -> ConversionEvent {
        let body = format!(
            r#"{{"event_id":"e1","type":"{kind}","occurred_at":"2026-11-22T10:00:00Z",
               "attribution":{{"network":"powerspace","click_id":{click}}}{order}}}"#,
            click = serde_json::to_string(click).unwrap()
        );
        event::parse(body.as_bytes(), 1 << 20).unwrap()
    }

    #[test]
    fn the_documents_examples() {
        let d = destination("powerspace", "https://a.pwspace.com");
        let lead = render(&d, &ev("lead", "abc123xyz789", "")).unwrap();
        assert_eq!(lead.method, Method::Get);
        assert_eq!(lead.url, "https://a.pwspace.com/ld?qci=abc123xyz789");
        let order = render(
            &d,
            &ev("order", "abc123xyz789", r#","order":{"amount":"89.99"}"#),
        )
        .unwrap();
        assert_eq!(
            order.url,
            "https://a.pwspace.com/ord?qci=abc123xyz789&ov=89.99"
        );
    }

    #[test]
    fn click_ids_cannot_inject_parameters() {
        let d = destination("powerspace", "https://a.pwspace.com/");
        let r = render(
            &d,
            &ev("order", "a&ov=0#x y", r#","order":{"amount":"10"}"#),
        )
        .unwrap();
        assert_eq!(
            r.url,
            "https://a.pwspace.com/ord?qci=a%26ov%3D0%23x%20y&ov=10"
        );
    }

    #[test]
    fn order_value_options() {
        let mut d = destination("powerspace", "https://a.pwspace.com");
        let order = r#","order":{"amount":"100.00","shipping":"4.99","tax":"15.00"}"#;
        assert!(
            render(&d, &ev("order", "c", order))
                .unwrap()
                .url
                .ends_with("&ov=100.00")
        );
        d.powerspace.exclude_shipping = true;
        assert!(
            render(&d, &ev("order", "c", order))
                .unwrap()
                .url
                .ends_with("&ov=95.01")
        );
        d.powerspace.exclude_tax = true;
        assert!(
            render(&d, &ev("order", "c", order))
                .unwrap()
                .url
                .ends_with("&ov=80.01")
        );
        let too_much = r#","order":{"amount":"1.00","shipping":"4.99"}"#;
        assert!(matches!(
            render(&d, &ev("order", "c", too_much)),
            Err(RenderError::Invalid(_))
        ));
    }

    #[test]
    fn an_order_without_amount_omits_ov() {
        let d = destination("powerspace", "https://a.pwspace.com");
        let r = render(&d, &ev("order", "c", "")).unwrap();
        assert_eq!(r.url, "https://a.pwspace.com/ord?qci=c");
    }

    #[test]
    fn other_event_types_are_render_errors() {
        let d = destination("powerspace", "https://a.pwspace.com");
        assert!(matches!(
            render(&d, &ev("rebill", "c", "")),
            Err(RenderError::UnsupportedType { .. })
        ));
    }
}
