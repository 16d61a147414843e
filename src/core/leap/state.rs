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
#[path = "state_tests.rs"]
mod tests;
