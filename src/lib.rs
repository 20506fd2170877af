//! postback-relay: consumes conversion events from RabbitMQ and relays them to affiliate
//! partners, owning every outcome: delivered, retried, or dead-lettered with a reason.
//!
//! Components, in the order an event meets them:
//! - [`event`]: the event contract and its parser (money as exact decimals);
//! - [`config`]: the TOML configuration, validated in full at start-up;
//! - [`broker`]: RabbitMQ topology and confirmed publishing;
//! - [`relay`]: the consumer that routes, delivers and acknowledges;
//! - [`partner`]: one renderer per partner format (pure functions);
//! - [`dispatch`], [`classify`] and [`circuit`]: sending requests, deciding what an answer
//!   means, and not calling a partner that keeps failing;
//! - [`retry`] and [`delivery`]: the retry schedule, and the message a retry travels in;
//! - [`deadletter`], [`dlq`] and [`browse`]: the envelope of what could not be delivered,
//!   and reading and replaying the dead-letter queue without changing its order;
//! - [`metrics`] and [`observe`]: Prometheus metrics, health and readiness;
//! - [`store`]: what was delivered, what is being attempted, and the
//!   latest status of each conversion;
//! - [`sandbox`]: a stand-in partner for the demo, the tests and benchmarks;
//! - [`publish`]: the reference producer.
//!
//! The `postback-relay` command (its subcommands, and the guided demo) is the binary's, in
//! `src/cli/`.
#![forbid(unsafe_code)]

pub mod broker;
pub mod browse;
pub mod circuit;
pub mod classify;
pub mod config;
pub mod deadletter;
pub mod delivery;
pub mod dispatch;
pub mod dlq;
pub mod event;
pub mod metrics;
pub mod observe;
pub mod partner;
pub mod publish;
pub mod reason;
pub mod redact;
pub mod relay;
pub mod retry;
pub mod sandbox;
pub mod store;
