//! Fault-tolerant combination of per-source intervals (pure functions).
//!
//! Algorithm (Marzullo's sweep, used as Welch–Lynch fault-tolerant averaging
//! uses it): with N configured sources of which at most f = floor((N-1)/2)
//! are wrong, and k of them holding a valid interval for the same instant,
//! true time is covered by at least k - f intervals (every honest one). The
//! fresh bound is therefore the *hull* of all points covered by at least
//! k - f intervals.
//!
//! Departure from RFC 5905's selection: RFC 5905 (and the "intersection of
//! the largest agreeing set") returns the intersection of the majority
//! clique. That is not sound against a liar whose interval overlaps the honest
//! ones: it can pull the intersection off true time. The hull is wider but
//! always contains true time under the assumption.

use super::time::{Interval, RefTime};

/// How much a fresh bound is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    /// k >= 2f + 1: a fault-tolerant majority agrees.
    Majority,
    /// f + 1 <= k <= 2f: sound, but too few sources to call synchronized.
    Minority,
}

/// The result of one selection round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    /// Hull of the points covered by at least `k - f` intervals.
    pub bound: Interval,
    /// Number of valid intervals.
    pub k: usize,
    /// Tolerated number of wrong sources.
    pub f: usize,
    /// Whether the bound may be called synchronized.
    pub quality: Quality,
    /// The interval (index into the slice given) whose lower end is the
    /// bound's lower end.
    pub lo_from: usize,
    /// The interval whose upper end is the bound's upper end.
    pub hi_from: usize,
}

/// Why selection gives no fresh bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoBound {
    /// k <= f: too few valid intervals to outvote f liars.
    TooFew {
        /// Valid intervals.
        k: usize,
        /// Tolerated liars.
        f: usize,
    },
    /// No point is covered by k - f intervals: more than f sources are wrong
    /// (or the ageing that produced the intervals was), i.e. the assumptions
    /// are broken.
    NoAgreement,
}

/// Tolerated wrong sources among `n` configured ones.
pub fn tolerated_faults(n: usize) -> usize {
    n.saturating_sub(1) / 2
}

/// Lowest point covered by at least `m` of the intervals (closed ends), by
/// sweeping endpoints: starts sort before ends at the same point. Also the
/// index of the interval whose lower end it is.
fn lowest_covered(
    intervals: &[Interval],
    m: usize,
    events: &mut Vec<(RefTime, i8, usize)>,
) -> Option<(RefTime, usize)> {
    events.clear();
    for (i, iv) in intervals.iter().enumerate() {
        events.push((iv.lo, 1, i));
        events.push((iv.hi, -1, i));
    }
    // (t, -1) > (t, 1) is false: sort by time, then starts (-(1)) first.
    events.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut depth = 0i64;
    for &(t, d, i) in events.iter() {
        depth += d as i64;
        if depth >= m as i64 {
            return Some((t, i));
        }
    }
    None
}

/// Combine the valid intervals of one instant. `configured` is N.
pub fn select(intervals: &[Interval], configured: usize) -> Result<Selection, NoBound> {
    let k = intervals.len();
    let f = tolerated_faults(configured.max(k));
    if k <= f || k == 0 {
        return Err(NoBound::TooFew { k, f });
    }
    let m = k - f;
    let mut events = Vec::with_capacity(2 * k);
    let (lo, lo_from) = lowest_covered(intervals, m, &mut events).ok_or(NoBound::NoAgreement)?;
    // The highest covered point: mirror the intervals and reuse the sweep.
    let mirrored: Vec<Interval> = intervals
        .iter()
        .map(|iv| Interval {
            lo: RefTime(-iv.hi.0),
            hi: RefTime(-iv.lo.0),
        })
        .collect();
    let (neg_hi, hi_from) =
        lowest_covered(&mirrored, m, &mut events).ok_or(NoBound::NoAgreement)?;
    let bound = Interval::new(lo, RefTime(-neg_hi.0)).ok_or(NoBound::NoAgreement)?;
    let quality = if k > 2 * f {
        Quality::Majority
    } else {
        Quality::Minority
    };
    Ok(Selection {
        bound,
        k,
        f,
        quality,
        lo_from,
        hi_from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::iv;
    use proptest::prelude::*;

    #[test]
    fn hull_not_largest_clique_intersection() {
        // Truth is 0. Honest: [-10,10], [-3,20], [-20,2]. Liar: [1, 30]
        // overlaps two honest intervals. The clique intersection of the three
        // that share [1,2] excludes 0; the hull of points covered by >= 3
        // intervals is [-3, 10] and holds it.
        let s = select(&[iv(-10, 10), iv(-3, 20), iv(-20, 2), iv(1, 30)], 4).unwrap();
        assert_eq!(s.bound, iv(-3, 10));
        assert!(s.bound.contains(RefTime(0)));
        assert_eq!(s.quality, Quality::Majority);
    }

    #[test]
    fn quorum_rules() {
        assert_eq!(tolerated_faults(1), 0);
        assert_eq!(tolerated_faults(3), 1);
        assert_eq!(tolerated_faults(4), 1);
        assert_eq!(tolerated_faults(5), 2);
        assert_eq!(select(&[iv(0, 1)], 4), Err(NoBound::TooFew { k: 1, f: 1 }));
        let s = select(&[iv(0, 10), iv(5, 20)], 4).unwrap();
        assert_eq!(s.quality, Quality::Minority);
        assert_eq!(s.bound, iv(0, 20));
        assert_eq!(
            select(&[iv(0, 1), iv(5, 6), iv(9, 10)], 3),
            Err(NoBound::NoAgreement)
        );
        // touching closed ends count as overlapping
        assert_eq!(
            select(&[iv(0, 5), iv(5, 9), iv(5, 5)], 3).unwrap().bound,
            iv(5, 5)
        );
    }

    proptest! {
        /// With at most f liars placed anywhere, the hull always contains truth.
        #[test]
        fn contains_truth_with_f_liars(
            honest in proptest::collection::vec((0i128..1000, 0i128..1000), 1..7),
            liars in proptest::collection::vec((-5000i128..5000, 0i128..3000), 0..4),
        ) {
            let n = honest.len() + liars.len();
            let f = tolerated_faults(n);
            prop_assume!(liars.len() <= f);
            let mut v: Vec<Interval> = honest.iter().map(|&(a, b)| iv(-a, b)).collect();
            v.extend(liars.iter().map(|&(c, w)| iv(c, c + w)));
            match select(&v, n) {
                Ok(s) => {
                    prop_assert!(s.bound.contains(RefTime(0)));
                    // The ends are named by the intervals they come from.
                    prop_assert_eq!(v[s.lo_from].lo, s.bound.lo);
                    prop_assert_eq!(v[s.hi_from].hi, s.bound.hi);
                }
                Err(e) => prop_assert!(false, "no bound: {:?}", e),
            }
        }
    }
}
