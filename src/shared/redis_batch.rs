//! The Redis store's hot calls (claims, renewals, records) batched the way the embedded store
//! group-commits: callers queue their operation and wait; one task sends every operation that
//! queued up while the last batch was out as one script, in one round trip, and hands each
//! caller its own answer. Each operation is still atomic (the whole batch is: Redis runs a
//! script alone), and a caller's call returns only once Redis has answered for it, so a record
//! is in Redis before its event is acknowledged, as without batching.

use std::sync::LazyLock;

use tokio::sync::{mpsc, oneshot};

use super::StoreError;

/// At most this many operations per script: one script runs alone on Redis, and 256 small
/// operations take it well under a millisecond.
pub(super) const MAX_BATCH: usize = 256;

/// One operation, with the full Redis keys it touches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Op {
    /// Takes `claim` for `token` unless `done` exists: 2 delivered, 1 taken, 0 busy.
    Claim {
        done: String,
        claim: String,
        token: String,
        px: u64,
    },
    /// Extends `claim` if it is still `token`'s: 1 kept, 0 gone or someone else's.
    Renew {
        claim: String,
        token: String,
        px: u64,
    },
    /// Records `done` (and raises `status` to `rank` with it, when there is a rank), then lets
    /// `claim` go if it is `token`'s: 1.
    Delivered {
        done: String,
        status: Option<(String, u8)>,
        claim: String,
        token: String,
        px: u64,
    },
}

/// Each operation's code, its keys in order and its arguments in order, as the script reads
/// them: `ARGV` is the code, then the arguments, operation after operation.
fn encode(op: &Op, keys: &mut Vec<String>, args: &mut Vec<String>) {
    match op {
        Op::Claim {
            done,
            claim,
            token,
            px,
        } => {
            keys.extend([done.clone(), claim.clone()]);
            args.extend(["c".into(), token.clone(), px.to_string()]);
        }
        Op::Renew { claim, token, px } => {
            keys.push(claim.clone());
            args.extend(["r".into(), token.clone(), px.to_string()]);
        }
        Op::Delivered {
            done,
            status,
            claim,
            token,
            px,
        } => {
            let (status_key, rank) = match status {
                Some((k, r)) => (k.clone(), r.to_string()),
                // A key the script does not touch without a rank.
                None => (done.clone(), String::new()),
            };
            keys.extend([done.clone(), status_key, claim.clone()]);
            args.extend(["d".into(), px.to_string(), rank, token.clone()]);
        }
    }
}

