//! A PostgreSQL server of a test's own (`initdb` and `pg_ctl` on a temporary directory and a
//! free port, trust authentication on loopback), so that a test can stop it, start it again
//! or freeze it without touching any other test. With [`PgServer::start_tls`] it takes only
//! TLS connections on TCP, with a certificate it can be given again while it runs, and asks
//! for a client certificate when given the CA to check it against.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub struct PgServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

/// The newest PostgreSQL installed, by its binaries' directory.
fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// `program args...`, as the postgres user when this runs as root (initdb refuses root).
fn run(bin: &std::path::Path, program: &str, args: &[&str]) -> std::process::Output {
    let path = bin.join(program);
    let mut cmd = if rustix::process::geteuid().is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&path);
        c
    } else {
        Command::new(&path)
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl PgServer {
    /// A new server, started; `None` outside CI when PostgreSQL is not installed.
    pub fn start() -> Option<PgServer> {
        PgServer::init(None)
    }

    /// A new server taking TLS only on TCP (its Unix socket stays open to the test), with
    /// `server`'s certificate; with `client_ca`, each connection must present a client
    /// certificate signed by it (pg_hba `clientcert=verify-ca`).
    pub fn start_tls(server: &super::tls::Pair, client_ca: Option<&Path>) -> Option<PgServer> {
        PgServer::init(Some((server, client_ca)))
    }

    fn init(tls: Option<(&super::tls::Pair, Option<&Path>)>) -> Option<PgServer> {
        let Some(bin) = bin_dir() else {
            assert!(
                std::env::var("CI").is_err(),
                "PostgreSQL is required in CI (scripts/test installs it)"
            );
            eprintln!("skipped: PostgreSQL is not installed");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("pbr-pg-")
            .tempdir()
            .unwrap();
        if rustix::process::geteuid().is_root() {
            let chown = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(chown.success());
        }
        let data = dir.path().join("data");
        let data = data.to_str().unwrap();
        let out = run(
            &bin,
            "initdb",
            &["-D", data, "-U", "postgres", "--auth=trust", "--no-sync"],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = super::free_port();
        let server = PgServer { bin, dir, port };
        if let Some((pair, client_ca)) = tls {
            server.configure_tls(pair, client_ca);
        }
        server.up();
        Some(server)
    }

    /// `name` in the data directory, a copy of `from`, the server's own and readable by it
    /// alone (as PostgreSQL wants of a key).
    fn install(&self, from: &Path, name: &str) {
        let to = self.dir.path().join("data").join(name);
        std::fs::copy(from, &to).unwrap();
        std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        if rustix::process::geteuid().is_root() {
            let chown = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&to)
                .status()
                .unwrap();
            assert!(chown.success());
        }
    }

    fn configure_tls(&self, pair: &super::tls::Pair, client_ca: Option<&Path>) {
        let data = self.dir.path().join("data");
        self.install(&pair.cert, "server.crt");
        self.install(&pair.key, "server.key");
        let mut conf =
            "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n".to_owned();
        let mut host = "hostssl all all 127.0.0.1/32 trust".to_owned();
        if let Some(ca) = client_ca {
            self.install(ca, "client-ca.crt");
            conf.push_str("ssl_ca_file = 'client-ca.crt'\n");
            host.push_str(" clientcert=verify-ca");
        }
        let mut postgresql = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut postgresql, conf.as_bytes()).unwrap();
        // The first line that matches decides: TLS on TCP, or nothing.
        let hba = format!("local all all trust\n{host}\nhost all all all reject\n");
        std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
    }

    /// Shows `pair`'s certificate from the next connection on (a reload, as an operator
    /// renewing it would).
    pub fn set_certificate(&self, pair: &super::tls::Pair) {
        self.install(&pair.cert, "server.crt");
        self.install(&pair.key, "server.key");
        let out = run(&self.bin, "pg_ctl", &["-D", &self.data(), "reload"]);
        assert!(
            out.status.success(),
            "pg_ctl reload: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Its maintenance database, for `journal.url`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts it (again), on its port and data, and waits until it takes connections.
    pub fn up(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        let out = run(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops it at once, as a crash or a lost host would (no checkpoint; it recovers at the
    /// next start).
    pub fn down(&self) {
        let out = run(
            &self.bin,
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The server's processes: the postmaster and its children.
    fn pids(&self) -> Vec<String> {
        let pidfile = self.dir.path().join("data").join("postmaster.pid");
        let Ok(text) = std::fs::read_to_string(pidfile) else {
            return Vec::new();
        };
        let Some(main) = text.lines().next().map(str::to_owned) else {
            return Vec::new();
        };
        let children = Command::new("pgrep")
            .args(["-P", &main])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        std::iter::once(main)
            .chain(children.lines().map(str::to_owned))
            .collect()
    }

    fn signal(&self, sig: &str) {
        for pid in self.pids() {
            let _ = Command::new("kill").args([sig, &pid]).status();
        }
    }

    /// Freezes it: its connections stay open and it answers nothing, as a server that hangs.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// Entries in its journal, or `None` while it does not answer. Through its Unix socket,
    /// which takes no TLS, whatever TCP takes.
    pub async fn entries(&self) -> Option<i64> {
        let url = format!(
            "host={} port={} user=postgres dbname=postgres",
            self.dir.path().display(),
            self.port
        );
        let connect = tokio_postgres::connect(&url, tokio_postgres::NoTls);
        let (client, conn) = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .ok()?
            .ok()?;
        tokio::spawn(conn);
        let row = client
            .query_one("SELECT count(*) FROM entries", &[])
            .await
            .ok()?;
        Some(row.get(0))
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.thaw();
        let _ = run(
            &self.bin,
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "stop"],
        );
    }
}
