//! The commands, one module each, and what several of them share: their arguments (`args`:
//! the relay a command works on, its config or a broker URL and queue prefix), connecting to
//! its broker, a dead letter's one-line summary, progress bars, and the config's secrets kept
//! out of what is printed.

mod args;
mod check_config;
mod console;
mod deliveries;
mod demo;
mod destination;
mod dlq;
mod publish;
mod recover;
mod reindex;
mod render;
mod replay;
mod run;
mod sandbox;

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::Value;

use crate::{Command, DlqCommand};
use postback_relay::config::Config;
use postback_relay::config::tls::TlsFiles;
use postback_relay::contract::redact::Secrets;
use postback_relay::relay::broker;

pub use self::args::{FilterArgs, RenderFormat, Resolved, Target};

/// Runs one command. `Ok` carries the exit code of an outcome the command reported itself
/// (an invalid config, a refused event); `Err` is an error for `main` to print.
pub async fn execute(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { config } => run::run(&config).await,
        Command::CheckConfig { config } => Ok(check_config::check(&config)),
        Command::Render {
            config,
            format,
            destination,
            show_secrets,
            events,
        } => render::render(
            &config,
            format,
            destination.as_deref(),
            show_secrets,
            &events,
        ),
        Command::Publish {
            config,
            amqp_url,
            exchange,
            check,
            events,
        } => publish::publish(config.as_deref(), amqp_url, exchange, check, &events).await,
        Command::Sandbox { listen } => sandbox::serve(listen).await,
        Command::Dlq { command } => match command {
            DlqCommand::Stats { target, format } => dlq::stats(target, format).await,
            DlqCommand::List {
                target,
                filter,
                limit,
                format,
            } => match filter.filter() {
                Ok(filter) => dlq::list(target, filter, limit, format).await,
                Err(code) => Ok(code),
            },
            DlqCommand::Reindex { config, by } => reindex::reindex(&config, &by).await,
        },
        Command::Replay {
            target,
            filter,
            limit,
            dry_run,
        } => match filter.filter() {
            Ok(filter) => replay::replay(target, filter, limit, dry_run).await,
            Err(code) => Ok(code),
        },
        Command::Demo { amqp_url, events } => demo::run(&amqp_url, events).await,
        Command::Console { config } => console::console(&config).await,
        Command::Destination { command } => destination::execute(command).await,
        Command::Recover {
            config,
            destination,
            since,
            until,
            outcome,
            dry_run,
            by,
        } => {
            let ask = recover::Ask {
                destination,
                since: since.with_timezone(&chrono::Utc),
                until: until.map(|t| t.with_timezone(&chrono::Utc)),
                outcome: match outcome {
                    crate::RecoverOutcome::Delivered => postback_relay::journal::Which::Delivered,
                    crate::RecoverOutcome::Any => postback_relay::journal::Which::Any,
                },
                dry_run,
                by,
            };
            recover::recover(&config, ask).await
        }
        Command::Deliveries {
            config,
            event_id,
            order_id,
            destination,
            since,
            until,
            outcome,
            limit,
            format,
        } => {
            let c = match load(&config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            if !c.journal.enabled {
                eprintln!(
                    "error: {}: journal.enabled is false: no journal to read",
                    config.display()
                );
                return Ok(ExitCode::from(2));
            }
            let known: Vec<&str> = c.destinations.iter().map(|d| d.name.as_str()).collect();
            let utc = |t: Option<chrono::DateTime<chrono::FixedOffset>>| {
                t.map(|t| t.with_timezone(&chrono::Utc))
            };
            let query = postback_relay::journal::Filter {
                event_id,
                order_id,
                destination,
                since: utc(since),
                until: utc(until),
                outcomes: outcome.iter().map(|o| o.code().to_owned()).collect(),
                limit,
            };
            deliveries::run(&c.journal, &query, &known, format)
                .await
                .map_err(|e| anyhow::anyhow!("{}", c.secrets.scrub(&format!("{e:#}"))))
        }
    }
}

/// The config at `path`; or, when it cannot be used, the error printed and exit code 2.
pub fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("error: {}: {e}", path.display());
        ExitCode::from(2)
    })
}

