//! The published clock model and its pure read function `interval_at`.
//!
//! A model is an anchor (a local steady instant and a hard bound on reference
//! time there) plus what is known about the oscillator's rate. Reading it at a
//! steady instant `x` extrapolates the anchor by `(x - anchor) * (1 + R)` and
//! widens both ends by the rate spread over `|x - anchor|`:
//!
//! ```text
//! spread(a, b) = min( phi_m*|b-a| + D * integral_a^b g(t) dt ,  (|R| + phi_hw)*|b-a| )
//! g(t)         = (r_j - r_i) + max(0, t - r_j) + max(0, r_i - t)
//! ```
//!
//! where `[r_i, r_j]` is the span of the rate evidence (the mean rate over it
//! lies in `R +- phi_m`), D bounds how fast the rate changes (per second), and
//! phi_hw bounds the rate itself. `g(t)` is the farthest `t` is from any instant
//! of the evidence span, so `D * g(t)` bounds how far the rate at `t` can be
//! from the measured mean. With the anchor at the end of the evidence window
//! this is `phi_m*Delta + D*Delta*(Delta/2 + W)` (docs/model.md).
//!
//! This module never reads a clock; it must stay a pure function of its inputs
//! because the shared-memory reader runs exactly this code.

use super::budget::{Budget, Part, Sides};
use super::leap::UtcMapping;
use super::time::{
    mul_div_ceil, mul_div_floor, rate_spread_ceil, Interval, Nanos, Rate, Steady, RATE_ONE,
};

/// What the published interval is good for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Status {
    /// No usable model: no agreement yet, or the model is past void-after.
    Unknown = 0,
    /// A fault-tolerant majority (k >= 2f+1) agreed recently.
    Synchronized = 1,
    /// Holding over: fewer sources agree, or none answered recently. The
    /// interval is still a hard bound; it widens with time.
    FreeRunning = 2,
    /// The evidence contradicted the model (bound violation, rate outside the
    /// hardware bound, timeline interruption): the model was rebuilt from
    /// scratch at the hardware rate bound.
    Disrupted = 3,
}

