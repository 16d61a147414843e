//! Leap seconds: skewd's internal timescale is leap-free — UTC plus the leap
//! seconds since 2017-01-01 (TAI − 37 s), taken at start from the host's
//! leap-second list and moved by each leap the sources announce — so
//! intervals, rates and commit-wait never see a second repeat, and hosts
//! (and restarts) agree on it. Until the next leap second it equals UTC.
//! This module maps each source's UTC onto it.
//!
//! - A leap is *pending* once at least `k - f` of the `k` valid sources (the
//!   fault-tolerant quorum) announce the same leap; a lone falseticker's leap
//!   bit therefore never counts. It happens at the end of the current UTC day.
//! - Near and after the leap instant, a source that has not been seen to
//!   apply it is ambiguous: its interval is the hull of "applied" and "not
//!   applied". It is resolved as applied once only that reading meets the
//!   model, and as not applied while only the other does.
//! - When every valid, non-falseticker source has applied it, the UTC offset
//!   moves by the leap and the leap is complete.
//! - The UTC view of an internal interval ([`crate::core::model::Model::utc_at`])
//!   is exact away from the leap and the hull of both readings across it.

use super::packet::Leap;
use super::time::{Interval, Nanos, RefTime, NS_PER_S};

const DAY: i128 = 86_400 * NS_PER_S;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    /// The leap instant on the UTC timescale (end of a UTC day).
    at_utc: RefTime,
    /// +1 s for an insertion, -1 s for a deletion.
    delta: Nanos,
    /// Per source: seen to have applied it.
    applied: Vec<bool>,
}

/// The leap state of the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeapState {
    /// Internal minus UTC for sources that have not applied the pending leap.
    offset: Nanos,
    pending: Option<Pending>,
    /// The last completed leap: instant (internal), size, offset before it.
    /// Kept in the UTC view so that an interval still straddling it maps right.
    completed: Option<(RefTime, Nanos, Nanos)>,
    sources: usize,
}

/// What a model needs to publish its UTC view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UtcMapping {
    /// Internal minus UTC before the pending leap (if any).
    pub offset: Nanos,
    /// The pending leap: its instant on the internal timescale and its size.
    pub leap: Option<(RefTime, Nanos)>,
}

impl UtcMapping {
    /// The UTC view of an internal interval.
    pub fn to_utc(&self, iv: Interval) -> Interval {
        let base = Interval {
            lo: iv.lo - self.offset,
            hi: iv.hi - self.offset,
        };
        let Some((at, d)) = self.leap else {
            return base;
        };
        if iv.hi < at {
            base
        } else if iv.lo >= at {
            Interval {
                lo: base.lo - d,
                hi: base.hi - d,
            }
        } else {
            // Straddles the leap: UTC runs [lo, at) then [at - d, hi - d].
            let at_utc = at - self.offset;
            Interval {
                lo: base.lo.min(at_utc - d),
                hi: (base.hi - d).max(at_utc),
            }
        }
    }
}

impl LeapState {
    /// No leap known, for `sources` sources.
    pub fn new(sources: usize) -> LeapState {
        LeapState::with_offset(sources, Nanos(0))
    }

    /// No leap pending; the internal timescale is UTC + `offset`.
    pub fn with_offset(sources: usize, offset: Nanos) -> LeapState {
        LeapState {
            offset,
            pending: None,
            completed: None,
            sources,
        }
    }

    /// The mapping to publish.
    pub fn mapping(&self) -> UtcMapping {
        match (&self.pending, self.completed) {
            (Some(p), _) => UtcMapping {
                offset: self.offset,
                leap: Some((p.at_utc + self.offset, p.delta)),
            },
            (None, Some((at, delta, before))) => UtcMapping {
                offset: before,
                leap: Some((at, delta)),
            },
            (None, None) => UtcMapping {
                offset: self.offset,
                leap: None,
            },
        }
    }

    /// Whether a leap is pending.
    pub fn pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Map source `src`'s UTC bound to the internal timescale. `model` is the
    /// published model's (internal) interval at the same instant, if any.
    pub fn to_internal(&mut self, src: usize, utc: Interval, model: Option<Interval>) -> Interval {
        let not_applied = Interval {
            lo: utc.lo + self.offset,
            hi: utc.hi + self.offset,
        };
        let Some(p) = &mut self.pending else {
            return not_applied;
        };
        let applied = Interval {
            lo: not_applied.lo + p.delta,
            hi: not_applied.hi + p.delta,
        };
        if p.applied.get(src).copied().unwrap_or(false) {
            return applied;
        }
        // Surely before the leap: the source's UTC has not reached the last
        // second of the day.
        if utc.hi < p.at_utc - Nanos(NS_PER_S) {
            return not_applied;
        }
        if let Some(m) = model {
            let (a, n) = (!applied.disjoint(&m), !not_applied.disjoint(&m));
            if a && !n {
                if let Some(x) = p.applied.get_mut(src) {
                    *x = true;
                }
                return applied;
            }
            if n && !a {
                return not_applied;
            }
        }
        Interval {
            lo: applied.lo.min(not_applied.lo),
            hi: applied.hi.max(not_applied.hi),
        }
    }

