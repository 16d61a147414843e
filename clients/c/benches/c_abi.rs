//! ns per read through the C ABI (`skewd_now`, strict and fast) next to the
//! Rust client's `now()` and a bare `clock_gettime(CLOCK_MONOTONIC_RAW)`,
//! all in one run on one segment. Prints one JSON line.

#[path = "../../../benches/support/mod.rs"]
mod support;
use skewd::client::Clock;
use skewd_c::{skewd_close, skewd_now, skewd_open, SkewdClock, SkewdInterval, SKEWD_FAST};
use std::hint::black_box;
use std::time::Instant;

const N: u32 = 2_000_000;
const ROUNDS: usize = 9;

/// Median ns per call over `ROUNDS` rounds of `N` calls, the candidates
/// interleaved round by round so that a noisy moment hits them alike.
fn per_call(fs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let mut v = vec![Vec::with_capacity(ROUNDS); fs.len()];
    for _ in 0..ROUNDS {
        for (i, f) in fs.iter_mut().enumerate() {
            let t = Instant::now();
            for _ in 0..N {
                f();
            }
            v[i].push(t.elapsed().as_nanos() as f64 / N as f64);
        }
    }
    v.into_iter()
        .map(|mut r| {
            r.sort_by(f64::total_cmp);
            r[ROUNDS / 2]
        })
        .collect()
}

fn open(path: &std::path::Path, flags: i32) -> *mut SkewdClock {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let mut h = std::ptr::null_mut();
    // SAFETY: a NUL-terminated path and a writable out pointer.
    assert_eq!(unsafe { skewd_open(c.as_ptr(), flags, &mut h) }, 0);
    h
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (_w, path) = support::segment("c-abi");
    let strict = Clock::open(&path).unwrap();
    let fast = Clock::open_fast(&path).unwrap();
    let (cs, cf) = (open(&path, 0), open(&path, SKEWD_FAST));
    let mut out = SkewdInterval::default();
    let mut bare = || {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid, writable timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_RAW, &mut ts) };
        black_box(ts);
    };
    let mut rust_strict = || {
        black_box(strict.now().unwrap());
    };
    let mut rust_fast = || {
        black_box(fast.now().unwrap());
    };
    let mut c_strict = || {
        // SAFETY: a live handle and a writable interval.
        black_box(unsafe { skewd_now(black_box(cs), &mut out) });
    };
    let r = per_call(&mut [&mut bare, &mut rust_strict, &mut rust_fast, &mut c_strict]);
    let mut c_fast = || {
        // SAFETY: as above.
        black_box(unsafe { skewd_now(black_box(cf), &mut out) });
    };
    let f = per_call(&mut [&mut rust_fast, &mut c_fast]);
    println!(
        "{{\"clock_gettime_ns\": {:.1}, \"rust_now_ns\": {:.1}, \"c_now_ns\": {:.1}, \"c_vs_rust\": {:.3}, \"rust_now_fast_ns\": {:.1}, \"c_now_fast_ns\": {:.1}, \"c_fast_vs_rust_fast\": {:.3}, \"rust_fast_first_run_ns\": {:.1}}}",
        r[0],
        r[1],
        r[3],
        r[3] / r[1],
        f[0],
        f[1],
        f[1] / f[0],
        r[2],
    );
    // SAFETY: handles from skewd_open, closed once.
    unsafe {
        skewd_close(cs);
        skewd_close(cf);
    }
}
