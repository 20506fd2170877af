//! The `postback-relay` binary: long-running processes (`run`, `sandbox`, a `replay` to kill)
//! that are killed when dropped, and one-shot commands whose output a test reads.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::Env;

pub const BIN: &str = env!("CARGO_BIN_EXE_postback-relay");

/// A process of the binary; killed (SIGKILL) when dropped.
pub struct RelayProcess(pub Child);

impl RelayProcess {
    /// `postback-relay run` on a config file.
    pub fn run(config: &str) -> RelayProcess {
        Self::run_with(config, &[], None)
    }

    /// With these environment variables, and its log written to `log`.
    pub fn run_with(
        config: &str,
        envs: &[(&str, &str)],
        log: Option<&std::path::Path>,
    ) -> RelayProcess {
        Self::spawn(
            &["--log-format", "json", "run", "--config", config],
            envs,
            log,
        )
    }

    /// The binary with `args`; its output discarded but for the log on stderr to `log`.
    pub fn spawn(
        args: &[&str],
        envs: &[(&str, &str)],
        log: Option<&std::path::Path>,
    ) -> RelayProcess {
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::null(),
        };
        RelayProcess(
            Command::new(BIN)
                .args(args)
                .envs(envs.iter().copied())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap(),
        )
    }

    /// `postback-relay sandbox` on a free port, and its address.
    pub fn sandbox() -> (RelayProcess, SocketAddr) {
        let mut child = Command::new(BIN)
            .args(["sandbox", "--listen", "127.0.0.1:0"])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .rsplit("http://")
            .next()
            .unwrap()
            .parse()
            .unwrap();
        (RelayProcess(child), addr)
    }

    /// Sends SIGTERM.
    pub fn signal_term(&self) {
        let pid = self.0.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(s) = self.0.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Waits up to `limit` for the process to exit, without blocking the async runtime.
    pub async fn exited_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(s) = self.0.try_wait().unwrap() {
                return Some(s);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// SIGTERM, then its exit status (within 30 s).
    pub fn terminate(mut self) -> ExitStatus {
        self.signal_term();
        self.wait(Duration::from_secs(30))
            .expect("the relay exits after SIGTERM")
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How long a one-shot command may run in a test.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(120);

/// A one-shot command of the binary.
pub struct Cli {
    cmd: Command,
    args: Vec<String>,
}

impl Cli {
    pub fn new(args: &[&str]) -> Cli {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        Cli {
            cmd,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    pub fn args(mut self, args: &[&str]) -> Cli {
        self.cmd.args(args);
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// On this test's broker and queues (`--amqp-url`, `--queue-prefix`).
    pub fn on(self, env: &Env) -> Cli {
        self.args(&[
            "--amqp-url",
            &super::amqp_url(),
            "--queue-prefix",
            &env.prefix,
        ])
    }

    pub fn env(mut self, name: &str, value: &str) -> Cli {
        self.cmd.env(name, value);
        self
    }

    pub fn env_remove(mut self, name: &str) -> Cli {
        self.cmd.env_remove(name);
        self
    }

    /// Its output. A command still running after [`CLI_TIMEOUT`] is killed, and the test
    /// fails with what it wrote so far, rather than waiting with it forever.
    pub fn output(mut self) -> Output {
        let child = self
            .cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = rustix::process::Pid::from_child(&child);
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            let timed_out = finished.recv_timeout(CLI_TIMEOUT).is_err();
            if timed_out {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            timed_out
        });
        let out = child.wait_with_output().unwrap();
        let _ = done.send(());
        let timed_out = watchdog.join().unwrap_or(false);
        assert!(
            !timed_out,
            "{:?} still ran after {CLI_TIMEOUT:?} and was killed; it wrote:\n{}{}",
            self.args,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Its output; the command must succeed.
    pub fn ok(self) -> Output {
        let args = self.args.clone();
        let out = self.output();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// What a command wrote to stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A process's metric line's value, summed over the lines that contain every one of `parts`.
pub async fn metric(port: u16, name: &str, parts: &[&str]) -> Option<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(name) && parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}
