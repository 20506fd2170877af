//! `postback-relay dlq reindex`: the journal's index of dead letters rebuilt from one read of
//! the dead-letter queue (nothing consumed, the order kept), for when it has drifted from it
//! (the journal was off or full, the broker dead-lettered messages itself).

use std::path::Path;
use std::process::ExitCode;

use postback_relay::journal::letters::Letters;
use postback_relay::journal::{Action, Recoveries};
use postback_relay::operate::dlq;
use postback_relay::relay::broker::Topology;

pub async fn reindex(config: &Path, by: &str) -> anyhow::Result<ExitCode> {
    let c = match super::load(config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if !c.journal.enabled {
        eprintln!("error: there is no index to rebuild: journal.enabled is false");
        return Ok(ExitCode::from(2));
    }
    let scrub = |e: &dyn std::fmt::Display| anyhow::anyhow!("{}", c.secrets.scrub(&e.to_string()));
    let letters = Letters::open(&c.journal).await.map_err(|e| scrub(&e))?;
    let topology = Topology::from_config(&c);
    let conn = super::connect(&c.broker.url, c.broker.tls.as_ref(), "dlq").await?;
    let total = dlq::depth(&conn.create_channel().await?, &topology.dead).await?;
    let bar = super::progress_bar(u64::from(total), "read");
    let r = dlq::reindex(
        &conn,
        &topology,
        c.worker.max_event_bytes,
        &letters,
        by,
        |n| bar.set_position(n),
    )
    .await;
    bar.finish_and_clear();
    let _ = conn.close(200, "done".into()).await;
    let r = r.map_err(|e| scrub(&e))?;
    let action = Action {
        at: chrono::Utc::now(),
        who: by.to_owned(),
        action: "reindex".into(),
        filter: "{}".into(),
        count: r.found,
    };
    if let Err(e) = async { Recoveries::open(&c.journal).await?.act(&action).await }.await {
        eprintln!(
            "warning: the reindex is not written to the journal's actions: {}",
            scrub(&e)
        );
    }
    println!(
        "the index holds the {} dead letter(s) of {}; {} it had waiting were no longer there",
        r.found, topology.dead, r.gone
    );
    Ok(ExitCode::SUCCESS)
}
