//! Tests of `broker`.

use super::*;
use std::time::Duration;

#[tokio::test]
async fn one_deadline_covers_the_whole_publish() {
    let deadline = Duration::from_millis(100);
    // A send that never ends: a connection the broker has blocked.
    let never = within(deadline, std::future::pending::<Result<(), PublishError>>()).await;
    assert!(
        matches!(never, Err(PublishError::Timeout(d)) if d == deadline),
        "{never:?}"
    );
    // Sending and confirming share the deadline: two steps of 60 ms overrun 100 ms,
    // though each alone is within it.
    let step = || tokio::time::sleep(Duration::from_millis(60));
    let slow = within(deadline, async {
        step().await;
        step().await;
        Ok(())
    })
    .await;
    assert!(matches!(slow, Err(PublishError::Timeout(_))), "{slow:?}");
    // In time, the publish's own outcome comes through.
    let nacked = within(deadline, async { Err::<(), _>(PublishError::Nacked) }).await;
    assert!(matches!(nacked, Err(PublishError::Nacked)), "{nacked:?}");
    assert!(within(deadline, async { Ok(()) }).await.is_ok());
}
