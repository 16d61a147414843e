//! The engine's leap state: which leap is pending, how each source's UTC
//! maps onto the leap-free timescale around it, and how the model's UTC
//! view reads across it (rules in [`super`]).

use super::table::LeapTable;
use super::Leap;
use crate::core::time::{end_of_month, Interval, Nanos, RefTime, NS_PER_S};

/// How late an honest server may apply a leap (chrony's slew mode takes
/// ~12 s; a server's own poll can delay it): a source still reading "not
/// applied" this long after the instant counts against the leap.
pub const LATE_ALLOWANCE: Nanos = Nanos(120 * NS_PER_S);
/// When no source could be resolved by then, the leap is decided this long
/// after its instant (the allowance plus a minute of polls).
pub const DECIDE_AFTER: Nanos = Nanos(180 * NS_PER_S);
/// No new leap is scheduled this soon after one was decided: stale bits of a
/// late server (or a liar's) would otherwise schedule one a month later.
const QUIET_AFTER: Nanos = Nanos(86_400 * NS_PER_S);

/// Where the UTC view stands with respect to the published leap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeapPhase {
    /// Announced and not yet resolved: from the instant on, UTC is the hull
    /// of "applied" and "not applied".
    Pending,
    /// Applied by every valid source: UTC after the instant is shifted.
    Done,
}

/// A leap as the UTC view needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeapMark {
    /// The leap instant on the internal (leap-free) timescale.
    pub at: RefTime,
    /// +1 s for an insertion, −1 s for a deletion.
    pub delta: Nanos,
    /// Pending or done.
    pub phase: LeapPhase,
}

/// What a model needs to publish its UTC view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct UtcMapping {
    /// Internal minus UTC before the leap (if any).
    pub offset: Nanos,
    /// The pending or last completed leap.
    pub leap: Option<LeapMark>,
}

fn hull(a: Interval, b: Interval) -> Interval {
    Interval {
        lo: a.lo.min(b.lo),
        hi: a.hi.max(b.hi),
    }
}

impl UtcMapping {
    /// The UTC view of an internal interval: exact away from a leap; across
    /// a completed leap, the hull of the UTC readings on either side; from a
    /// pending leap's instant on, the hull of "applied" and "not applied".
    pub fn to_utc(&self, iv: Interval) -> Interval {
        let base = Interval {
            lo: iv.lo - self.offset,
            hi: iv.hi - self.offset,
        };
        let Some(m) = self.leap else {
            return base;
        };
        if iv.hi < m.at {
            return base;
        }
        // Applied: the part of iv from the instant on reads `delta` lower.
        let after_lo = iv.lo.max(m.at) - self.offset - m.delta;
        let after = Interval {
            lo: after_lo,
            hi: base.hi - m.delta,
        };
        let done = if iv.lo >= m.at {
            after
        } else {
            // Straddles: UTC runs [lo, at) then [at - delta, hi - delta].
            let before = Interval {
                lo: base.lo,
                hi: m.at - self.offset,
            };
            hull(before, after)
        };
        match m.phase {
            LeapPhase::Done => done,
            LeapPhase::Pending => hull(base, done),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    /// The leap instant on the UTC timescale (end of a UTC month).
    at_utc: RefTime,
    /// +1 s for an insertion, -1 s for a deletion.
    delta: Nanos,
    /// Per source: `Some(true)` seen to have applied it, `Some(false)` seen
    /// [`LATE_ALLOWANCE`] past the instant without having applied it, `None`
    /// not resolved (the latest evidence counts: a late server flips).
    resolved: Vec<Option<bool>>,
    /// Per source: its newest bit before the instant announced this leap.
    announced: Vec<bool>,
    /// f + 1 sources were seen to apply it: the UTC view is shifted, while
    /// sources not yet seen to apply it stay ambiguous until the allowance.
    applied: bool,
}

/// The leap state of the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeapState {
    table: LeapTable,
    /// Internal minus UTC for sources that have not applied the pending leap.
    offset: Nanos,
    /// Whether `offset` was fixed from a model's UTC (see [`Self::fix_origin`]).
    origin_fixed: bool,
    pending: Option<Pending>,
    /// The last completed leap, kept in the UTC view so that an interval
    /// still straddling it maps right: instant (internal), size, offset
    /// before it.
    completed: Option<(RefTime, Nanos, Nanos)>,
    /// Leaps cancelled (announced by a quorum, then not applied).
    cancelled: u64,
    /// The UTC instant of the last leap decided (completed or cancelled).
    last_decided: Option<RefTime>,
    sources: usize,
}

/// What changed in one [`LeapState::observe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeapEvent {
    /// A leap is pending at this UTC instant (announced by f + 1 sources,
    /// or listed in the host's table).
    Scheduled(RefTime),
    /// It happened: from this UTC instant (Unix ns) TAI − UTC moved by
    /// `delta` (the shell keeps it, so restarts stay on the same scale).
    Completed {
        /// The leap instant (UTC, Unix ns).
        at_utc: RefTime,
        /// +1 s insertion, −1 s deletion.
        delta: Nanos,
    },
    /// It did not happen (f + 1 sources past it without having applied it).
    Cancelled,
}

