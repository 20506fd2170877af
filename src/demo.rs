//! `postback-relay demo`: starts a partner sandbox and a relay on loopback, publishes sample
//! events (some malformed, some refused by the "partner"), and shows what became of each,
//! checked against what the sandbox recorded. Uses its own exchange and queues and removes them.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;

use crate::broker::{self, Publisher, Topology};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::publish::{self, Outgoing};
use crate::reason::Reason;
use crate::{relay, sandbox};

/// A progress bar on a terminal; hidden otherwise (logs and CI stay clean).
pub fn progress_bar(len: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "  {what:>10} [{{bar:40}}] {{pos}}/{{len}} {{per_sec}}"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

/// The demo's destinations: one of each kind, each under its own path at the sandbox.
pub const DESTINATIONS: [&str; 4] = ["powerspace", "hoqu", "publisher", "affiliate"];

/// The demo's configuration: one destination of each kind, all pointing at the sandbox.
fn demo_config(amqp_url: &str, prefix: &str, sb: &str) -> anyhow::Result<Config> {
    let db = std::env::temp_dir()
        .join(format!("{prefix}.db"))
        .display()
        .to_string();
    let text = format!(
        r##"
        [broker]
        url = {amqp_url:?}
        exchange = "{prefix}.conversions"
        queue_prefix = {prefix:?}
        prefetch = 64

        [http]
        listen = "127.0.0.1:0"

        [store]
        kind = "embedded"
        path = {db:?}

        [[destinations]]
        name = "powerspace"
        kind = "powerspace"
        base_url = "{sb}/powerspace"
        match = {{ networks = ["powerspace"] }}

        [[destinations]]
        name = "hoqu"
        kind = "hoqu"
        base_url = "{sb}/hoqu"
        match = {{ networks = ["hoqu"] }}
        hoqu = {{ api_key = "demo-api-key", payout = "percentage", action = "lead", status_wait_secs = 2 }}
        retry = {{ initial_delay_ms = 1000 }}

        [[destinations]]
        name = "publisher"
        kind = "callback"
        match = {{ networks = ["awin"] }}
        callback = {{ url = "{sb}/publisher/!!!merchantId!!!/pixel.php?clk=!!!clickRef!!!&cnv=!!!transactionId!!!&com=!!!commission!!!", merchant_id = "3661", allow_any_port = true }}

        [[destinations]]
        name = "affiliate"
        kind = "tracker"
        match = {{ networks = ["espace-plus"] }}
        tracker = {{ structure = "#affid#-#clickId#", url = "{sb}/affiliate/postback?affid=#affid#&cid=#clickId#&kind=#conversion#" }}
        "##
    );
    Ok(Config::from_toml(&text, &|_| None)?)
}

/// Sample events, spread over the four networks: leads, orders and status updates, with every
/// 23rd click expired (the sandbox answers 404), every 40th tracker in the wrong shape, every
/// 25th event malformed, and every 50th without attribution.
pub fn sample_events(n: usize) -> Vec<Outgoing> {
    const MALFORMED: [&str; 5] = [
        r#"{"event_id": "broken-"#,
        r#"{"event_id":"bad-amount-{i}","type":"order","occurred_at":"2026-11-22T10:00:00Z","attribution":{"network":"powerspace","click_id":"c{i}"},"order":{"amount":"12,50"}}"#,
        r#"{"event_id":"no-click-{i}","type":"lead","occurred_at":"2026-11-22T10:00:00Z","attribution":{"network":"hoqu"}}"#,
        r#"{"event_id":"nan-{i}","type":"order","occurred_at":"2026-11-22T10:00:00Z","attribution":{"network":"awin","click_id":"c{i}"},"order":{"amount":"NaN"}}"#,
        r#"{"event_id":"refund-{i}","type":"refund","occurred_at":"2026-11-22T10:00:00Z"}"#,
    ];
    const TRACKER_KINDS: [&str; 4] = ["registration", "trial", "signup", "rebill"];
    (0..n)
        .map(|i| {
            let body = if i % 25 == 3 {
                MALFORMED[(i / 25) % MALFORMED.len()].replace("{i}", &i.to_string())
            } else if i % 50 == 11 {
                format!(r#"{{"event_id":"organic-{i}","type":"order","occurred_at":"2026-11-22T10:00:00Z","order":{{"amount":"10.00"}}}}"#)
            } else {
                // A status update carries its conversion's click.
                let c = if i % 8 == 5 { i - 4 } else { i };
                let click = if c % 23 == 5 { format!("expired-{c}") } else { format!("click-{c}") };
                let amount = format!("{}.{:02}", 10 + i % 190, i % 100);
                let (network, kind, extra) = match i % 4 {
                    0 if i % 8 == 0 => ("powerspace", "lead", String::new()),
                    0 => ("powerspace", "order", format!(r#","order":{{"id":"{i}","amount":"{amount}","currency":"EUR"}}"#)),
                    1 if i % 8 == 1 => ("hoqu", "lead", format!(r#","order":{{"id":"{i}","amount":"{amount}"}}"#)),
                    // The status update of the lead published four events earlier.
                    1 => ("hoqu", "order_status", format!(r#","order":{{"id":"{}","amount":"{amount}","status":"paid"}}"#, i - 4)),
                    2 => (
                        "awin",
                        "order",
                        format!(r#","order":{{"id":"{i}","amount":"{amount}","currency":"GBP","commission":"1.64"}}"#),
                    ),
                    _ => (
                        "espace-plus",
                        TRACKER_KINDS[(i / 4) % 4],
                        format!(r#","order":{{"amount":"{amount}"}}"#),
                    ),
                };
                let mut attribution = format!(r#""network":"{network}","click_id":"{click}""#);
                if network == "awin" {
                    attribution.push_str(&format!(r#","publisher_id":"45628","params":{{"clickRef":"{click}"}}"#));
                }
                let mut body = format!(
                    r#"{{"event_id":"demo-{i}","type":"{kind}","occurred_at":"2026-11-22T10:00:00Z","attribution":{{{attribution}}}{extra}}}"#
                );
                if network == "espace-plus" {
                    // The affiliate's structure is #affid#-#clickId#: no dash, no fit.
                    let tracker = if i % 40 == 19 {
                        "trID_nostructure_trID".to_owned()
                    } else {
                        format!("trID_aff{}-{click}_trID", i % 7)
                    };
                    body = body.replace(r#""click_id":"#, &format!(r#""tracker":"{tracker}","click_id":"#));
                }
                body
            };
            Outgoing::new(body.into_bytes())
        })
        .collect()
}

/// Runs the demo; Ctrl-C or SIGTERM ends it early, and still stops a broker node it started.
pub async fn run(amqp_url: &str, n: usize) -> anyhow::Result<ExitCode> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        code = demo(amqp_url, n) => code,
        // Dropping the demo's future drops its own broker node, which stops it.
        _ = tokio::signal::ctrl_c() => Ok(ExitCode::from(130)),
        _ = term.recv() => Ok(ExitCode::from(143)),
    }
}

async fn demo(amqp_url: &str, n: usize) -> anyhow::Result<ExitCode> {
    let shown = without_password(amqp_url);
    let (conn, own) = match broker::connect(amqp_url, "demo").await {
        Ok(c) => (c, None),
        Err(e) => {
            let reach = probe(amqp_url).await;
            match plan(reach, is_local(amqp_url), find_rabbitmq_server()) {
                BrokerPlan::StartOwn(server) => {
                    println!(
                        "No RabbitMQ answers at {shown}: starting a node of the demo's own \
                         (it takes a few seconds)."
                    );
                    let own = OwnBroker::start(&server, "").await?;
                    let conn = broker::connect(&own.url, "demo").await?;
                    (conn, Some(own))
                }
                BrokerPlan::Install => {
                    eprintln!(
                        "Cannot reach RabbitMQ at {shown}: nothing listens there, and RabbitMQ is \
                         not installed. Install it, and the demo starts a broker of its own:\n  \
                         sudo apt-get install -y rabbitmq-server"
                    );
                    return Ok(ExitCode::from(1));
                }
                // (`Use` cannot come: the connection has just failed.)
                BrokerPlan::GiveUp | BrokerPlan::Use => {
                    eprintln!(
                        "Cannot reach RabbitMQ at {shown}: {e}\n\
                         The demo starts a broker of its own only when nothing listens at an \
                         address of this machine. Check the URL (--amqp-url or AMQP_URL)."
                    );
                    return Ok(ExitCode::from(1));
                }
            }
        }
    };
    let amqp_url = own.as_ref().map_or(amqp_url, |o| o.url.as_str());
    let shutdown = CancellationToken::new();
    let sandbox_addr = sandbox::spawn(shutdown.clone()).await?;
    let sandbox = sandbox::Client::new(sandbox_addr);
    sandbox
        .add_rule(&sandbox::Rule::answer(404).on_query("=expired-"))
        .await?;
    let prefix = format!(
        "postback-relay-demo-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    // The demo's store is a file of its own: removed however the demo ends.
    let store_files = DemoStore(prefix.clone());
    let config = demo_config(amqp_url, &prefix, sandbox.base_url())?;
    let topology = Topology::from_config(&config);
    let running = relay::start(config, shutdown.clone()).await?;
    let metrics = running.metrics.clone();

    println!("postback-relay demo");
    println!(
        "  partner sandbox   {} (answers 404 to expired clicks)",
        sandbox.base_url()
    );
    println!("  relay metrics     http://{}/metrics", running.http_addr);
    if let Some(own) = &own {
        println!(
            "  broker            node {} of the demo's own, on 127.0.0.1:{}",
            own.node, own.port
        );
    }
    println!("  queues            {prefix}.events, {prefix}.dead");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !running.health.is_ready() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the relay did not start consuming within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let started = Instant::now();
    let publisher = Publisher::new(&conn).await?;
    let bar = progress_bar(n as u64, "published");
    publish::publish_all(&publisher, &topology.exchange, sample_events(n), || {
        bar.inc(1)
    })
    .await
    .map_err(|(i, e)| anyhow::anyhow!("publishing event {i}: {e}"))?;
    bar.finish_and_clear();
    println!("  published         {n} events, all confirmed by the broker");

    // Settled: every event has its final outcome (status updates may wait a moment for their
    // conversion, in the retry tiers).
    let bar = progress_bar(n as u64, "settled");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let settled = accounted(&metrics);
        bar.set_position(settled);
        if settled >= n as u64 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {settled} of {n} events were settled within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed();

    let channel = conn.create_channel().await?;
    let dead_in_queue = channel
        .queue_declare(
            topology.dead.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?
        .message_count();
    let requests = sandbox.requests().await?;
    let agrees = report(&metrics, &requests, dead_in_queue as u64, n, elapsed);
    show_dead_letters(&conn, &topology).await?;

    shutdown.cancel();
    running.wait().await?;
    topology.delete(&channel).await?;
    let _ = conn.close(200, "demo done".into()).await;
    drop(store_files);
    println!("  cleaned up        exchange, queues {prefix}.* and the demo's store deleted");
    if let Some(own) = own {
        let node = own.node.clone();
        own.stop();
        println!("  stopped           the demo's own broker node {node}, its directory removed");
    }
    Ok(if agrees {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The URL as it can be shown: without its password.
fn without_password(amqp_url: &str) -> String {
    match url::Url::parse(amqp_url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => amqp_url.to_owned(),
    }
}

/// How a broker URL answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// A broker accepted the connection.
    Answers,
    /// The connection was refused: nothing listens at that address.
    NothingListens,
    /// Anything else: something listens but refused the demo, the host does not resolve or
    /// does not answer...
    Fails,
}

/// What the demo does about its broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerPlan {
    /// Use the broker at the URL.
    Use,
    /// Start a throwaway node with this `rabbitmq-server`, and use it.
    StartOwn(PathBuf),
    /// Say which command installs RabbitMQ, and stop.
    Install,
    /// Say why the broker cannot be used, and stop.
    GiveUp,
}

/// The demo's decision. A node of its own only stands in for a broker of this machine (a
/// remote one that is down is not the demo's to replace) when nothing listens at its address
/// (a broker that refuses the demo is a broker to fix, not to replace).
pub fn plan(reach: Reach, local: bool, server: Option<PathBuf>) -> BrokerPlan {
    match (reach, local, server) {
        (Reach::Answers, _, _) => BrokerPlan::Use,
        (Reach::NothingListens, true, Some(server)) => BrokerPlan::StartOwn(server),
        (Reach::NothingListens, true, None) => BrokerPlan::Install,
        (Reach::NothingListens, false, _) | (Reach::Fails, _, _) => BrokerPlan::GiveUp,
    }
}

/// Whether the URL names this machine: `localhost` or a loopback address.
pub fn is_local(amqp_url: &str) -> bool {
    let Ok(uri) = amqp_url.parse::<lapin::uri::AMQPUri>() else {
        return false;
    };
    let host = uri
        .authority
        .host
        .trim_start_matches('[')
        .trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Tells "nothing listens" from other failures, once the AMQP connection has failed.
async fn probe(amqp_url: &str) -> Reach {
    let Ok(uri) = amqp_url.parse::<lapin::uri::AMQPUri>() else {
        return Reach::Fails;
    };
    let addr = (uri.authority.host.as_str(), uri.authority.port);
    match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr)).await {
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Reach::NothingListens,
        // It listens but refused the demo, or does not resolve, or does not answer in time.
        _ => Reach::Fails,
    }
}

/// Debian installs the real start script here, runnable by any user; `/usr/sbin` holds a
/// wrapper that switches to the `rabbitmq` user and its files.
const DEBIAN_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// The installed `rabbitmq-server` start script, if any.
pub fn find_rabbitmq_server() -> Option<PathBuf> {
    let mut dirs = vec![PathBuf::from(DEBIAN_SERVER).with_file_name("")];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    // An ordinary user's PATH often leaves the sbin directories out.
    dirs.extend(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    find_server_in(&dirs)
}

/// The first executable `rabbitmq-server` in `dirs`, skipping Debian's wrapper (which would
/// run the node as the `rabbitmq` user, on that user's files).
pub fn find_server_in(dirs: &[PathBuf]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    dirs.iter().map(|d| d.join("rabbitmq-server")).find(|p| {
        let executable =
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        let wrapper =
            std::fs::canonicalize(p).is_ok_and(|real| real.ends_with("rabbitmq-script-wrapper"));
        executable && !wrapper
    })
}

/// A RabbitMQ node of the demo's own, for a machine where RabbitMQ is installed but no broker
/// runs. It has its own node name, AMQP and distribution ports, and directory (data, logs,
/// config, Erlang cookie), no plugins and so no other listener: it touches nothing of an
/// installed broker. Dropping it stops the node and removes its directory, on every path out
/// of the demo (an error, Ctrl-C, a panic).
pub struct OwnBroker {
    child: std::process::Child,
    dir: PathBuf,
    pub node: String,
    pub port: u16,
    pub url: String,
}

/// How long a node may take to start: a loaded machine is slow to boot Erlang.
const OWN_BROKER_START: Duration = Duration::from_secs(120);

impl OwnBroker {
    /// Starts a node with `server` and waits until it accepts AMQP connections. `config` is
    /// added to its `rabbitmq.conf`.
    pub async fn start(server: &Path, config: &str) -> anyhow::Result<OwnBroker> {
        use std::os::unix::process::CommandExt as _;
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let node = format!("postback-relay-demo-{id}@localhost");
        let dir = std::env::temp_dir().join(format!("postback-relay-demo-broker-{id}"));
        let (port, dist_port) = (free_port()?, free_port()?);
        std::fs::create_dir(&dir)?;
        // From here on, dropping `guard` removes the directory.
        let guard = DirGuard(dir.clone());
        for sub in ["mnesia", "log"] {
            std::fs::create_dir(dir.join(sub))?;
        }
        let env = own_broker_env(&node, port, dist_port, &dir);
        for (name, text) in own_broker_files(port, config) {
            std::fs::write(dir.join(name), text)?;
        }
        let log = std::fs::File::create(dir.join("startup.log"))?;
        let child = std::process::Command::new(server)
            .current_dir(&dir)
            .envs(env)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a terminal's Ctrl-C reaches the demo, which stops the
            // whole group, script and Erlang VM alike.
            .process_group(0)
            .spawn()?;
        std::mem::forget(guard);
        let mut own = OwnBroker {
            child,
            dir,
            node,
            port,
            url: format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        };
        let deadline = Instant::now() + OWN_BROKER_START;
        loop {
            if let Some(status) = own.child.try_wait()? {
                anyhow::bail!(
                    "the demo's RabbitMQ node stopped during start-up ({status}):\n{}",
                    own.log_tail()
                );
            }
            if let Ok(conn) = broker::connect(&own.url, "demo").await {
                let _ = conn.close(200, "started".into()).await;
                return Ok(own);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the demo's RabbitMQ node did not start within {} s:\n{}",
                OWN_BROKER_START.as_secs(),
                own.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Stops the node and removes its directory (what dropping it does).
    pub fn stop(self) {}

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("startup.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        use rustix::process::{Pid, Signal, kill_process_group, test_kill_process_group};
        // The data is thrown away: no need for a graceful stop.
        let group = Pid::from_child(&self.child);
        let _ = kill_process_group(group, Signal::KILL);
        let _ = self.child.wait();
        // The VM is the script's child: wait until the group is gone before removing the
        // directory it writes to (bounded: a zombie nobody reaps counts as present).
        let deadline = Instant::now() + Duration::from_secs(10);
        while test_kill_process_group(group).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The demo's embedded store (`{prefix}.db` in the temp directory), removed when dropped.
struct DemoStore(String);

impl Drop for DemoStore {
    fn drop(&mut self) {
        for suffix in [".db", ".db-wal", ".db-shm"] {
            let _ = std::fs::remove_file(std::env::temp_dir().join(format!("{}{suffix}", self.0)));
        }
    }
}

/// Removes a directory when dropped.
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TCP port free on loopback right now.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The environment that keeps a node to its own name, ports and directory: no file of an
/// installed broker is read (its config, env file, cookie) or written.
pub fn own_broker_env(
    node: &str,
    port: u16,
    dist_port: u16,
    dir: &Path,
) -> Vec<(&'static str, String)> {
    let at = |name: &str| dir.join(name).display().to_string();
    vec![
        ("RABBITMQ_NODENAME", node.to_owned()),
        ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1".into()),
        ("RABBITMQ_NODE_PORT", port.to_string()),
        ("RABBITMQ_DIST_PORT", dist_port.to_string()),
        ("RABBITMQ_MNESIA_BASE", at("mnesia")),
        ("RABBITMQ_LOG_BASE", at("log")),
        ("RABBITMQ_CONFIG_FILE", at("rabbitmq.conf")),
        ("RABBITMQ_ADVANCED_CONFIG_FILE", at("advanced.config")),
        ("RABBITMQ_CONF_ENV_FILE", at("rabbitmq-env.conf")),
        ("RABBITMQ_ENABLED_PLUGINS_FILE", at("enabled_plugins")),
        ("RABBITMQ_PID_FILE", at("pid")),
        // Erlang distribution on loopback only.
        (
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
            "-kernel inet_dist_use_interface {127,0,0,1}".into(),
        ),
        // Erlang keeps its cookie in $HOME: the node's own, in its directory.
        ("HOME", dir.display().to_string()),
    ]
}

/// The node's files: one AMQP listener on loopback, and no plugins (so no management or
/// Prometheus listener that could clash with an installed broker's).
pub fn own_broker_files(port: u16, config: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "rabbitmq.conf",
            format!("listeners.tcp.1 = 127.0.0.1:{port}\n{config}\n"),
        ),
        ("enabled_plugins", "[].\n".into()),
        ("rabbitmq-env.conf", String::new()),
    ]
}

/// Prints one dead letter of each reason, as an operator reads them (`dlq list`).
async fn show_dead_letters(conn: &lapin::Connection, topology: &Topology) -> anyhow::Result<()> {
    let letters = crate::dlq::browse(
        conn,
        topology,
        crate::config::Config::default_worker().max_event_bytes,
    )
    .await?;
    let mut seen = std::collections::BTreeSet::new();
    println!("  a dead letter of each reason (postback-relay dlq list):");
    for l in &letters {
        let s = l.summary();
        if seen.insert(s.reason.as_str()) {
            println!(
                "    {:<17} event {:<16} {}",
                s.reason.as_str(),
                s.event_id.as_deref().unwrap_or("(unreadable)"),
                s.detail.chars().take(90).collect::<String>()
            );
        }
    }
    println!();
    Ok(())
}

/// Events with their final outcome: each sample event has one destination, or none.
fn accounted(m: &Metrics) -> u64 {
    let outcomes: u64 = DESTINATIONS
        .iter()
        .flat_map(|d| {
            ["delivered", "dead_lettered", "duplicate", "superseded"]
                .map(|o| m.deliveries.with_label_values(&[d, o]).get())
        })
        .sum();
    let before_routing: u64 = Reason::ALL
        .iter()
        .map(|r| {
            m.dead_letters
                .with_label_values(&["none", r.as_str()])
                .get()
        })
        .sum();
    outcomes + before_routing + m.events_skipped.get()
}

/// What the sandbox answered, per destination (the first path segment) and status.
fn sandbox_counts(requests: &[sandbox::Recorded]) -> BTreeMap<(String, u16), u64> {
    let mut counts = BTreeMap::new();
    for r in requests {
        let dest = r
            .path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("")
            .to_owned();
        *counts.entry((dest, r.status)).or_default() += 1;
    }
    counts
}

/// Prints the per-destination table; true when the relay's counts agree with the sandbox's.
fn report(
    m: &Metrics,
    requests: &[sandbox::Recorded],
    dead_in_queue: u64,
    n: usize,
    elapsed: Duration,
) -> bool {
    let by_reason = |dest: &str| -> BTreeMap<&'static str, u64> {
        Reason::ALL
            .iter()
            .map(|r| {
                (
                    r.as_str(),
                    m.dead_letters.with_label_values(&[dest, r.as_str()]).get(),
                )
            })
            .filter(|(_, c)| *c > 0)
            .collect()
    };
    let list = |map: &BTreeMap<&str, u64>| {
        if map.is_empty() {
            "-".to_owned()
        } else {
            map.iter()
                .map(|(r, c)| format!("{r}: {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let sandbox = sandbox_counts(requests);
    let answered = |dest: &str, ok: fn(u16) -> bool| -> u64 {
        sandbox
            .iter()
            .filter(|((d, s), _)| d == dest && ok(*s))
            .map(|(_, c)| c)
            .sum()
    };

    println!(
        "  settled           {n} events in {:.2} s",
        elapsed.as_secs_f64()
    );
    println!();
    println!(
        "  {:<11} {:>9} {:>13} {:>8} {:>8} {:>8}   dead letters by reason",
        "destination", "delivered", "dead-lettered", "success", "sandbox", "sandbox"
    );
    println!(
        "  {:<11} {:>9} {:>13} {:>8} {:>8} {:>8}",
        "", "", "", "rate", "2xx", "404"
    );
    let mut checks: Vec<(String, bool)> = Vec::new();
    let mut outcomes = 0;
    for dest in DESTINATIONS {
        let delivered = m.deliveries.with_label_values(&[dest, "delivered"]).get();
        let dead = m
            .deliveries
            .with_label_values(&[dest, "dead_lettered"])
            .get();
        let rate = if delivered + dead == 0 {
            0.0
        } else {
            100.0 * delivered as f64 / (delivered + dead) as f64
        };
        let (ok, not_found) = (
            answered(dest, |s| (200..300).contains(&s)),
            answered(dest, |s| s == 404),
        );
        let reasons = by_reason(dest);
        println!(
            "  {dest:<11} {delivered:>9} {dead:>13} {rate:>7.1}% {ok:>8} {not_found:>8}   {}",
            list(&reasons)
        );
        checks.push((
            format!("{dest}: delivered = sandbox 2xx, partner_rejected = sandbox 404"),
            delivered == ok && reasons.get("partner_rejected").copied().unwrap_or(0) == not_found,
        ));
        outcomes += delivered + dead;
    }
    let unrouted = by_reason("none");
    let before_routing: u64 = unrouted.values().sum();
    println!(
        "  {:<11} {:>9} {:>13} {:>8} {:>8} {:>8}   {}",
        "(unrouted)",
        "-",
        before_routing,
        "",
        "",
        "",
        list(&unrouted)
    );
    let skipped = m.events_skipped.get();
    println!("  skipped (no attribution): {skipped}");
    println!();
    let total_dead: u64 = DESTINATIONS
        .iter()
        .map(|d| m.deliveries.with_label_values(&[d, "dead_lettered"]).get())
        .sum::<u64>()
        + before_routing;
    checks.push((
        "the dead-letter queue holds every dead letter".into(),
        dead_in_queue == total_dead,
    ));
    // Each sample event is meant for exactly one destination.
    checks.push((
        "every event is accounted for".into(),
        outcomes + before_routing + skipped == n as u64,
    ));
    let mut all = true;
    for (what, pass) in checks {
        println!("  [{}] {what}", if pass { "ok" } else { "MISMATCH" });
        all &= pass;
    }
    println!();
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_plan() {
        let server = || Some(PathBuf::from("/usr/lib/rabbitmq/bin/rabbitmq-server"));
        // A broker that answers is used, wherever it is and whatever is installed.
        for (local, s) in [(true, server()), (false, None)] {
            assert_eq!(plan(Reach::Answers, local, s), BrokerPlan::Use);
        }
        // Nothing at a local address: start a node if RabbitMQ is installed, else say how.
        assert_eq!(
            plan(Reach::NothingListens, true, server()),
            BrokerPlan::StartOwn(server().unwrap())
        );
        assert_eq!(plan(Reach::NothingListens, true, None), BrokerPlan::Install);
        // A remote broker is not the demo's to replace, nor one that refuses the demo.
        assert_eq!(
            plan(Reach::NothingListens, false, server()),
            BrokerPlan::GiveUp
        );
        assert_eq!(plan(Reach::Fails, true, server()), BrokerPlan::GiveUp);
        assert_eq!(plan(Reach::Fails, true, None), BrokerPlan::GiveUp);
    }

    #[test]
    fn local_addresses() {
        for url in [
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            "amqp://localhost",
            "amqp://u:p@LOCALHOST:5999/vh",
            "amqp://127.1.2.3:5672",
            "amqp://[::1]:5672/%2f",
        ] {
            assert!(is_local(url), "{url}");
        }
        for url in [
            "amqp://guest:guest@rabbit.example.com:5672/%2f",
            "amqp://10.0.0.5",
            "amqp://0.0.0.0:5672",
            "amqp://localhost.example.com",
            "not a url",
        ] {
            assert!(!is_local(url), "{url}");
        }
    }

    #[test]
    fn finds_an_executable_server_and_skips_the_wrapper() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let dir = |name: &str| {
            let d = tmp.path().join(name);
            std::fs::create_dir(&d).unwrap();
            d
        };
        let (empty, plain, wrapped, real) =
            (dir("empty"), dir("plain"), dir("wrapped"), dir("real"));
        // A file that cannot be run does not count.
        std::fs::write(plain.join("rabbitmq-server"), "#!/bin/sh\n").unwrap();
        // Debian's wrapper, reached through a link, does not count either.
        let wrapper = wrapped.join("rabbitmq-script-wrapper");
        std::fs::write(&wrapper, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(&wrapper, wrapped.join("rabbitmq-server")).unwrap();
        let script = real.join("rabbitmq-server");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

        assert_eq!(find_server_in(&[empty.clone(), plain.clone()]), None);
        assert_eq!(find_server_in(std::slice::from_ref(&wrapped)), None);
        assert_eq!(
            find_server_in(&[empty, plain, wrapped, real.clone()]),
            Some(script)
        );
    }

    #[test]
    fn the_own_node_is_kept_to_its_own_name_ports_and_directory() {
        let dir = Path::new("/tmp/node-dir");
        let env: BTreeMap<_, _> = own_broker_env("n@localhost", 5999, 25999, dir)
            .into_iter()
            .collect();
        assert_eq!(env["RABBITMQ_NODENAME"], "n@localhost");
        assert_eq!(env["RABBITMQ_NODE_PORT"], "5999");
        assert_eq!(env["RABBITMQ_DIST_PORT"], "25999");
        assert_eq!(env["HOME"], "/tmp/node-dir");
        // Every file the node reads or writes is in its directory.
        for key in [
            "RABBITMQ_MNESIA_BASE",
            "RABBITMQ_LOG_BASE",
            "RABBITMQ_CONFIG_FILE",
            "RABBITMQ_ADVANCED_CONFIG_FILE",
            "RABBITMQ_CONF_ENV_FILE",
            "RABBITMQ_ENABLED_PLUGINS_FILE",
            "RABBITMQ_PID_FILE",
        ] {
            assert!(env[key].starts_with("/tmp/node-dir/"), "{key}");
        }
        let files: BTreeMap<_, _> = own_broker_files(5999, "extra = 1").into_iter().collect();
        assert_eq!(
            files["rabbitmq.conf"],
            "listeners.tcp.1 = 127.0.0.1:5999\nextra = 1\n"
        );
        // No plugin, so no management or Prometheus listener.
        assert_eq!(files["enabled_plugins"], "[].\n");
    }
}
