//! postback-relay: consumes conversion events from RabbitMQ and relays them to affiliate
//! partners, owning every outcome: delivered, retried, or dead-lettered with a reason.
//!
//! Components, in the order an event meets them:
//! - [`config`]: the TOML configuration, validated in full at start-up;
//! - [`broker`]: the topology the relay declares, and confirmed publishing;
//! - [`relay`]: the worker, a pipeline from a message to its acknowledgement (its module doc
//!   follows one message through its files);
//! - [`event`]: the event contract, decoded once from the message (money as exact decimals);
//! - [`partner`]: each destination kind's request, rendered by pure functions;
//! - [`store`]: the delivery's claim, the record of what was accepted, and the latest status
//!   of each conversion;
//! - [`dispatch`] and [`classify`]: sending a request, and what the partner's answer means
//!   (a circuit breaker per destination keeps a failing partner from being called; with the
//!   Redis store, [`fleet`] makes the rate limit and the circuit the whole fleet's, and
//!   [`pause`] holds a destination's deliveries while an operator has paused it);
//! - [`retry`] and [`delivery`]: again or give up, and the message a retry travels in;
//! - [`deadletter`] and [`reason`]: the envelope of what could not be delivered, and why;
//! - [`redact`]: the configuration's secrets kept out of everything the relay writes;
//! - [`metrics`]: what Prometheus reads (served with health and readiness).
//!
//! Around the relay: [`dlq`] and [`browse`] read and replay the dead-letter queue without
//! changing its order; [`journal`] keeps what happened to each delivery, in batches off the
//! hot path, for people to ask, and [`recover`] sends a window of it again; [`console`] serves
//! all of it to operators in a browser; [`publish`] is the reference producer; [`sandbox`] stands in for every
//! partner in the demo, the tests and the benchmarks. The `postback-relay` command (its
//! subcommands, and the guided demo) is the binary's, in `src/cli/`.
#![forbid(unsafe_code)]

pub mod broker;
pub mod browse;
pub(crate) mod circuit;
pub mod classify;
pub mod config;
pub mod console;
pub mod deadletter;
pub mod delivery;
pub mod dispatch;
pub mod dlq;
mod encode;
pub mod event;
pub mod fleet;
pub mod journal;
pub mod metrics;
pub(crate) mod observe;
pub mod partner;
pub mod pause;
pub mod publish;
pub mod reason;
pub mod recover;
pub mod redact;
pub mod relay;
pub mod retry;
pub mod sandbox;
pub mod store;
pub mod text;
