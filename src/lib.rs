//! skewd: tells the programs on a host what time it *surely* is.
//!
//! The crate holds the sans-IO [`core`] (NTP codec, per-exchange bounds,
//! fault-tolerant selection, hard rate evidence, the published model), the
//! [`sim`] world simulator that proves the core keeps its promise, and the
//! I/O shell of the `skewd` agent.
//!
//! The one promise: every interval skewd hands out contains true time under
//! the stated assumptions, and is as narrow as the evidence allows.

pub mod core;
pub mod sim;
