//! The `postback-relay` command: parses arguments, sets up logging, and hands over to the
//! library.
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use postback_relay::broker::Topology;
use postback_relay::config::{Config, DEFAULT_AMQP_URL};

/// The relay allocates and frees small buffers for every message (frames, JSON, requests);
/// mimalloc serves that pattern with less contention than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use postback_relay::reason::Reason;
use postback_relay::{broker, demo, dlq, event, publish, relay, sandbox};

#[derive(Parser)]
#[command(
    name = "postback-relay",
    version,
    about = "Relays conversion events from RabbitMQ to affiliate partners."
)]
struct Cli {
    /// Log format; `auto` is pretty on a terminal and JSON lines otherwise. Level from RUST_LOG.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Auto,
    Json,
    Pretty,
}

#[derive(Clone, Copy, ValueEnum)]
enum RenderFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Consume events and relay them until SIGTERM or SIGINT.
    Run {
        #[arg(long, env = "POSTBACK_RELAY_CONFIG")]
        config: PathBuf,
    },
    /// Validate a configuration file and exit (non-zero when invalid).
    CheckConfig {
        #[arg(long, env = "POSTBACK_RELAY_CONFIG")]
        config: PathBuf,
    },
    /// Print the partner requests events would produce, without sending anything.
    Render {
        #[arg(long, env = "POSTBACK_RELAY_CONFIG")]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = RenderFormat::Text)]
        format: RenderFormat,
        /// Only this destination's requests.
        #[arg(long)]
        destination: Option<String>,
        /// Show secrets (API keys) instead of REDACTED.
        #[arg(long)]
        show_secrets: bool,
        /// Event files: one JSON event, or JSON Lines; `-` for standard input.
        #[arg(required = true)]
        events: Vec<PathBuf>,
    },
    /// Publish event files to the exchange with publisher confirms (the reference producer).
    Publish {
        /// Take the broker URL and exchange from this config file.
        #[arg(long, env = "POSTBACK_RELAY_CONFIG")]
        config: Option<PathBuf>,
        /// Broker URL; wins over the config's [default: amqp://guest:guest@127.0.0.1:5672/%2f].
        #[arg(long, env = "AMQP_URL")]
        amqp_url: Option<String>,
        /// Exchange to publish to; wins over the config's [default: conversions].
        #[arg(long)]
        exchange: Option<String>,
        /// Refuse to publish anything unless every event is valid.
        #[arg(long)]
        check: bool,
        /// Event files: one JSON event, or JSON Lines; `-` for standard input.
        #[arg(required = true)]
        events: Vec<PathBuf>,
    },
    /// Run the partner sandbox: records every request, answers as told (see `/_sandbox/`).
    Sandbox {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Read the dead-letter queue without consuming it.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Send dead letters back for delivery with a fresh attempt budget; the others stay.
    Replay {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        filter: FilterArgs,
        /// Replay at most this many.
        #[arg(long)]
        limit: Option<u64>,
        /// Show what would be replayed; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Start a sandbox and a relay, publish sample events, and show what became of them.
    Demo {
        #[arg(long, env = "AMQP_URL", default_value = DEFAULT_AMQP_URL)]
        amqp_url: String,
        /// Number of sample events.
        #[arg(long, default_value_t = 300)]
        events: usize,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Counts by destination and reason, oldest and newest.
    Stats {
        #[command(flatten)]
        target: Target,
        #[arg(long, value_enum, default_value_t = RenderFormat::Text)]
        format: RenderFormat,
    },
    /// The dead letters, oldest first.
    List {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        filter: FilterArgs,
        /// Show at most this many.
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, value_enum, default_value_t = RenderFormat::Text)]
        format: RenderFormat,
    },
}

/// Which relay's queues: its config, or a broker URL and queue prefix.
#[derive(Args)]
struct Target {
    #[arg(long, env = "POSTBACK_RELAY_CONFIG")]
    config: Option<PathBuf>,
    /// Broker URL, when no config is given [default: amqp://guest:guest@127.0.0.1:5672/%2f].
    #[arg(long, env = "AMQP_URL")]
    amqp_url: Option<String>,
    /// Queue prefix, when no config is given [default: postback-relay].
    #[arg(long)]
    queue_prefix: Option<String>,
}

