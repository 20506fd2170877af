//! postback-relay: consumes conversion events from RabbitMQ and relays them to affiliate
//! partners, owning every outcome: delivered, retried, or dead-lettered with a reason.
//!
//! The crate reads top to bottom as layers; each uses only those listed before it, except
//! that the relay, listed before the shared state and the journal, uses both:
//! - [`contract`]: the event contract (decoded once, money as exact decimals), each partner's
//!   request rendered by pure functions, what a partner's answer means, and the secrets kept
//!   out of everything the relay writes;
//! - [`config`]: the TOML configuration, every part's settings, validated in full at
//!   start-up;
//! - [`relay`]: the pipeline from a message to its acknowledgement (its module doc follows one
//!   message through its files), with the broker's topology, the partner calls, retries and
//!   dead letters, and what Prometheus reads;
//! - [`shared`]: what replicas share (claims, the record of accepted deliveries, status order,
//!   rate limits, circuits, pauses) behind one interface, embedded for one process or Redis
//!   for a fleet, chosen once at start-up;
//! - [`journal`]: what happened to each delivery, kept in batches off the hot path;
//! - [`operate`]: the operators' tools: the dead-letter queue read and replayed in order, a
//!   window of the journal sent again, and the console that serves it all in a browser;
//! - [`interfaces`]: the reference producer and the sandbox that stands in for every partner
//!   in the demo, the tests and the benchmarks.
//!
//! The `postback-relay` command (its subcommands, and the guided demo) is the binary's, in
//! `src/cli/`.
#![forbid(unsafe_code)]

// One group per layer, in reading order (blank lines keep rustfmt from sorting them).
pub mod contract;

pub mod config;

pub mod relay;

pub mod shared;

pub mod journal;

pub mod operate;

pub mod interfaces;
