//! `postback-relay console`: the operators' web console, until SIGTERM or SIGINT.

use std::path::Path;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

pub async fn console(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = match super::load(config_path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let guarded = config.console.token.is_some() || !config.console.operators.is_empty();
    let stop = CancellationToken::new();
    let running = match postback_relay::operate::console::start(config, stop.clone()).await {
        Ok(r) => r,
        Err(
            e @ (postback_relay::operate::console::ConsoleError::NoToken(_)
            | postback_relay::operate::console::ConsoleError::ShortToken(..)),
        ) => {
            eprintln!("error: {}: {e}", config_path.display());
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    let how = if guarded {
        "every request needs an operator's token: log in at /login"
    } else {
        "loopback only, no token"
    };
    eprintln!("console on http://{}/ ({how})", running.addr);
    super::wait_for_signal().await;
    stop.cancel();
    running.wait().await;
    Ok(ExitCode::SUCCESS)
}