#[derive(Args)]
struct FilterArgs {
    /// Only this destination's dead letters.
    #[arg(long)]
    destination: Option<String>,
    /// Only this reason (not_json, invalid_event, partner_rejected, retries_exhausted...).
    #[arg(long)]
    reason: Option<Reason>,
    /// Dead-lettered at or after this time (RFC 3339).
    #[arg(long)]
    since: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// Dead-lettered before this time (RFC 3339).
    #[arg(long)]
    until: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// Only this event.
    #[arg(long)]
    event_id: Option<String>,
}

impl FilterArgs {
    fn filter(self) -> dlq::Filter {
        dlq::Filter {
            destination: self.destination,
            reason: self.reason,
            since: self.since.map(|t| t.with_timezone(&chrono::Utc)),
            until: self.until.map(|t| t.with_timezone(&chrono::Utc)),
            event_id: self.event_id,
        }
    }
}

/// The broker URL, the relay's queues and its event size limit.
fn resolve(t: Target) -> Result<(String, Topology, usize), ExitCode> {
    let url_flag = t.amqp_url;
    match t.config {
        Some(path) => {
            let c = load(&path)?;
            let url = url_flag.unwrap_or(c.broker.url.clone());
            let max = c.worker.max_event_bytes;
            Ok((url, Topology::from_config(&c), max))
        }
        None => {
            let defaults = postback_relay::config::Config::default_worker();
            Ok((
                url_flag.unwrap_or_else(|| DEFAULT_AMQP_URL.into()),
                Topology::for_prefix(t.queue_prefix.as_deref().unwrap_or("postback-relay")),
                defaults.max_event_bytes,
            ))
        }
    }
}

