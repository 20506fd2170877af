//! What stands on the other side of the relay in the demo, the tests and the benchmarks:
//! [`publish`], the reference producer, and [`sandbox`], every partner at once.

pub mod publish;
pub mod sandbox;
