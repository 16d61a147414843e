//! Tests of [`super`].
use super::*;
use crate::core::time::{iv, RefTime, NS_PER_S};

/// An error bound cap of 100 ms: reached after ~500 s at the hardware
/// bound, and only after the 1 h holdover at a measured rate.
fn timetable() -> Timetable {
    Timetable {
        max_half_width: Nanos::from_millis(100),
        ..Timetable::for_poll(Nanos::from_secs(16))
    }
}

fn est() -> Estimator {
    Estimator::new(3, Assumptions::default(), timetable())
}

/// Rounds of three agreeing intervals around truth `t0 + x` (ns), every
/// 16 s, until a model with rate evidence exists.
fn warmed() -> (Estimator, Steady) {
    let mut e = est();
    let t0 = 1_800_000_000 * NS_PER_S;
    let mut x = 0i64;
    for _ in 0..20 {
        let t = t0 + x as i128;
        let r = e.update(Steady(x), &[Some(iv(t - 50_000, t + 50_000)); 3]);
        assert!(r.published.is_some());
        x += 16 * NS_PER_S as i64;
    }
    assert!(e.model().unwrap().ageing.evidence.is_some());
    (e, Steady(x))
}

/// When no point is covered by k - f intervals, the model falls back to
/// the hardware rate bound; its void-after must follow (it was computed
/// under the narrower measured ageing and left as it was).
#[test]
fn no_agreement_recomputes_the_timetable_under_hardware_ageing() {
    let (mut e, now) = warmed();
    let before = *e.model().unwrap();
    let t = 1_800_000_000 * NS_PER_S + now.0 as i128;
    let s = 1_000 * NS_PER_S;
    let r = e.update(
        now,
        &[
            Some(iv(t - s - 10, t - s)),
            Some(iv(t, t + 10)),
            Some(iv(t + s, t + s + 10)),
        ],
    );
    assert_eq!(r.fault, Some(Fault::NoAgreement));
    let m = r.published.unwrap();
    assert_eq!(m.status, Status::Disrupted);
    assert!(m.ageing.evidence.is_none());
    let tt = timetable();
    let half = |x: Steady| m.interval_at(x).interval.half_width_ceil();
    assert!(half(m.void_after) <= tt.max_half_width);
    assert!(half(m.void_after.plus(Nanos::from_millis(2))) > tt.max_half_width);
    assert!(m.void_after < before.void_after, "{m:?} vs {before:?}");
}

/// A rate hint from a hostile drift file (i128::MIN saturated from
/// -1e36 ppb) is ignored: `abs()` no longer wraps to a negative rate
/// that passes the range check.
#[test]
fn a_hostile_rate_hint_is_ignored() {
    let mut e = est();
    e.set_rate_hint(Rate(i128::MIN));
    assert_eq!(e.ageing().rate, Rate(0));
    e.set_rate_hint(Rate::from_ppm(-201));
    assert_eq!(e.ageing().rate, Rate(0));
    e.set_rate_hint(Rate::from_ppm(-20));
    assert_eq!(e.ageing().rate, Rate::from_ppm(-20));
}

/// The model's ε budget: each end is named by the source (or the carried
/// model) it comes from, stays explained through rounds, intersections and
/// an origin shift, and its agreement term tells the narrowing.
#[test]
fn the_budget_names_the_binding_ends() {
    use crate::core::budget::{Part, Parts, Sides};
    use crate::core::source::SourceId;
    let mut e = est();
    let t0 = 1_800_000_000 * NS_PER_S;
    // Source i's sample centred at t + c[i], 50 us root distance each side.
    let round = |e: &mut Estimator, x: i64, c: [i128; 3]| {
        let t = t0 + x as i128;
        let parts = Parts::default().with(Part::RootDistance, Nanos(50_000));
        let sides: Vec<Option<Sides>> = (0..3)
            .map(|i| Some(Sides::of(SourceId(i), RefTime(t + c[i]), parts, parts)))
            .collect();
        let slots: Vec<Option<Interval>> = c
            .iter()
            .map(|c| Some(iv(t + c - 50_000, t + c + 50_000)))
            .collect();
        e.update_explained(Steady(x), &slots, &sides)
    };
    // Centres -20, 0, +20 us: with f = 1 the hull of points covered twice
    // runs from the second-lowest lower end to the second-highest upper
    // end, both source 1's.
    let r = round(&mut e, 0, [-20_000, 0, 20_000]);
    let m = r.published.unwrap();
    let b = m.budget_at(e.budget().unwrap(), Steady(0));
    assert!(b.consistent);
    assert_eq!(b.sides.lo.source, Some(SourceId(1)));
    assert_eq!(b.sides.hi.source, Some(SourceId(1)));
    assert_eq!(b.agreement_twice, Nanos(0));
    // A millisecond later the sources read 60 us later: the old model,
    // aged, binds the upper end (carried), the fresh hull the lower one.
    let x = 1_000_000;
    let r = round(&mut e, x, [40_000, 60_000, 80_000]);
    let m = r.published.unwrap();
    let sides = e.budget().unwrap();
    let b = m.budget_at(sides, Steady(x));
    assert!(b.consistent, "{b:?}");
    assert!(sides.lo.source == Some(SourceId(1)) && !sides.lo.carried);
    assert!(sides.hi.carried, "{sides:?}");
    assert!(b.agreement_twice < Nanos(0), "the intersection narrowed it");
    assert!(b.sides.hi.parts.get(Part::ModelAgeing) > 0);
    let sum: f64 = b.halves().iter().map(|(_, v)| v).sum();
    assert_eq!(sum, b.width.0 as f64 / 2.0);
    // A shift of the timescale's origin moves the budget's centres too.
    e.shift(Nanos(37 * NS_PER_S));
    let m = *e.model().unwrap();
    let later = Steady(x + 5 * NS_PER_S as i64);
    assert!(m.budget_at(e.budget().unwrap(), later).consistent);
}
