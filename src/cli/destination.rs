//! `postback-relay destination pause|resume|list`: the paused destinations, where the store
//! keeps them (see [`postback_relay::shared::pause`]).

use std::process::ExitCode;

use postback_relay::shared::pause::{Paused, Pauses};

use crate::DestinationCommand;

pub async fn execute(command: DestinationCommand) -> anyhow::Result<ExitCode> {
    let config_path = match &command {
        DestinationCommand::Pause { config, .. }
        | DestinationCommand::Resume { config, .. }
        | DestinationCommand::List { config } => config.clone(),
    };
    let config = match super::load(&config_path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if let DestinationCommand::Pause { name, .. } | DestinationCommand::Resume { name, .. } =
        &command
        && let Err(e) = config.destination(name)
    {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(2));
    }
    let shown = |e: postback_relay::shared::pause::PauseError| {
        anyhow::anyhow!("{}", config.secrets.scrub(&e.to_string()))
    };
    let pauses = Pauses::for_store(&config.store).await.map_err(shown)?;
    match command {
        DestinationCommand::Pause { name, by, .. } => {
            let who = Paused {
                by,
                at: chrono::Utc::now(),
            };
            if pauses.pause(&name, who).await.map_err(shown)? {
                println!(
                    "{name}: paused; its deliveries wait until `postback-relay destination resume {name}`"
                );
            } else {
                println!("{name}: already paused");
            }
        }
        DestinationCommand::Resume { name, .. } => {
            if pauses.resume(&name).await.map_err(shown)? {
                println!("{name}: resumed");
            } else {
                println!("{name}: was not paused");
            }
        }
        DestinationCommand::List { .. } => {
            let all = pauses.list().await.map_err(shown)?;
            if all.is_empty() {
                println!("no destination is paused");
            }
            for (name, p) in all {
                println!("{name}\tpaused by {} at {}", p.by, p.at.to_rfc3339());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
