//! The consumers as processes of their own (the relay, the baseline, either under callgrind),
//! and the CPU and memory they and the machine use.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Cli;
use crate::results::CpuShare;

/// A child process, and where its metrics are served (the relay's).
pub struct Proc(Child, Option<String>);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// CPU time used so far (user and system).
    pub fn cpu_secs(&self) -> f64 {
        pid_cpu_secs(self.0.id())
    }

    /// Where the relay serves its /metrics; `None` for the baseline.
    pub fn metrics_url(&self) -> Option<&str> {
        self.1.as_deref()
    }

    /// Stops the process with SIGTERM, as an operator would, and waits for it to exit: the
    /// relay drains, and callgrind writes its counts (a SIGKILL would lose them).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(300);
        while self.0.try_wait()?.is_none() {
            anyhow::ensure!(Instant::now() < deadline, "the process did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Peak resident memory so far, in MB (VmHWM).
    pub fn peak_rss_mb(&self) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

/// The baseline consumer as its own process, like the relay.
pub fn spawn_baseline(
    cli: &Cli,
    queue: &str,
    url: &str,
    callgrind: Option<&Path>,
) -> anyhow::Result<Proc> {
    let child = command(cli, &std::env::current_exe()?, callgrind)
        .args([
            "baseline",
            "--amqp-url",
            &cli.amqp_url,
            "--queue",
            queue,
            "--url",
            url,
        ])
        .args(["--prefetch", &cli.prefetch.to_string()])
        .spawn()?;
    Ok(Proc(child, None))
}

/// `program`, or `program` under valgrind's callgrind writing its counts to `callgrind`;
/// on `--consumer-cpus` only, when given.
fn command(cli: &Cli, program: &Path, callgrind: Option<&Path>) -> Command {
    let mut argv: Vec<std::ffi::OsString> = Vec::new();
    if let Some(cpus) = &cli.consumer_cpus {
        argv.extend(["taskset".into(), "-c".into(), cpus.into()]);
    }
    if let Some(out) = callgrind {
        argv.extend([
            "valgrind".into(),
            "--tool=callgrind".into(),
            format!("--callgrind-out-file={}", out.display()).into(),
        ]);
    }
    argv.push(program.into());
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]);
    if callgrind.is_some() {
        c.stderr(Stdio::null());
    }
    c
}

fn relay_binary() -> anyhow::Result<PathBuf> {
    let p = std::env::current_exe()?.with_file_name("postback-relay");
    anyhow::ensure!(
        p.exists(),
        "{} is missing: run `cargo build --release --bins` first",
        p.display()
    );
    Ok(p)
}

/// A relay process on a fresh prefix, its partner at `base`.
pub fn start_relay(cli: &Cli, prefix: &str, base: &str, dir: &Path) -> anyhow::Result<Proc> {
    start_relay_as(cli, prefix, base, dir, None)
}

/// [`start_relay`], under callgrind when `callgrind` names its output file.
pub fn start_relay_as(
    cli: &Cli,
    prefix: &str,
    base: &str,
    dir: &Path,
    callgrind: Option<&Path>,
) -> anyhow::Result<Proc> {
    let config = dir.join(format!("{prefix}.toml"));
    // A port free now, for the relay's /metrics.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    std::fs::write(&config, relay_config(cli, prefix, base, dir, port)?)?;
    let child = command(cli, &relay_binary()?, callgrind)
        .args(["--log-format", "json", "run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Proc(
        child,
        Some(format!("http://127.0.0.1:{port}/metrics")),
    ))
}

/// The relay's configuration: the broker on `prefix`, /metrics on `port`, one destination at
/// `base`, and the store and journal `--store` and `--journal` name.
fn relay_config(
    cli: &Cli,
    prefix: &str,
    base: &str,
    dir: &Path,
    port: u16,
) -> anyhow::Result<String> {
    let journal = journal_config(cli, prefix, dir)?;
    Ok(format!(
        r#"
            [broker]
            url = "{url}"
            exchange = "{prefix}.conversions"
            queue_prefix = "{prefix}"
            prefetch = {prefetch}

            [http]
            listen = "127.0.0.1:{port}"

            {store}

            {tracing}

            [[destinations]]
            name = "powerspace"
            kind = "powerspace"
            base_url = "{base}"
            concurrency = {prefetch}
            match = {{ networks = ["powerspace"] }}
            "#,
        url = cli.amqp_url,
        prefetch = cli.prefetch,
        tracing = if cli.tracing {
            format!("[tracing]\notlp_endpoint = \"{base}\"")
        } else {
            String::new()
        },
        store = if cli.store == "embedded" {
            format!(
                "[store]\nkind = \"embedded\"\npath = \"{}\"\n\n{journal}",
                dir.join(format!("{prefix}.db")).display()
            )
        } else {
            format!(
                "[store]\nkind = \"redis\"\nurl = \"{}\"\nkey_prefix = \"{prefix}\"\n\n{journal}",
                cli.store
            )
        },
    ))
}

/// The `[journal]` section `--journal` names.
fn journal_config(cli: &Cli, prefix: &str, dir: &Path) -> anyhow::Result<String> {
    Ok(match cli.journal.as_str() {
        "off" => "[journal]\nenabled = false".to_owned(),
        "embedded" => format!(
            "[journal]\npath = \"{}\"",
            dir.join(format!("{prefix}.journal.db")).display()
        ),
        url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            format!("[journal]\nkind = \"postgres\"\nurl = \"{url}\"")
        }
        other => anyhow::bail!("--journal {other}: embedded, off, or a postgres:// URL"),
    })
}

/// CPU seconds so far: the broker's, this process's, and the machine's idle time.
#[derive(Clone, Copy)]
pub struct CpuMark {
    broker: f64,
    redis: f64,
    bench: f64,
    idle: f64,
}

impl CpuMark {
    pub fn now() -> CpuMark {
        CpuMark {
            broker: pid_named("beam.smp").map_or(0.0, pid_cpu_secs),
            redis: pid_named("redis-server").map_or(0.0, pid_cpu_secs),
            bench: pid_cpu_secs(std::process::id()),
            idle: idle_secs(),
        }
    }

    pub fn per_event(self, later: CpuMark, n: usize) -> CpuShare {
        let us = |a: f64, b: f64| (b - a) * 1e6 / n as f64;
        CpuShare {
            broker_us: us(self.broker, later.broker),
            redis_us: us(self.redis, later.redis),
            bench_us: us(self.bench, later.bench),
            idle_us: us(self.idle, later.idle),
        }
    }
}

/// A process of this machine by its command name (`beam.smp`, RabbitMQ's Erlang VM), if
/// one runs here.
fn pid_named(name: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim() == name).then_some(pid)
    })
}

/// A process's CPU time so far (user and system), from `/proc/PID/stat`, whose clock ticks
/// are USER_HZ (100 per second on Linux).
fn pid_cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

/// The machine's idle time so far, over all cores (`/proc/stat`, USER_HZ).
fn idle_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |t| t / 100.0)
}
