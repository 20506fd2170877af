//! Conversion events for tests, built field by field: a producer's body (`body`), the JSON
//! (`value`), or the relay's parsed event (`parsed`). Every event starts from an id, a type
//! and the same `occurred_at`; the rest is only what a test sets.

use serde_json::{Value, json};

use postback_relay::contract::event::ConversionEvent;

/// The click of HOQU's document examples.
pub const HOQU_CLICK: &str = "c7e2206f-03af-49fa-9046-dd6aeaa44e9b";

#[derive(Clone, Debug)]
pub struct Event(Value);

impl Event {
    pub fn new(id: &str, kind: &str) -> Event {
        Event(json!({ "event_id": id, "type": kind, "occurred_at": "2026-11-22T10:00:00Z" }))
    }

    /// An event attributed to `network`'s click `click`.
    pub fn attributed(id: &str, kind: &str, network: &str, click: &str) -> Event {
        Event::new(id, kind).set(
            "/attribution",
            json!({ "network": network, "click_id": click }),
        )
    }

    /// A Powerspace conversion: a lead, or an order of `amount` EUR (order id = event id).
    pub fn powerspace(id: &str, kind: &str, click: &str, amount: Option<&str>) -> Event {
        let e = Event::attributed(id, kind, "powerspace", click);
        match amount {
            Some(a) => e.order(id, a).currency("EUR"),
            None => e,
        }
    }

    /// HOQU's document example: its click, conversion `request_id` worth 30.00.
    pub fn hoqu_example(kind: &str, request_id: &str) -> Event {
        Event::attributed(&format!("{request_id}-{kind}"), kind, "hoqu", HOQU_CLICK)
            .order(request_id, "30.00")
    }

    /// An Espace-plus subscription (S-1, 29.90 EUR) from the affiliate link `tracker`.
    pub fn tracker_example(kind: &str, tracker: &str) -> Event {
        Event::attributed("sub-1", kind, "espace-plus", "ep-1")
            .tracker(tracker)
            .order("S-1", "29.90")
            .currency("EUR")
    }

    /// The Awin Transaction Notification document's example data.
    pub fn awin_example() -> Event {
        Event::attributed("awin-105956531", "order", "awin", "105956531-click")
            .occurred_at("2013-06-13T12:05:00Z")
            .clicked_at("2013-06-13T12:00:00Z")
            .publisher("45628")
            .set(
                "/attribution/params",
                json!({
                    "groupId": "0", "bannerId": "0", "clickRef": "LINKCMP2013-06", "ip": "127.0.0.1",
                    "url": "http://www.publisher-domain.com/advertiser/product/",
                    "phrase": "Electronic music", "searchEngine": "MSN Live Search"
                }),
            )
            .order("105956531", "26.09")
            .currency("GBP")
            .set("/order/commission", json!("1.64"))
            .set(
                "/order/commission_groups",
                json!([
                    {"id": "47963", "name": "CD", "code": "CD", "description": "CD"},
                    {"id": "47965", "name": "DVD", "code": "DVD", "description": "DVD"}
                ]),
            )
            .set(
                "/order/products",
                json!([
                    {"productName": "The Knife \u{2013} Silent Shout", "unitPrice": "5.55", "skuType": "", "skuCode": "B000EMSUQA", "quantity": 2, "category": "Electronic Music", "cgId": "47963"},
                    {"productName": "Sigur Ros - Heima", "unitPrice": "14.99", "skuType": "", "skuCode": "B000EMSUQA", "quantity": "1", "category": "Music DVD", "cgId": "47965"}
                ]),
            )
    }

    pub fn occurred_at(self, at: &str) -> Event {
        self.set("/occurred_at", json!(at))
    }

    pub fn clicked_at(self, at: &str) -> Event {
        self.set("/attribution/clicked_at", json!(at))
    }

    pub fn publisher(self, id: &str) -> Event {
        self.set("/attribution/publisher_id", json!(id))
    }

    pub fn tracker(self, tracker: &str) -> Event {
        self.set("/attribution/tracker", json!(tracker))
    }

    /// `attribution.params.name`.
    pub fn param(self, name: &str, value: &str) -> Event {
        let at = format!("/attribution/params/{}", pointer_token(name));
        self.set(&at, json!(value))
    }

    /// An order `id` of `amount`.
    pub fn order(self, id: &str, amount: &str) -> Event {
        self.order_id(id).amount(amount)
    }

    pub fn order_id(self, id: &str) -> Event {
        self.set("/order/id", json!(id))
    }

    pub fn amount(self, amount: &str) -> Event {
        self.set("/order/amount", json!(amount))
    }

    pub fn currency(self, currency: &str) -> Event {
        self.set("/order/currency", json!(currency))
    }

    /// `order.status`, when there is one.
    pub fn status(self, status: Option<&str>) -> Event {
        match status {
            Some(s) => self.set("/order/status", json!(s)),
            None => self,
        }
    }

    pub fn customer(self, id: &str) -> Event {
        self.set("/customer/id", json!(id))
    }

    pub fn customer_status(self, status: &str) -> Event {
        self.set("/customer/status", json!(status))
    }

    pub fn action(self, action: &str) -> Event {
        self.set("/action", json!(action))
    }

    /// Any other field, at a JSON pointer; the objects on the way are made as needed.
    pub fn set(mut self, pointer: &str, value: Value) -> Event {
        let mut at = &mut self.0;
        for token in pointer.split('/').skip(1) {
            let key = token.replace("~1", "/").replace("~0", "~");
            if !at.is_object() {
                *at = json!({});
            }
            at = at
                .as_object_mut()
                .expect("made an object above")
                .entry(key)
                .or_insert(Value::Null);
        }
        *at = value;
        self
    }

    pub fn value(self) -> Value {
        self.0
    }

    /// The body a producer publishes.
    pub fn body(self) -> Vec<u8> {
        serde_json::to_vec(&self.0).unwrap()
    }

    /// As the relay reads it; the event must be valid.
    pub fn parsed(self) -> ConversionEvent {
        let body = self.body();
        postback_relay::contract::event::parse(&body, 1 << 20)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)))
    }
}

/// `name` as one JSON pointer token.
fn pointer_token(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// The body of a Powerspace lead, or of an order of `amount` EUR: the shape most tests send.
pub fn event(id: &str, kind: &str, click: &str, amount: Option<&str>) -> Vec<u8> {
    Event::powerspace(id, kind, click, amount).body()
}
