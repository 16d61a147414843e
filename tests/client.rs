//! The application API against segments written by the test: timescales,
//! the monotone clamp across a leap, unrepresentable intervals, statuses
//! that `after`/`before` refuse, and a reader in another time namespace.

mod common;
use common::*;
use skewd::client::{ClientError, Clock, LeapFree, Status, Utc};
use skewd::core::leap::{LeapMark, LeapPhase, UtcMapping};
use skewd::core::model::{Ageing, Model};
use skewd::core::publish::Publication;
use skewd::core::time::{Interval, Nanos, Rate, RefTime, NS_PER_S};
use skewd::shm::Writer;
use std::process::Command;
use std::time::{Duration, Instant};

/// A model anchored now whose leap-free bound is the host clock +-1 ms (so
/// "true time" in these tests is REALTIME on the leap-free scale), with
/// `utc` as its UTC view.
fn around_now(utc: UtcMapping, status: Status, half_ns: i128) -> Publication {
    let anchor = skewd::clock::raw();
    let rt = skewd::clock::realtime().0;
    let m = Model {
        anchor,
        bound: Interval {
            lo: RefTime(rt - half_ns),
            hi: RefTime(rt + half_ns),
        },
        ageing: Ageing::hardware(Rate(0), Rate::from_ppb(20), Rate::from_ppm(200)),
        status,
        sync_until: anchor.plus(Nanos::from_secs(60)),
        void_after: anchor.plus(Nanos::from_secs(60)),
        utc,
    };
    Publication::bare(anchor, Some(m), status, skewd::clock::boot_offset().0)
}

fn segment(tag: &str) -> (TempDir, std::path::PathBuf, Writer) {
    let dir = temp_dir(tag);
    let path = dir.join("clock");
    let w = Writer::create(&path).unwrap();
    (dir, path, w)
}

/// A leap inserted 50 ms from now (already applied by every source): the
/// UTC view goes back a second there. With the monotone clamp on, `main`
/// clamped the UTC earliest to the value read before the leap, a second
/// above true UTC after it. The clamp now works on the leap-free scale.
#[test]
fn the_monotone_clamp_works_on_the_leap_free_scale() {
    let (_dir, path, mut w) = segment("clamp-leap");
    let rt = skewd::clock::realtime().0;
    let utc = UtcMapping {
        offset: Nanos(0),
        leap: Some(LeapMark {
            at: RefTime(rt + 50_000_000),
            delta: Nanos(NS_PER_S),
            phase: LeapPhase::Done,
        }),
    };
    w.publish(&around_now(utc, Status::Synchronized, 1_000_000));
    let clock = Clock::open(&path).unwrap().with_monotonic_earliest(true);
    let before = clock.now().unwrap();
    std::thread::sleep(Duration::from_millis(120));
    let after = clock.now().unwrap();
    let true_utc = skewd::clock::realtime().0 - NS_PER_S; // after the leap
    assert!(
        (after.utc.earliest.0 as i128) <= true_utc,
        "UTC earliest {} above true UTC {true_utc}",
        after.utc.earliest.0
    );
    assert!(after.leapfree.earliest >= before.leapfree.earliest);
    assert!(
        after.utc.earliest < before.utc.earliest,
        "UTC repeats a second"
    );
}

fn publish_at(w: &mut Writer, lo: i128, width: i128) {
    let mut p = around_now(UtcMapping::default(), Status::Synchronized, 0);
    if let Some(m) = &mut p.model {
        m.bound = Interval {
            lo: RefTime(lo),
            hi: RefTime(lo + width),
        };
    }
    w.publish(&p);
}

/// The monotone clamp kept the earliest of a model the agent had already
/// found wrong and replaced, and then handed out a zero-width interval
/// above true time (found by a review). A floor above the new interval's
/// latest is dropped, as is every floor once the agent counts a violation.
#[test]
fn the_clamp_never_outlives_a_replaced_model() {
    let (_dir, path, mut w) = segment("clamp-replaced");
    let clock = Clock::open_fast(&path)
        .unwrap()
        .with_monotonic_earliest(true);
    let truth = 1_800_000_000_000_000_000i128;
    // A model 5 s ahead of truth (a bound violation the agent is about to
    // detect: e.g. the leap case in tests/leap_attacks.rs), read once.
    publish_at(&mut w, truth + 5_000_000_000, 1_000_000);
    let bad = clock.now().unwrap();
    assert!(bad.leapfree.earliest.0 as i128 > truth);
    // The agent detects it and publishes a correct, synchronized model
    // (1 ms wide; truth is within ~100 us of its lower end at this read).
    publish_at(&mut w, truth, 1_000_000);
    let t = clock.now().unwrap();
    assert_eq!(t.status, Status::Synchronized);
    assert!(
        t.leapfree.earliest.0 as i128 <= truth + 100_000 && t.epsilon_ns() > 0,
        "the clamp kept the replaced model's earliest: {t:?} (truth ~{truth}, eps {} ns)",
        t.epsilon_ns()
    );
    // A floor below the new latest is dropped too once the agent has
    // counted a violation: the model it came from was wrong.
    let mut p = around_now(UtcMapping::default(), Status::Synchronized, 0);
    if let Some(m) = &mut p.model {
        m.bound = Interval {
            lo: RefTime(truth - 500_000),
            hi: RefTime(truth + 600_000),
        };
    }
    let _ = clock.now().unwrap();
    p.violations = 1;
    w.publish(&p);
    let t = clock.now().unwrap();
    assert!(t.leapfree.earliest.0 as i128 <= truth - 400_000, "{t:?}");
}

