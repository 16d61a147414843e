//! skewd: tells the programs on a host what time it *surely* is.
//!
//! The crate holds the sans-IO [`core`] (NTP codec, per-exchange bounds,
//! fault-tolerant selection, hard rate evidence, the published model), the
//! [`sim`] world simulator that proves the core keeps its promise, and the
//! I/O shell of the `skewd` agent ([`daemon`], [`net`], [`http`], [`clock`]).
//!
//! With `default-features = false` the crate is the client alone
//! ([`client`], [`shm`], [`clock`], [`wait`], [`core`], [`sim`]); the
//! `tokio` feature adds the async waits, `daemon` (default) the agent.
//!
//! The one promise: every interval skewd hands out contains true time under
//! the stated assumptions, and is as narrow as the evidence allows.

pub mod client;
pub mod clock;
#[cfg(feature = "daemon")]
pub mod config;
pub mod core;
#[cfg(feature = "daemon")]
pub mod daemon;
#[cfg(feature = "daemon")]
pub mod http;
#[cfg(feature = "daemon")]
pub mod httpc;
#[cfg(feature = "daemon")]
pub mod leaps;
#[cfg(feature = "daemon")]
pub mod metrics;
#[cfg(feature = "daemon")]
pub mod net;
pub mod paths;
pub mod shm;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "daemon")]
pub mod state;
pub mod wait;
