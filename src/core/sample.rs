//! A sample: a hard bound on reference time at one local steady instant,
//! whatever kind of source produced it. Selection, estimation and leap
//! handling take samples, never packets.

use super::budget::{Part, Parts};
use super::leap::Leap;
use super::time::{Interval, Nanos, RefTime, Steady};

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
    /// The instant both ends are measured from for the ε budget (an NTP
    /// exchange's t3); moves with the bound.
    pub centre: RefTime,
    /// What lies between the bound's lower end and its centre
    /// (see [`crate::core::budget`]).
    pub lo_parts: Parts,
    /// What lies between the centre and the upper end.
    pub hi_parts: Parts,
}

impl Sample {
    /// The sample with its bound replaced by `bound` (a mapping onto
    /// another timescale that may also widen it, as leap handling does): the
    /// centre moves with the upper end, any widening is booked to the lower
    /// side as [`Part::Leap`].
    #[must_use]
    pub fn moved_to(mut self, bound: Interval) -> Sample {
        let moved_lo = bound.lo - self.bound.lo;
        let moved_hi = bound.hi - self.bound.hi;
        self.lo_parts.add(Part::Leap, moved_hi - moved_lo);
        self.centre = self.centre + moved_hi;
        self.bound = bound;
        self
    }

    /// The sample widened by `lo_by` below and `hi_by` above, booked to `part`.
    #[must_use]
    pub fn widen(mut self, part: Part, lo_by: Nanos, hi_by: Nanos) -> Sample {
        self.bound = self.bound.widen(lo_by, hi_by);
        self.lo_parts.add(part, lo_by);
        self.hi_parts.add(part, hi_by);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::budget::Sides;
    use crate::core::source::SourceId;
    use crate::core::time::iv;

    #[test]
    fn a_moved_sample_stays_explained() {
        let s = Sample {
            at: Steady(0),
            bound: iv(90, 120),
            leap: Leap::None,
            delay: None,
            root_distance: None,
            centre: RefTime(100),
            lo_parts: Parts::default().with(Part::RootDistance, Nanos(10)),
            hi_parts: Parts::default().with(Part::RootDistance, Nanos(20)),
        };
        let explained = |s: Sample| {
            Sides::of(SourceId(0), s.centre, s.lo_parts, s.hi_parts)
                .of_bound(s.bound)
                .consistent
        };
        assert!(explained(s));
        // Moved by a second, and the hull of both readings across a leap.
        for bound in [iv(1_090, 1_120), iv(90, 1_120), iv(-910, 120)] {
            let m = s.moved_to(bound);
            assert!(explained(m), "{bound:?}");
            assert!(m.lo_parts.get(Part::Leap) >= 0);
            assert_eq!(
                m.lo_parts.total() + m.hi_parts.total(),
                bound.width(),
                "{bound:?}"
            );
        }
        assert!(!explained(Sample {
            bound: iv(90, 121),
            ..s
        }));
    }
}
