//! The sans-IO core: sources, samples, selection, estimation, leap seconds,
//! the published model and the one function that reads it. No tokio, no
//! sockets, no clock reads, no unsafe, and nothing from outside `core`:
//! every function takes the instants it needs as arguments, so the
//! simulator can drive it through simulated days in milliseconds.
//!
//! - Source kinds produce [`sample::Sample`]s: [`ntp`] (packet codec, one
//!   exchange's bound, a server's request/reply machine), `nts` (feature
//!   `nts`: NTP authenticated by RFC 8915, wrapping the NTP machine) and
//!   [`direct`] (a one-way source that yields a bound), on the shared [`poll`] schedule,
//!   in one [`source::Record`] per configured slot.
//! - [`filter`], [`select`], [`estimator`] and [`leap`] take samples.
//! - [`engine`] ties them together and decides what local clock events
//!   ([`local`]) mean; it publishes a [`publish::Publication`].
//! - [`read`] turns a published model and a clock reading into an interval.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod budget;
pub mod direct;
pub mod engine;
pub mod estimator;
pub mod filter;
pub mod leap;
pub mod local;
pub mod model;
pub mod ntp;
#[cfg(feature = "nts")]
pub mod nts;
pub mod poll;
pub mod publish;
pub mod read;
pub mod sample;
pub mod select;
pub mod source;
pub mod stamps;
pub mod time;
pub mod timescale;
