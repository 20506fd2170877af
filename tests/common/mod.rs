//! Shared test harness: a fresh exchange and queues per test on the real RabbitMQ, a partner
//! sandbox on loopback, configurations and events built from parts, relay processes, and
//! helpers that await conditions with deadlines instead of sleeping.
#![allow(dead_code, unused_imports)]

pub mod broker;
pub mod browser;
pub mod config;
pub mod console;
pub mod env;
pub mod events;
pub mod partner;
pub mod pg_server;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod rabbit_node;
pub mod redis;
pub mod tls;
pub mod wait;

pub use config::{
    Callback, Circuit, ConfigBuilder, Dest, Hoqu, Retry, Tracker, amqp_url, redis_url,
};
pub use env::Env;
pub use events::{Event, event};
pub use process::{Cli, RelayProcess};
pub use wait::{deliveries, eventually, until};

/// A port free on loopback right now, for a listener a test process binds itself.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
