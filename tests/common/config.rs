//! Relay configurations built from structs and written out as TOML: a test says which
//! destinations and settings it wants, never patches configuration text. `Env::config` gives
//! the builder this test's exchange, queues and store; `ConfigBuilder::new` gives a bare one
//! (destinations only), for rendering without a broker.

use std::collections::BTreeMap;

use serde::Serialize;

use postback_relay::config::Config;

pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| postback_relay::config::DEFAULT_AMQP_URL.into())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// The delay tiers of every test configuration: short, so durable retries come back fast.
pub const TEST_TIERS_MS: [u64; 5] = [100, 200, 400, 800, 1600];

/// A whole relay configuration.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ConfigBuilder {
    #[serde(skip_serializing_if = "Option::is_none")]
    broker: Option<Broker>,
    #[serde(skip_serializing_if = "Option::is_none")]
    worker: Option<Worker>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http: Option<Http>,
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<Store>,
    #[serde(skip_serializing_if = "Option::is_none")]
    journal: Option<Journal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tracing: Option<Tracing>,
    destinations: Vec<Dest>,
    /// Environment variables the configuration's `${NAME}` references resolve to.
    #[serde(skip)]
    vars: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize)]
struct Broker {
    url: String,
    exchange: String,
    queue_prefix: String,
    prefetch: u16,
    reconnect_max_delay_secs: u64,
    retry_tiers_ms: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failover_urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_timeout_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<Tls>,
}

/// A `[broker.tls]` or `[store.tls]` table.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Tls {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
}

