//! Integer time on the two timelines skewd works with, and rates between them.
//!
//! - [`Steady`]: nanoseconds on the local steady timeline (CLOCK_MONOTONIC_RAW
//!   in the daemon, the oscillator in the simulator). Never stepped or slewed.
//! - [`RefTime`]: nanoseconds since the Unix epoch on the reference timescale,
//!   leap-free inside skewd (UTC plus the leap seconds since 2017-01-01; see
//!   [`crate::core::leap`]).
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
    /// Absolute value, saturating: `i128::MIN` (only reachable through a
    /// bug or hostile input) gives `i128::MAX`, never a negative rate that
    /// would pass a range check.
    pub fn abs(self) -> Rate {
        Rate(self.0.checked_abs().unwrap_or(i128::MAX))
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
    /// Absolute value, saturating like [`Rate::abs`].
    pub fn abs(self) -> Nanos {
        Nanos(self.0.checked_abs().unwrap_or(i128::MAX))
    }
}

/// `v` as i64, saturating (Unix ns fit until the year 2262). Only for
/// figures shown to people (offsets, delays, counters): a saturated *bound*
/// would be a narrower interval, so bounds go through [`i64::try_from`] and
/// an unrepresentable one is an error.
pub fn clamp_i64(v: i128) -> i64 {
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// Days since 1970-01-01 of the proleptic Gregorian date `y-m-d`
/// (H. Hinnant's `days_from_civil`; exact for any i64 year).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `(y, m, d)` of day `z` since 1970-01-01 (inverse of
/// [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The first instant (UTC midnight, Unix ns) of the month after the one
/// holding `t`: the end of `t`'s month, where RFC 5905 puts an announced
/// leap second.
pub fn end_of_month(t: RefTime) -> RefTime {
    let day = 86_400 * NS_PER_S;
    let (y, m, _) = civil_from_days(clamp_i64(t.0.div_euclid(day)));
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    RefTime(days_from_civil(ny, nm, 1) as i128 * day)
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
    fn calendar() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2017, 1, 1), 17_167);
        assert_eq!(civil_from_days(17_167), (2017, 1, 1));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        let day = 86_400 * NS_PER_S;
        // 2016-12-31T23:59:59 -> 2017-01-01
        let t = RefTime(17_167 * day - NS_PER_S);
        assert_eq!(end_of_month(t), RefTime(17_167 * day));
        // midnight itself belongs to the new month
        assert_eq!(
            end_of_month(RefTime(17_167 * day)),
            RefTime(days_from_civil(2017, 2, 1) as i128 * day)
        );
        for z in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn abs_never_wraps() {
        assert_eq!(Rate(i128::MIN).abs(), Rate(i128::MAX));
        assert_eq!(Nanos(i128::MIN).abs(), Nanos(i128::MAX));
    }

    #[test]
    fn saturation_does_not_panic() {
        let big = mul_div_ceil(i128::MAX, 3, 1);
        assert!(big > 0);
        let s = Steady(i64::MAX).plus(Nanos(10));
        assert_eq!(s, Steady(i64::MAX));
    }
}
