//! Tests of [`super`].
use super::*;
use crate::core::time::{iv, NS_PER_S};

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
