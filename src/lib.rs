//! skewd: tells the programs on a host what time it *surely* is.
//!
//! - [`core`]: the sans-IO heart — source kinds (NTP, one-way), per-exchange
//!   bounds, fault-tolerant selection, hard rate evidence, leap seconds, the
//!   published model, and [`core::read::interval`], the one function every
//!   reader uses to turn a published model and a clock read into an
//!   interval.
//! - [`client`]: what applications link (shared-memory reads, `after` /
//!   `before`, `wait_until`, commit-wait); [`shm`] the segment; [`clock`]
//!   the only place that reads clocks; [`wait`] the wait loop.
//! - The agent's shell (feature `daemon`, default): [`daemon`] (wiring,
//!   options, directories, state files, sources, the engine pump,
//!   sd_notify), [`net`] (UDP), [`state`] (what in-process readers see),
//!   [`http`], [`metrics`], [`config`].
//! - [`sim`] (feature `sim`): the world simulator that drives the real
//!   engine and checks what apps would read against true time.
//!
//! With `default-features = false` the crate is the client alone; the
//! `tokio` feature adds the async waits.
//!
//! The one promise: every interval skewd hands out contains true time under
//! the stated assumptions, and is as narrow as the evidence allows. The
//! model, in this project's words: `docs/model.md`.

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
pub mod human;
#[cfg(feature = "daemon")]
pub mod leaps;
#[cfg(feature = "daemon")]
pub mod metrics;
#[cfg(feature = "daemon")]
pub mod net;
#[cfg(feature = "daemon")]
pub mod page;
pub mod paths;
#[cfg(feature = "daemon")]
pub mod serve;
pub mod shm;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "daemon")]
pub mod state;
pub mod wait;