fn main() -> ExitCode {
    // Transparent huge pages back the allocator's arenas with 2 MiB pages as soon as one byte
    // of them is touched, which inflates resident memory by tens of MB and makes it depend
    // on chance; this process is better off with ordinary pages. (Linux only; elsewhere, or
    // if refused, nothing changes.)
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.command);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(dispatch(cli.command));
    // Whatever is still running in the background (a broker handshake given up on, say) does
    // not hold up the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(format: LogFormat, command: &Command) {
    use tracing_subscriber::EnvFilter;
    // A running relay logs its work. The other commands speak for themselves on the terminal,
    // so they log only problems (and not lapin's own report of a channel they closed on
    // purpose) unless RUST_LOG says more.
    let default = match command {
        Command::Run { .. } | Command::Sandbox { .. } => "info",
        Command::Demo { .. } => "error,lapin=off",
        _ => "warn,lapin=off",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init();
    } else {
        builder.init();
    }
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("error: {}: {e}", path.display());
        ExitCode::from(2)
    })
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { config } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let shutdown = CancellationToken::new();
            let running = relay::start(config, shutdown.clone()).await?;
            tracing::info!(message = "started", http = %running.http_addr);
            wait_for_signal().await;
            tracing::info!(message = "shutting down");
            shutdown.cancel();
            running.wait().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { config } => Ok(match load(&config) {
            Ok(c) => {
                println!(
                    "{}: valid ({} destination{})",
                    config.display(),
                    c.destinations.len(),
                    if c.destinations.len() == 1 { "" } else { "s" }
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        }),
        Command::Render {
            config,
            format,
            destination,
            show_secrets,
            events,
        } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            if let Some(name) = &destination
                && !config.destinations.iter().any(|d| &d.name == name)
            {
                eprintln!("error: no destination is named {name:?}");
                return Ok(ExitCode::from(2));
            }
            render(
                &config,
                destination.as_deref(),
                format,
                show_secrets,
                &events,
            )
        }
        Command::Publish {
            config,
            amqp_url,
            exchange,
            check,
            events,
        } => {
            let (config_url, config_exchange) = match &config {
                Some(path) => match load(path) {
                    Ok(c) => (Some(c.broker.url), Some(c.broker.exchange)),
                    Err(code) => return Ok(code),
                },
                None => (None, None),
            };
            let url = amqp_url
                .or(config_url)
                .unwrap_or_else(|| DEFAULT_AMQP_URL.into());
            let exchange = exchange
                .or(config_exchange)
                .unwrap_or_else(|| "conversions".into());
            publish(&url, &exchange, check, &events).await
        }
        Command::Sandbox { listen } => {
            let listener = tokio::net::TcpListener::bind(listen).await?;
            eprintln!(
                "partner sandbox listening on http://{}",
                listener.local_addr()?
            );
            let shutdown = CancellationToken::new();
            let server = tokio::spawn(sandbox::serve(listener, shutdown.clone()));
            wait_for_signal().await;
            shutdown.cancel();
            server.await??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { amqp_url, events } => demo::run(&amqp_url, events).await,
        Command::Dlq { command } => match command {
            DlqCommand::Stats { target, format } => {
                let (url, topology, max) = match resolve(target) {
                    Ok(t) => t,
                    Err(code) => return Ok(code),
                };
                let conn = connect(&url, "dlq").await?;
                let st = dlq::stats(&conn, &topology, max).await;
                let _ = conn.close(200, "done".into()).await;
                print_stats(&topology.dead, &st?, format)?;
                Ok(ExitCode::SUCCESS)
            }
            DlqCommand::List {
                target,
                filter,
                limit,
                format,
            } => {
                let (url, topology, max) = match resolve(target) {
                    Ok(t) => t,
                    Err(code) => return Ok(code),
                };
                let filter = filter.filter();
                let conn = connect(&url, "dlq").await?;
                let mut out = Letters::new(format, limit.unwrap_or(usize::MAX));
                let read = dlq::each(&conn, &topology, max, |l| {
                    if filter.matches(&l.summary()) {
                        out.print(&l)?;
                    }
                    Ok(())
                })
                .await;
                let _ = conn.close(200, "done".into()).await;
                read?;
                out.finish()?;
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Replay {
            target,
            filter,
            limit,
            dry_run,
        } => {
            let (url, topology, max) = match resolve(target) {
                Ok(t) => t,
                Err(code) => return Ok(code),
            };
            let conn = connect(&url, "replay").await?;
            let total = dlq::depth(&conn.create_channel().await?, &topology.dead).await?;
            let bar = demo::progress_bar(u64::from(total), "examined");
            let report = dlq::replay(
                &conn,
                &topology,
                max,
                &filter.filter(),
                limit,
                dry_run,
                |s, chosen| {
                    bar.inc(1);
                    if dry_run && chosen {
                        bar.suspend(|| println!("{}", summary_line(s)));
                    }
                },
            )
            .await?;
            bar.finish_and_clear();
            let _ = conn.close(200, "done".into()).await;
            if dry_run {
                eprintln!(
                    "dry run: {} of {} dead letters would be replayed; nothing changed",
                    report.matched, report.examined
                );
            } else {
                let as_it_was = match report.as_it_was {
                    0 => String::new(),
                    n => format!(
                        "; {n} sent back as it was (from {}, but not a valid delivery)",
                        topology.deliveries
                    ),
                };
                eprintln!(
                    "replayed {} dead letter(s) of {} examined{as_it_was}; the other {} stay in {}",
                    report.replayed,
                    report.examined,
                    report.examined.saturating_sub(report.replayed),
                    topology.dead
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn render(
    config: &Config,
    only: Option<&str>,
    format: RenderFormat,
    show_secrets: bool,
    files: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let mut requests = Vec::new();
    let mut failed = false;
    for file in files {
        for (i, m) in publish::read_events(file)?.into_iter().enumerate() {
            let at = format!("{} (event {})", file.display(), i + 1);
            let event = match event::parse(&m.body, config.worker.max_event_bytes) {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("{at}: {} ({})", e, e.reason());
                    failed = true;
                    continue;
                }
            };
            let planned = match relay::plan(&config.destinations, &event) {
                relay::Plan::Skip => {
                    eprintln!("{at}: no attribution: acknowledged without any request");
                    continue;
                }
                relay::Plan::Unroutable(detail) => {
                    eprintln!("{at}: {detail} (unroutable)");
                    failed = true;
                    continue;
                }
                relay::Plan::Send(planned) => planned,
            };
            for (d, rendered) in planned
                .into_iter()
                .filter(|(d, _)| only.is_none_or(|n| n == d.name))
            {
                match rendered {
                    Ok(r) if show_secrets => requests.push(r),
                    Ok(r) => requests.push(r.shown(&config.secrets)),
                    Err(e) => {
                        eprintln!("{at}: {}: {e} (render_error)", d.name);
                        failed = true;
                    }
                }
            }
        }
    }
    match format {
        RenderFormat::Json => println!("{}", serde_json::to_string_pretty(&requests)?),
        RenderFormat::Text => {
            for r in &requests {
                println!("{}\t{} {}", r.destination, r.method, r.url);
                for (k, v) in &r.headers {
                    println!("\t{k}: {v}");
                }
                if let Some(b) = &r.body {
                    println!("\t{b}");
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn publish(
    url: &str,
    exchange: &str,
    check: bool,
    files: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let mut messages = Vec::new();
    for file in files {
        messages.extend(publish::read_events(file)?);
    }
    if check {
        let mut bad = 0;
        for (i, m) in messages.iter().enumerate() {
            if let Err(e) = event::parse(&m.body, usize::MAX) {
                eprintln!("message {}: {e}", i + 1);
                bad += 1;
            }
        }
        if bad > 0 {
            eprintln!("{bad} invalid event(s): nothing published");
            return Ok(ExitCode::from(1));
        }
    }
    let conn = connect(url, "publish").await?;
    let probe = conn.create_channel().await?;
    let passive = lapin::options::ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    if let Err(e) = probe
        .exchange_declare(
            exchange.into(),
            lapin::ExchangeKind::Topic,
            passive,
            Default::default(),
        )
        .await
    {
        eprintln!(
            "exchange {exchange:?} cannot be used ({e}). The relay declares it when it starts: \
             run `postback-relay run` once with the same broker settings."
        );
        return Ok(ExitCode::from(1));
    }
    let publisher = broker::Publisher::new(&conn).await?;
    let total = messages.len() as u64;
    let bar = demo::progress_bar(total, "published");
    let result = publish::publish_all(&publisher, exchange, messages, || bar.inc(1)).await;
    bar.finish_and_clear();
    let _ = conn.close(200, "done".into()).await;
    match result {
        Ok(n) => {
            eprintln!("published {n} event(s) to exchange {exchange:?}, all confirmed");
            Ok(ExitCode::SUCCESS)
        }
        Err((i, e)) => {
            eprintln!("message {} of {total} was not published: {e}", i + 1);
            Ok(ExitCode::from(1))
        }
    }
}

async fn connect(url: &str, role: &str) -> anyhow::Result<lapin::Connection> {
    broker::connect(url, role)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to RabbitMQ at {}: {e}", redact_url(url)))
}

fn summary_line(s: &dlq::Summary) -> String {
    format!(
        "{}  {:<18} {:<18} {:<24} {}",
        s.dead_lettered_at
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| "-".into()),
        s.reason.as_str(),
        s.destination.as_deref().unwrap_or("-"),
        s.event_id.as_deref().unwrap_or("-"),
        s.detail
    )
}

fn print_stats(queue: &str, st: &dlq::Stats, format: RenderFormat) -> anyhow::Result<()> {
    if let RenderFormat::Json = format {
        println!("{}", serde_json::to_string_pretty(st)?);
        return Ok(());
    }
    println!("{queue}: {} dead letter(s)", st.total);
    if let (Some(o), Some(n)) = (st.oldest, st.newest) {
        println!("  oldest {}   newest {}", o.to_rfc3339(), n.to_rfc3339());
    }
    if st.total > 0 {
        println!("  {:<24} {:<18} {:>8}", "destination", "reason", "count");
    }
    for (dest, reasons) in &st.by_destination_reason {
        for (reason, count) in reasons {
            println!("  {dest:<24} {reason:<18} {count:>8}");
        }
    }
    Ok(())
}

/// `dlq list` output, printed as the dead letters are read: nothing is gathered first.
struct Letters {
    format: RenderFormat,
    left: usize,
    printed: usize,
    out: std::io::BufWriter<std::io::Stdout>,
}

impl Letters {
    fn new(format: RenderFormat, limit: usize) -> Letters {
        Letters {
            format,
            left: limit,
            printed: 0,
            out: std::io::BufWriter::new(std::io::stdout()),
        }
    }

    /// Prints one dead letter, while under the limit.
    fn print(&mut self, l: &dlq::DeadLetter) -> anyhow::Result<()> {
        use std::io::Write as _;
        if self.left == 0 {
            return Ok(());
        }
        self.left -= 1;
        match self.format {
            RenderFormat::Text => writeln!(self.out, "{}", summary_line(&l.summary()))?,
            RenderFormat::Json => {
                self.out
                    .write_all(if self.printed == 0 { b"[\n" } else { b",\n" })?;
                serde_json::to_writer_pretty(&mut self.out, &l.shown())?;
            }
        }
        self.printed += 1;
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<()> {
        use std::io::Write as _;
        if let RenderFormat::Json = self.format {
            self.out
                .write_all(if self.printed == 0 { b"[]\n" } else { b"\n]\n" })?;
        }
        self.out.flush()?;
        Ok(())
    }
}

/// The URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
