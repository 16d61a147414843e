//! ns per strict `now()`, per fast `now()` and per bare
//! `clock_gettime(CLOCK_MONOTONIC_RAW)`, all measured in the same run,
//! single thread and 2 threads, plus strict `now()` checking a VMClock page.
//! Prints JSON lines; the last one is `{"now_ns", "now_fast_ns",
//! "now_vmclock_ns", "clock_gettime_ns", "threads": 1}`.

mod support;
use skewd::client::Clock;
use std::hint::black_box;
use std::time::Instant;

const N: u32 = 1_000_000;
const ROUNDS: usize = 15;

/// ns per call of `f`, one round.
fn round(f: &mut dyn FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..N {
        f();
    }
    t.elapsed().as_nanos() as f64 / N as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Medians of (strict, fast, bare, three reads), the rounds interleaved so
/// that a neighbour's load slows every contender alike.
fn measure(strict: &Clock, fast: &Clock) -> (f64, f64, f64, f64) {
    let mut bare = || {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid, writable timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_RAW, &mut ts) };
        black_box(ts);
    };
    let mut three = || {
        black_box(skewd::clock::monotonic_ns());
        black_box(skewd::clock::raw());
        black_box(skewd::clock::boottime_ns());
    };
    let mut now = || {
        black_box(strict.now().unwrap());
    };
    let mut now_fast = || {
        black_box(fast.now().unwrap());
    };
    let mut v: [Vec<f64>; 4] = Default::default();
    for _ in 0..ROUNDS {
        v[0].push(round(&mut now));
        v[1].push(round(&mut now_fast));
        v[2].push(round(&mut bare));
        v[3].push(round(&mut three));
    }
    let [a, b, c, d] = v;
    (median(a), median(b), median(c), median(d))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (_w, path) = support::segment("read");
    let strict = Clock::open(&path).unwrap();
    let fast = Clock::open_fast(&path).unwrap();
    // One kind of call in a loop, for `perf record` / `perf stat`.
    if let Some(what) =
        std::env::args().find_map(|a| a.strip_prefix("--profile-").map(str::to_owned))
    {
        for _ in 0..50_000_000 {
            match what.as_str() {
                "fast" => drop(black_box(fast.now().unwrap())),
                "strict" => drop(black_box(strict.now().unwrap())),
                _ => drop(black_box(skewd::clock::raw())),
            }
        }
        return;
    }
    // Two threads, each measuring the same things concurrently.
    let two: Vec<(f64, f64, f64, f64)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| s.spawn(|| measure(&strict, &fast)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let avg =
        |f: fn(&(f64, f64, f64, f64)) -> f64| two.iter().map(f).sum::<f64>() / two.len() as f64;
    println!(
        "{{\"threads\": 2, \"now_ns\": {:.1}, \"now_fast_ns\": {:.1}, \"clock_gettime_ns\": {:.1}, \"three_clock_reads_ns\": {:.1}}}",
        avg(|x| x.0),
        avg(|x| x.1),
        avg(|x| x.2),
        avg(|x| x.3)
    );
    let (now, now_fast, bare, three) = measure(&strict, &fast);
    // Strict with the VMClock page checked on every read (a VM that has
    // one): one more seqlock read of the page.
    let (_wv, vpath) = support::segment_with("read-vm", Some((7, false)));
    let page = vpath.parent().unwrap().join("vmclock0");
    skewd::shm::vmclock::write_page(&page, 0, 7).unwrap();
    let with_page = Clock::open(&vpath).unwrap().with_vmclock(&page).unwrap();
    let now_vm = median(
        (0..ROUNDS)
            .map(|_| {
                round(&mut || {
                    black_box(with_page.now().unwrap());
                })
            })
            .collect(),
    );
    println!(
        "{{\"ratio_strict\": {:.2}, \"ratio_fast\": {:.2}, \"ratio_three_reads\": {:.2}, \"ratio_strict_vmclock\": {:.2}}}",
        now / bare,
        now_fast / bare,
        three / bare,
        now_vm / bare
    );
    println!(
        "{{\"now_ns\": {now:.1}, \"now_fast_ns\": {now_fast:.1}, \"now_vmclock_ns\": {now_vm:.1}, \"clock_gettime_ns\": {bare:.1}, \"three_clock_reads_ns\": {three:.1}, \"threads\": 1}}"
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
    let _ = std::fs::remove_dir_all(vpath.parent().unwrap());
}
