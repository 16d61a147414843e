//! The world's checks: at random instants, the interval an app would read
//! from the segment — through [`crate::core::read::interval`], the one
//! function every reader uses — against true time, on both timescales,
//! with the figures of the run.

use super::world::World;
use crate::core::budget::Part;
use crate::core::model::Status;
use crate::core::read::{self, Reading};
use crate::core::select::select;
use crate::core::time::{Interval, Steady, NS_PER_S};

/// How far the ε budget's sum may be from the reader's half-width: the
/// reader's fixed-point form adds 2 ns to the spread at each end and up to
/// 2 ns of rate rounding above, rounds each product up, and the half-width
/// is rounded up to whole ns (4.5 ns seen).
const BUDGET_SLACK_NS: f64 = 6.0;

impl World<'_> {
    /// Whether `t` holds true time (`truth`, the world's leap-free-less
    /// UTC-based instant) on both timescales.
    fn contains_truth(&self, t: &read::TimeInterval, truth: crate::core::time::RefTime) -> bool {
        let truth_utc = match (self.leap_true, self.sc.leap) {
            (Some(at), Some(l)) if l.happens && truth.0 >= at => truth.0 - NS_PER_S,
            _ => truth.0,
        };
        let leapfree_truth = truth.0 + self.leapfree_offset;
        let holds = |lo: i64, hi: i64, t: i128| lo as i128 <= t && t <= hi as i128;
        holds(t.utc.earliest.0, t.utc.latest.0, truth_utc)
            && holds(t.leapfree.earliest.0, t.leapfree.latest.0, leapfree_truth)
    }

    pub(super) fn check(&mut self, x: i64) {
        let now = Steady(x);
        let truth = self.truth(x);
        // What an app reads: the segment, through the one read function,
        // with the default (strict) reader's suspend check.
        let (view, env) = match crate::shm::reader::view(&self.segment) {
            Ok(v) => v,
            Err(_) => {
                self.stats.read_errors += 1;
                self.last_check = None;
                return;
            }
        };
        let exact = || crate::shm::reader::model(&self.segment);
        let read_at =
            |extra_ns| read::interval(&view, Reading { at: now, extra_ns }, exact, read::unclamped);
        let mismatch = (self.boot_offset - env.offs_boot).abs();
        let read = if mismatch > crate::clock::SUSPEND_TOLERANCE_NS {
            // The strict reader refuses (the host slept since the write);
            // a fast reader would have taken this interval.
            self.stats.refused_suspended += 1;
            if let Ok(t) = read_at(0) {
                if !self.contains_truth(&t, truth) {
                    self.stats.fast_only_violations += 1;
                }
            }
            Err(Status::Disrupted)
        } else {
            match read_at(mismatch) {
                Ok(t) => Ok(t),
                Err(read::ReadError::NoModel(s)) => Err(s),
                Err(_) => {
                    self.stats.read_errors += 1;
                    Err(Status::Unknown)
                }
            }
        };
        let anchor = view.model.map(|h| h.anchor);
        let status = match &read {
            Ok(t) => t.status,
            Err(s) => *s,
        };
        if self.last_status != Some(status) {
            self.stats.transitions.push((x, status));
            self.last_status = Some(status);
        }
        if let Some(fault) = self.sc.fault_at_ns {
            if x >= fault
                && status != Status::Synchronized
                && self.stats.detection_delay_ns.is_none()
            {
                self.stats.detection_delay_ns = Some(x - fault);
            }
        }
        let (Ok(t), Some(anchor)) = (read, anchor) else {
            self.last_check = None;
            return;
        };
        self.stats.intervals += 1;
        self.stats.by_status[status as usize] += 1;
        let ok = self.contains_truth(&t, truth);
        if !ok {
            self.stats.violations += 1;
            if matches!(status, Status::Synchronized | Status::FreeRunning) {
                self.stats.violations_usable += 1;
            }
            if status == Status::Synchronized {
                self.stats.violations_synchronized += 1;
                if self.stats.detection_delay_ns.is_some() {
                    self.stats.violations_synchronized_after_detection += 1;
                }
            }
        }
        let eps = t.epsilon_ns() as i128;
        self.check_budget(now, anchor, mismatch, eps);
        if let Some((a, at, e)) = self.last_check {
            if a == anchor && at <= now && eps < e {
                self.stats.shrunk_without_evidence += 1;
            }
        }
        self.last_check = Some((anchor, now, eps));
        if status == Status::Synchronized {
            self.stats.eps_sync.push(eps as i64);
            if let Some(fl) = self.floor_at(x) {
                self.stats.floor.push(fl);
            }
        }
    }

    /// The ε budget of the engine's model against the half-width the
    /// reader got (`eps`, from the segment's fixed-point arithmetic): the
    /// parts must add up to it within rounding, none may be negative
    /// (agreement aside, which is signed), and each end must be its centre
    /// minus (plus) its parts.
    fn check_budget(&mut self, now: Steady, anchor: Steady, mismatch: i64, eps: i128) {
        let (Some(m), Some(sides)) = (self.engine.model(), self.engine.budget()) else {
            return;
        };
        if m.anchor != anchor {
            return;
        }
        let b = m
            .budget_at(sides, now)
            .widened(Part::Read, crate::core::time::Nanos(mismatch as i128));
        let halves = b.halves();
        let sum: f64 = halves.iter().map(|(_, v)| v).sum();
        let negative = halves.iter().any(|&(k, v)| k != "agreement" && v < 0.0);
        if negative || !b.consistent || (sum - eps as f64).abs() > BUDGET_SLACK_NS {
            self.stats.budget_mismatches += 1;
        }
        self.stats.budget_checks += 1;
    }

    /// Half-width of the fault-tolerant hull of each source's freshest sample
    /// alone, carried to `x` with the exact true elapsed time (no ageing).
    fn floor_at(&self, x: i64) -> Option<i64> {
        let t = self.truth(x);
        let ivs: Vec<Interval> = self
            .engine
            .latest_samples()
            .into_iter()
            .flatten()
            .map(|s| {
                let moved = t - self.truth(s.at.0);
                Interval {
                    lo: s.bound.lo + moved,
                    hi: s.bound.hi + moved,
                }
            })
            .collect();
        select(&ivs, self.sc.servers.len())
            .ok()
            .map(|s| s.bound.half_width_ceil().0 as i64)
    }
}
