//! `postback-relay render`: the partner requests events would produce, sent nowhere.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use postback_relay::config::Config;
use postback_relay::contract::event;
use postback_relay::contract::partner::Request;
use postback_relay::interfaces::publish;
use postback_relay::relay;

use super::RenderFormat;

/// Renders every event of `files` for the config at `path` (or only for destination `only`)
/// and prints the requests. Exit code 1 when an event could not be rendered, 2 when the config
/// cannot be used or has no destination `only`.
pub fn render(
    path: &Path,
    format: RenderFormat,
    only: Option<&str>,
    show_secrets: bool,
    files: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let config = match super::load(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if let Some(name) = only
        && !config.destinations.iter().any(|d| d.name == name)
    {
        eprintln!("error: no destination is named {name:?}");
        return Ok(ExitCode::from(2));
    }
    let mut rendered = Rendered {
        config: &config,
        only,
        show_secrets,
        requests: Vec::new(),
        failed: false,
    };
    for file in files {
        for (i, m) in publish::read_events(file)?.into_iter().enumerate() {
            let at = format!("{} (event {})", file.display(), i + 1);
            rendered.event(&at, &m.body);
        }
    }
    print(&rendered.requests, format)?;
    Ok(if rendered.failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The requests rendered so far, and whether an event failed.
struct Rendered<'c> {
    config: &'c Config,
    only: Option<&'c str>,
    show_secrets: bool,
    requests: Vec<Request>,
    failed: bool,
}

impl Rendered<'_> {
    /// Renders one event (`at` says where it was read), reporting on standard error why it
    /// produces no request.
    fn event(&mut self, at: &str, body: &[u8]) {
        let event = match event::parse(body, self.config.worker.max_event_bytes) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("{at}: {} ({})", e, e.reason());
                self.failed = true;
                return;
            }
        };
        let planned = match relay::plan(&self.config.destinations, &event) {
            relay::Plan::Skip => {
                eprintln!("{at}: no attribution: acknowledged without any request");
                return;
            }
            relay::Plan::Unroutable(detail) => {
                eprintln!("{at}: {detail} (unroutable)");
                self.failed = true;
                return;
            }
            relay::Plan::Send(planned) => planned,
        };
        for (d, rendered) in planned
            .into_iter()
            .filter(|(d, _)| self.only.is_none_or(|n| n == d.name))
        {
            match rendered {
                Ok(r) if self.show_secrets => self.requests.push(r),
                Ok(r) => self.requests.push(r.shown(&self.config.secrets)),
                Err(e) => {
                    eprintln!("{at}: {}: {e} (render_error)", d.name);
                    self.failed = true;
                }
            }
        }
    }
}

fn print(requests: &[Request], format: RenderFormat) -> anyhow::Result<()> {
    match format {
        RenderFormat::Json => println!("{}", serde_json::to_string_pretty(requests)?),
        RenderFormat::Text => {
            for r in requests {
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
    Ok(())
}
