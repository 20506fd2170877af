//! The `postback-relay` command: parses arguments, sets up logging, and hands over to the
//! library.
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use postback_relay::config::{Config, DEFAULT_AMQP_URL};
use postback_relay::{broker, demo, event, partner, publish, relay, sandbox};

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
        /// Broker URL [default: amqp://guest:guest@127.0.0.1:5672/%2f].
        #[arg(long, env = "AMQP_URL", conflicts_with = "config")]
        amqp_url: Option<String>,
        /// Exchange to publish to [default: conversions].
        #[arg(long, conflicts_with = "config")]
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
    /// Start a sandbox and a relay, publish sample events, and show what became of them.
    Demo {
        #[arg(long, env = "AMQP_URL", default_value = DEFAULT_AMQP_URL)]
        amqp_url: String,
        /// Number of sample events.
        #[arg(long, default_value_t = 300)]
        events: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.command);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(dispatch(cli.command)) {
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
            let (url, exchange) = match &config {
                Some(path) => match load(path) {
                    Ok(c) => (c.broker.url, c.broker.exchange),
                    Err(code) => return Ok(code),
                },
                None => (
                    amqp_url.unwrap_or_else(|| DEFAULT_AMQP_URL.into()),
                    exchange.unwrap_or_else(|| "conversions".into()),
                ),
            };
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
            let dests: Vec<_> = config
                .destinations
                .iter()
                .filter(|d| d.matches(&event))
                .collect();
            if event.attribution.is_none() {
                eprintln!("{at}: no attribution: acknowledged without any request");
            } else if dests.is_empty() {
                eprintln!("{at}: no destination matches (unroutable)");
                failed = true;
            }
            for d in dests
                .into_iter()
                .filter(|d| only.is_none_or(|n| n == d.name))
            {
                match partner::render(d, &event) {
                    Ok(r) if show_secrets => requests.push(r),
                    Ok(r) => requests.push(r.redacted()),
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
    let conn = broker::connect(url, "publish")
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to RabbitMQ at {}: {e}", redact_url(url)))?;
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