/// Whether the bits allow a real leap `l`: some valid source announces it
/// and at most f do not (honest sources agree on the bit).
fn could_be_real(bits: &[Option<Leap>], l: Leap, f: usize) -> bool {
    let k = bits.iter().flatten().count();
    let a = bits.iter().filter(|b| **b == Some(l)).count();
    a > 0 && k - a <= f
}

/// The leap the bits allow, if any. Both directions are possible only with
/// k <= 2f valid sources; then the one more sources announce wins, and an
/// insertion on a tie (no leap second has ever been deleted).
fn direction(bits: &[Option<Leap>], f: usize) -> Option<Nanos> {
    let count = |l: Leap| bits.iter().filter(|b| **b == Some(l)).count();
    match (
        could_be_real(bits, Leap::Insert, f),
        could_be_real(bits, Leap::Delete, f),
    ) {
        (true, true) if count(Leap::Delete) > count(Leap::Insert) => Some(Nanos(-NS_PER_S)),
        (true, _) => Some(Nanos(NS_PER_S)),
        (false, true) => Some(Nanos(-NS_PER_S)),
        (false, false) => None,
    }
}

impl LeapState {
    /// No leap known, for `sources` sources, with the host's leap table.
    pub fn new(sources: usize, table: LeapTable) -> LeapState {
        LeapState {
            table,
            offset: Nanos(0),
            origin_fixed: false,
            pending: None,
            completed: None,
            cancelled: 0,
            last_decided: None,
            sources,
        }
    }

    /// The leap table in use.
    pub fn table(&self) -> &LeapTable {
        &self.table
    }

    /// Internal minus UTC now (before any pending leap).
    pub fn offset(&self) -> Nanos {
        self.offset
    }

    /// Leaps cancelled so far.
    pub fn cancelled(&self) -> u64 {
        self.cancelled
    }

    /// Fix the timescale's origin from the UTC of the first model: the
    /// offset the table gives there. Returns how far every internal instant
    /// already computed must move (zero when it was right, or once fixed).
    #[must_use]
    pub fn fix_origin(&mut self, model_utc: RefTime) -> Nanos {
        if self.origin_fixed {
            return Nanos(0);
        }
        self.origin_fixed = true;
        let want = self.table.leapfree_offset_at(model_utc);
        let shift = want - self.offset;
        self.offset = want;
        shift
    }

