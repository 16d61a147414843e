//! Turns per-source intervals into the published model: fault-tolerant
//! selection, self-audit, hard rate evidence, anchoring and status.
//!
//! Each round at steady instant `now`:
//! 1. select: the hull of points covered by `k - f` aged source intervals;
//! 2. audit: the previous model read at `now` (and a few earlier anchors
//!    against the fresh bound carried back) must intersect the fresh bound;
//!    a miss is a bound violation: count it, drop the model and its rate
//!    evidence, age at the hardware bound, status `disrupted`;
//! 3. anchor: fresh bound intersected with the previous model at `now`;
//! 4. rate: from pairs of anchors `(i, j)`, the mean rate over `[r_i, r_j]`
//!    lies in `[(a_j - b_i)/(r_j - r_i), (b_j - a_i)/(r_j - r_i)] - 1`. The pair
//!    chosen minimises `max(half-width, phi_min) + D * (now - r_i)`, which is
//!    the growth rate it gives (independent of horizon, so it is ranked once);
//!    an interval outside `+-phi_hw` contradicts the assumptions: disrupted;
//! 5. status and timetable: synchronized (k >= 2f+1) until `free_run_after`
//!    without a majority, then free_running, unknown after void-after
//!    (`holdover` or the half-width reaching `max_half_width`, whichever first).
//!
//! Pure: takes `now`, reads no clock.

use super::budget::{Part, Side, Sides};
use super::model::{Ageing, Model, Status};
use super::select::{select, NoBound, Quality, Selection};
use super::time::{mul_div_ceil, mul_div_floor, Interval, Nanos, Rate, Steady, RATE_ONE};
use std::collections::VecDeque;

/// The oscillator assumptions, stated in config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assumptions {
    /// phi_hw: the oscillator's rate never leaves +-phi_hw (default 200 ppm).
    pub phi_hw: Rate,
    /// phi_min: measured rate half-widths are never taken below this (1 ppm).
    pub phi_min: Rate,
    /// D: the rate changes by at most this much per second (20 ppb/s).
    pub wander: Rate,
    /// Anchors older than this are not used as rate evidence.
    pub rate_window: Nanos,
    /// Shortest span of a pair used as rate evidence.
    pub min_rate_span: Nanos,
}

impl Default for Assumptions {
    fn default() -> Self {
        Assumptions {
            phi_hw: Rate::from_ppm(200),
            phi_min: Rate::from_ppm(1),
            wander: Rate::from_ppb(20),
            rate_window: Nanos::from_secs(1024),
            min_rate_span: Nanos::from_secs(2),
        }
    }
}

/// The status timetable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timetable {
    /// synchronized -> free_running after this long without majority agreement.
    pub free_run_after: Nanos,
    /// free_running -> unknown this long after the last anchor.
    pub holdover: Nanos,
    /// ... or as soon as the half-width would exceed this.
    pub max_half_width: Nanos,
    /// A fault keeps the status `disrupted` for at least this long.
    pub disrupted_hold: Nanos,
}

impl Timetable {
    /// The default timetable for a given poll interval.
    pub fn for_poll(poll: Nanos) -> Timetable {
        Timetable {
            free_run_after: Nanos(poll.0 * 4),
            holdover: Nanos::from_secs(3600).max(Nanos(poll.0 * 64)),
            max_half_width: Nanos::from_secs(1),
            disrupted_hold: Nanos(poll.0 * 2),
        }
    }
}

/// Why a round counted a bound violation or went disrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The fresh bound does not meet the previous model at `now`.
    FreshMissesModel,
    /// The fresh bound, carried back, misses an earlier published anchor.
    FreshMissesPast,
    /// No point is covered by k - f intervals (more than f wrong sources).
    NoAgreement,
    /// The measured rate lies outside +-phi_hw.
    RateOutOfBounds,
}

impl Fault {
    /// Whether this fault counts as a bound violation (the model was wrong).
    pub fn is_violation(self) -> bool {
        !matches!(self, Fault::RateOutOfBounds)
    }
}

/// What one round decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    /// The selection result.
    pub selection: Result<Selection, NoBound>,
    /// A newly published model, if any.
    pub published: Option<Model>,
    /// A fault detected this round.
    pub fault: Option<Fault>,
    /// Per input slot: whether its interval is disjoint from the new anchor.
    pub falseticker: Vec<bool>,
}

