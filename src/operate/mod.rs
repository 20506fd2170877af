//! The operators' tools: [`dlq`] reads and replays the dead-letter queue without changing
//! its order, [`recover`] sends a window of the journal again, and [`console`] serves all of
//! it in a browser.

pub mod console;
pub mod dlq;
pub mod recover;
