//! Commit-wait overshoot: how long after the first instant at which
//! `earliest > s` the library's `commit_wait` returns. The instant is found
//! exactly from the published model (bisection on the steady clock); the
//! return instant is a steady clock read right after the call. Prints JSON.

mod support;
use skewd::client::Clock;
use skewd::core::time::Steady;
use skewd::shm::Reader;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn pct(v: &mut [i64], p: f64) -> i64 {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Overshoots and waits of `n` commit-waits (ns), `pace` apart.
fn commits(
    clock: &Clock,
    model: &skewd::core::model::Model,
    n: usize,
    pace: Duration,
) -> (Vec<i64>, Vec<i64>) {
    let mut overshoot = Vec::with_capacity(n);
    let mut waited = Vec::with_capacity(n);
    for _ in 0..n {
        std::thread::sleep(pace);
        let start = skewd::clock::raw();
        let c = clock.commit_wait(Duration::from_secs(2), None).unwrap();
        let ret = skewd::clock::raw();
        // First steady instant in [start, ret] with earliest > timestamp.
        let (mut lo, mut hi) = (start.0, ret.0);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if model.interval_at(Steady(mid)).interval.lo.0 > c.timestamp_leapfree_ns as i128 {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        overshoot.push(ret.0 - hi);
        waited.push(c.waited_ns);
        assert!(model.interval_at(ret).interval.lo.0 > c.timestamp_leapfree_ns as i128);
    }
    (overshoot, waited)
}

/// The floor any waiter that reads the clock meets: `n` windows of
/// `window` ns spent reading CLOCK_MONOTONIC_RAW back to back, `pace`
/// apart; for each, the longest gap between two successive reads (the
/// thread was interrupted or preempted there, and so would a waiter be).
fn floor(n: usize, window: i64, pace: Duration) -> Vec<i64> {
    (0..n)
        .map(|_| {
            std::thread::sleep(pace);
            let start = skewd::clock::raw().0;
            let (mut last, mut worst) = (start, 0);
            while last - start < window {
                let t = skewd::clock::raw().0;
                worst = worst.max(t - last);
                last = t;
            }
            worst
        })
        .collect()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (_w, path) = support::segment("cw");
    let clock = Clock::open(&path).unwrap();
    let reader = Reader::open(&path).unwrap();
    let model = reader.decode().unwrap().model.unwrap();
    let n = 1000;
    // Quiet, then with a busy loop on every core (the waiter competes with
    // them for the CPU), in the same run; commits 1 ms apart (an
    // application does other work between commits) and back to back (the
    // waiter is then itself a busy loop).
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    for (busy, pace) in [
        (0, Duration::ZERO),
        (0, Duration::from_millis(1)),
        (cores, Duration::from_millis(1)),
        (cores, Duration::ZERO),
    ] {
        let stop = AtomicBool::new(false);
        let (mut overshoot, mut waited) = std::thread::scope(|s| {
            for _ in 0..busy {
                s.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                });
            }
            let r = commits(&clock, &model, n, pace);
            stop.store(true, Ordering::Relaxed);
            r
        });
        let window = pct(&mut waited.clone(), 0.5);
        let stop = AtomicBool::new(false);
        let mut gaps = std::thread::scope(|s| {
            for _ in 0..busy {
                s.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                });
            }
            let r = floor(n, window, pace);
            stop.store(true, Ordering::Relaxed);
            r
        });
        println!(
            "{{\"busy_loops\": {busy}, \"pace_us\": {}, \"commits\": {n}, \"overshoot_p50_ns\": {}, \"overshoot_p99_ns\": {}, \"overshoot_max_ns\": {}, \"waited_p50_ns\": {}, \"floor_p99_ns\": {}}}",
            pace.as_micros(),
            pct(&mut overshoot, 0.5),
            pct(&mut overshoot, 0.99),
            pct(&mut overshoot, 1.0),
            pct(&mut waited, 0.5),
            pct(&mut gaps, 0.99)
        );
    }
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
