//! `postback-relay sandbox`: the partner sandbox, until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use postback_relay::interfaces::sandbox;

/// Serves the sandbox on `listen` until a signal.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!(
        "partner sandbox listening on http://{}",
        listener.local_addr()?
    );
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(sandbox::serve(listener, shutdown.clone()));
    super::wait_for_signal().await;
    shutdown.cancel();
    server.await??;
    Ok(ExitCode::SUCCESS)
}
