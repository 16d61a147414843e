//! True time as an exact integer function of the local steady timeline: the
//! oscillator's rate error changes linearly with a bounded slope, and jumps
//! where the local clocks froze (suspend, VM pause) or the rate stepped.

use crate::core::time::{NS_PER_S, RATE_ONE};

/// One piece of true time: rate `r(x) = r0 + slope * (x - x0)`.
#[derive(Debug, Clone, Copy)]
pub struct Segment {
    /// Steady start (ns).
    pub x0: i64,
    /// True time at `x0` (Unix ns).
    pub t0: i128,
    /// Rate error at `x0`, parts per 10^12.
    pub r0: i128,
    /// Rate change per second, parts per 10^12.
    pub slope: i128,
}

impl Segment {
    /// True time at steady instant `x`.
    pub fn true_at(&self, x: i64) -> i128 {
        let d = (x - self.x0) as i128;
        self.t0
            + d
            + (self.r0 * d).div_euclid(RATE_ONE)
            + (self.slope * d * d).div_euclid(2 * RATE_ONE * NS_PER_S)
    }

    /// Rate error at `x`.
    pub fn rate_at(&self, x: i64) -> i128 {
        self.r0 + self.slope * (x - self.x0) as i128 / NS_PER_S
    }

    /// The same function restarted at `x` (continuous in time and rate).
    pub fn rebased(&self, x: i64) -> Segment {
        Segment {
            x0: x,
            t0: self.true_at(x),
            r0: self.rate_at(x),
            slope: self.slope,
        }
    }
}