    /// The mapping to publish.
    pub fn mapping(&self) -> UtcMapping {
        match (&self.pending, self.completed) {
            (Some(p), _) => UtcMapping {
                offset: self.offset,
                leap: Some(LeapMark {
                    at: p.at_utc + self.offset,
                    delta: p.delta,
                    phase: if p.applied {
                        LeapPhase::Done
                    } else {
                        LeapPhase::Pending
                    },
                }),
            },
            (None, Some((at, delta, before))) => UtcMapping {
                offset: before,
                leap: Some(LeapMark {
                    at,
                    delta,
                    phase: LeapPhase::Done,
                }),
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

    /// The pending leap's UTC instant, if any.
    pub fn pending_at(&self) -> Option<RefTime> {
        self.pending.as_ref().map(|p| p.at_utc)
    }

    /// Map source `src`'s UTC bound to the internal timescale. `model` is the
    /// published model's (internal) interval at the same instant, if any.
    pub fn to_internal(&mut self, src: usize, utc: Interval, model: Option<Interval>) -> Interval {
        let not_applied = Interval {
            lo: utc.lo + self.offset,
            hi: utc.hi + self.offset,
        };
        let offset = self.offset;
        let Some(p) = &mut self.pending else {
            return not_applied;
        };
        let applied = Interval {
            lo: not_applied.lo + p.delta,
            hi: not_applied.hi + p.delta,
        };
        // Surely before the leap: the source's UTC has not reached the last
        // second before the instant (after an inserted leap it reads at
        // least that; after a deleted one, later).
        if utc.hi < p.at_utc - Nanos(NS_PER_S) {
            return not_applied;
        }
        let at_internal = p.at_utc + offset;
        let slot = p.resolved.get_mut(src);
        if let Some(m) = model {
            let (a, n) = (!applied.disjoint(&m), !not_applied.disjoint(&m));
            if a && !n {
                if let Some(x) = slot {
                    *x = Some(true);
                }
                return applied;
            }
            if n && !a {
                // Past the instant and the allowance on the model's own
                // timescale, still reading as before it: not applied.
                if m.lo > at_internal + LATE_ALLOWANCE {
                    if let Some(x) = slot {
                        *x = Some(false);
                    }
                }
                return not_applied;
            }
        }
        if p.resolved.get(src).copied().flatten() == Some(true) {
            return applied;
        }
        hull(applied, not_applied)
    }

    /// After a round: `bits[i]` is source `i`'s latest leap indicator when it
    /// is valid and not a falseticker (`None` otherwise); `f` the tolerated
    /// faults; `utc_now` the current UTC estimate (the model's centre).
    pub fn observe(
        &mut self,
        bits: &[Option<Leap>],
        f: usize,
        utc_now: RefTime,
    ) -> Option<LeapEvent> {
        let Some(p) = &mut self.pending else {
            return self.schedule(bits, f, utc_now);
        };
        let want = if p.delta > Nanos(0) {
            Leap::Insert
        } else {
            Leap::Delete
        };
        // Before the instant the bits may still change their mind about the
        // direction (early on, with few sources valid, a lone liar's bit
        // could schedule the wrong one and block the real one).
        if utc_now < p.at_utc
            && self.table.leap_at(p.at_utc).is_none()
            && !could_be_real(bits, want, f)
        {
            if let Some(other) = direction(bits, f) {
                p.delta = other;
                p.resolved.iter_mut().for_each(|r| *r = None);
                p.announced.iter_mut().for_each(|a| *a = false);
                return self.observe(bits, f, utc_now);
            }
        }
        if utc_now < p.at_utc {
            for (a, b) in p.announced.iter_mut().zip(bits) {
                if let Some(b) = b {
                    *a = *b == want;
                }
            }
        }
        let count = |v: &[Option<bool>], want: bool| v.iter().filter(|r| **r == Some(want)).count();
        // At least one honest source applied it: it happened (the UTC view
        // shifts; late sources stay ambiguous until the allowance).
        if !p.applied && count(&p.resolved, true) > f {
            p.applied = true;
        }
        // At least one honest source is past it without having applied it:
        // it never happens.
        if !p.applied && count(&p.resolved, false) > f {
            let at = p.at_utc;
            self.pending = None;
            self.cancelled += 1;
            self.last_decided = Some(at);
            return Some(LeapEvent::Cancelled);
        }
        if utc_now < p.at_utc + DECIDE_AFTER {
            return None;
        }
        // Decide. Without resolution by a model (the timeline was broken at
        // the leap), the table if it vouches for the instant, else the
        // announcement: f + 1 announcing up to the instant (at least one
        // honest) means it happened.
        let happened = p.applied
            || if self.table.covers(p.at_utc) {
                self.table.leap_at(p.at_utc) == Some(p.delta)
            } else {
                p.announced.iter().filter(|a| **a).count() > f
            };
        let (at, delta) = (p.at_utc, p.delta);
        self.pending = None;
        self.last_decided = Some(at);
        if happened {
            self.completed = Some((at + self.offset, delta, self.offset));
            self.offset = self.offset + delta;
            Some(LeapEvent::Completed { at_utc: at, delta })
        } else {
            self.cancelled += 1;
            Some(LeapEvent::Cancelled)
        }
    }

    /// Schedule a leap for the end of this month if the sources' bits allow
    /// a real one (some announce it, at most f of the valid ones do not), or
    /// the host's table lists it.
    fn schedule(&mut self, bits: &[Option<Leap>], f: usize, utc_now: RefTime) -> Option<LeapEvent> {
        if self.last_decided.is_some_and(|t| utc_now < t + QUIET_AFTER) {
            return None;
        }
        let at_utc = end_of_month(utc_now);
        let delta = self.table.leap_at(at_utc).or_else(|| direction(bits, f))?;
        let want = if delta > Nanos(0) {
            Leap::Insert
        } else {
            Leap::Delete
        };
        self.pending = Some(Pending {
            at_utc,
            delta,
            resolved: vec![None; self.sources],
            announced: (0..self.sources)
                .map(|i| bits.get(i).copied().flatten() == Some(want))
                .collect(),
            applied: false,
        });
        Some(LeapEvent::Scheduled(at_utc))
    }

    /// Move every internal instant this state holds by `by` (the origin was
    /// fixed after instants were computed on a provisional one).
    pub fn shift(&mut self, by: Nanos) {
        if let Some((at, _, before)) = &mut self.completed {
            *at = *at + by;
            *before = *before + by;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::{days_from_civil, iv};

    const DAY: i128 = 86_400 * NS_PER_S;

    /// 2027-01-01T00:00Z, a month end.
    fn month_end() -> i128 {
        days_from_civil(2027, 1, 1) as i128 * DAY
    }

    const LIST: &str = "\
#\tIn the following text, the symbol '#' introduces a comment.
#$\t 3913697179
#@\t3991593600
3550089600\t35\t# 1 Jul 2012
3644697600\t36\t# 1 Jul 2015
3692217600\t37\t# 1 Jan 2017
";

    #[test]
    fn origin_is_fixed_once_from_the_model() {
        let t = LeapTable::parse(LIST).unwrap();
        let mut l = LeapState::new(3, t);
        // mid-2016 per the model (the sources' UTC), whatever REALTIME says:
        // one leap before the origin ...
        assert_eq!(
            l.fix_origin(RefTime(1_470_000_000 * NS_PER_S)),
            Nanos(-NS_PER_S)
        );
        // ... once only
        assert_eq!(l.fix_origin(RefTime(1_795_000_000 * NS_PER_S)), Nanos(0));
    }

    #[test]
    fn a_leap_is_pending_unless_more_than_f_valid_sources_deny_it() {
        let mut l = LeapState::new(5, LeapTable::default());
        let now = RefTime(month_end() - 20 * DAY);
        let ins = Some(Leap::Insert);
        let none = Some(Leap::None);
        // two announcing, three valid ones not (f = 2): the announcers may
        // be the liars, and a real leap would have at most f silent
        assert_eq!(l.observe(&[ins, ins, none, none, none], 2, now), None);
        assert!(!l.pending());
        // during an outage a lone honest announcer still schedules (the
        // other valid one may be a liar staying silent)
        let mut o = LeapState::new(3, LeapTable::default());
        assert!(o.observe(&[ins, None, none], 1, now).is_some());
        // a lone liar's deletion scheduled while few sources answered gives
        // way to the insertion the others announce before the instant
        let del = Some(Leap::Delete);
        let mut o = LeapState::new(5, LeapTable::default());
        assert!(o.observe(&[del, None, None, None, None], 2, now).is_some());
        assert_eq!(o.mapping().leap.map(|m| m.delta), Some(Nanos(-NS_PER_S)));
        o.observe(&[del, ins, ins, ins, ins], 2, now);
        assert_eq!(o.mapping().leap.map(|m| m.delta), Some(Nanos(NS_PER_S)));
        // three of four valid announcing: at most f silent
        assert_eq!(
            l.observe(&[ins, ins, ins, none, None], 2, now),
            Some(LeapEvent::Scheduled(RefTime(month_end())))
        );
        // announced 20 days early: at the end of the month, not of the day
        assert_eq!(l.pending_at(), Some(RefTime(month_end())));
        // a bit that vanishes (liars, or honest servers down) cancels nothing
        assert_eq!(l.observe(&[none; 5], 2, RefTime(month_end() - DAY)), None);
        assert!(l.pending());
    }

    #[test]
    fn a_leap_the_table_lists_is_scheduled_without_bits() {
        // 2027-01-01 listed (NTP 3976214400 is 2026-01-01; 4007750400 is 2027-01-01)
        let t = LeapTable::parse("3692217600 37\n4007750400 38\n").unwrap();
        assert_eq!(t.leap_at(RefTime(month_end())), Some(Nanos(NS_PER_S)));
        let mut l = LeapState::new(3, t);
        let none = Some(Leap::None);
        assert_eq!(
            l.observe(&[none; 3], 1, RefTime(month_end() - DAY)),
            Some(LeapEvent::Scheduled(RefTime(month_end())))
        );
    }

    #[test]
    fn utc_view_across_an_insertion() {
        let at = month_end();
        let mark = |phase| UtcMapping {
            offset: Nanos(0),
            leap: Some(LeapMark {
                at: RefTime(at),
                delta: Nanos(NS_PER_S),
                phase,
            }),
        };
        let done = mark(LeapPhase::Done);
        assert_eq!(done.to_utc(iv(at - 10, at - 5)), iv(at - 10, at - 5));
        assert_eq!(
            done.to_utc(iv(at + 10, at + 20)),
            iv(at + 10 - NS_PER_S, at + 20 - NS_PER_S)
        );
        // straddling: anything from the repeat's start to just before the leap
        assert_eq!(done.to_utc(iv(at - 10, at + 20)), iv(at - NS_PER_S, at));
        // pending: before the instant exact; after it, both readings
        let p = mark(LeapPhase::Pending);
        assert_eq!(p.to_utc(iv(at - 10, at - 5)), iv(at - 10, at - 5));
        assert_eq!(
            p.to_utc(iv(at + 10, at + 20)),
            iv(at + 10 - NS_PER_S, at + 20)
        );
        assert_eq!(p.to_utc(iv(at - 10, at + 20)), iv(at - NS_PER_S, at + 20));
        // a deletion, pending: the applied reading is a second later
        let del = UtcMapping {
            offset: Nanos(0),
            leap: Some(LeapMark {
                at: RefTime(at),
                delta: Nanos(-NS_PER_S),
                phase: LeapPhase::Pending,
            }),
        };
        assert_eq!(
            del.to_utc(iv(at + 10, at + 20)),
            iv(at + 10, at + 20 + NS_PER_S)
        );
    }

    #[test]
    fn sources_resolve_then_complete() {
        let mut l = LeapState::new(3, LeapTable::default());
        let at = month_end();
        let ins = Some(Leap::Insert);
        let none = Some(Leap::None);
        l.observe(&[ins, ins, ins], 1, RefTime(at - 3600 * NS_PER_S));
        // After the leap: source 0 applied (its UTC is 1 s behind internal).
        let truth = at + 5 * NS_PER_S;
        let model = iv(truth - 1000, truth + 1000);
        let applied = iv(truth - NS_PER_S - 100, truth - NS_PER_S + 100);
        let got = l.to_internal(0, applied, Some(model));
        assert!(got.contains(RefTime(truth)) && got.width() == Nanos(200));
        // Source 1 has not applied yet: resolved as not applied.
        let got = l.to_internal(1, iv(truth - 100, truth + 100), Some(model));
        assert!(got.contains(RefTime(truth)) && got.width() == Nanos(200));
        // Without a model: the hull.
        let got = l.to_internal(2, applied, None);
        assert!(got.contains(RefTime(truth)) && got.width() > Nanos(NS_PER_S));
        // one applied, f = 1: not yet proof; the UTC view is still the hull
        assert_eq!(l.observe(&[none, ins, none], 1, RefTime(truth)), None);
        assert!(l.mapping().to_utc(model).width() > Nanos(NS_PER_S));
        l.to_internal(2, applied, Some(model));
        // two of three (f + 1): at least one honest source applied it; the
        // UTC view shifts ...
        assert_eq!(l.observe(&[none, ins, none], 1, RefTime(truth)), None);
        assert_eq!(
            l.mapping().to_utc(model),
            iv(truth - NS_PER_S - 1000, truth - NS_PER_S + 1000)
        );
        // ... while the late source 1 is still read as it is (not applied),
        // never a second off.
        let got = l.to_internal(1, iv(truth - 100, truth + 100), Some(model));
        assert!(got.contains(RefTime(truth)));
        // Past the allowance the leap is final: every source is read as
        // having applied it.
        let later = at + DECIDE_AFTER.0 + 10 * NS_PER_S;
        assert_eq!(
            l.observe(&[none; 3], 1, RefTime(later)),
            Some(LeapEvent::Completed {
                at_utc: RefTime(at),
                delta: Nanos(NS_PER_S)
            })
        );
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
        // Stale bits right after it schedule nothing (a month later).
        assert_eq!(
            l.observe(&[ins, ins, ins], 1, RefTime(later + NS_PER_S)),
            None
        );
    }

    #[test]
    fn a_leap_that_never_happens_is_cancelled_after_its_instant() {
        let mut l = LeapState::new(3, LeapTable::default());
        let at = month_end();
        let ins = Some(Leap::Insert);
        let none = Some(Leap::None);
        l.observe(&[ins, ins, ins], 1, RefTime(at - 3600 * NS_PER_S));
        // Past the instant, every source still reads as before it.
        let read_all = |l: &mut LeapState, truth: i128| {
            let model = iv(truth - 1000, truth + 1000);
            for s in 0..3 {
                let got = l.to_internal(s, iv(truth - 100, truth + 100), Some(model));
                assert!(got.contains(RefTime(truth)));
            }
            model
        };
        let truth = at + 5 * NS_PER_S;
        let model = read_all(&mut l, truth);
        // The UTC view widens while it is unresolved (a server may be late) ...
        assert!(l.mapping().to_utc(model).width() > Nanos(NS_PER_S));
        assert_eq!(l.observe(&[none; 3], 1, RefTime(truth)), None);
        // ... and once f + 1 are seen past the allowance without it, it is
        // cancelled.
        let truth = at + LATE_ALLOWANCE.0 + 5 * NS_PER_S;
        let model = read_all(&mut l, truth);
        assert_eq!(
            l.observe(&[none; 3], 1, RefTime(truth)),
            Some(LeapEvent::Cancelled)
        );
        assert_eq!(l.mapping().to_utc(model), model);
        assert_eq!(l.cancelled(), 1);
    }

    /// With no model to resolve against (the timeline was interrupted at
    /// the leap), the decision falls to the table when it vouches for the
    /// instant, else to the announcement.
    #[test]
    fn unresolved_leaps_are_decided_by_the_table_or_the_announcement() {
        let ins = Some(Leap::Insert);
        let none = Some(Leap::None);
        let at = month_end();
        let late = RefTime(at + DECIDE_AFTER.0 + NS_PER_S);
        // announced by all three up to the instant: it happened
        let mut l = LeapState::new(3, LeapTable::default());
        l.observe(&[ins; 3], 1, RefTime(at - 3600 * NS_PER_S));
        assert!(matches!(
            l.observe(&[none; 3], 1, late),
            Some(LeapEvent::Completed { .. })
        ));
        // announced by two, one of whom withdrew before the instant: only
        // one still announcing (it may be the liar): not proof
        let mut l = LeapState::new(3, LeapTable::default());
        l.observe(&[ins, ins, none], 1, RefTime(at - 3600 * NS_PER_S));
        l.observe(&[ins, none, none], 1, RefTime(at - 60 * NS_PER_S));
        assert_eq!(l.observe(&[none; 3], 1, late), Some(LeapEvent::Cancelled));
        // a table that vouches for the instant and lists no leap there wins
        // over the bits
        let t = LeapTable::parse("#@\t4102444800\n3692217600 37\n").unwrap(); // expires 2030
        let mut l = LeapState::new(3, t);
        l.observe(&[ins; 3], 1, RefTime(at - 3600 * NS_PER_S));
        assert_eq!(l.observe(&[none; 3], 1, late), Some(LeapEvent::Cancelled));
    }
}
