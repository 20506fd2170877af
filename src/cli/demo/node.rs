//! A RabbitMQ node of the demo's own, for a machine where RabbitMQ is installed but no broker
//! runs: its own name, ports and directory, so that it touches nothing of an installed broker.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use postback_relay::relay::broker;

/// A throwaway RabbitMQ node. It has its own node name, AMQP and distribution ports, and
/// directory (data, logs, config, Erlang cookie), no plugins and so no other listener.
/// Dropping it stops the node and removes its directory, on every path out of the demo (an
/// error, Ctrl-C, a panic).
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
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let node = format!("postback-relay-demo-{id}@localhost");
        let dir = std::env::temp_dir().join(format!("postback-relay-demo-broker-{id}"));
        let (port, dist_port) = (free_port()?, free_port()?);
        std::fs::create_dir(&dir)?;
        // From here on, dropping `guard` removes the directory.
        let guard = DirGuard(dir.clone());
        let env = own_broker_env(&node, port, dist_port, &dir);
        let child = spawn(server, &dir, env, own_broker_files(port, config))?;
        // The node owns the directory now: dropping it removes the directory.
        std::mem::forget(guard);
        let own = OwnBroker {
            child,
            dir,
            node,
            port,
            url: format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        };
        own.until_started().await
    }

    /// Waits until the node accepts AMQP connections; fails with the end of its log if it
    /// stops, or does not start in time.
    async fn until_started(mut self) -> anyhow::Result<OwnBroker> {
        let deadline = Instant::now() + OWN_BROKER_START;
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!(
                    "the demo's RabbitMQ node stopped during start-up ({status}):\n{}",
                    self.log_tail()
                );
            }
            if let Ok(conn) = broker::connect(&self.url, None, "demo").await {
                let _ = conn.close(200, "started".into()).await;
                return Ok(self);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the demo's RabbitMQ node did not start within {} s:\n{}",
                OWN_BROKER_START.as_secs(),
                self.log_tail()
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

/// Writes the node's files into `dir` and starts `server` there, its output in
/// `startup.log`.
fn spawn(
    server: &Path,
    dir: &Path,
    env: Vec<(&'static str, String)>,
    files: Vec<(&'static str, String)>,
) -> std::io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt as _;
    for sub in ["mnesia", "log"] {
        std::fs::create_dir(dir.join(sub))?;
    }
    for (name, text) in files {
        std::fs::write(dir.join(name), text)?;
    }
    let log = std::fs::File::create(dir.join("startup.log"))?;
    std::process::Command::new(server)
        .current_dir(dir)
        .envs(env)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a terminal's Ctrl-C reaches the demo, which stops the
        // whole group, script and Erlang VM alike.
        .process_group(0)
        .spawn()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use lapin::options::QueueDeclareOptions;
    use lapin::types::FieldTable;
    use postback_relay::relay::broker::{CONFIRM_TIMEOUT, PublishError, Publisher};

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

    /// A broker under a memory alarm blocks publishing connections: it stops reading from
    /// them. The publisher's deadline is the library's, but the node that raises the alarm
    /// (so that it disturbs no one else) is the demo's, so the test lives here. Needs
    /// RabbitMQ installed, and is slow:
    /// `cargo test --bin postback-relay -- --ignored a_blocked_broker`.
    #[tokio::test]
    #[ignore = "starts a RabbitMQ node of its own: slow"]
    async fn a_blocked_broker_cannot_hold_a_publish_past_its_deadline() {
        let server =
            super::super::broker_plan::find_rabbitmq_server().expect("RabbitMQ must be installed");
        // An alarm from the start: any memory use is over a 1-byte watermark.
        let node = OwnBroker::start(&server, "vm_memory_high_watermark.absolute = 1")
            .await
            .unwrap();
        let conn = broker::connect(&node.url, None, "test").await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        // Exclusive: RabbitMQ 4.3 refuses a transient queue that is not exclusive.
        let exclusive = QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        };
        ch.queue_declare("blocked".into(), exclusive, FieldTable::default())
            .await
            .unwrap();
        let publisher = Publisher::new(&conn).await.unwrap();
        // Larger than the socket buffers: its frames cannot all be written while the broker
        // reads nothing, so the publish waits on the send, before any confirm.
        let body = vec![b'x'; 10 << 20];
        let started = Instant::now();
        let outcome = tokio::time::timeout(
            CONFIRM_TIMEOUT + Duration::from_secs(15),
            publisher.publish_json("", "blocked", &body, None, None),
        )
        .await;
        assert!(
            matches!(outcome, Ok(Err(PublishError::Timeout(_)))),
            "after {:?}: {outcome:?}",
            started.elapsed()
        );
        assert!(started.elapsed() < CONFIRM_TIMEOUT + Duration::from_secs(5));
    }
}
