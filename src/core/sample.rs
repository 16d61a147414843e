//! A sample: a hard bound on reference time at one local steady instant,
//! whatever kind of source produced it. Selection, estimation and leap
//! handling take samples, never packets.

use super::leap::Leap;
use super::time::{Interval, Nanos, Steady};

/// A bound from one measurement, with what it was made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Local steady instant the bound is for.
    pub at: Steady,
    /// Reference time at `at` lies in this interval (UTC as the source
    /// tells it; the engine maps it onto the leap-free timescale).
    pub bound: Interval,
    /// The source's leap indication.
    pub leap: Leap,
    /// Round-trip delay, for kinds that have one.
    pub delay: Option<Nanos>,
    /// The source's own advertised distance to its reference, if any.
    pub root_distance: Option<Nanos>,
}
