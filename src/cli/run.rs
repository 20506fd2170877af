//! `postback-relay run`: the relay, until SIGTERM or SIGINT.

use std::path::Path;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use postback_relay::relay;

/// Starts the relay with the config at `path` and stops it on a signal, waiting for it to
/// finish what it holds.
pub async fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let config = match super::load(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let shutdown = CancellationToken::new();
    let running = relay::start(config, shutdown.clone()).await?;
    tracing::info!(message = "started", http = %running.http_addr);
    super::wait_for_signal().await;
    tracing::info!(message = "shutting down");
    shutdown.cancel();
    running.wait().await?;
    Ok(ExitCode::SUCCESS)
}