#[derive(Debug, Clone, Copy)]
struct RateChoice {
    from: Steady,
    to: Steady,
    rate: Rate,
    phi: Rate,
    /// `phi - D * from` in comparable units: lower is better.
    key: i128,
}

/// A fresh bound kept for the persistent rate check, with the direction in
/// which some earlier kept bound proves the mean rate since then beyond
/// +-phi_hw (+1 above, -1 below, 0 neither).
#[derive(Debug, Clone, Copy)]
struct Fresh {
    at: Steady,
    bound: Interval,
    beyond: i8,
}

/// The estimator's state.
#[derive(Debug, Clone)]
pub struct Estimator {
    configured: usize,
    assumptions: Assumptions,
    timetable: Timetable,
    centre_hint: Rate,
    model: Option<Model>,
    anchors: VecDeque<(Steady, Interval)>,
    rate: Option<RateChoice>,
    disrupted_until: Option<Steady>,
    last_majority: Option<Steady>,
    violations: u64,
    /// Recent fresh bounds (one per `min_rate_span`), kept across faults:
    /// the rate check that must survive the faults it explains.
    fresh: VecDeque<Fresh>,
    /// The UTC view to give every model (kept across dropped models).
    utc: super::leap::UtcMapping,
    /// What the model's anchor bound is made of.
    budget: Sides,
}

const MAX_ANCHORS: usize = 512;
const AUDIT_BACK: usize = 4;
/// Fresh bounds kept for the persistent rate check.
const FRESH_KEEP: usize = 64;

impl Estimator {
    /// A new estimator for `configured` sources (N).
    pub fn new(configured: usize, assumptions: Assumptions, timetable: Timetable) -> Estimator {
        Estimator {
            configured,
            assumptions,
            timetable,
            centre_hint: Rate(0),
            model: None,
            anchors: VecDeque::new(),
            rate: None,
            disrupted_until: None,
            last_majority: None,
            violations: 0,
            fresh: VecDeque::new(),
            utc: Default::default(),
            budget: Sides::default(),
        }
    }

    /// Centre the hardware rate bound on `rate` (from a drift file). It never
    /// narrows anything: with no evidence the spread is `(|R| + phi_hw) * t`.
    pub fn set_rate_hint(&mut self, rate: Rate) {
        if rate.abs() <= self.assumptions.phi_hw {
            self.centre_hint = rate;
        }
    }

    /// A published model reads `synchronized` until `t` at most.
    pub fn cap_sync_until(&mut self, t: Steady) {
        if let Some(m) = &mut self.model {
            m.sync_until = m.sync_until.min(t);
        }
    }

    /// The current model, if any.
    pub fn model(&self) -> Option<&Model> {
        self.model.as_ref()
    }

    /// Set the UTC mapping of the current model (leap seconds).
    pub fn set_utc(&mut self, utc: super::leap::UtcMapping) {
        self.utc = utc;
        if let Some(m) = &mut self.model {
            m.utc = utc;
        }
    }

    /// Move every internal instant held by `by` (the leap-free origin was
    /// fixed after they were computed on a provisional one).
    pub fn shift(&mut self, by: Nanos) {
        let mv = |iv: &mut Interval| {
            *iv = Interval {
                lo: iv.lo + by,
                hi: iv.hi + by,
            }
        };
        if let Some(m) = &mut self.model {
            mv(&mut m.bound);
        }
        self.budget.shift(by);
        for a in &mut self.anchors {
            mv(&mut a.1);
        }
        for f in &mut self.fresh {
            mv(&mut f.bound);
        }
    }

    /// Bound violations counted so far.
    pub fn violations(&self) -> u64 {
        self.violations
    }

    /// The assumptions in force.
    pub fn assumptions(&self) -> &Assumptions {
        &self.assumptions
    }

    /// How to age source samples right now.
    pub fn ageing(&self) -> Ageing {
        match &self.model {
            Some(m) => m.ageing,
            None => self.hardware_ageing(),
        }
    }

    fn hardware_ageing(&self) -> Ageing {
        Ageing::hardware(
            self.centre_hint,
            self.assumptions.wander,
            self.assumptions.phi_hw,
        )
    }

