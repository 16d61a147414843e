//! The sans-IO core: packets, samples, selection, estimation and the
//! per-source state machines. No tokio, no sockets, no clock reads, no
//! unsafe: every function takes the instants it needs as arguments, so the
//! simulator can drive it through simulated days in milliseconds.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod engine;
pub mod estimator;
pub mod filter;
pub mod leap;
pub mod model;
pub mod packet;
pub mod sample;
pub mod select;
pub mod source;
pub mod time;
