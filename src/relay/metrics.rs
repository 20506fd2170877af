//! Prometheus metrics, all named `postback_relay_*`. Labels are bounded: destination names come
//! from the config, outcomes, reasons and status classes are fixed codes; never click IDs, URLs
//! or event IDs.

use std::collections::HashMap;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The status classes `partner_requests_total` counts.
pub const STATUS_CLASSES: [&str; 7] = [
    "1xx",
    "2xx",
    "3xx",
    "4xx",
    "5xx",
    "timeout",
    "connect_error",
];
/// The buckets of `delivered_on_attempt_total`.
pub const ATTEMPT_BUCKETS: [&str; 7] = ["1", "2", "3", "4-5", "6-10", "11-20", "21+"];

/// One destination's series on the hot path, resolved once instead of looked up by label
/// for every event.
#[derive(Clone)]
pub struct DestinationSeries {
    pub delivered: IntCounter,
    pub end_to_end: Histogram,
    pub on_attempt: HashMap<&'static str, IntCounter>,
    pub request_duration: Histogram,
    pub dispatch_delay: Histogram,
    pub requests: HashMap<&'static str, IntCounter>,
    pub in_flight: IntGauge,
    pub circuit_state: IntGauge,
}

/// Partner request durations: 5 ms to 30 s.
const REQUEST_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// The relay's own delay before a request: 100 µs to 30 s.
const DISPATCH_BUCKETS: [f64; 17] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];
/// From an event to its delivery: seconds for a live stream, hours to days for retries and
/// deferred events.
const END_TO_END_BUCKETS: [f64; 14] = [
    0.1,
    0.5,
    1.0,
    5.0,
    15.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    6.0 * 3600.0,
    86400.0,
    3.0 * 86400.0,
    7.0 * 86400.0,
    30.0 * 86400.0,
];

/// Creates metrics named `postback_relay_*` and registers each on one registry. The names and
/// labels are fixed in this file, so a failure here is a bug, caught by the first test.
struct Register(Registry);

impl Register {
    fn add<M: prometheus::core::Collector + Clone + 'static>(&self, m: M) -> M {
        self.0
            .register(Box::new(m.clone()))
            .expect("a metric registered once");
        m
    }

    fn name(n: &str) -> String {
        format!("postback_relay_{n}")
    }

    fn counter(&self, n: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(Self::name(n), help).expect("a valid metric"))
    }

    fn counters(&self, n: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        let opts = Opts::new(Self::name(n), help);
        self.add(IntCounterVec::new(opts, labels).expect("a valid metric"))
    }

    fn gauge(&self, n: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(Self::name(n), help).expect("a valid metric"))
    }

    fn gauges(&self, n: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        let opts = Opts::new(Self::name(n), help);
        self.add(IntGaugeVec::new(opts, labels).expect("a valid metric"))
    }

    fn histograms(&self, n: &str, help: &str, buckets: Vec<f64>, labels: &[&str]) -> HistogramVec {
        let opts = HistogramOpts::new(Self::name(n), help).buckets(buckets);
        self.add(HistogramVec::new(opts, labels).expect("a valid metric"))
    }
}