    /// The status at `now` (covers the no-model case).
    pub fn status_at(&self, now: Steady) -> Status {
        let disrupted = self.disrupted_until.is_some_and(|t| now <= t);
        match &self.model {
            Some(m) => {
                let s = m.status_at(now);
                if disrupted && s != Status::Unknown {
                    Status::Disrupted
                } else {
                    s
                }
            }
            None if disrupted => Status::Disrupted,
            None => Status::Unknown,
        }
    }

    /// A timeline interruption (suspend, clocksource change): everything
    /// learnt on the old timeline is dropped.
    pub fn interrupt(&mut self, now: Steady) {
        self.model = None;
        self.anchors.clear();
        self.fresh.clear();
        self.rate = None;
        self.disrupted_until = Some(now.plus(self.timetable.disrupted_hold));
        self.last_majority = None;
    }

    /// Whether the fresh bounds prove the oscillator's rate has left
    /// +-phi_hw and stays out: two consecutive spans, earlier bound -> kept
    /// bound -> `bound` at `now`, each with a mean rate beyond the range in
    /// the same direction. One span is not enough: a single jump of truth
    /// against the steady clock (a VM paused with its clocks stopped) makes
    /// every span across it look like a huge rate, and would hold the status
    /// for as long as such spans are kept; a sustained rate shows on both.
    ///
    /// Unlike the anchors (cleared by every fault), these bounds survive
    /// faults: an oscillator out of range makes the audit trip every few
    /// polls, and without this check each fault was followed, two polls
    /// later, by a "synchronized" model that missed again (the simulator's
    /// rate_beyond_hw_fast_poll). Each fresh bound holds truth, so inside
    /// the assumptions no span of them can prove a rate out of range.
    fn rate_out_of_bounds(&mut self, now: Steady, bound: Interval) -> bool {
        let span = self.assumptions.min_rate_span;
        let mut beyond = 0;
        let mut broken = false;
        for f in self.fresh.iter().filter(|f| now.since(f.at) >= span) {
            let d = self.beyond((f.at, f.bound), (now, bound));
            if d != 0 {
                beyond = d;
                broken |= f.beyond == d;
            }
        }
        let new = Fresh {
            at: now,
            bound,
            beyond,
        };
        match self.fresh.back_mut() {
            Some(last) if now.since(last.at) < span => {
                if bound.width() < last.bound.width() {
                    *last = new;
                }
            }
            _ => {
                self.fresh.push_back(new);
                if self.fresh.len() > FRESH_KEEP {
                    self.fresh.pop_front();
                }
            }
        }
        broken
    }

    /// The mean rate (parts per 10^12, minus 1) over `[i, j]` lies in
    /// `[lo, hi]`, from the bounds at both ends.
    fn span_rate(i: (Steady, Interval), j: (Steady, Interval)) -> (i128, i128) {
        let span = j.0.since(i.0).0;
        let lo_num = (j.1.lo - i.1.hi).0 - span;
        let hi_num = (j.1.hi - i.1.lo).0 - span;
        (
            mul_div_floor(lo_num, RATE_ONE, span),
            mul_div_ceil(hi_num, RATE_ONE, span),
        )
    }

    /// +1 / -1 when the bounds prove the mean rate over `[i, j]` above /
    /// below +-phi_hw, else 0.
    fn beyond(&self, i: (Steady, Interval), j: (Steady, Interval)) -> i8 {
        let (lo, hi) = Self::span_rate(i, j);
        let hw = self.assumptions.phi_hw.0;
        if lo > hw {
            1
        } else if hi < -hw {
            -1
        } else {
            0
        }
    }

    fn fault(&mut self, now: Steady, fault: Fault) {
        if fault.is_violation() {
            self.violations += 1;
        }
        self.anchors.clear();
        self.rate = None;
        self.disrupted_until = Some(now.plus(self.timetable.disrupted_hold));
    }

    /// One round at `now` with each slot's aged interval (`None`: no valid one).
    pub fn update(&mut self, now: Steady, slots: &[Option<Interval>]) -> Round {
        self.update_explained(now, slots, &[])
    }

