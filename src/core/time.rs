//! Integer time on the two timelines skewd works with, and rates between them.
//!
//! - [`Steady`]: nanoseconds on the local steady timeline (CLOCK_MONOTONIC_RAW
//!   in the daemon, the oscillator in the simulator). Never stepped or slewed.
//! - [`RefTime`]: nanoseconds since the Unix epoch on the reference timescale,
//!   leap-free inside skewd (UTC plus the leap seconds seen since start).
//!
//! Never f64 for absolute times: at 1.7e9 s one f64 step is ~238 ns. Every
//! helper here that has to round says which way, so callers can round bounds
//! outward (floor lower ends, ceil upper ends).

use std::ops::{Add, Sub};

/// Nanoseconds per second.
pub const NS_PER_S: i128 = 1_000_000_000;
/// Rate units per 1.0: rates are carried in parts per 10^12 (1 ppm = 10^6).
pub const RATE_ONE: i128 = 1_000_000_000_000;

/// An instant on the local steady timeline, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Steady(pub i64);

/// An instant on the reference timescale: nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RefTime(pub i128);

/// A signed span of nanoseconds (on either timeline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Nanos(pub i128);

/// A frequency offset or rate bound in parts per 10^12 (ps per s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Rate(pub i128);

impl Rate {
    /// A rate given in parts per million.
    pub const fn from_ppm(ppm: i128) -> Rate {
        Rate(ppm * 1_000_000)
    }
    /// A rate given in parts per billion.
    pub const fn from_ppb(ppb: i128) -> Rate {
        Rate(ppb * 1_000)
    }
    /// The rate in ppm, for display and metrics only (never for bounds).
    pub fn as_ppm_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
    /// Absolute value.
    pub fn abs(self) -> Rate {
        Rate(self.0.abs())
    }
}

impl Steady {
    /// Nanoseconds from `earlier` to `self` (negative if `earlier` is later).
    pub fn since(self, earlier: Steady) -> Nanos {
        Nanos(self.0 as i128 - earlier.0 as i128)
    }
    /// This instant moved by `d` nanoseconds, saturating at the i64 range.
    pub fn plus(self, d: Nanos) -> Steady {
        let v = (self.0 as i128).saturating_add(d.0);
        Steady(v.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
    }
}

impl Add<Nanos> for RefTime {
    type Output = RefTime;
    fn add(self, rhs: Nanos) -> RefTime {
        RefTime(self.0.saturating_add(rhs.0))
    }
}

impl Sub<Nanos> for RefTime {
    type Output = RefTime;
    fn sub(self, rhs: Nanos) -> RefTime {
        RefTime(self.0.saturating_sub(rhs.0))
    }
}

impl Sub for RefTime {
    type Output = Nanos;
    fn sub(self, rhs: RefTime) -> Nanos {
        Nanos(self.0.saturating_sub(rhs.0))
    }
}

impl Add for Nanos {
    type Output = Nanos;
    fn add(self, rhs: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(rhs.0))
    }
}

impl Sub for Nanos {
    type Output = Nanos;
    fn sub(self, rhs: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(rhs.0))
    }
}

impl Nanos {
    /// A span of whole seconds.
    pub const fn from_secs(s: i128) -> Nanos {
        Nanos(s * NS_PER_S)
    }
    /// A span of milliseconds.
    pub const fn from_millis(ms: i128) -> Nanos {
        Nanos(ms * 1_000_000)
    }
    /// A span of microseconds.
    pub const fn from_micros(us: i128) -> Nanos {
        Nanos(us * 1_000)
    }
    /// Absolute value.
    pub fn abs(self) -> Nanos {
        Nanos(self.0.abs())
    }
}

/// `v` as i64, saturating (Unix ns fit until the year 2262).
pub fn clamp_i64(v: i128) -> i64 {
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// `a * b / c`, rounded toward +infinity; saturates instead of overflowing.
pub fn mul_div_ceil(a: i128, b: i128, c: i128) -> i128 {
    debug_assert!(c > 0);
    match a.checked_mul(b) {
        Some(p) => p.div_euclid(c) + i128::from(p.rem_euclid(c) != 0),
        None => {
            if (a < 0) == (b < 0) {
                i128::MAX / 4
            } else {
                i128::MIN / 4
            }
        }
    }
}

/// `a * b / c`, rounded toward -infinity; saturates instead of overflowing.
pub fn mul_div_floor(a: i128, b: i128, c: i128) -> i128 {
    debug_assert!(c > 0);
    match a.checked_mul(b) {
        Some(p) => p.div_euclid(c),
        None => {
            if (a < 0) == (b < 0) {
                i128::MAX / 4
            } else {
                i128::MIN / 4
            }
        }
    }
}

/// The nanoseconds a rate error of `rate` accumulates over `span`, rounded up
/// in magnitude (used for widening, so never rounds toward zero).
pub fn rate_spread_ceil(rate: Rate, span: Nanos) -> Nanos {
    Nanos(mul_div_ceil(rate.0.abs(), span.0.abs(), RATE_ONE))
}

/// A closed interval on the reference timescale, `lo <= hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// Earliest possible reference time.
    pub lo: RefTime,
    /// Latest possible reference time.
    pub hi: RefTime,
}

/// `[lo, hi]` from raw nanoseconds, for tests (panics if `lo > hi`).
#[cfg(test)]
pub(crate) fn iv(lo: i128, hi: i128) -> Interval {
    Interval::new(RefTime(lo), RefTime(hi)).expect("lo <= hi")
}

impl Interval {
    /// The interval `[lo, hi]`; `None` if `lo > hi`.
    pub fn new(lo: RefTime, hi: RefTime) -> Option<Interval> {
        (lo <= hi).then_some(Interval { lo, hi })
    }
    /// `hi - lo`.
    pub fn width(&self) -> Nanos {
        self.hi - self.lo
    }
    /// Half the width, rounded up.
    pub fn half_width_ceil(&self) -> Nanos {
        let w = self.width().0;
        Nanos(w / 2 + w % 2)
    }
    /// Whether `t` lies in the interval.
    pub fn contains(&self, t: RefTime) -> bool {
        self.lo <= t && t <= self.hi
    }
    /// The common part of two intervals, if any.
    pub fn intersect(&self, other: &Interval) -> Option<Interval> {
        Interval::new(self.lo.max(other.lo), self.hi.min(other.hi))
    }
    /// Whether the two intervals share no point.
    pub fn disjoint(&self, other: &Interval) -> bool {
        self.intersect(other).is_none()
    }
    /// Both ends moved outward by `lo_by` and `hi_by` (non-negative).
    pub fn widen(&self, lo_by: Nanos, hi_by: Nanos) -> Interval {
        Interval {
            lo: self.lo - lo_by,
            hi: self.hi + hi_by,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_directional() {
        assert_eq!(mul_div_ceil(7, 1, 2), 4);
        assert_eq!(mul_div_floor(7, 1, 2), 3);
        assert_eq!(mul_div_ceil(-7, 1, 2), -3);
        assert_eq!(mul_div_floor(-7, 1, 2), -4);
        assert_eq!(rate_spread_ceil(Rate::from_ppm(1), Nanos(1)), Nanos(1));
        assert_eq!(
            rate_spread_ceil(Rate::from_ppm(200), Nanos::from_secs(1)),
            Nanos::from_micros(200)
        );
    }

    #[test]
    fn saturation_does_not_panic() {
        let big = mul_div_ceil(i128::MAX, 3, 1);
        assert!(big > 0);
        let s = Steady(i64::MAX).plus(Nanos(10));
        assert_eq!(s, Steady(i64::MAX));
    }
}