impl Status {
    /// The lower-case name used in JSON, metrics and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unknown => "unknown",
            Status::Synchronized => "synchronized",
            Status::FreeRunning => "free_running",
            Status::Disrupted => "disrupted",
        }
    }
    /// All statuses, for metrics that export one series per status.
    pub const ALL: [Status; 4] = [
        Status::Unknown,
        Status::Synchronized,
        Status::FreeRunning,
        Status::Disrupted,
    ];
    /// The status named `s` (as [`Status::as_str`] spells it).
    pub fn from_name(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }
    /// Decode the `repr(u8)` value (shared memory); unknown values map to `None`.
    #[inline]
    pub fn from_u8(v: u8) -> Option<Status> {
        match v {
            0 => Some(Status::Unknown),
            1 => Some(Status::Synchronized),
            2 => Some(Status::FreeRunning),
            3 => Some(Status::Disrupted),
            _ => None,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Status {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What is known about the oscillator's rate, and how it ages an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ageing {
    /// Centre R of the rate: reference seconds per steady second, minus one.
    pub rate: Rate,
    /// Half-width phi_m of the measured mean rate (already floored at phi_min).
    pub phi: Rate,
    /// Span `[r_i, r_j]` of the rate evidence; `None` means only the
    /// hardware bound is known.
    pub evidence: Option<(Steady, Steady)>,
    /// D: the largest change of rate per second (parts per 10^12 per second).
    pub wander: Rate,
    /// phi_hw: the oscillator's rate never leaves +-phi_hw.
    pub phi_hw: Rate,
}

fn int_pos_part(a: i128, b: i128, c: i128) -> i128 {
    // integral over [a, b] of max(0, t - c) dt, times 2.
    let hi = b.max(c) - c;
    let lo = a.max(c) - c;
    hi.saturating_mul(hi) - lo.saturating_mul(lo)
}

fn int_neg_part(a: i128, b: i128, c: i128) -> i128 {
    // integral over [a, b] of max(0, c - t) dt, times 2.
    let lo = c - a.min(c);
    let hi = c - b.min(c);
    lo.saturating_mul(lo) - hi.saturating_mul(hi)
}

impl Ageing {
    /// Only the hardware bound, centred on `rate` (e.g. from a drift file).
    pub fn hardware(rate: Rate, wander: Rate, phi_hw: Rate) -> Ageing {
        Ageing {
            rate,
            phi: Rate(phi_hw.0 + rate.0.abs()),
            evidence: None,
            wander,
            phi_hw,
        }
    }

    /// The largest error, in ns, of predicting the reference time elapsed
    /// between steady instants `a` and `b` as `(b - a) * (1 + R)`. Rounded up.
    pub fn spread(&self, a: Steady, b: Steady) -> Nanos {
        let (a, b) = if a <= b { (a, b) } else { (b, a) };
        let span = b.since(a);
        let hw = rate_spread_ceil(Rate(self.rate.0.abs() + self.phi_hw.0), span);
        let Some((ri, rj)) = self.evidence else {
            return hw;
        };
        let (a, b, ri, rj) = (a.0 as i128, b.0 as i128, ri.0 as i128, rj.0 as i128);
        // 2 * integral of g over [a, b], in ns^2.
        let twice = (2 * (rj - ri))
            .saturating_mul(b - a)
            .saturating_add(int_pos_part(a, b, rj))
            .saturating_add(int_neg_part(a, b, ri));
        // wander is per 10^12 per second: ns^2 * wander / (10^12 * 10^9 * 2).
        let wander_ns = mul_div_ceil(self.wander.0, twice, 2 * RATE_ONE * 1_000_000_000);
        let measured = rate_spread_ceil(self.phi, span).0.saturating_add(wander_ns);
        Nanos(measured.min(hw.0))
    }

    /// Carry a bound known at `from` to `to` (either direction).
    pub fn age(&self, bound: Interval, from: Steady, to: Steady) -> Interval {
        let d = to.since(from).0;
        let s = self.spread(from, to);
        let lo = bound.lo + Nanos(d + mul_div_floor(self.rate.0, d, RATE_ONE)) - s;
        let hi = bound.hi + Nanos(d + mul_div_ceil(self.rate.0, d, RATE_ONE)) + s;
        Interval { lo, hi }
    }

    /// What [`Ageing::age`] adds to each side of a bound, booked to `part`
    /// (the spread) and to rounding (the upper end's rounding up of the
    /// predicted elapsed time), so both centres move alike.
    pub fn age_sides(&self, sides: &mut Sides, part: Part, from: Steady, to: Steady) {
        let d = to.since(from).0;
        let s = self.spread(from, to);
        sides.add(part, s, s);
        let down = mul_div_floor(self.rate.0, d, RATE_ONE);
        sides.shift(Nanos(d + down));
        let up = mul_div_ceil(self.rate.0, d, RATE_ONE) - down;
        sides.hi.parts.add(Part::Rounding, Nanos(up));
    }
}

/// `ceil(x * 2^k / den)` for x >= 0, saturating at i64::MAX.
fn q_ceil(x: i128, k: u32, den: i128) -> i64 {
    mul_div_ceil(x.max(0), 1i128 << k, den).min(i64::MAX as i128) as i64
}

/// A model's ageing for reads at or after its anchor, precomputed in fixed
/// point so a read needs three multiplies and shifts (no 128-bit division).
/// For `Delta >= 0` and rate evidence ending at or before the anchor,
/// `spread = min(Delta * (a1 + a2*Delta), hw*Delta)` with
/// `a1 = phi + D*(anchor - r_i)`, `a2 = D/2`, `hw = |R| + phi_hw` (the
/// exact formula of [`Ageing::spread`] specialised). Every coefficient and
/// product is rounded outward, plus 2 ns of slack; the crossover `cross_d`
/// only picks which of the two terms to use, and either term alone bounds
/// the minimum, so the result always contains the exact one (tested).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FastForm {
    /// floor(R * 2^64 / 10^12).
    pub rate_lo_q: i64,
    /// ceil(a1 * 2^64 / 10^12).
    pub a1_q: i64,
    /// ceil(D * 2^96 / (2 * 10^21)): a2 in units of 2^-96 per ns^2.
    pub a2_q: i64,
    /// ceil((|R| + phi_hw) * 2^64 / 10^12).
    pub hw_q: i64,
    /// Beyond this Delta the hardware term is the smaller one.
    pub cross_d: i64,
}

impl FastForm {
    /// The fast form of `m`, when it applies.
    pub fn of(m: &Model) -> Option<FastForm> {
        let a = &m.ageing;
        let hw = a.rate.0.abs() + a.phi_hw.0;
        // a1 in parts per 10^21 (ppt * 10^9) so D * W is not rounded to a
        // whole ppt before it is multiplied by Delta.
        let (a1_fine, a2_q) = match a.evidence {
            Some((ri, rj)) if rj <= m.anchor && ri <= rj => {
                let w = m.anchor.since(ri).0;
                let a1 = a
                    .phi
                    .0
                    .saturating_mul(1_000_000_000)
                    .saturating_add(a.wander.0.saturating_mul(w));
                (a1, q_ceil(a.wander.0, 96, 2 * RATE_ONE * 1_000_000_000))
            }
            Some(_) => return None,
            None => (hw.saturating_mul(1_000_000_000), 0),
        };
        let a1_q = q_ceil(a1_fine, 64, RATE_ONE * 1_000_000_000);
        let hw_q = q_ceil(hw, 64, RATE_ONE);
        let cross_d = if a2_q > 0 {
            ((((hw_q as i128) - (a1_q as i128)).max(0) << 32) / a2_q as i128).min(i64::MAX as i128)
                as i64
        } else if a1_q <= hw_q {
            i64::MAX
        } else {
            0
        };
        let f = FastForm {
            rate_lo_q: mul_div_floor(a.rate.0, 1 << 64, RATE_ONE)
                .clamp(i64::MIN as i128, i64::MAX as i128) as i64,
            a1_q,
            a2_q,
            hw_q,
            cross_d,
        };
        (f.a1_q < i64::MAX && f.hw_q < i64::MAX && f.a2_q < i64::MAX).then_some(f)
    }

    /// `[lo, hi]` at `delta >= 0` ns after an anchor bounded by `[lo0, hi0]`.
    #[inline(always)]
    pub fn bound_at(&self, lo0: i128, hi0: i128, delta: i64) -> (i128, i128) {
        let d = delta.max(0) as u64;
        let up = |v: u128, k: u32| (v >> k) + u128::from(v & ((1u128 << k) - 1) != 0);
        let spread = if delta <= self.cross_d {
            // Delta * (a1 + a2 * Delta): two 64x64->128 multiplies.
            let slope = up(self.a2_q as u64 as u128 * d as u128, 32)
                .saturating_add(self.a1_q as u64 as u128);
            up(
                u64::try_from(slope).unwrap_or(u64::MAX) as u128 * d as u128,
                64,
            )
        } else {
            up(self.hw_q as u64 as u128 * d as u128, 64)
        } as i128
            + 2;
        // rate_hi_q <= rate_lo_q + 1, so ceil(R*d) <= floor(rate_lo_q*d/2^64) + 2.
        let r = (self.rate_lo_q as i128 * d as i128) >> 64;
        let d = d as i128;
        (lo0 + d + r - spread, hi0 + d + r + 2 + spread)
    }
}

/// The clock model skewd publishes. Pure data; see [`Model::interval_at`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Model {
    /// Steady instant of the anchor.
    pub anchor: Steady,
    /// Reference time at the anchor lies in this interval.
    pub bound: Interval,
    /// How the bound ages.
    pub ageing: Ageing,
    /// Status at the anchor.
    pub status: Status,
    /// A `Synchronized` model reads as `FreeRunning` after this instant.
    pub sync_until: Steady,
    /// The model reads as `Unknown` after this instant.
    pub void_after: Steady,
    /// How the internal (leap-free) timescale maps to UTC.
    pub utc: UtcMapping,
}