impl Tls {
    /// Trusting `ca`, presenting `client` (a certificate and its key) if given.
    pub fn new(ca: &std::path::Path, client: Option<(&std::path::Path, &std::path::Path)>) -> Tls {
        let s = |p: &std::path::Path| Some(p.display().to_string());
        Tls {
            ca_file: s(ca),
            cert_file: client.and_then(|c| s(c.0)),
            key_file: client.and_then(|c| s(c.1)),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
struct Worker {
    shutdown_grace_secs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    queue_sample_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partner_proxy: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
struct Http {
    listen: String,
}

#[derive(Clone, Debug, Serialize)]
struct Journal {
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
struct Tracing {
    otlp_endpoint: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Store {
    Embedded {
        path: String,
    },
    Redis {
        url: String,
        key_prefix: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        tls: Option<Tls>,
    },
}

impl ConfigBuilder {
    /// No sections but the destinations added.
    pub fn new() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// A test's own exchange and queues under `prefix`, short retry tiers, a 5 s stop grace,
    /// metrics on a free port, the embedded store in the file `db`, and the journal beside it
    /// ([`ConfigBuilder::journal_path`]).
    pub fn for_test(prefix: &str, db: &std::path::Path) -> ConfigBuilder {
        ConfigBuilder {
            broker: Some(Broker {
                url: amqp_url(),
                exchange: format!("{prefix}.conversions"),
                queue_prefix: prefix.to_owned(),
                prefetch: 32,
                reconnect_max_delay_secs: 1,
                retry_tiers_ms: TEST_TIERS_MS.to_vec(),
                failover_urls: Vec::new(),
                connect_timeout_secs: None,
                tls: None,
            }),
            worker: Some(Worker {
                shutdown_grace_secs: 5,
                queue_sample_secs: None,
                partner_proxy: None,
            }),
            http: Some(Http {
                listen: "127.0.0.1:0".into(),
            }),
            store: Some(Store::Embedded {
                path: db.display().to_string(),
            }),
            journal: Some(Journal {
                kind: None,
                path: Some(journal_path(db).display().to_string()),
                url: None,
            }),
            tracing: None,
            destinations: Vec::new(),
            vars: BTreeMap::new(),
        }
    }

    /// Traces exported to the OTLP/HTTP collector at `endpoint` (`http://127.0.0.1:4318`).
    pub fn tracing(mut self, endpoint: &str) -> ConfigBuilder {
        self.tracing = Some(Tracing {
            otlp_endpoint: endpoint.to_owned(),
        });
        self
    }

    /// The operations listener (`/metrics`) on `addr`.
    pub fn listen(mut self, addr: &str) -> ConfigBuilder {
        self.http = Some(Http {
            listen: addr.to_owned(),
        });
        self
    }

    pub fn destination(mut self, d: Dest) -> ConfigBuilder {
        self.destinations.push(d);
        self
    }

    /// The broker at `url` (a proxy, or a port that never answers) instead of the test broker.
    pub fn broker_url(mut self, url: &str) -> ConfigBuilder {
        self.broker_mut().url = url.to_owned();
        self
    }

    /// The broker at `first`, and at `others` when it does not answer (the nodes of a
    /// cluster), each given `timeout_secs` to accept a connection.
    pub fn broker_nodes(
        mut self,
        first: &str,
        others: &[String],
        timeout_secs: u64,
    ) -> ConfigBuilder {
        let b = self.broker_mut();
        b.url = first.to_owned();
        b.failover_urls = others.to_vec();
        b.connect_timeout_secs = Some(timeout_secs);
        self
    }

    /// The Redis store, keys under the test's prefix, shared by every relay of the test.
    pub fn redis(mut self) -> ConfigBuilder {
        let key_prefix = self.broker_mut().queue_prefix.clone();
        self.store = Some(Store::Redis {
            url: redis_url(),
            key_prefix,
            tls: None,
        });
        self
    }

    /// The Redis store at `url` (a server of the test's own).
    pub fn redis_at(mut self, url: &str) -> ConfigBuilder {
        let key_prefix = self.broker_mut().queue_prefix.clone();
        self.store = Some(Store::Redis {
            url: url.to_owned(),
            key_prefix,
            tls: None,
        });
        self
    }

    /// The Redis store at `url` (`rediss://`), with `[store.tls]` = `tls`.
    pub fn redis_tls(mut self, url: &str, tls: Tls) -> ConfigBuilder {
        let key_prefix = self.broker_mut().queue_prefix.clone();
        self.store = Some(Store::Redis {
            url: url.to_owned(),
            key_prefix,
            tls: Some(tls),
        });
        self
    }

    /// The broker at `url` (`amqps://`), with `[broker.tls]` = `tls`.
    pub fn broker_tls(mut self, url: &str, tls: Tls) -> ConfigBuilder {
        let b = self.broker_mut();
        b.url = url.to_owned();
        b.tls = Some(tls);
        self
    }

    /// The journal in the PostgreSQL database at `url`.
    pub fn journal_postgres(mut self, url: &str) -> ConfigBuilder {
        self.journal = Some(Journal {
            kind: Some("postgres".into()),
            path: None,
            url: Some(url.to_owned()),
        });
        self
    }

    /// Queue depths (and the oldest dead letter) sampled every `secs`.
    pub fn queue_sample_secs(mut self, secs: u64) -> ConfigBuilder {
        self.worker
            .as_mut()
            .expect("a test configuration (Env::config) has a [worker] section")
            .queue_sample_secs = Some(secs);
        self
    }

    /// `worker.partner_proxy`: `environment`, `none` or a proxy URL.
    pub fn partner_proxy(mut self, proxy: &str) -> ConfigBuilder {
        self.worker
            .as_mut()
            .expect("a test configuration (Env::config) has a [worker] section")
            .partner_proxy = Some(proxy.to_owned());
        self
    }

    /// `${name}` resolves to `value` when this configuration is loaded in the test.
    pub fn var(mut self, name: &str, value: &str) -> ConfigBuilder {
        self.vars.insert(name.to_owned(), value.to_owned());
        self
    }

    fn broker_mut(&mut self) -> &mut Broker {
        self.broker
            .as_mut()
            .expect("a test configuration (Env::config) has a [broker] section")
    }

    /// The configuration file's text.
    pub fn toml(&self) -> String {
        toml::to_string(self).expect("a test configuration serializes")
    }

    /// Loaded as the relay loads it; a test configuration must load.
    pub fn load(&self) -> Config {
        let text = self.toml();
        Config::from_toml(&text, &|name| self.vars.get(name).cloned())
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    /// Whether the relay accepts it.
    pub fn loads(&self) -> bool {
        Config::from_toml(&self.toml(), &|name| self.vars.get(name).cloned()).is_ok()
    }

    /// The first destination, loaded (for rendering without a broker).
    pub fn load_destination(&self) -> postback_relay::config::DestinationConfig {
        self.load().destinations.remove(0)
    }

    /// The error loading it gives; the configuration must be refused.
    pub fn error(&self) -> String {
        let text = self.toml();
        match Config::from_toml(&text, &|name| self.vars.get(name).cloned()) {
            Ok(_) => panic!("loaded, though it must be refused:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    /// Written to `relay.toml` in `dir`, for relay processes and the CLI; returns its path.
    pub fn write(&self, dir: &tempfile::TempDir) -> String {
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, self.toml()).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

/// The journal of a test whose store is the file `db`.
pub fn journal_path(db: &std::path::Path) -> std::path::PathBuf {
    db.with_extension("journal.db")
}

/// One `[[destinations]]` table. Only what a test sets is written: the rest takes the
/// relay's defaults. The match takes the kind's network unless [`Dest::networks`] says
/// otherwise: powerspace, hoqu, awin (callbacks) and espace-plus (trackers).
#[derive(Clone, Debug, Serialize)]
pub struct Dest {
    name: String,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    base_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limit_per_sec: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    concurrency: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    click_lifetime_days: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    missing: Option<String>,
    #[serde(rename = "match")]
    matcher: Match,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    conversions: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry: Option<Retry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    circuit: Option<Circuit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    powerspace: Option<PowerspaceOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hoqu: Option<Hoqu>,
    #[serde(skip_serializing_if = "Option::is_none")]
    callback: Option<Callback>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tracker: Option<Tracker>,
    #[serde(skip_serializing_if = "Option::is_none")]
    template: Option<toml::Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    send_traceparent: bool,
}

#[derive(Clone, Debug, Serialize)]
struct Match {
    networks: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
struct PowerspaceOptions {
    exclude_shipping: bool,
    exclude_tax: bool,
}

impl Dest {
    fn of(name: &str, kind: &'static str, network: &str) -> Dest {
        Dest {
            name: name.to_owned(),
            kind,
            base_url: None,
            timeout_ms: None,
            rate_limit_per_sec: None,
            concurrency: None,
            click_lifetime_days: None,
            missing: None,
            matcher: Match {
                networks: vec![network.to_owned()],
            },
            conversions: BTreeMap::new(),
            retry: None,
            circuit: None,
            powerspace: None,
            hoqu: None,
            callback: None,
            tracker: None,
            template: None,
            send_traceparent: false,
        }
    }

    pub fn powerspace(name: &str, base_url: &str) -> Dest {
        Dest::of(name, "powerspace", "powerspace").base_url(base_url)
    }

    pub fn hoqu(name: &str, base_url: &str, options: Hoqu) -> Dest {
        Dest {
            hoqu: Some(options),
            ..Dest::of(name, "hoqu", "hoqu").base_url(base_url)
        }
    }

    pub fn callback(name: &str, options: Callback) -> Dest {
        Dest {
            callback: Some(options),
            ..Dest::of(name, "callback", "awin")
        }
    }

    pub fn tracker(name: &str, options: Tracker) -> Dest {
        Dest {
            tracker: Some(options),
            ..Dest::of(name, "tracker", "espace-plus")
        }
    }

    /// A template destination for `network`: `table` is its `[template]` table, as TOML.
    pub fn template(name: &str, network: &str, table: &str) -> Dest {
        let table: toml::Value = toml::from_str(table).expect("a [template] table");
        Dest {
            template: Some(table),
            ..Dest::of(name, "template", network)
        }
    }

    pub fn base_url(mut self, url: &str) -> Dest {
        self.base_url = Some(url.to_owned());
        self
    }

    pub fn networks(mut self, networks: &[&str]) -> Dest {
        self.matcher.networks = networks.iter().map(|n| (*n).to_owned()).collect();
        self
    }

    pub fn timeout_ms(mut self, ms: u64) -> Dest {
        self.timeout_ms = Some(ms);
        self
    }

    /// Each call carries its attempt span's `traceparent`.
    pub fn send_traceparent(mut self) -> Dest {
        self.send_traceparent = true;
        self
    }

    pub fn rate_limit(mut self, per_sec: u32) -> Dest {
        self.rate_limit_per_sec = Some(per_sec);
        self
    }

    /// Calls in flight at once, per relay process.
    pub fn concurrency(mut self, n: usize) -> Dest {
        self.concurrency = Some(n);
        self
    }

    pub fn click_lifetime_days(mut self, days: u32) -> Dest {
        self.click_lifetime_days = Some(days);
        self
    }

    /// `"empty"`, `"fail"` or (template destinations) `"skip"`.
    pub fn missing(mut self, what: &str) -> Dest {
        self.missing = Some(what.to_owned());
        self
    }

    /// Event type `event_type` is sent as `as_`.
    pub fn conversion(mut self, event_type: &str, as_: &str) -> Dest {
        self.conversions
            .insert(event_type.to_owned(), as_.to_owned());
        self
    }

    pub fn retry(mut self, retry: Retry) -> Dest {
        self.retry = Some(retry);
        self
    }

    pub fn circuit(mut self, circuit: Circuit) -> Dest {
        self.circuit = Some(circuit);
        self
    }

    /// Powerspace's order value without shipping and/or tax.
    pub fn exclude(mut self, shipping: bool, tax: bool) -> Dest {
        self.powerspace = Some(PowerspaceOptions {
            exclude_shipping: shipping,
            exclude_tax: tax,
        });
        self
    }
}

/// `retry = { ... }`: only the keys set.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Retry {
    #[serde(skip_serializing_if = "Option::is_none")]
    immediate_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    immediate_delay_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    initial_delay_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    factor: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_delay_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jitter: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_age_secs: Option<u64>,
}

impl Retry {
    pub fn new() -> Retry {
        Retry::default()
    }

    /// Fast retries for tests: three in-process tries, then 100 ms doubling to 400 ms, six
    /// in all.
    pub fn fast() -> Retry {
        Retry::new()
            .immediate(3, 10)
            .delays(100, 400)
            .max_attempts(6)
            .max_age_secs(60)
    }

    /// Durable retries only (one try in-process), from `initial_ms` up to `max_ms`.
    pub fn durable(initial_ms: u64, max_ms: u64) -> Retry {
        Retry::new()
            .immediate_attempts(1)
            .delays(initial_ms, max_ms)
    }

    pub fn immediate_attempts(mut self, n: u32) -> Retry {
        self.immediate_attempts = Some(n);
        self
    }

    /// `attempts` tries in a row in-process, `delay_ms` apart.
    pub fn immediate(mut self, attempts: u32, delay_ms: u64) -> Retry {
        self.immediate_attempts = Some(attempts);
        self.immediate_delay_ms = Some(delay_ms);
        self
    }

    /// Durable retries from `initial_ms` up to `max_ms`.
    pub fn delays(mut self, initial_ms: u64, max_ms: u64) -> Retry {
        self.initial_delay_ms = Some(initial_ms);
        self.max_delay_ms = Some(max_ms);
        self
    }

    pub fn factor(mut self, factor: f64) -> Retry {
        self.factor = Some(factor);
        self
    }

    pub fn jitter(mut self, jitter: f64) -> Retry {
        self.jitter = Some(jitter);
        self
    }

    pub fn max_attempts(mut self, n: u32) -> Retry {
        self.max_attempts = Some(n);
        self
    }

    pub fn max_age_secs(mut self, secs: u64) -> Retry {
        self.max_age_secs = Some(secs);
        self
    }
}

/// `circuit = { ... }`: only the keys set.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Circuit {
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_threshold: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    open_ms: Option<u64>,
}

impl Circuit {
    pub fn disabled() -> Circuit {
        Circuit {
            enabled: Some(false),
            ..Circuit::default()
        }
    }

    /// Opens after `failures` retryable failures in a row, for `open_ms`.
    pub fn opens_after(failures: u32, open_ms: u64) -> Circuit {
        Circuit {
            enabled: None,
            failure_threshold: Some(failures),
            open_ms: Some(open_ms),
        }
    }

    pub fn enabled(mut self) -> Circuit {
        self.enabled = Some(true);
        self
    }
}

/// `hoqu = { ... }`.
#[derive(Clone, Debug, Serialize)]
pub struct Hoqu {
    api_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<String>,
    payout: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    recurring: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_wait_secs: Option<u64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    extra: BTreeMap<String, String>,
}

impl Hoqu {
    /// `payout` is `"fixed"` or `"percentage"`.
    pub fn new(api_key: &str, payout: &str) -> Hoqu {
        Hoqu {
            api_key: api_key.to_owned(),
            method: None,
            payout: payout.to_owned(),
            recurring: None,
            action: None,
            status_wait_secs: None,
            extra: BTreeMap::new(),
        }
    }

    pub fn method(mut self, method: &str) -> Hoqu {
        self.method = Some(method.to_owned());
        self
    }

    pub fn action(mut self, action: &str) -> Hoqu {
        self.action = Some(action.to_owned());
        self
    }

    pub fn recurring(mut self) -> Hoqu {
        self.recurring = Some(true);
        self
    }

    pub fn status_wait_secs(mut self, secs: u64) -> Hoqu {
        self.status_wait_secs = Some(secs);
        self
    }

    /// An extra parameter `name` with the template `value`.
    pub fn extra(mut self, name: &str, value: &str) -> Hoqu {
        self.extra.insert(name.to_owned(), value.to_owned());
        self
    }
}

/// `callback = { ... }`.
#[derive(Clone, Debug, Serialize)]
pub struct Callback {
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    merchant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    product_data: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    click_source_data: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_any_port: Option<bool>,
}

impl Callback {
    pub fn new(url: &str) -> Callback {
        Callback {
            url: url.to_owned(),
            method: None,
            merchant_id: None,
            product_data: None,
            click_source_data: None,
            allow_any_port: None,
        }
    }

    pub fn method(mut self, method: &str) -> Callback {
        self.method = Some(method.to_owned());
        self
    }

    pub fn merchant_id(mut self, id: &str) -> Callback {
        self.merchant_id = Some(id.to_owned());
        self
    }

    /// Whether the publisher asked for product data and click source data.
    pub fn data(mut self, products: bool, click_source: bool) -> Callback {
        self.product_data = Some(products);
        self.click_source_data = Some(click_source);
        self
    }

    /// Any port, as the sandbox on loopback needs.
    pub fn any_port(mut self) -> Callback {
        self.allow_any_port = Some(true);
        self
    }
}

/// `tracker = { ... }`.
#[derive(Clone, Debug, Serialize)]
pub struct Tracker {
    structure: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    urls: BTreeMap<String, String>,
}

impl Tracker {
    pub fn new(structure: &str) -> Tracker {
        Tracker {
            structure: structure.to_owned(),
            url: None,
            urls: BTreeMap::new(),
        }
    }

    /// One postback URL for every conversion.
    pub fn url(mut self, url: &str) -> Tracker {
        self.url = Some(url.to_owned());
        self
    }

    /// The postback URL for conversion `kind`.
    pub fn url_for(mut self, kind: &str, url: &str) -> Tracker {
        self.urls.insert(kind.to_owned(), url.to_owned());
        self
    }
}

/// `config/example.toml` with the value at `path` (dotted keys; a number indexes an array of
/// tables, as in `destinations.0.timeout_ms`) set to `value`, for checks of what the relay
/// says about one bad key.
pub fn example_with(path: &str, value: impl Into<toml::Value>) -> String {
    let text = std::fs::read_to_string("config/example.toml").unwrap();
    let mut doc = toml::Value::Table(text.parse().unwrap());
    let (parents, last) = path.rsplit_once('.').unwrap_or(("", path));
    let mut at = &mut doc;
    for key in parents.split('.').filter(|k| !k.is_empty()) {
        at = match (at, key.parse::<usize>()) {
            (toml::Value::Array(a), Ok(i)) => &mut a[i],
            (toml::Value::Table(t), _) => t
                .get_mut(key)
                .unwrap_or_else(|| panic!("no {key} in {path} of the example")),
            (other, _) => panic!("{key} of {path}: {other} is not a table"),
        };
    }
    let toml::Value::Table(table) = at else {
        panic!("{path}: not a key of a table")
    };
    table.insert(last.to_owned(), value.into());
    toml::to_string(&doc).unwrap()
}

/// A configuration file's text (the example, a fixture) loaded with every `${NAME}`
/// resolving to `secret`.
pub fn load_with_secret(text: &str, secret: &str) -> Config {
    Config::from_toml(text, &|_| Some(secret.to_owned())).unwrap_or_else(|e| panic!("{e}"))
}
