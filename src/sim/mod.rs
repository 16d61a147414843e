//! The world simulator: true time, a drifting and wandering oscillator, NTP
//! servers (honest, ntpd-style, lying and Byzantine), a network with delay,
//! asymmetry, loss, duplication, reordering and replays, kernel receive
//! stamps, and local clock events (REALTIME steps, suspend, VM pause,
//! clocksource switch, frequency steps, leap seconds).
//!
//! It drives the real [`crate::core::engine::Engine`] with real packet bytes
//! and checks the published model at random instants against true time.
//! Deterministic from a seed; simulated hours take milliseconds.

pub mod adversary;
mod check;
pub mod oscillator;
pub mod report;
pub mod rng;
pub mod scenarios;
pub mod server;
pub mod spec;
pub mod world;
