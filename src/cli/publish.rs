//! `postback-relay publish`: event files to the exchange, each confirmed by the broker (the
//! reference producer).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use postback_relay::config::DEFAULT_AMQP_URL;
use postback_relay::config::tls::TlsFiles;
use postback_relay::contract::event;
use postback_relay::interfaces::publish::{self, Outgoing};
use postback_relay::relay::broker;

/// Publishes the events of `files`. The broker URL and exchange come from the flags, then the
/// config at `config`, then the defaults. With `check`, nothing is published unless every
/// event is valid.
pub async fn publish(
    config: Option<&Path>,
    amqp_url: Option<String>,
    exchange: Option<String>,
    check: bool,
    files: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let (config_url, config_exchange, tls) = match config {
        Some(path) => match super::load(path) {
            Ok(c) => (Some(c.broker.url), Some(c.broker.exchange), c.broker.tls),
            Err(code) => return Ok(code),
        },
        None => (None, None, None),
    };
    let url = amqp_url
        .or(config_url)
        .unwrap_or_else(|| DEFAULT_AMQP_URL.into());
    let exchange = exchange
        .or(config_exchange)
        .unwrap_or_else(|| "conversions".into());
    let mut messages = Vec::new();
    for file in files {
        messages.extend(publish::read_events(file)?);
    }
    if check && !all_valid(&messages) {
        return Ok(ExitCode::from(1));
    }
    send((&url, tls.as_ref()), &exchange, messages).await
}

/// Whether every message is a valid event; says which are not.
fn all_valid(messages: &[Outgoing]) -> bool {
    let mut bad = 0;
    for (i, m) in messages.iter().enumerate() {
        if let Err(e) = event::parse(&m.body, usize::MAX) {
            eprintln!("message {}: {e}", i + 1);
            bad += 1;
        }
    }
    if bad > 0 {
        eprintln!("{bad} invalid event(s): nothing published");
    }
    bad == 0
}

/// Publishes `messages` to `exchange`, once the exchange is known to exist.
async fn send(
    (url, tls): (&str, Option<&TlsFiles>),
    exchange: &str,
    messages: Vec<Outgoing>,
) -> anyhow::Result<ExitCode> {
    let conn = super::connect(url, tls, "publish").await?;
    if let Err(e) = exchange_exists(&conn, exchange).await? {
        eprintln!(
            "exchange {exchange:?} cannot be used ({e}). The relay declares it when it starts: \
             run `postback-relay run` once with the same broker settings."
        );
        return Ok(ExitCode::from(1));
    }
    let publisher = broker::Publisher::new(&conn).await?;
    let total = messages.len() as u64;
    let bar = super::progress_bar(total, "published");
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

/// Declares `exchange` passively, on a channel of its own (a refusal closes the channel):
/// the inner error says why it cannot be used.
async fn exchange_exists(
    conn: &lapin::Connection,
    exchange: &str,
) -> anyhow::Result<Result<(), lapin::Error>> {
    let probe = conn.create_channel().await?;
    let passive = lapin::options::ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    Ok(probe
        .exchange_declare(
            exchange.into(),
            lapin::ExchangeKind::Topic,
            passive,
            Default::default(),
        )
        .await)
}