    /// [`Estimator::update`], with what each slot's interval is made of
    /// (`sides[i]` describes `slots[i]`; missing entries are unknown), so the
    /// model's ε budget can be told ([`Estimator::budget`]).
    pub fn update_explained(
        &mut self,
        now: Steady,
        slots: &[Option<Interval>],
        sides: &[Option<Sides>],
    ) -> Round {
        let (valid, valid_sides): (Vec<Interval>, Vec<Sides>) = slots
            .iter()
            .enumerate()
            .filter_map(|(i, iv)| {
                let side = sides.get(i).copied().flatten().unwrap_or_default();
                iv.map(|iv| (iv, side))
            })
            .unzip();
        let selection = select(&valid, self.configured);
        let mut round = Round {
            selection,
            published: None,
            fault: None,
            falseticker: vec![false; slots.len()],
        };
        let sel = match selection {
            Ok(s) => s,
            Err(NoBound::TooFew { .. }) => return round,
            Err(NoBound::NoAgreement) => {
                self.fault(now, Fault::NoAgreement);
                round.fault = Some(Fault::NoAgreement);
                let tt = self.timetable;
                if let Some(m) = &mut self.model {
                    m.ageing = Ageing::hardware(m.ageing.rate, m.ageing.wander, m.ageing.phi_hw);
                    m.status = Status::Disrupted;
                    // The timetable was computed under the narrower ageing:
                    // recompute it (never later than it was).
                    let holdover = Nanos(m.void_after.since(m.anchor).0.max(0));
                    m.void_after = m
                        .void_after
                        .min(m.widens_past(tt.max_half_width, holdover.min(tt.holdover)));
                    m.sync_until = m.sync_until.min(m.void_after);
                    round.published = Some(*m);
                }
                return round;
            }
        };

        // A proven rate outside +-phi_hw: the model was built under a broken
        // assumption, so the fresh bound alone is the anchor (intersecting it
        // with that model could exclude truth).
        if self.rate_out_of_bounds(now, sel.bound) {
            self.fault(now, Fault::RateOutOfBounds);
            self.model = None;
            round.fault = Some(Fault::RateOutOfBounds);
        }

        // Audit, then anchor.
        let mut anchor = sel.bound;
        let fresh_sides = Sides {
            lo: valid_sides[sel.lo_from].lo,
            hi: valid_sides[sel.hi_from].hi,
        };
        let mut anchor_sides = fresh_sides;
        if let Some(m) = self.model {
            let prev = m.interval_at(now).interval;
            let past_miss = self
                .anchors
                .iter()
                .rev()
                .take(AUDIT_BACK)
                .any(|(t, b)| *t <= now && m.ageing.age(sel.bound, now, *t).disjoint(b));
            let miss = match sel.bound.intersect(&prev) {
                Some(both) if !past_miss => {
                    anchor = both;
                    // Where the model binds, its side (aged) is the anchor's.
                    let mut carried = self.budget;
                    m.ageing
                        .age_sides(&mut carried, Part::ModelAgeing, m.anchor, now);
                    if both.lo > sel.bound.lo {
                        anchor_sides.lo = Side {
                            carried: true,
                            ..carried.lo
                        };
                    }
                    if both.hi < sel.bound.hi {
                        anchor_sides.hi = Side {
                            carried: true,
                            ..carried.hi
                        };
                    }
                    None
                }
                Some(_) => Some(Fault::FreshMissesPast),
                None => Some(Fault::FreshMissesModel),
            };
            if let Some(f) = miss {
                self.fault(now, f);
                self.model = None;
                round.fault = Some(f);
            }
        }

        // After a fault the history is empty: this anchor restarts the rate
        // evidence and the model ages at the hardware bound meanwhile. A rate
        // out of bounds from the anchors also discredits the model this
        // anchor was intersected with: fall back to the fresh bound.
        let ageing = match self.learn_rate(now, anchor) {
            Ok(Some(a)) => a,
            Ok(None) => self.hardware_ageing(),
            Err(f) => {
                self.fault(now, f);
                round.fault.get_or_insert(f);
                anchor = sel.bound;
                anchor_sides = fresh_sides;
                self.hardware_ageing()
            }
        };

        if sel.quality == Quality::Majority {
            self.last_majority = Some(now);
        }
        let disrupted = self.disrupted_until.is_some_and(|t| now <= t);
        let status = if disrupted {
            Status::Disrupted
        } else if sel.quality == Quality::Majority {
            Status::Synchronized
        } else {
            Status::FreeRunning
        };
        let tt = &self.timetable;
        let mut model = Model {
            anchor: now,
            bound: anchor,
            ageing,
            status,
            sync_until: self
                .last_majority
                .map_or(now, |t| t.plus(tt.free_run_after)),
            void_after: now.plus(tt.holdover),
            utc: self.utc,
        };
        model.void_after = model.widens_past(tt.max_half_width, tt.holdover);
        model.sync_until = model.sync_until.min(model.void_after);
        for (slot, flag) in slots.iter().zip(round.falseticker.iter_mut()) {
            *flag = slot.is_some_and(|iv| iv.disjoint(&anchor));
        }
        self.model = Some(model);
        self.budget = anchor_sides;
        round.published = Some(model);
        round
    }

