//! What replicas share.

pub(crate) mod circuit;
pub mod fleet;
pub mod pause;
pub mod store;