/// Every metric the relay exports, registered on one registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Events read from the events queue, by event type (`invalid` when unparseable).
    pub events_consumed: IntCounterVec,
    /// Events acknowledged after every outcome was recorded.
    pub events_acked: IntCounter,
    /// Events with no attribution: not ours to relay, acknowledged without a request.
    pub events_skipped: IntCounter,
    /// Final outcome per destination: `delivered`, `dead_lettered`, `duplicate` (the
    /// destination had already accepted this event; not sent again) or `superseded` (a
    /// status older than one already sent; not sent).
    pub deliveries: IntCounterVec,
    /// Dead letters by destination (`none` before routing) and reason code.
    pub dead_letters: IntCounterVec,
    /// Partner calls by destination and status class (`2xx`, `4xx`, `5xx`, `timeout`...).
    pub partner_requests: IntCounterVec,
    /// Partner call duration by destination.
    pub request_duration: HistogramVec,
    /// From the event's `occurred_at` to its delivery, by destination.
    pub end_to_end: HistogramVec,
    /// From taking a message off the queue to its first partner request going out, by
    /// destination: the time the relay adds (parsing, routing, the store, and any wait for a
    /// concurrency slot or the rate limit).
    pub dispatch_delay: HistogramVec,
    /// Age of the oldest dead letter, sampled; 0 when the queue is empty.
    pub oldest_dead_letter_age: IntGauge,
    /// Deliveries being worked on, by destination.
    pub in_flight: IntGaugeVec,
    /// Circuit state by destination: 0 closed, 1 half-open, 2 open.
    pub circuit_state: IntGaugeVec,
    /// 1 while an operator has the destination paused.
    pub destination_paused: IntGaugeVec,
    /// Durable retries scheduled, by destination and delay tier.
    pub retries_scheduled: IntCounterVec,
    /// Successful deliveries by destination and the attempt that succeeded (bucketed).
    pub delivered_on_attempt: IntCounterVec,
    /// Messages ready in each relay queue, sampled.
    pub queue_messages: IntGaugeVec,
    /// 1 while connected to the broker and consuming.
    pub broker_connected: IntGauge,
    /// 1 while the store answers (always, for the embedded store).
    pub store_up: IntGauge,
    /// Broker connections made after the first.
    pub broker_reconnects: IntCounter,
    /// Times the store's Redis was found to have forgotten the fleet's state.
    pub store_state_lost: IntCounter,
    /// Configuration reloads (SIGHUP), by result: `applied` or `refused`.
    pub config_reloads: IntCounterVec,
    /// Spans not exported, by reason: `queue_full` (the exporter is behind) or
    /// `export_failed` (the collector did not take the batch).
    pub trace_spans_dropped: IntCounterVec,
}

