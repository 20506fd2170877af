//! A RabbitMQ node of a test's own with a TLS listener only, as the demo starts its own node:
//! its own node name, ports and directory (data, logs, config, Erlang cookie), so that it
//! touches no installed broker, and a node left behind by a killed test blocks no later run.
//! Dropping it kills the node and removes its directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the node's TLS listener shows and asks.
pub struct NodeTls<'a> {
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
    /// Whether a client without a certificate (signed by `ca`) is refused.
    pub require_client_cert: bool,
}

pub struct RabbitNode {
    child: Child,
    dir: tempfile::TempDir,
    /// The TLS listener's port, on 127.0.0.1.
    pub port: u16,
}

/// How long a node may take to start: a loaded machine is slow to boot Erlang.
const START: Duration = Duration::from_secs(120);

/// The installed `rabbitmq-server` script that runs the node as the caller (not Debian's
/// wrapper, which would run it as the `rabbitmq` user on that user's files).
fn server() -> Option<PathBuf> {
    [
        "/usr/lib/rabbitmq/bin",
        "/usr/local/sbin",
        "/usr/sbin",
        "/opt/rabbitmq/sbin",
    ]
    .iter()
    .map(|d| Path::new(d).join("rabbitmq-server"))
    .find(|p| {
        p.is_file()
            && !std::fs::canonicalize(p).is_ok_and(|real| real.ends_with("rabbitmq-script-wrapper"))
    })
}

impl RabbitNode {
    /// Starts a node and waits until its TLS listener accepts connections; `None` outside CI
    /// when RabbitMQ is not installed.
    pub fn start(tls: &NodeTls) -> Option<RabbitNode> {
        let Some(server) = server() else {
            assert!(
                std::env::var("CI").is_err(),
                "RabbitMQ is required in CI (scripts/test installs it)"
            );
            eprintln!("skipped: rabbitmq-server is not installed");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let (port, dist_port) = (super::free_port(), super::free_port());
        let at = |name: &str| dir.path().join(name).display().to_string();
        for sub in ["mnesia", "log"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        // The files the node reads are copied into its directory: readable by whichever user
        // runs it.
        for (name, from) in [
            ("ca.pem", tls.ca),
            ("cert.pem", tls.cert),
            ("key.pem", tls.key),
        ] {
            std::fs::copy(from, dir.path().join(name)).unwrap();
        }
        let conf = format!(
            "listeners.tcp = none\n\
             listeners.ssl.default = 127.0.0.1:{port}\n\
             ssl_options.cacertfile = {}\n\
             ssl_options.certfile = {}\n\
             ssl_options.keyfile = {}\n\
             ssl_options.verify = verify_peer\n\
             ssl_options.fail_if_no_peer_cert = {}\n\
             loopback_users = none\n",
            at("ca.pem"),
            at("cert.pem"),
            at("key.pem"),
            tls.require_client_cert,
        );
        std::fs::write(dir.path().join("rabbitmq.conf"), conf).unwrap();
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").unwrap();
        std::fs::write(dir.path().join("rabbitmq-env.conf"), "").unwrap();
        let log = std::fs::File::create(dir.path().join("startup.log")).unwrap();
        use std::os::unix::process::CommandExt as _;
        let child = Command::new(server)
            .current_dir(dir.path())
            .env(
                "RABBITMQ_NODENAME",
                format!("postback-relay-tls-{id}@localhost"),
            )
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", at("mnesia"))
            .env("RABBITMQ_LOG_BASE", at("log"))
            .env("RABBITMQ_CONFIG_FILE", at("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", at("advanced.config"))
            .env("RABBITMQ_CONF_ENV_FILE", at("rabbitmq-env.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", at("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", at("pid"))
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // Its own process group, killed as one: script and Erlang VM alike.
            .process_group(0)
            .spawn()
            .unwrap();
        let mut node = RabbitNode { child, dir, port };
        node.until_listening();
        Some(node)
    }

    /// The node opens its listeners last, once it serves: a TCP connection to the TLS port
    /// is the sign.
    fn until_listening(&mut self) {
        let deadline = Instant::now() + START;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the RabbitMQ node stopped ({status}):\n{}", self.log_tail());
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the RabbitMQ node did not start within {START:?}:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `amqps://` with the guest user, to 127.0.0.1 (which the server certificate names).
    pub fn url(&self) -> String {
        format!("amqps://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("startup.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        use rustix::process::{Pid, Signal, kill_process_group, test_kill_process_group};
        let group = Pid::from_child(&self.child);
        let _ = kill_process_group(group, Signal::KILL);
        let _ = self.child.wait();
        // The VM is the script's child: gone before the directory is (bounded).
        let deadline = Instant::now() + Duration::from_secs(10);
        while test_kill_process_group(group).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