    /// What the current model's anchor bound is made of (meaningful only
    /// while there is a model; see [`Model::budget_at`]).
    pub fn budget(&self) -> Option<Sides> {
        self.model.as_ref().map(|_| self.budget)
    }

    fn ageing_of(&self, r: &RateChoice) -> Ageing {
        Ageing {
            rate: r.rate,
            phi: r.phi,
            evidence: Some((r.from, r.to)),
            wander: self.assumptions.wander,
            phi_hw: self.assumptions.phi_hw,
        }
    }

    /// Rate bound from one pair of anchors; `Err` if it leaves +-phi_hw.
    fn pair_rate(&self, i: (Steady, Interval), j: (Steady, Interval)) -> Result<RateChoice, Fault> {
        let (lo, hi) = Self::span_rate(i, j);
        let hw = self.assumptions.phi_hw.0;
        if lo > hw || hi < -hw {
            return Err(Fault::RateOutOfBounds);
        }
        let (lo, hi) = (lo.max(-hw), hi.min(hw));
        let centre = (lo + hi).div_euclid(2);
        let half = (hi - centre)
            .max(centre - lo)
            .max(self.assumptions.phi_min.0);
        // key = phi + D * (t - from) ranks pairs identically for every t;
        // D is per second, from in ns.
        let key = half - mul_div_floor(self.assumptions.wander.0, i.0 .0 as i128, 1_000_000_000);
        Ok(RateChoice {
            from: i.0,
            to: j.0,
            rate: Rate(centre),
            phi: Rate(half),
            key,
        })
    }

    fn learn_rate(&mut self, now: Steady, anchor: Interval) -> Result<Option<Ageing>, Fault> {
        let window_start = now.plus(Nanos(-self.assumptions.rate_window.0));
        while self
            .anchors
            .front()
            .is_some_and(|(t, _)| *t < window_start || self.anchors.len() >= MAX_ANCHORS)
        {
            self.anchors.pop_front();
        }
        // The best pair's evidence left the window: re-rank what is left
        // (rare; at most MAX_ANCHORS^2 / 2 pairs).
        let oldest = self.anchors.front().map_or(now, |a| a.0);
        let evicted_best = self.rate.is_some_and(|r| r.from < oldest);
        if evicted_best {
            self.rate = None;
            // Re-rank every remaining pair (rare: the best pair aged out).
            let v: Vec<_> = self.anchors.iter().copied().collect();
            for (jx, j) in v.iter().enumerate() {
                for i in &v[..jx] {
                    if j.0.since(i.0) >= self.assumptions.min_rate_span {
                        let c = self.pair_rate(*i, *j)?;
                        if self.rate.is_none_or(|b| c.key < b.key) {
                            self.rate = Some(c);
                        }
                    }
                }
            }
        }
        let new = (now, anchor);
        for i in self.anchors.iter() {
            if now.since(i.0) < self.assumptions.min_rate_span {
                break;
            }
            let c = self.pair_rate(*i, new)?;
            if self.rate.is_none_or(|b| c.key < b.key) {
                self.rate = Some(c);
            }
        }
        // Keep at most one anchor per bucket (the narrowest), so the history
        // spans the whole window at any poll rate within MAX_ANCHORS.
        let bucket = Nanos(self.assumptions.rate_window.0 / (MAX_ANCHORS as i128 / 2));
        match self.anchors.back_mut() {
            Some(last) if now.since(last.0) < bucket => {
                if anchor.width() < last.1.width() {
                    *last = new;
                }
            }
            _ => self.anchors.push_back(new),
        }
        Ok(self.rate.as_ref().map(|r| self.ageing_of(r)))
    }
}

#[cfg(test)]
#[path = "estimator_tests.rs"]
mod tests;
