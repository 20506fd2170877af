//! A redis-server of a test's own, on a free port with its data directory in a temporary
//! directory, so that stopping it, or letting it come back empty, touches no other test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Whether a redis-server keeps its data across a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persist {
    /// An append-only file, synced on every write, as a production Redis keeps its data.
    AppendOnly,
    /// Nothing on disk: it comes back empty, as a cache-configured or failed-over one may.
    Nothing,
}

/// What a TLS-only redis-server shows and asks.
#[derive(Clone, Debug)]
pub struct RedisTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that client certificates must be signed by.
    pub ca: PathBuf,
    /// Whether a client without a certificate is refused (`--tls-auth-clients`).
    pub require_client_cert: bool,
}

/// A redis-server of the test's own; killed when dropped.
pub struct Redis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    persist: Persist,
    tls: Option<RedisTls>,
}

impl Redis {
    /// Starts one on a free port, or `None` outside CI when redis-server is not installed.
    pub fn start(persist: Persist) -> Option<Redis> {
        Redis::start_with(persist, None)
    }

    /// Starts one that speaks only TLS (`--port 0 --tls-port`), keeping nothing on disk.
    pub fn start_tls(tls: RedisTls) -> Option<Redis> {
        Redis::start_with(Persist::Nothing, Some(tls))
    }

    fn start_with(persist: Persist, tls: Option<RedisTls>) -> Option<Redis> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !installed {
            assert!(
                std::env::var("CI").is_err(),
                "redis-server is required in CI (scripts/test installs it)"
            );
            eprintln!("skipped: redis-server is not installed");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Redis {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
            persist,
            tls,
        };
        redis.up();
        Some(redis)
    }

    /// `redis://`, or `rediss://` for a TLS one, to 127.0.0.1 (which the test server
    /// certificate names).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server (again) on its port and data directory, and waits for it.
    pub fn up(&mut self) {
        let port = self.port.to_string();
        let ports: Vec<&str> = match &self.tls {
            None => vec!["--port", &port],
            Some(t) => vec![
                "--port",
                "0",
                "--tls-port",
                &port,
                "--tls-cert-file",
                t.cert.to_str().unwrap(),
                "--tls-key-file",
                t.key.to_str().unwrap(),
                "--tls-ca-cert-file",
                t.ca.to_str().unwrap(),
                "--tls-auth-clients",
                if t.require_client_cert { "yes" } else { "no" },
            ],
        };
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1"])
            .args(ports)
            .args(["--dir", self.dir.path().to_str().unwrap()])
            .args(match self.persist {
                Persist::AppendOnly => ["--appendonly", "yes", "--appendfsync", "always"],
                Persist::Nothing => ["--appendonly", "no", "--appendfsync", "no"],
            })
            .args(["--save", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("redis-server stopped at start ({status})");
            }
            // A TLS one is checked by the tests themselves: here, only that it listens.
            if self.tls.is_some() {
                if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let answered = redis::Client::open(self.url())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if answered.is_ok() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server the way an orchestrator does (SIGTERM), and waits for it to exit.
    pub fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
