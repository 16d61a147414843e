//! ns per strict `now()`, per fast `now()` and per bare
//! `clock_gettime(CLOCK_MONOTONIC_RAW)`, all measured in the same run,
//! single thread and 2 threads, plus strict `now()` checking a VMClock page.
//! Prints JSON lines; the last one is `{"now_ns", "now_fast_ns",
//! "now_vmclock_ns", "clock_gettime_ns", "threads": 1}`.

mod support;
use skewd::client::Clock;
use std::hint::black_box;
use std::time::Instant;

const N: u32 = 2_000_000;
const ROUNDS: usize = 7;

fn per_call(mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..N {
                f();
            }
            t.elapsed().as_nanos() as f64 / N as f64
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[ROUNDS / 2]
}

fn measure(strict: &Clock, fast: &Clock) -> (f64, f64, f64, f64) {
    let bare = per_call(|| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid, writable timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_RAW, &mut ts) };
        black_box(ts);
    });
    let three = per_call(|| {
        black_box(skewd::clock::monotonic_ns());
        black_box(skewd::clock::raw());
        black_box(skewd::clock::boottime_ns());
    });
    let now = per_call(|| {
        black_box(strict.now().unwrap());
    });
    let now_fast = per_call(|| {
        black_box(fast.now().unwrap());
    });
    (now, now_fast, bare, three)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (_w, path) = support::segment("read");
    let strict = Clock::open(&path).unwrap();
    let fast = Clock::open_fast(&path).unwrap();
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
    let now_vm = per_call(|| {
        black_box(with_page.now().unwrap());
    });
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