/// Runs a batch's operations in order and answers one integer for each.
static BATCH: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local out = {}
         local k, a = 1, 1
         while a <= #ARGV do
           local op = ARGV[a]
           if op == 'c' then
             if redis.call('EXISTS', KEYS[k]) == 1 then out[#out + 1] = 2
             elseif redis.call('SET', KEYS[k + 1], ARGV[a + 1], 'NX', 'PX', ARGV[a + 2]) then out[#out + 1] = 1
             else out[#out + 1] = 0 end
             k, a = k + 2, a + 3
           elseif op == 'r' then
             if redis.call('GET', KEYS[k]) == ARGV[a + 1] then
               out[#out + 1] = redis.call('PEXPIRE', KEYS[k], ARGV[a + 2])
             else out[#out + 1] = 0 end
             k, a = k + 1, a + 3
           elseif op == 'd' then
             redis.call('SET', KEYS[k], 1, 'PX', ARGV[a + 1])
             if ARGV[a + 2] ~= '' then
               local cur = tonumber(redis.call('GET', KEYS[k + 1]) or '0')
               if tonumber(ARGV[a + 2]) > cur then cur = tonumber(ARGV[a + 2]) end
               redis.call('SET', KEYS[k + 1], cur, 'PX', ARGV[a + 1])
             end
             if redis.call('GET', KEYS[k + 2]) == ARGV[a + 3] then redis.call('DEL', KEYS[k + 2]) end
             out[#out + 1] = 1
             k, a = k + 3, a + 4
           else
             return redis.error_reply('unknown batch operation ' .. tostring(op))
           end
         end
         return out",
    )
});

/// An operation waiting for its batch, and where its answer goes.
struct Queued {
    op: Op,
    answer: oneshot::Sender<Result<i64, redis::RedisError>>,
}

/// Where operations are queued; the batching task ends when every handle is gone.
#[derive(Clone)]
pub(super) struct Batcher(mpsc::UnboundedSender<Queued>);

impl Batcher {
    pub fn start(conn: redis::aio::ConnectionManager) -> Batcher {
        let (queue, queued) = mpsc::unbounded_channel();
        tokio::spawn(send_batches(conn, queued));
        Batcher(queue)
    }

    /// Queues `op` and waits for Redis' answer to it.
    pub async fn run(&self, op: Op) -> Result<i64, StoreError> {
        let (answer, answered) = oneshot::channel();
        self.0.send(Queued { op, answer }).map_err(|_| stopped())?;
        Ok(answered.await.map_err(|_| stopped())??)
    }
}

fn stopped() -> StoreError {
    StoreError::Redis(redis::RedisError::from((
        redis::ErrorKind::Io,
        "the store's batching task has stopped",
    )))
}

/// Sends what has queued up, up to [`MAX_BATCH`] operations at a time, one batch at a time.
async fn send_batches(
    mut conn: redis::aio::ConnectionManager,
    mut queued: mpsc::UnboundedReceiver<Queued>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queued.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // Let every task that is ready run first: under load they queue more operations for
        // this batch; when idle this returns at once.
        tokio::task::yield_now().await;
        while batch.len() < MAX_BATCH
            && let Ok(q) = queued.try_recv()
        {
            batch.push(q);
        }
        let answers = send(&mut conn, batch.iter().map(|q| &q.op)).await;
        for (i, q) in batch.drain(..).enumerate() {
            let answer = match &answers {
                Ok(all) => all.get(i).copied().ok_or_else(|| {
                    redis::RedisError::from((
                        redis::ErrorKind::Parse,
                        "the batch script answered fewer values than operations",
                    ))
                }),
                Err(e) => Err(e.clone()),
            };
            let _ = q.answer.send(answer);
        }
    }
}

async fn send<'a>(
    conn: &mut redis::aio::ConnectionManager,
    ops: impl Iterator<Item = &'a Op>,
) -> Result<Vec<i64>, redis::RedisError> {
    let mut keys = Vec::new();
    let mut args = Vec::new();
    for op in ops {
        encode(op, &mut keys, &mut args);
    }
    let mut call = BATCH.prepare_invoke();
    for k in &keys {
        call.key(k);
    }
    for a in &args {
        call.arg(a);
    }
    call.invoke_async(conn).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_operation_brings_its_keys_and_arguments_in_the_order_the_script_reads_them() {
        let mut keys = Vec::new();
        let mut args = Vec::new();
        for op in [
            Op::Claim {
                done: "p:done:d".into(),
                claim: "p:claim:d".into(),
                token: "t1".into(),
                px: 5000,
            },
            Op::Renew {
                claim: "p:claim:e".into(),
                token: "t2".into(),
                px: 6000,
            },
            Op::Delivered {
                done: "p:done:f".into(),
                status: Some(("p:status:o".into(), 3)),
                claim: "p:claim:f".into(),
                token: "t3".into(),
                px: 7000,
            },
            Op::Delivered {
                done: "p:done:g".into(),
                status: None,
                claim: "p:claim:g".into(),
                token: "t4".into(),
                px: 7000,
            },
        ] {
            encode(&op, &mut keys, &mut args);
        }
        assert_eq!(
            keys,
            [
                "p:done:d",
                "p:claim:d",
                "p:claim:e",
                "p:done:f",
                "p:status:o",
                "p:claim:f",
                "p:done:g",
                "p:done:g",
                "p:claim:g"
            ]
        );
        assert_eq!(
            args,
            [
                "c", "t1", "5000", "r", "t2", "6000", "d", "7000", "3", "t3", "d", "7000", "", "t4"
            ]
        );
    }
}
