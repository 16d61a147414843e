//! Commit-wait overshoot: how long after the first instant at which
//! `earliest > s` the library's `commit_wait` returns. The instant is found
//! exactly from the published model (bisection on the steady clock); the
//! return instant is a steady clock read right after the call. Prints JSON.

mod support;
use skewd::client::Clock;
use skewd::core::time::Steady;
use skewd::shm::Reader;
use std::time::Duration;

fn pct(v: &mut [i64], p: f64) -> i64 {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
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
    let mut overshoot = Vec::with_capacity(n);
    let mut waited = Vec::with_capacity(n);
    for _ in 0..n {
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
    println!(
        "{{\"commits\": {n}, \"overshoot_p50_ns\": {}, \"overshoot_p99_ns\": {}, \"overshoot_max_ns\": {}, \"waited_p50_ns\": {}}}",
        pct(&mut overshoot, 0.5),
        pct(&mut overshoot, 0.99),
        pct(&mut overshoot, 1.0),
        pct(&mut waited, 0.5)
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