impl Metrics {
    /// The registry every series is on, for components that add their own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn new() -> Metrics {
        let r = Register(Registry::new());
        let dest = &["destination"];
        let m = Metrics {
            events_consumed: r.counters(
                "events_consumed_total",
                "Events read from the events queue, by event type.",
                &["type"],
            ),
            events_acked: r.counter(
                "events_acked_total",
                "Events acknowledged after their outcomes were recorded.",
            ),
            events_skipped: r.counter(
                "events_skipped_total",
                "Events without attribution, acknowledged without any partner request.",
            ),
            deliveries: r.counters(
                "deliveries_total",
                "Final delivery outcomes by destination.",
                &["destination", "outcome"],
            ),
            dead_letters: r.counters(
                "dead_letters_total",
                "Dead letters published, by destination and reason.",
                &["destination", "reason"],
            ),
            partner_requests: r.counters(
                "partner_requests_total",
                "Partner HTTP requests by destination and status class.",
                &["destination", "status_class"],
            ),
            request_duration: r.histograms(
                "partner_request_duration_seconds",
                "Partner HTTP request duration by destination.",
                REQUEST_BUCKETS.to_vec(),
                dest,
            ),
            dispatch_delay: r.histograms(
                "dispatch_delay_seconds",
                "From taking a message off the queue to its first partner request going out, by destination.",
                DISPATCH_BUCKETS.to_vec(),
                dest,
            ),
            end_to_end: r.histograms(
                "end_to_end_seconds",
                "From the event's occurred_at to its delivery, by destination.",
                END_TO_END_BUCKETS.to_vec(),
                dest,
            ),
            oldest_dead_letter_age: r.gauge(
                "oldest_dead_letter_age_seconds",
                "Age of the oldest message in the dead-letter queue, sampled; 0 when it is empty.",
            ),
            in_flight: r.gauges(
                "in_flight_deliveries",
                "Deliveries in progress by destination.",
                dest,
            ),
            circuit_state: r.gauges(
                "circuit_state",
                "Circuit breaker state by destination: 0 closed, 1 half-open, 2 open.",
                dest,
            ),
            destination_paused: r.gauges(
                "destination_paused",
                "1 while the destination is paused (postback-relay destination pause): its deliveries wait.",
                dest,
            ),
            config_reloads: r.counters(
                "config_reloads_total",
                "Configuration reloads (SIGHUP), applied or refused (the running configuration stays).",
                &["result"],
            ),
            trace_spans_dropped: r.counters(
                "trace_spans_dropped_total",
                "Spans not exported, by reason: queue_full or export_failed.",
                &["reason"],
            ),
            retries_scheduled: r.counters(
                "retries_scheduled_total",
                "Durable retries scheduled, by destination and delay tier.",
                &["destination", "tier"],
            ),
            delivered_on_attempt: r.counters(
                "delivered_on_attempt_total",
                "Successful deliveries by destination and the attempt that succeeded (1, 2, 3, 4-5, 6-10, 11-20, 21+).",
                &["destination", "attempt"],
            ),
            queue_messages: r.gauges(
                "queue_messages",
                "Messages ready in each relay queue, sampled.",
                &["queue"],
            ),
            broker_connected: r.gauge(
                "broker_connected",
                "1 while connected to the broker and consuming, else 0.",
            ),
            store_up: r.gauge(
                "store_up",
                "1 while the store (Redis, or the embedded file) answers, else 0.",
            ),
            broker_reconnects: r.counter(
                "broker_reconnects_total",
                "Broker connections made after the first one.",
            ),
            store_state_lost: r.counter(
                "store_state_lost_total",
                "Times this relay found that the store's Redis had forgotten the fleet's state (a restart without its data, a flush, an eviction). The pauses it knew are written back; which deliveries were accepted and which statuses were sent before is lost.",
            ),
            registry: r.0.clone(),
        };
        r.gauges("build_info", "Build information; always 1.", &["version"])
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        m
    }

    /// The hot-path series of `destination`.
    pub fn series(&self, destination: &str) -> DestinationSeries {
        let d = destination;
        DestinationSeries {
            delivered: self.deliveries.with_label_values(&[d, "delivered"]),
            end_to_end: self.end_to_end.with_label_values(&[d]),
            on_attempt: ATTEMPT_BUCKETS
                .iter()
                .map(|b| (*b, self.delivered_on_attempt.with_label_values(&[d, b])))
                .collect(),
            request_duration: self.request_duration.with_label_values(&[d]),
            dispatch_delay: self.dispatch_delay.with_label_values(&[d]),
            requests: STATUS_CLASSES
                .iter()
                .map(|c| (*c, self.partner_requests.with_label_values(&[d, c])))
                .collect(),
            in_flight: self.in_flight.with_label_values(&[d]),
            circuit_state: self.circuit_state.with_label_values(&[d]),
        }
    }

    /// Creates every labelled series a configuration can produce at zero, so rates and alerts
    /// see a series before its first increment.
    pub fn init_destinations<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        use crate::contract::reason::Reason;
        for t in crate::contract::event::EventType::ALL {
            self.events_consumed.with_label_values(&[t.as_str()]);
        }
        self.events_consumed.with_label_values(&["invalid"]);
        for result in ["applied", "refused"] {
            self.config_reloads.with_label_values(&[result]);
        }
        for r in [
            Reason::NotJson,
            Reason::EventTooLarge,
            Reason::InvalidEvent,
            Reason::Unroutable,
        ] {
            self.dead_letters.with_label_values(&["none", r.as_str()]);
        }
        for d in names {
            for o in ["delivered", "dead_lettered", "duplicate", "superseded"] {
                self.deliveries.with_label_values(&[d, o]);
            }
            for r in [
                Reason::RenderError,
                Reason::PartnerRejected,
                Reason::RetriesExhausted,
            ] {
                self.dead_letters.with_label_values(&[d, r.as_str()]);
            }
            self.request_duration.with_label_values(&[d]);
            self.destination_paused.with_label_values(&[d]);
            self.dispatch_delay.with_label_values(&[d]);
            self.end_to_end.with_label_values(&[d]);
            self.in_flight.with_label_values(&[d]);
        }
    }

    /// Drops the gauges of a destination a reload removed, so that no alert goes on about
    /// its circuit, its pause or its work in flight. Its counters stay: they are history.
    pub fn forget_destination(&self, d: &str) {
        for gauge in [
            &self.circuit_state,
            &self.destination_paused,
            &self.in_flight,
        ] {
            let _ = gauge.remove_label_values(&[d]);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

/// The `attempt` label of `delivered_on_attempt_total`: bounded buckets.
pub fn attempt_bucket(attempt: u32) -> &'static str {
    match attempt {
        0 | 1 => "1",
        2 => "2",
        3 => "3",
        4..=5 => "4-5",
        6..=10 => "6-10",
        11..=20 => "11-20",
        _ => "21+",
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
