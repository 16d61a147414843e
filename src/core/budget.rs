//! The ε budget: what the published half-width is made of.
//!
//! Every bound skewd handles is `[c_lo - L, c_hi + H]`, where `c_lo` and
//! `c_hi` are *centres* (for one NTP sample both are the server's transmit
//! time t3) and `L` and `H` are sums of named parts (root distance, the
//! round trip, ageing, ...). Each step that moves a bound adds to the parts
//! of the side it widens: the exchange writes the terms of its formula, the
//! filter adds the ageing of a sample up to the selection instant, leap
//! handling adds its hull, the model adds its ageing since the anchor, a
//! strict read adds its clock-read mismatch. A side keeps the source it came
//! from, so after selection and intersection the lower and the upper end of
//! the anchor may come from different sources (or from the previous model).
//!
//! The half-width is then exactly
//!
//! ```text
//! (hi - lo) / 2 = sum_k (L_k + H_k) / 2  +  (c_hi - c_lo) / 2
//! ```
//!
//! where the last term, *agreement*, is signed: zero for a bound from one
//! sample, negative when the binding ends come from sources whose centres
//! overlap (the intersection made the interval narrower than either), and
//! positive when a hull kept two sources' disagreement. Nothing in the core
//! reads a budget: it explains the bound, it never makes it.

use super::source::SourceId;
use super::time::{Interval, Nanos, RefTime};

/// One named part of a side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Part {
    /// The round trip minus the server's hold (on the upper side only: half
    /// of it in ε).
    NetworkDelay,
    /// The server's advertised precision (its stamps' fuzz).
    ServerPrecision,
    /// The server's root delay / 2 + root dispersion as sent (a one-way
    /// source's own bound).
    RootDistance,
    /// The root dispersion's ageing since the server's reference time (Φ_s,
    /// unless declared `dispersion_aged_by_server`) and over an interleaved
    /// reply's hold.
    RootDispersionAgeing,
    /// Our own timestamping uncertainty.
    LocalPrecision,
    /// Our oscillator's rate error during the exchange.
    LocalRate,
    /// Ageing of the sample from its reply to the selection round.
    SampleAgeing,
    /// Ageing of the published model since the anchor this side comes from
    /// (an earlier anchor's side carried by the intersection included).
    ModelAgeing,
    /// The hull of both readings of a source across a pending leap second.
    Leap,
    /// The strict read's BOOTTIME − MONOTONIC mismatch.
    Read,
    /// Outward rounding to whole nanoseconds.
    Rounding,
}

/// How many parts there are.
pub const PARTS: usize = 11;

impl Part {
    /// Every part, in the order they are shown.
    pub const ALL: [Part; PARTS] = [
        Part::NetworkDelay,
        Part::ServerPrecision,
        Part::RootDistance,
        Part::RootDispersionAgeing,
        Part::LocalPrecision,
        Part::LocalRate,
        Part::SampleAgeing,
        Part::ModelAgeing,
        Part::Leap,
        Part::Read,
        Part::Rounding,
    ];

    /// Snake-case name for JSON (with `_ns` appended there) and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Part::NetworkDelay => "network_delay",
            Part::ServerPrecision => "server_precision",
            Part::RootDistance => "root_distance",
            Part::RootDispersionAgeing => "root_dispersion_ageing",
            Part::LocalPrecision => "local_precision",
            Part::LocalRate => "local_rate",
            Part::SampleAgeing => "sample_ageing",
            Part::ModelAgeing => "model_ageing",
            Part::Leap => "leap",
            Part::Read => "read",
            Part::Rounding => "rounding",
        }
    }
}

/// The parts of one side of a bound, in ns (never negative in practice;
/// kept signed so an odd transformation shows rather than wraps).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Parts([i64; PARTS]);

impl Parts {
    /// Add `by` to `part`, saturating.
    pub fn add(&mut self, part: Part, by: Nanos) {
        let v = &mut self.0[part as usize];
        *v = v.saturating_add(by.0.clamp(i64::MIN as i128, i64::MAX as i128) as i64);
    }

    /// `self` with `by` added to `part`.
    #[must_use]
    pub fn with(mut self, part: Part, by: Nanos) -> Parts {
        self.add(part, by);
        self
    }

    /// One part.
    pub fn get(&self, part: Part) -> i64 {
        self.0[part as usize]
    }

    /// The sum of all parts.
    pub fn total(&self) -> Nanos {
        Nanos(self.0.iter().map(|&v| v as i128).sum())
    }
}