/// The status timetable, the one rule every reader applies: a model reads
/// as `unknown` after void-after, and a `synchronized` one as
/// `free_running` after sync-until.
#[inline(always)]
pub fn timetable(status: Status, sync_until: Steady, void_after: Steady, x: Steady) -> Status {
    if x > void_after {
        Status::Unknown
    } else if status == Status::Synchronized && x > sync_until {
        Status::FreeRunning
    } else {
        status
    }
}

/// An interval read from the model, with its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Reference time at the read instant lies in this interval.
    pub interval: Interval,
    /// What the interval is good for.
    pub status: Status,
}

impl Model {
    /// The interval at steady instant `x` and the status it carries.
    pub fn interval_at(&self, x: Steady) -> Reading {
        Reading {
            interval: self.ageing.age(self.bound, self.anchor, x),
            status: self.status_at(x),
        }
    }

    /// The UTC (Unix time) view of the interval at `x`: exact away from a
    /// leap second, the hull of both readings across one.
    pub fn utc_at(&self, x: Steady) -> Reading {
        let r = self.interval_at(x);
        Reading {
            interval: self.utc.to_utc(r.interval),
            status: r.status,
        }
    }

    /// The ε budget of the interval at `x`, given the sides of the anchor's
    /// bound (see [`crate::core::budget`]).
    pub fn budget_at(&self, anchor_sides: Sides, x: Steady) -> Budget {
        let mut sides = anchor_sides;
        self.ageing
            .age_sides(&mut sides, Part::ModelAgeing, self.anchor, x);
        sides.of_bound(self.interval_at(x).interval)
    }

