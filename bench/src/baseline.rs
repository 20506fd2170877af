//! `bench baseline`: the minimal consumer the relay is measured next to.

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;

use postback_relay::relay::broker;

/// The smallest consumer that does the job: consume, one GET, ack. The GET is `url` with the
/// message id appended, so that each request can be matched to its event.
pub async fn consume(amqp_url: &str, queue: &str, url: &str, prefetch: u16) -> anyhow::Result<()> {
    let conn = broker::connect(amqp_url, None, "bench baseline").await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(prefetch, BasicQosOptions::default()).await?;
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "baseline".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let client = reqwest::Client::new();
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(d) = consumer.next().await {
        let d = d?;
        let id = d
            .properties
            .message_id()
            .as_ref()
            .map_or("", |s| s.as_str());
        let (client, url) = (client.clone(), format!("{url}{id}"));
        tasks.spawn(async move {
            if let Ok(r) = client.get(&url).send().await {
                let _ = r.bytes().await;
            }
            let _ = d.acker.ack(BasicAckOptions::default()).await;
        });
        while tasks.try_join_next().is_some() {}
    }
    Ok(())
}