/// One side of a bound: its centre, its parts and where they came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Side {
    /// The instant this end is measured from, moved along with the bound by
    /// every step (never derived from the bound: that the end and
    /// `centre ∓ parts` agree is the budget's check on itself).
    pub centre: RefTime,
    /// The parts between this end and its centre.
    pub parts: Parts,
    /// The source whose sample this end comes from (`None`: not known,
    /// e.g. a model restored without its history).
    pub source: Option<SourceId>,
    /// Carried from an earlier anchor by the intersection with the model.
    pub carried: bool,
}

/// Both sides of one bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sides {
    /// The lower end's parts (how far below its centre it lies).
    pub lo: Side,
    /// The upper end's parts (how far above its centre it lies).
    pub hi: Side,
}

impl Sides {
    /// Both sides of one source's sample centred on `centre`.
    pub fn of(source: SourceId, centre: RefTime, lo: Parts, hi: Parts) -> Sides {
        let side = |parts| Side {
            centre,
            parts,
            source: Some(source),
            carried: false,
        };
        Sides {
            lo: side(lo),
            hi: side(hi),
        }
    }

    /// Add `lo_by` and `hi_by` to `part` of each side.
    pub fn add(&mut self, part: Part, lo_by: Nanos, hi_by: Nanos) {
        self.lo.parts.add(part, lo_by);
        self.hi.parts.add(part, hi_by);
    }

    /// Move both centres by `by` (the bound moved without widening).
    pub fn shift(&mut self, by: Nanos) {
        self.lo.centre = self.lo.centre + by;
        self.hi.centre = self.hi.centre + by;
    }

    /// The budget of `bound` (whose ends these sides describe).
    pub fn of_bound(&self, bound: Interval) -> Budget {
        Budget {
            sides: *self,
            agreement_twice: self.hi.centre - self.lo.centre,
            width: bound.width(),
            consistent: bound.lo == self.lo.centre - self.lo.parts.total()
                && bound.hi == self.hi.centre + self.hi.parts.total(),
        }
    }
}

/// A bound's budget: its two sides and the agreement of their centres.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The sides.
    pub sides: Sides,
    /// `c_hi - c_lo` (twice the agreement term of ε).
    pub agreement_twice: Nanos,
    /// The bound's width (`hi - lo`).
    pub width: Nanos,
    /// Whether each end of the bound is its centre minus (plus) its parts:
    /// false means some step moved the bound without booking it.
    pub consistent: bool,
}

impl Budget {
    /// The budget of the same bound widened by `by` at both ends (a strict
    /// read's clock-read mismatch).
    #[must_use]
    pub fn widened(mut self, part: Part, by: Nanos) -> Budget {
        self.sides.add(part, by, by);
        self.width = self.width + by + by;
        self
    }

    /// Each part's share of the half-width, in ns (halves possible), then
    /// the agreement term; they add up to `width / 2`.
    pub fn halves(&self) -> Vec<(&'static str, f64)> {
        let mut v: Vec<(&'static str, f64)> = Part::ALL
            .iter()
            .map(|&p| {
                let sum = self.sides.lo.parts.get(p) as f64 + self.sides.hi.parts.get(p) as f64;
                (p.as_str(), sum / 2.0)
            })
            .collect();
        v.push(("agreement", self.agreement_twice.0 as f64 / 2.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::iv;

    #[test]
    fn halves_add_up_to_the_half_width() {
        // Lower end from one sample centred at 100, upper from another at 90.
        let lo = Parts::default()
            .with(Part::RootDistance, Nanos(30))
            .with(Part::SampleAgeing, Nanos(7));
        let hi = Parts::default()
            .with(Part::NetworkDelay, Nanos(50))
            .with(Part::Rounding, Nanos(1));
        let mut sides = Sides::of(SourceId(0), RefTime(100), lo, hi);
        sides.hi.source = Some(SourceId(1));
        sides.hi.centre = RefTime(90);
        let bound = iv(100 - 37, 90 + 51);
        let b = sides.of_bound(bound);
        assert!(b.consistent);
        assert!(!sides.of_bound(iv(100 - 37, 90 + 52)).consistent);
        assert_eq!(b.agreement_twice, Nanos(-10));
        let sum: f64 = b.halves().iter().map(|(_, v)| v).sum();
        assert_eq!(sum, bound.width().0 as f64 / 2.0);
        assert!(b.halves().contains(&("agreement", -5.0)));
        assert!(b.halves().contains(&("network_delay", 25.0)));
    }
}
