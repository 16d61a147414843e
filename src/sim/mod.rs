//! The world simulator: true time, a drifting and wandering oscillator, NTP
//! servers (honest, ntpd-style and lying), a network with delay, asymmetry,
//! loss, duplication, reordering and replays, and local clock events
//! (REALTIME steps, suspend, VM pause, clocksource switch, frequency steps).
//!
//! It drives the real [`crate::core::engine::Engine`] with real packet bytes
//! and checks the published model at random instants against true time.
//! Deterministic from a seed; simulated hours take milliseconds.

pub mod rng;
pub mod scenarios;
pub mod world;