/// A connection to the broker at `url`; the error names the URL without its password.
pub async fn connect(
    url: &str,
    tls: Option<&TlsFiles>,
    role: &str,
) -> anyhow::Result<lapin::Connection> {
    let connecting = broker::connect(url, tls, role);
    match tokio::time::timeout(COMMAND_CONNECT_TIMEOUT, connecting).await {
        Ok(connected) => connected
            .map_err(|e| anyhow::anyhow!("cannot connect to RabbitMQ at {}: {e}", redact_url(url))),
        Err(_) => anyhow::bail!(
            "cannot connect to RabbitMQ at {}: no connection within {COMMAND_CONNECT_TIMEOUT:?}",
            redact_url(url)
        ),
    }
}

/// How long a command waits for the broker to accept its connection: a broker that takes
/// the connection and never answers (blocked, overloaded) is reported, not waited on.
const COMMAND_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// A progress bar on a terminal; hidden otherwise (logs and CI stay clean).
pub fn progress_bar(len: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "  {what:>10} [{{bar:40}}] {{pos}}/{{len}} {{per_sec}}"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

/// What came from outside, escaped for the terminal (the console renders it the same way).
pub use postback_relay::contract::text::printable;

/// One dead letter on one line, as `dlq list` and `replay --dry-run` print it; what it
/// quotes is printable.
pub fn summary_line(s: &postback_relay::operate::dlq::Summary) -> String {
    let line = format!(
        "{}  {:<18} {:<18} {:<24} {}",
        s.dead_lettered_at
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| "-".into()),
        s.reason.as_str(),
        s.destination.as_deref().unwrap_or("-"),
        s.event_id.as_deref().unwrap_or("-"),
        s.detail
    );
    printable(&line).into_owned()
}

/// Writes `value` as pretty JSON, scrubbed of `secrets`: every string, object key and number
/// that holds one. The values are scrubbed, not the JSON text, so the output stays JSON
/// whatever a secret looks like (digits, `true`, a field's name). Without secrets, `value`
/// is written as it serializes (an event kept as published stays as it was written).
pub fn write_json<T: Serialize + ?Sized>(
    out: impl std::io::Write,
    value: &T,
    secrets: &Secrets,
) -> serde_json::Result<()> {
    if secrets.is_empty() {
        return serde_json::to_writer_pretty(out, value);
    }
    let mut v = serde_json::to_value(value)?;
    scrub_json(&mut v, secrets);
    serde_json::to_writer_pretty(out, &v)
}

/// Replaces every secret in the strings, keys and numbers of `v`. A number that holds a
/// secret becomes the scrubbed string of its digits.
fn scrub_json(v: &mut Value, secrets: &Secrets) {
    match v {
        Value::String(s) => secrets.scrub_in_place(s),
        Value::Number(n) => {
            if let std::borrow::Cow::Owned(clean) = secrets.scrub(&n.to_string()) {
                *v = Value::String(clean);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| scrub_json(i, secrets)),
        Value::Object(map) => {
            *map = std::mem::take(map)
                .into_iter()
                .map(|(k, mut i)| {
                    scrub_json(&mut i, secrets);
                    (secrets.scrub(&k).into_owned(), i)
                })
                .collect();
        }
        Value::Bool(_) | Value::Null => {}
    }
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn written<T: Serialize + ?Sized>(value: &T, secrets: &Secrets) -> String {
        let mut out = Vec::new();
        write_json(&mut out, value, secrets).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_is_scrubbed_value_by_value_and_stays_json() {
        // Secrets that look like JSON's own words and digits: scrubbing the text would break
        // it (`"ok": REDACTED`, `"attempts": 1REDACTED`).
        let secrets = Secrets::new(["true", "2345", "reason", "hq-Secret/Key"]);
        let value = serde_json::json!({
            "ok": true,
            "attempts": 123456,
            "reason": "partner_rejected",
            "detail": "GET /hq-Secret%2FKey/s2s answered 404 (true story)",
            "by": { "hq-Secret/Key": [1, "x hq-Secret/Key"] },
        });
        let text = written(&value, &secrets);
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back,
            serde_json::json!({
                "ok": true,
                "attempts": "1REDACTED6",
                "REDACTED": "partner_rejected",
                "detail": "GET /REDACTED/s2s answered 404 (REDACTED story)",
                "by": { "REDACTED": [1, "x REDACTED"] },
            })
        );
    }

    #[test]
    fn without_secrets_json_is_written_as_it_serializes() {
        // An event kept as published (raw) stays byte for byte as it was.
        let raw = serde_json::value::RawValue::from_string(r#"{"b":1,  "a":1.50}"#.into()).unwrap();
        assert_eq!(written(&*raw, &Secrets::default()), r#"{"b":1,  "a":1.50}"#);
    }
}
