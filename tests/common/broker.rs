//! The broker as an operator sees it (`rabbitmqctl`): a test's connections and queues, closing
//! connections as a failover would, and removing what a test left on the broker.

use std::process::Command;

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};

use postback_relay::relay::broker::{self, Topology};

/// The broker connections of the relays of the test with queue prefix `prefix`.
pub struct Connections {
    /// `rabbitmqctl list_connections` as printed, for failure messages.
    pub listing: String,
    /// The connections' process ids, for `close_connection`.
    pub pids: Vec<String>,
}

pub fn worker_connections(prefix: &str) -> Connections {
    let out = Command::new("rabbitmqctl")
        .args(["list_connections", "pid", "client_properties", "--silent"])
        .output()
        .expect("rabbitmqctl");
    assert!(out.status.success(), "rabbitmqctl list_connections failed");
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    let name = format!("postback-relay worker {prefix}");
    let pids = listing
        .lines()
        .filter(|l| l.contains(&name))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    Connections { listing, pids }
}

/// Closes one connection from the broker side; whether `rabbitmqctl` succeeded.
pub fn close_connection(pid: &str, why: &str) -> bool {
    Command::new("rabbitmqctl")
        .args(["close_connection", pid, why])
        .output()
        .expect("rabbitmqctl")
        .status
        .success()
}

/// Closes every broker connection of this test's relays in one call; returns how many.
pub fn close_connections(prefix: &str) -> usize {
    let code = format!(
        r#"Match = <<"worker {prefix}">>,
        length([begin rabbit_networking:close_connection(P, "test closes it"), P end
          || P <- rabbit_networking:connections(),
             case lists:keyfind(client_properties, 1, rabbit_networking:connection_info(P, [client_properties])) of
               {{client_properties, Props}} ->
                 case lists:keyfind(<<"connection_name">>, 1, Props) of
                   {{_, _, Name}} -> binary:match(Name, Match) =/= nomatch;
                   _ -> false
                 end;
               _ -> false
             end])."#
    );
    let out = Command::new("rabbitmqctl")
        .args(["eval", &code])
        .output()
        .expect("rabbitmqctl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Unacknowledged messages of `queue`, as the broker counts them.
pub fn unacked(queue: &str) -> u64 {
    let out = Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "name",
            "messages_unacknowledged",
            "--silent",
            "--no-table-headers",
        ])
        .output()
        .expect("rabbitmqctl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some(queue)).then(|| f.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("queue {queue} not listed"))
}

/// Deletes the queues and the exchange of `topology`, each on its own: one that is already
/// gone (or refused) does not keep the others.
pub async fn remove_topology(url: &str, topology: &Topology) -> Result<(), lapin::Error> {
    let conn = broker::connect(url, None, "test cleanup").await?;
    let mut channel = conn.create_channel().await?;
    for q in topology.queues() {
        if channel
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
            .is_err()
        {
            // A refused command closes its channel.
            channel = conn.create_channel().await?;
        }
    }
    let _ = channel
        .exchange_delete(
            topology.exchange.as_str().into(),
            ExchangeDeleteOptions::default(),
        )
        .await;
    let _ = conn.close(200, "test done".into()).await;
    Ok(())
}

/// Deletes every Redis key under `prefix:`.
pub async fn remove_keys(url: &str, prefix: &str) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let pattern = format!("{prefix}:*");
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut con)
            .await?;
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(&keys)
                .query_async::<()>(&mut con)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
