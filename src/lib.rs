//! skewd: tells the programs on a host what time it *surely* is.
//!
//! The crate holds the sans-IO [`core`] (NTP codec, per-exchange bounds,
//! fault-tolerant selection, hard rate evidence, the published model), the
//! [`sim`] world simulator that proves the core keeps its promise, and the
//! I/O shell of the `skewd` agent ([`daemon`], [`net`], [`http`], [`clock`]).
//!
//! The one promise: every interval skewd hands out contains true time under
//! the stated assumptions, and is as narrow as the evidence allows.

pub mod client;
pub mod clock;
pub mod config;
pub mod core;
pub mod daemon;
pub mod http;
pub mod httpc;
pub mod leaps;
pub mod metrics;
pub mod net;
pub mod shm;
pub mod sim;
pub mod snapshot;
pub mod wait;
