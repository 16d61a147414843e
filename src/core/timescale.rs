//! The two timescales skewd's interfaces speak, as distinct types, so a
//! value on one is never compared with the other by accident.
//!
//! - [`Utc`]: Unix nanoseconds as `date +%s%N` shows them. UTC repeats a
//!   second at an inserted leap second.
//! - [`LeapFree`]: UTC plus the leap seconds since 2017-01-01 (TAI − 37 s).
//!   It never repeats, so commit-wait timestamps stay ordered across a leap,
//!   and every host and restart agree on it. Equal to UTC until the next
//!   leap second (none has been announced since 2017).

/// Nanoseconds since the Unix epoch on the UTC timescale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Utc(pub i64);

/// Nanoseconds on skewd's leap-free timescale (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LeapFree(pub i64);

/// `[earliest, latest]` on one timescale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bounds<S> {
    /// True time is not before this.
    pub earliest: S,
    /// True time is not after this.
    pub latest: S,
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Utc {}
    impl Sealed for super::LeapFree {}
}

/// A timestamp on one of the two timescales.
pub trait Timescale: sealed::Sealed + Copy + Ord + std::fmt::Debug {
    /// `"utc"` or `"leapfree"`.
    const NAME: &'static str;
    /// The raw nanoseconds.
    fn ns(self) -> i64;
    /// From raw nanoseconds.
    fn from_ns(ns: i64) -> Self;
    /// Of an interval known on both timescales, the bounds on this one.
    fn pick(utc: Bounds<Utc>, leapfree: Bounds<LeapFree>) -> Bounds<Self>;
}

impl Timescale for Utc {
    const NAME: &'static str = "utc";
    fn ns(self) -> i64 {
        self.0
    }
    fn from_ns(ns: i64) -> Self {
        Utc(ns)
    }
    fn pick(utc: Bounds<Utc>, _: Bounds<LeapFree>) -> Bounds<Self> {
        utc
    }
}

impl Timescale for LeapFree {
    const NAME: &'static str = "leapfree";
    fn ns(self) -> i64 {
        self.0
    }
    fn from_ns(ns: i64) -> Self {
        LeapFree(ns)
    }
    fn pick(_: Bounds<Utc>, leapfree: Bounds<LeapFree>) -> Bounds<Self> {
        leapfree
    }
}
