//! The `postback-relay` command: parses arguments, sets up logging, and hands over to the
//! command's own module in [`cli`].
#![forbid(unsafe_code)]

mod cli;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use cli::{FilterArgs, RenderFormat, Target};
use postback_relay::config::DEFAULT_AMQP_URL;

/// The relay allocates and frees small buffers for every message (frames, JSON, requests);
/// mimalloc serves that pattern with less contention than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

#[derive(Subcommand)]
enum Command {
    /// Consume events and relay them until SIGTERM or SIGINT; SIGHUP reloads the config file.
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
    /// What the journal holds of deliveries: a timeline per delivery (an event at one
    /// destination), every call, the partner's answer and the outcome.
    Deliveries {
        #[arg(long, env = "POSTBACK_RELAY_CONFIG")]
        config: PathBuf,
        /// Every destination's deliveries of this event.
        #[arg(long)]
        event_id: Option<String>,
        /// Every delivery of this order's events.
        #[arg(long)]
        order_id: Option<String>,
        /// This destination's deliveries (with --since, for a time window).
        #[arg(long)]
        destination: Option<String>,
        /// Entries at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::FixedOffset>>,
        /// Entries before this time (RFC 3339).
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::FixedOffset>>,
        /// Only entries with these outcomes.
        #[arg(long, value_enum, value_delimiter = ',')]
        outcome: Vec<JournalOutcome>,
        /// Show at most this many entries.
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
        #[arg(long, value_enum, default_value_t = RenderFormat::Text)]
        format: RenderFormat,
    },
    /// Send a destination's deliveries of a time window again from the journal, each with a
    /// fresh budget, past the record of their acceptance; a second run sends nothing twice.
    Recover {
        #[arg(long, env = "POSTBACK_RELAY_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        destination: String,
        /// The window's start (RFC 3339).
        #[arg(long)]
        since: chrono::DateTime<chrono::FixedOffset>,
        /// The window's end (RFC 3339) [default: now].
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::FixedOffset>>,
        /// `delivered`: what the destination accepted in the window; `any`: every event the
        /// journal received in the window that the destination takes (a backfill).
        #[arg(long, value_enum, default_value_t = RecoverOutcome::Delivered)]
        outcome: RecoverOutcome,
        /// Show how many would be sent, and to where; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Who asks, as the journal keeps it [default: $USER].
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
    /// Pause, resume or list paused destinations, for every relay on this store (with Redis,
    /// the whole fleet): a paused destination's deliveries wait in the retry tiers, spending
    /// no attempt and no age budget.
    Destination {
        #[command(subcommand)]
        command: DestinationCommand,
    },
    /// Serve the operators' web console (`[console]` in the config) until SIGTERM or SIGINT.
    Console {
        #[arg(long, env = "POSTBACK_RELAY_CONFIG")]
        config: PathBuf,
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

/// What `recover --outcome` sends again.
#[derive(Clone, Copy, ValueEnum)]
enum RecoverOutcome {
    Delivered,
    Any,
}

/// An outcome as `deliveries --outcome` names it.
#[derive(Clone, Copy, ValueEnum)]
#[value(rename_all = "snake_case")]
enum JournalOutcome {
    Delivered,
    RetryScheduled,
    DeadLettered,
    Duplicate,
    Superseded,
}

impl JournalOutcome {
    fn code(self) -> &'static str {
        match self {
            JournalOutcome::Delivered => "delivered",
            JournalOutcome::RetryScheduled => "retry_scheduled",
            JournalOutcome::DeadLettered => "dead_lettered",
            JournalOutcome::Duplicate => "duplicate",
            JournalOutcome::Superseded => "superseded",
        }
    }
}

#[derive(Subcommand)]
enum DestinationCommand {
    /// Stop calling a destination until `resume`.
    Pause {
        #[arg(long, env = "POSTBACK_RELAY_CONFIG")]
        config: PathBuf,
        name: String,
        /// Who pauses it, as `list` and the relay's log show [default: $USER].
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
    /// Call a paused destination again.
    Resume {
        #[arg(long, env = "POSTBACK_RELAY_CONFIG")]
        config: PathBuf,
        name: String,
    },
    /// The paused destinations, who paused them and when.
    List {
        #[arg(long, env = "POSTBACK_RELAY_CONFIG")]
        config: PathBuf,
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
    /// Rebuild the journal's index of dead letters from one read of the queue (nothing is
    /// consumed): for when the index differs from the queue.
    Reindex {
        #[arg(long, env = "POSTBACK_RELAY_CONFIG")]
        config: PathBuf,
        /// Who asks, as the journal's actions record it.
        #[arg(long, default_value = "cli")]
        by: String,
    },
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
    let result = runtime.block_on(cli::execute(cli.command));
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
    // purpose) unless RUST_LOG says more. The console says on its pages what the broker
    // answered; lapin's ERROR for each queue a page asked after and did not find (a passive
    // declare closes its channel) would add lines to its log at every page load.
    let default = match command {
        Command::Run { .. } | Command::Sandbox { .. } => "info",
        Command::Console { .. } => "info,lapin=off",
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