    /// After a round: `bits[i]` is source `i`'s latest leap indicator when it
    /// is valid and not a falseticker (`None` otherwise); `k`, `f` as in the
    /// selection; `utc_now` the current UTC estimate.
    pub fn observe(&mut self, bits: &[Option<Leap>], k: usize, f: usize, utc_now: RefTime) {
        let quorum = k.saturating_sub(f).max(f + 1);
        let count = |l: Leap| bits.iter().filter(|b| **b == Some(l)).count();
        let announced = if count(Leap::Insert) >= quorum {
            Some(Nanos(NS_PER_S))
        } else if count(Leap::Delete) >= quorum {
            Some(Nanos(-NS_PER_S))
        } else {
            None
        };
        match (&self.pending, announced) {
            (None, Some(delta)) => {
                let at_utc = RefTime((utc_now.0.div_euclid(DAY) + 1) * DAY);
                self.pending = Some(Pending {
                    at_utc,
                    delta,
                    applied: vec![false; self.sources],
                });
            }
            // Withdrawn before the leap's last second: cancel.
            (Some(p), None) if utc_now < p.at_utc - Nanos(2 * NS_PER_S) => self.pending = None,
            _ => {}
        }
        // Complete once every valid, non-falseticker source has applied it.
        if let Some(p) = &self.pending {
            let valid: Vec<usize> = (0..bits.len()).filter(|i| bits[*i].is_some()).collect();
            if !valid.is_empty()
                && valid
                    .iter()
                    .all(|i| p.applied.get(*i).copied().unwrap_or(false))
            {
                self.completed = Some((p.at_utc + self.offset, p.delta, self.offset));
                self.offset = self.offset + p.delta;
                self.pending = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::iv;

    #[test]
    fn quorum_and_falseticker_bits() {
        let mut l = LeapState::new(5);
        let now = RefTime(10 * DAY + DAY / 2);
        // one announcing of five: ignored
        l.observe(
            &[
                Some(Leap::Insert),
                Some(Leap::None),
                Some(Leap::None),
                Some(Leap::None),
                None,
            ],
            4,
            2,
            now,
        );
        assert!(!l.pending());
        let ins = Some(Leap::Insert);
        l.observe(&[ins, ins, Some(Leap::None), None, None], 3, 2, now);
        assert!(
            !l.pending(),
            "2 of 3 valid with f = 2 is below the quorum of f + 1 = 3"
        );
        l.observe(&[ins, ins, ins, Some(Leap::None), None], 4, 2, now);
        assert!(l.pending());
        assert_eq!(l.mapping().leap, Some((RefTime(11 * DAY), Nanos(NS_PER_S))));
    }

    #[test]
    fn utc_view_across_an_insertion() {
        let at = 11 * DAY;
        let m = UtcMapping {
            offset: Nanos(0),
            leap: Some((RefTime(at), Nanos(NS_PER_S))),
        };
        assert_eq!(m.to_utc(iv(at - 10, at - 5)), iv(at - 10, at - 5));
        assert_eq!(
            m.to_utc(iv(at + 10, at + 20)),
            iv(at + 10 - NS_PER_S, at + 20 - NS_PER_S)
        );
        // straddling: UTC could be anything from the repeat's start to just before the leap
        assert_eq!(m.to_utc(iv(at - 10, at + 20)), iv(at - NS_PER_S, at));
    }

    #[test]
    fn sources_resolve_then_complete() {
        let mut l = LeapState::new(3);
        let at = 11 * DAY;
        let ins = Some(Leap::Insert);
        l.observe(&[ins, ins, ins], 3, 1, RefTime(at - 3600 * NS_PER_S));
        // After the leap: source 0 applied (its UTC is 1 s behind internal).
        let truth = at + 5 * NS_PER_S;
        let model = iv(truth - 1000, truth + 1000);
        let got = l.to_internal(
            0,
            iv(truth - NS_PER_S - 100, truth - NS_PER_S + 100),
            Some(model),
        );
        assert!(got.contains(RefTime(truth)) && got.width() == Nanos(200));
        // Source 1 has not applied yet: resolved as not applied, still ambiguous later.
        let got = l.to_internal(1, iv(truth - 100, truth + 100), Some(model));
        assert!(got.contains(RefTime(truth)) && got.width() == Nanos(200));
        // Without a model: the hull.
        let got = l.to_internal(2, iv(truth - NS_PER_S - 100, truth - NS_PER_S + 100), None);
        assert!(got.contains(RefTime(truth)) && got.width() > Nanos(NS_PER_S));
        l.observe(&[Some(Leap::None); 3], 3, 1, RefTime(truth));
        assert!(l.pending(), "source 1 and 2 not yet resolved");
        l.to_internal(
            1,
            iv(truth - NS_PER_S - 100, truth - NS_PER_S + 100),
            Some(model),
        );
        l.to_internal(
            2,
            iv(truth - NS_PER_S - 100, truth - NS_PER_S + 100),
            Some(model),
        );
        l.observe(&[Some(Leap::None); 3], 3, 1, RefTime(truth));
        assert!(!l.pending());
        // Every source is now read as having applied it ...
        let later = truth + 10 * NS_PER_S;
        assert_eq!(
            l.to_internal(1, iv(later - NS_PER_S, later - NS_PER_S), None),
            iv(later, later)
        );
        // ... and the UTC view still maps across the completed leap.
        assert_eq!(
            l.mapping().to_utc(iv(later, later)),
            iv(later - NS_PER_S, later - NS_PER_S)
        );
        assert_eq!(l.mapping().to_utc(iv(at - 5, at - 5)), iv(at - 5, at - 5));
    }
}
