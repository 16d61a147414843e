//! Tests of [`super`].
use super::*;
use crate::core::time::{days_from_civil, iv};

const DAY: i128 = 86_400 * NS_PER_S;

/// 2027-01-01T00:00Z, a month end.
fn month_end() -> i128 {
    days_from_civil(2027, 1, 1) as i128 * DAY
}

const LIST: &str = crate::core::leap::table::TEST_LIST;

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
