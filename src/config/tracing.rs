//! `[tracing]`: OpenTelemetry traces, exported with OTLP over HTTP (protobuf). Off unless an
//! endpoint is set; then the relay continues the W3C trace context producers put in the AMQP
//! headers (or starts one) and exports its spans in batches, off the delivery path.

use serde::Deserialize;

/// `[tracing]` in the configuration.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// The collector's OTLP/HTTP base URL (`http://collector:4318`); spans go to
    /// `{otlp_endpoint}/v1/traces`. None: tracing is off.
    pub otlp_endpoint: Option<String>,
    /// `service.name` on every span the relay exports.
    pub service_name: String,
    /// Ended spans waiting for the exporter, at most; beyond, spans are dropped and counted
    /// (`postback_relay_trace_spans_dropped_total`), never waited for.
    pub queue_size: usize,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            otlp_endpoint: None,
            service_name: "postback-relay".into(),
            queue_size: 2048,
        }
    }
}

/// `tracing.queue_size`: a span is a few hundred bytes; this many is tens of MiB at most.
pub const QUEUE_SIZE_MAX: usize = 100_000;

impl TracingConfig {
    /// Whether the relay traces at all.
    pub fn enabled(&self) -> bool {
        self.otlp_endpoint.is_some()
    }

    /// Where spans are sent: the endpoint with the traces path.
    pub fn traces_url(&self) -> Option<String> {
        let base = self.otlp_endpoint.as_deref()?;
        Some(format!("{}/v1/traces", base.trim_end_matches('/')))
    }

    /// What the types cannot check: an http(s) URL with a host and no query (the path is
    /// appended to it), a service name, a queue within bounds.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(e) = &self.otlp_endpoint {
            check_endpoint(e).map_err(|m| ("tracing.otlp_endpoint", m))?;
        }
        if self.service_name.trim().is_empty() || self.service_name.len() > 255 {
            return Err((
                "tracing.service_name",
                "must be a name of 1 to 255 characters".into(),
            ));
        }
        if !(1..=QUEUE_SIZE_MAX).contains(&self.queue_size) {
            return Err((
                "tracing.queue_size",
                format!("{} must be between 1 and {QUEUE_SIZE_MAX}", self.queue_size),
            ));
        }
        Ok(())
    }
}

/// An OTLP/HTTP base URL: `http` or `https`, a host, no query or fragment. The message never
/// repeats the value (it may hold credentials).
fn check_endpoint(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "scheme {:?}: OTLP/HTTP takes http or https (the collector's port 4318)",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a base URL without query or fragment: /v1/traces is appended to it".into());
    }
    // The exporter parses the URL again as an HTTP URI: what it refuses is refused here.
    let full = format!("{}/v1/traces", text.trim_end_matches('/'));
    full.parse::<http::Uri>()
        .map_err(|e| format!("not an HTTP URI: {e}"))?;
    Ok(())
}

/// `console.trace_url`: an http(s) URL holding `{trace_id}`.
pub fn check_trace_url(template: &str) -> Result<(), String> {
    if !template.contains("{trace_id}") {
        return Err("must hold {trace_id}, where the trace's id goes".into());
    }
    let url = url::Url::parse(&template.replace("{trace_id}", "0"))
        .map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme {:?}: http or https", url.scheme()));
    }
    Ok(())
}

/// The link to a trace: `template` with `{trace_id}` replaced (a trace id is 32 hex digits,
/// nothing to escape).
pub fn trace_link(template: &str, trace_id: &str) -> String {
    template.replace("{trace_id}", trace_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(endpoint: &str) -> TracingConfig {
        TracingConfig {
            otlp_endpoint: Some(endpoint.into()),
            ..TracingConfig::default()
        }
    }

    #[test]
    fn endpoints_are_http_base_urls() {
        assert!(TracingConfig::default().check().is_ok());
        assert!(!TracingConfig::default().enabled());
        let ok = with("http://collector:4318/");
        assert!(ok.check().is_ok());
        assert_eq!(
            ok.traces_url().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        for bad in [
            "collector:4318",
            "grpc://collector:4317",
            "http://",
            "http://c:4318/?x=1",
            "not a url",
        ] {
            let (key, _) = with(bad).check().unwrap_err();
            assert_eq!(key, "tracing.otlp_endpoint", "{bad}");
        }
        let none = TracingConfig {
            queue_size: 0,
            ..TracingConfig::default()
        };
        assert_eq!(none.check().unwrap_err().0, "tracing.queue_size");
    }

    #[test]
    fn trace_urls_hold_the_trace_id() {
        let t = "https://grafana.example/explore?traceId={trace_id}";
        assert!(check_trace_url(t).is_ok());
        assert_eq!(
            trace_link(t, "4bf92f3577b34da6a3ce929d0e0e4736"),
            "https://grafana.example/explore?traceId=4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(check_trace_url("https://grafana.example/explore").is_err());
        assert!(check_trace_url("javascript:alert({trace_id})").is_err());
    }
}