    /// The status at steady instant `x` (the documented timetable).
    pub fn status_at(&self, x: Steady) -> Status {
        timetable(self.status, self.sync_until, self.void_after, x)
    }

    /// The first steady instant (within `limit` of the anchor) at which the
    /// half-width would exceed `max_half_width`, found by bisection.
    pub fn widens_past(&self, max_half_width: Nanos, limit: Nanos) -> Steady {
        let half = |d: i128| {
            let x = self.anchor.plus(Nanos(d));
            self.interval_at(x).interval.half_width_ceil()
        };
        if half(limit.0) <= max_half_width {
            return self.anchor.plus(limit);
        }
        let (mut lo, mut hi) = (0i128, limit.0);
        while hi - lo > 1_000_000 {
            let mid = lo + (hi - lo) / 2;
            if half(mid) <= max_half_width {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        self.anchor.plus(Nanos(lo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::{RefTime, NS_PER_S};

    fn ageing(evidence: Option<(Steady, Steady)>) -> Ageing {
        Ageing {
            rate: Rate::from_ppm(10),
            phi: Rate::from_ppm(1),
            evidence,
            wander: Rate::from_ppb(20),
            phi_hw: Rate::from_ppm(200),
        }
    }

    #[test]
    fn spread_matches_design_formula_at_window_end() {
        let w = 100 * NS_PER_S as i64;
        let a = ageing(Some((Steady(0), Steady(w))));
        let delta = 16 * NS_PER_S;
        let got = a.spread(Steady(w), Steady(w).plus(Nanos(delta)));
        // phi*D + D*D*(D/2 + W) = 1e-6*16 + 2e-8*16*(8+100) s
        let want = 16_000 + (2e-8 * 16.0 * 108.0 * 1e9) as i128;
        assert!((got.0 - want).abs() <= 2, "{got:?} vs {want}");
        // symmetric in direction
        assert_eq!(got, a.spread(Steady(w).plus(Nanos(delta)), Steady(w)));
    }

    #[test]
    fn spread_never_exceeds_hardware_bound() {
        let a = ageing(Some((Steady(0), Steady(1))));
        let d = Nanos::from_secs(1_000_000);
        let s = a.spread(Steady(0), Steady(0).plus(d));
        assert_eq!(s, rate_spread_ceil(Rate::from_ppm(210), d));
        let h = Ageing::hardware(Rate(0), Rate::from_ppb(20), Rate::from_ppm(200));
        assert_eq!(
            h.spread(Steady(0), Steady(NS_PER_S as i64)),
            Nanos::from_micros(200)
        );
    }

    proptest::proptest! {
        /// The fixed-point fast form always contains the exact interval and
        /// is at most a few ns wider, over every range the config accepts:
        /// phi_hw up to 10 000 ppm, D up to 10^6 ppb/s, rate windows up to a
        /// day, holdover up to 30 days. Where it cannot be exact enough it
        /// declines (readers then take the exact path).
        #[test]
        fn fast_form_contains_exact(
            phi_hw in 1_000_000i128..10_000_000_000,
            rate_frac in -1.0f64..1.0,
            phi_frac in 0.0f64..1.0,
            wander in 0i128..1_000_000_000,
            span in 1i64..86_400_000_000_000,
            back in 0i64..86_400_000_000_000,
            delta in 0i64..2_592_000_000_000_000,
            small_delta: bool,
            evidence: bool,
        ) {
            let rate = (phi_hw as f64 * rate_frac) as i128;
            let phi = 1_000 + (phi_hw as f64 * phi_frac) as i128;
            let delta = if small_delta { delta % 100_000_000_000 } else { delta };
            let anchor = Steady(5_000_000_000_000_000);
            let m = Model {
                anchor,
                bound: Interval { lo: RefTime(1_000), hi: RefTime(50_000) },
                ageing: Ageing {
                    rate: Rate(rate),
                    phi: Rate(phi),
                    evidence: evidence.then(|| (anchor.plus(Nanos(-(back + span) as i128)), anchor.plus(Nanos(-back as i128)))),
                    wander: Rate(wander),
                    phi_hw: Rate(phi_hw),
                },
                status: Status::Synchronized,
                sync_until: anchor,
                void_after: anchor,
                utc: UtcMapping::default(),
            };
            if let Some(f) = FastForm::of(&m) {
                let exact = m.interval_at(anchor.plus(Nanos(delta as i128))).interval;
                let (lo, hi) = f.bound_at(1_000, 50_000, delta);
                proptest::prop_assert!(lo <= exact.lo.0 && hi >= exact.hi.0, "{lo} {hi} vs {exact:?}");
                proptest::prop_assert!(exact.lo.0 - lo <= 8 && hi - exact.hi.0 <= 10, "{lo} {hi} vs {exact:?}");
            }
        }
    }

    #[test]
    fn interval_and_status_timetable() {
        let m = Model {
            anchor: Steady(1_000),
            bound: Interval {
                lo: RefTime(10_000),
                hi: RefTime(10_100),
            },
            ageing: ageing(None),
            status: Status::Synchronized,
            sync_until: Steady(2_000),
            void_after: Steady(3_000),
            utc: UtcMapping::default(),
        };
        let r = m.interval_at(Steady(1_000));
        assert_eq!(r.interval, m.bound);
        assert_eq!(r.status, Status::Synchronized);
        assert_eq!(m.status_at(Steady(2_001)), Status::FreeRunning);
        assert_eq!(m.status_at(Steady(3_001)), Status::Unknown);
        let later = m.interval_at(Steady(1_000 + NS_PER_S as i64)).interval;
        assert!(later.width() > m.bound.width());
        let before = m.interval_at(Steady(0)).interval;
        assert!(before.width() >= m.bound.width());
        assert!(m.widens_past(Nanos::from_millis(1), Nanos::from_secs(100)) > m.anchor);
    }
}