/// After a leap second, a UTC value and a leap-free value for the same
/// instant differ by a second: each wait compares on its own timescale (on
/// `main`, `wait_until` compared every value on the leap-free scale and a
/// UTC caller was released up to a second early).
#[test]
fn waits_compare_on_the_timescale_they_are_given() {
    let (_dir, path, mut w) = segment("wait-scales");
    let rt = skewd::clock::realtime().0;
    let utc = UtcMapping {
        offset: Nanos(0),
        leap: Some(LeapMark {
            at: RefTime(rt - 10 * NS_PER_S),
            delta: Nanos(NS_PER_S),
            phase: LeapPhase::Done,
        }),
    };
    w.publish(&around_now(utc, Status::Synchronized, 1_000_000));
    let clock = Clock::open(&path).unwrap();
    // 300 ms ahead in UTC is 700 ms behind on the leap-free scale.
    let t = skewd::clock::realtime().0 as i64 - NS_PER_S as i64 + 300_000_000;
    let start = Instant::now();
    clock
        .wait_until(Utc(t), Duration::from_secs(2), None)
        .unwrap();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(290),
        "released early: {waited:?}"
    );
    let start = Instant::now();
    clock
        .wait_until(LeapFree(t), Duration::from_secs(2), None)
        .unwrap();
    assert!(start.elapsed() < Duration::from_millis(50));
    assert!(clock.after(LeapFree(t)).unwrap());
    assert!(clock.before(Utc(t + 600_000_000)).unwrap());
}

/// An interval that does not fit 64-bit Unix ns is an error, never a
/// clamped (narrower) interval: `main` answered a 216 ns wide interval
/// while its epsilon said 318 us.
#[test]
fn an_unrepresentable_interval_is_an_error() {
    let (_dir, path, mut w) = segment("unrepresentable");
    let mut p = around_now(UtcMapping::default(), Status::Synchronized, 0);
    if let Some(m) = &mut p.model {
        m.bound = Interval {
            lo: RefTime(i64::MAX as i128 - 1_000),
            hi: RefTime(i64::MAX as i128 - 10),
        };
        m.anchor = m.anchor.plus(Nanos(-NS_PER_S));
    }
    w.publish(&p);
    let clock = Clock::open(&path).unwrap();
    assert!(matches!(clock.now(), Err(ClientError::Unrepresentable)));
    // A model whose bound itself does not fit is not published at all.
    if let Some(m) = &mut p.model {
        m.bound.hi = RefTime(i64::MAX as i128 + 1);
    }
    w.publish(&p);
    assert!(matches!(
        clock.now(),
        Err(ClientError::NoModel(Status::Disrupted))
    ));
    // The HTTP shape: null bounds with the reason.
    let m = p.model.unwrap();
    let r = skewd::http::NowJson::of(
        skewd::core::read::interval_of(
            Some(&m),
            Status::Unknown,
            skewd::core::read::Reading {
                at: m.anchor,
                extra_ns: 0,
            },
        ),
        m.anchor,
    );
    assert_eq!((r.earliest_ns, r.latest_ns), (None, None));
    assert!(r.error.is_some());
}

/// `after`/`before` act on the interval like the waits do: never on an
/// `unknown` or `disrupted` one (on `main`, `before()` ignored the status
/// and answered from a model that missed true time).
#[test]
fn after_and_before_refuse_statuses_the_waits_refuse() {
    let (_dir, path, mut w) = segment("unusable");
    for st in [Status::Unknown, Status::Disrupted] {
        w.publish(&around_now(UtcMapping::default(), st, 1_000_000));
        let clock = Clock::open(&path).unwrap();
        assert!(matches!(clock.before(Utc(i64::MAX)), Err(ClientError::Unusable(s)) if s == st));
        assert!(matches!(clock.after(LeapFree(0)), Err(ClientError::Unusable(s)) if s == st));
    }
    w.publish(&around_now(
        UtcMapping::default(),
        Status::FreeRunning,
        1_000_000,
    ));
    let clock = Clock::open(&path).unwrap();
    assert!(clock.after(Utc(0)).unwrap());
}

/// A reader in another time namespace reads other MONOTONIC_RAW and
/// BOOTTIME: on `main`, `unshare --time --monotonic 1 --boottime 1 skewd now`
/// printed a synchronized interval 1 s after true time (the suspend check
/// passes: both clocks move together). The segment now names the writer's
/// time namespace and such a reader gets an error.
#[test]
fn a_reader_in_another_time_namespace_is_refused() {
    let (_dir, path, mut w) = segment("timens");
    w.publish(&around_now(
        UtcMapping::default(),
        Status::Synchronized,
        1_000_000,
    ));
    let probe = Command::new("unshare")
        .args(["--time", "--monotonic", "1", "--boottime", "1", "true"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!(
                "SKIPPED: unshare --time fails here: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return;
        }
        Err(e) => {
            eprintln!("SKIPPED: no unshare: {e}");
            return;
        }
    }
    // The same reader in our namespace gets an interval.
    assert!(Clock::open(&path).unwrap().now().is_ok());
    let out = Command::new("unshare")
        .args(["--time", "--monotonic", "1", "--boottime", "1"])
        .arg(env!("CARGO_BIN_EXE_skewd"))
        .args(["now", "--shm"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "printed {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.contains("another time namespace"), "{err}");
}
