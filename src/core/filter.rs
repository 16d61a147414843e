//! Per-source clock filter: keeps a source's recent samples and answers with
//! the narrowest of them after ageing each to the instant asked about.
//!
//! Unlike RFC 5905's filter (minimum delay, then an offset estimate), every
//! sample here is a hard interval, so any of them aged soundly is a valid
//! bound; the narrowest wins. A low-delay sample from a few polls ago often
//! beats a fresh one that queued behind traffic.

use super::model::Ageing;
use super::sample::Sample;
use super::time::{Interval, Nanos, Steady};
use std::collections::VecDeque;

/// Samples kept per source.
pub const FILTER_LEN: usize = 8;

/// A source's recent samples.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    samples: VecDeque<Sample>,
}

impl Filter {
    /// Add a sample, dropping the oldest beyond [`FILTER_LEN`].
    pub fn push(&mut self, s: Sample) {
        if self.samples.len() == FILTER_LEN {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }

    /// Forget every sample (timeline interruption, source reset).
    pub fn clear(&mut self) {
        self.samples.clear();
    }

    /// Drop samples taken before `t` (e.g. before an interruption).
    pub fn drop_before(&mut self, t: Steady) {
        self.samples.retain(|s| s.at >= t);
    }

    /// Move every sample's bound by `by` (the timescale's origin was fixed
    /// after they were taken).
    pub fn shift(&mut self, by: Nanos) {
        for s in &mut self.samples {
            s.bound = Interval {
                lo: s.bound.lo + by,
                hi: s.bound.hi + by,
            };
            s.centre = s.centre + by;
        }
    }

    /// The newest sample, if any.
    pub fn latest(&self) -> Option<&Sample> {
        self.samples.back()
    }

    /// The narrowest interval at `now` from samples no older than `max_age`,
    /// each aged with `ageing`. Samples from the future (a shell bug) are
    /// ignored rather than trusted.
    pub fn best_at(
        &self,
        now: Steady,
        max_age: Nanos,
        ageing: &Ageing,
    ) -> Option<(Interval, &Sample)> {
        self.samples
            .iter()
            .filter(|s| s.at <= now && now.since(s.at) <= max_age)
            .map(|s| (ageing.age(s.bound, s.at, now), s))
            .min_by_key(|(iv, _)| iv.width())
    }
}
