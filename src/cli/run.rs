//! `postback-relay run`: the relay, until SIGTERM or SIGINT; SIGHUP reloads its configuration.

use std::path::Path;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use postback_relay::relay;

/// Starts the relay with the config at `path` and stops it on a signal, waiting for it to
/// finish what it holds. On SIGHUP it reads `path` again and, if the file is valid and may be
/// taken while running, moves to it (see [`relay::Reloader`]); otherwise it logs why and keeps
/// the configuration it runs.
pub async fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let config = match super::load(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    // Taken before the start: a SIGHUP during it would otherwise end the process.
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let shutdown = CancellationToken::new();
    let running = relay::start(config, shutdown.clone()).await?;
    tracing::info!(message = "started", http = %running.http_addr);
    #[cfg(unix)]
    {
        let stop = super::wait_for_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = hangup.recv() => {
                    tracing::info!(message = "SIGHUP: reading the configuration again", config = %path.display());
                    // The relay logs what it did with the file; the stop still comes through.
                    tokio::select! {
                        _ = &mut stop => break,
                        _ = running.reloader.reload_from(path) => {}
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    super::wait_for_signal().await;
    tracing::info!(message = "shutting down");
    shutdown.cancel();
    running.wait().await?;
    Ok(ExitCode::SUCCESS)
}
