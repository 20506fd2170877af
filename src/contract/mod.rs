//! The contract with the outside, in pure functions: the event as producers publish it
//! ([`event`], with [`reason`] for what is wrong with one), each partner's request
//! ([`partner`]), what a partner's answer means ([`classify`]), and the secrets kept out of
//! everything the relay writes ([`redact`]).

pub mod classify;
mod encode;
pub mod event;
pub mod partner;
pub mod reason;
pub mod redact;
pub mod text;
