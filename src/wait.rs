//! Commit-wait and wait-until, shared by the library, HTTP and the CLI.
//!
//! Spanner's rule: pick `s = now().latest`; acknowledge once
//! `now().earliest > s`. A waiter reads the interval, sleeps most of the gap,
//! re-reads, and finishes with a short spin, so it returns microseconds after
//! the first instant at which the condition holds. The decision of each step
//! is the pure [`next_step`]; one loop ([`run`]) performs it for every
//! caller, and only the way it pauses differs: the blocking variants sleep
//! the thread and spin, the async ones sleep on tokio's timer and yield.

use crate::core::model::Status;
use crate::core::time::clamp_i64;
use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// One read of the interval, as a waiter needs it, on the timescale the
/// wait is for (the caller's read function picks it: commit-wait always
/// uses the leap-free one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// Earliest reference time, if there is a model.
    pub earliest_ns: Option<i128>,
    /// Latest reference time, if there is a model (commit-wait picks it).
    pub latest_ns: Option<i128>,
    /// Half-width, if there is a model.
    pub epsilon_ns: Option<i128>,
    /// Status.
    pub status: Status,
}

impl Observation {
    /// A read with an interval, on timescale `S`.
    pub fn of<S: crate::core::read::Timescale>(t: &crate::core::read::TimeInterval) -> Self {
        let b = t.on::<S>();
        Observation {
            earliest_ns: Some(b.earliest.ns().into()),
            latest_ns: Some(b.latest.ns().into()),
            epsilon_ns: Some(t.epsilon_ns().into()),
            status: t.status,
        }
    }

    /// A read without a model.
    pub fn without_model(status: Status) -> Self {
        Observation {
            earliest_ns: None,
            latest_ns: None,
            epsilon_ns: None,
            status,
        }
    }

    /// Whether a waiter may act on this read: a usable status and an error
    /// bound within the cap.
    fn acceptable(&self, max_epsilon_ns: Option<i128>) -> bool {
        usable(self.status)
            && match (self.epsilon_ns, max_epsilon_ns) {
                (Some(e), Some(cap)) => e <= cap,
                (Some(_), None) => true,
                (None, _) => false,
            }
    }
}

/// Why a wait ended without success: the deadline passed first (with what
/// the last read said), or the reader's own error `E`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError<E = std::convert::Infallible> {
    /// The deadline passed first.
    #[error("timed out: status {status}, error bound {}", fmt_eps(*.epsilon_ns))]
    Timeout {
        /// The status at the last read.
        status: Status,
        /// The error bound at the last read (ns), if there was an interval.
        epsilon_ns: Option<i64>,
    },
    /// The interval could not be read at all.
    #[error(transparent)]
    Read(E),
}

fn fmt_eps(e: Option<i64>) -> String {
    e.map_or("none".into(), |e| format!("{e} ns"))
}

impl WaitError {
    /// The same timeout with any reader error type.
    pub fn widen<E>(self) -> WaitError<E> {
        match self {
            WaitError::Timeout { status, epsilon_ns } => WaitError::Timeout { status, epsilon_ns },
            WaitError::Read(never) => match never {},
        }
    }
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `earliest > until`: done.
    Done,
    /// Sleep this long, then read again.
    Sleep(Duration),
    /// Very close: read again right away.
    Spin,
    /// Give up.
    Fail(WaitError),
}

/// How a waiter pauses between reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// Sleep about this long.
    Sleep(Duration),
    /// Read again almost at once.
    Spin,
}

/// Statuses whose interval a waiter may act on.
pub fn usable(s: Status) -> bool {
    matches!(s, Status::Synchronized | Status::FreeRunning)
}

/// Gaps below this are closed by spinning rather than sleeping: a sleeping
/// vCPU that went idle wakes tens of µs late (measured here: a 50 µs
/// sleep overshoots by 18 µs median, 150 µs at p99), so the last stretch
/// is spun. Blocking waits sleep with a fine timer slack
/// ([`crate::clock::FineTimerSlack`]) so the sleep ends close to its mark;
/// having slept, the waiter is woken ahead of busy threads and spins the
/// rest inside its time slice (`benches/commit_wait.rs` measures it beside
/// a busy loop per core).
pub const SPIN_BELOW: Duration = Duration::from_micros(150);
/// A sleep is cut this much short of the gap, for the wake-up's latency.
const WAKE_EARLY: Duration = Duration::from_micros(75);
/// Re-read at least this often while the interval is unusable.
const POLL_UNUSABLE: Duration = Duration::from_millis(10);

/// Decide the next step of a wait for `earliest > until_ns`, given one
/// observation, the time left before the deadline and an optional cap on
/// the error bound. `until_ns` is `None` while commit-wait has not yet
/// picked its timestamp.
pub fn next_step(
    o: &Observation,
    until_ns: Option<i128>,
    left: Duration,
    max_epsilon_ns: Option<i128>,
) -> Step {
    let ok = o.acceptable(max_epsilon_ns);
    let gap = match (ok, o.earliest_ns, until_ns) {
        (true, Some(e), Some(u)) if e > u => return Step::Done,
        (true, Some(e), Some(u)) => Some(u - e + 1),
        _ => None,
    };
    if left.is_zero() {
        return Step::Fail(WaitError::Timeout {
            status: o.status,
            epsilon_ns: o.epsilon_ns.map(clamp_i64),
        });
    }
    let Some(gap) = gap else {
        return Step::Sleep(POLL_UNUSABLE.min(left));
    };
    // earliest advances at (1 + R) minus the growth of the bound: never
    // faster than 1 + phi_hw, so sleeping gap / (1 + 0.001) never overshoots.
    let gap = Duration::from_nanos((gap - gap / 1000).clamp(0, u64::MAX as i128) as u64);
    if gap <= SPIN_BELOW {
        Step::Spin
    } else {
        Step::Sleep((gap - WAKE_EARLY).min(left))
    }
}

/// Result of a successful commit-wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CommitWait {
    /// The chosen timestamp `s` (the latest bound when it was chosen), on
    /// the leap-free timescale (UTC plus the leap seconds since 2017-01-01:
    /// it never repeats, so commit timestamps stay ordered across a leap).
    pub timestamp_leapfree_ns: i64,
    /// How long the wait took on the steady clock.
    pub waited_ns: i64,
    /// The error bound when `s` was chosen.
    pub epsilon_ns: i64,
}

/// What a finished wait saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// The read that ended the wait (`earliest > until`).
    pub last: Observation,
    /// The instant waited for (commit-wait: the picked timestamp).
    pub until_ns: i128,
    /// The error bound of the read `until_ns` was picked from (commit-wait),
    /// or of the last read (wait-until).
    pub epsilon_ns: i128,
    /// How long the wait took.
    pub waited: Duration,
}

impl Finished {
    /// As a commit-wait result.
    pub fn commit_wait(&self) -> CommitWait {
        CommitWait {
            timestamp_leapfree_ns: clamp_i64(self.until_ns),
            waited_ns: clamp_i64(self.waited.as_nanos() as i128),
            epsilon_ns: clamp_i64(self.epsilon_ns),
        }
    }
}

/// The one wait loop. With `until_ns = None` it is commit-wait: the first
/// acceptable read's `latest` becomes the instant waited for. `pause`
/// performs the pauses [`next_step`] asks for.
pub async fn run<E, F: Future<Output = ()>>(
    mut read: impl FnMut() -> Result<Observation, E>,
    mut until_ns: Option<i128>,
    timeout: Duration,
    max_epsilon_ns: Option<i128>,
    mut pause: impl FnMut(Pause) -> F,
) -> Result<Finished, WaitError<E>> {
    let start = Instant::now();
    let mut picked_epsilon = None;
    loop {
        let o = read().map_err(WaitError::Read)?;
        if until_ns.is_none() && o.acceptable(max_epsilon_ns) && o.latest_ns.is_some() {
            until_ns = o.latest_ns;
            picked_epsilon = o.epsilon_ns;
        }
        let left = timeout.saturating_sub(start.elapsed());
        match next_step(&o, until_ns, left, max_epsilon_ns) {
            Step::Done => {
                return Ok(Finished {
                    last: o,
                    until_ns: until_ns.unwrap_or_default(),
                    epsilon_ns: picked_epsilon.or(o.epsilon_ns).unwrap_or_default(),
                    waited: start.elapsed(),
                })
            }
            Step::Fail(e) => return Err(e.widen()),
            Step::Sleep(d) => pause(Pause::Sleep(d)).await,
            Step::Spin => pause(Pause::Spin).await,
        }
    }
}

/// Pause the calling thread: sleep, or spin once.
fn pause_thread(p: Pause) -> std::future::Ready<()> {
    match p {
        Pause::Sleep(d) => std::thread::sleep(d),
        Pause::Spin => std::hint::spin_loop(),
    }
    std::future::ready(())
}

/// Pause the tokio task: the timer has 1 ms granularity, so sleep a
/// millisecond short and yield through the rest.
#[cfg(feature = "tokio")]
async fn pause_task(p: Pause) {
    match p {
        Pause::Sleep(d) if d > Duration::from_millis(2) => {
            tokio::time::sleep(d - Duration::from_millis(1)).await
        }
        Pause::Sleep(_) | Pause::Spin => tokio::task::yield_now().await,
    }
}

/// Drive a future whose every await is already complete (the blocking
/// pauses): it finishes on the first poll.
fn complete<T>(f: impl Future<Output = T>) -> T {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// Blocking wait for `earliest > until_ns`.
pub fn wait_blocking<E>(
    read: impl FnMut() -> Result<Observation, E>,
    until_ns: i128,
    timeout: Duration,
    max_epsilon_ns: Option<i128>,
) -> Result<Finished, WaitError<E>> {
    let _slack = crate::clock::FineTimerSlack::hold();
    complete(run(
        read,
        Some(until_ns),
        timeout,
        max_epsilon_ns,
        pause_thread,
    ))
}

/// Async wait (tokio) for `earliest > until_ns`.
#[cfg(feature = "tokio")]
pub async fn wait_async<E>(
    read: impl FnMut() -> Result<Observation, E>,
    until_ns: i128,
    timeout: Duration,
    max_epsilon_ns: Option<i128>,
) -> Result<Finished, WaitError<E>> {
    run(read, Some(until_ns), timeout, max_epsilon_ns, pause_task).await
}

/// Blocking commit-wait.
pub fn commit_wait_blocking<E>(
    read: impl FnMut() -> Result<Observation, E>,
    timeout: Duration,
    max_epsilon_ns: Option<i128>,
) -> Result<CommitWait, WaitError<E>> {
    let _slack = crate::clock::FineTimerSlack::hold();
    complete(run(read, None, timeout, max_epsilon_ns, pause_thread)).map(|f| f.commit_wait())
}

/// Async commit-wait (tokio).
#[cfg(feature = "tokio")]
pub async fn commit_wait_async<E>(
    read: impl FnMut() -> Result<Observation, E>,
    timeout: Duration,
    max_epsilon_ns: Option<i128>,
) -> Result<CommitWait, WaitError<E>> {
    run(read, None, timeout, max_epsilon_ns, pause_task)
        .await
        .map(|f| f.commit_wait())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(earliest: i128, eps: i128, status: Status) -> Observation {
        Observation {
            earliest_ns: Some(earliest),
            latest_ns: Some(earliest + 2 * eps),
            epsilon_ns: Some(eps),
            status,
        }
    }

    #[test]
    fn steps() {
        let left = Duration::from_secs(1);
        assert_eq!(
            next_step(&obs(101, 5, Status::Synchronized), Some(100), left, None),
            Step::Done
        );
        assert_eq!(
            next_step(&obs(100, 5, Status::Synchronized), Some(100), left, None),
            Step::Spin
        );
        match next_step(
            &obs(0, 5, Status::Synchronized),
            Some(10_000_000),
            left,
            None,
        ) {
            Step::Sleep(d) => {
                assert!(d < Duration::from_millis(10) && d > Duration::from_millis(9))
            }
            s => panic!("{s:?}"),
        }
        // unusable status or epsilon above the cap never completes
        assert!(matches!(
            next_step(&obs(101, 5, Status::Unknown), Some(100), left, None),
            Step::Sleep(_)
        ));
        assert!(matches!(
            next_step(&obs(101, 5, Status::Synchronized), Some(100), left, Some(4)),
            Step::Sleep(_)
        ));
        assert!(matches!(
            next_step(
                &obs(0, 5, Status::Disrupted),
                Some(100),
                Duration::ZERO,
                None
            ),
            Step::Fail(WaitError::Timeout {
                status: Status::Disrupted,
                ..
            })
        ));
    }

    /// A scripted clock: each read advances 1 ms of true time; the first
    /// three reads have no model, then the interval is truth ± 2 ms.
    fn scripted() -> impl FnMut() -> Result<Observation, std::convert::Infallible> {
        let mut reads = 0i128;
        move || {
            reads += 1;
            let truth = reads * 1_000_000;
            Ok(if reads <= 3 {
                Observation::without_model(Status::Unknown)
            } else {
                Observation {
                    earliest_ns: Some(truth - 2_000_000),
                    latest_ns: Some(truth + 2_000_000),
                    epsilon_ns: Some(2_000_000),
                    status: Status::Synchronized,
                }
            })
        }
    }

    #[test]
    fn commit_wait_picks_latest_of_first_usable_read_and_waits_past_it() {
        let c = commit_wait_blocking(scripted(), Duration::from_secs(5), None).unwrap();
        // read 4 is the first usable one: truth 4 ms, latest 6 ms; earliest
        // first exceeds 6 ms at read 9 (truth 9 ms, earliest 7 ms).
        assert_eq!(c.timestamp_leapfree_ns, 6_000_000);
        assert_eq!(c.epsilon_ns, 2_000_000);
        let f = complete(run(
            scripted(),
            None,
            Duration::from_secs(5),
            None,
            pause_thread,
        ))
        .unwrap();
        assert_eq!(f.last.earliest_ns, Some(7_000_000));
        // a cap below every read's bound never picks: timeout, not a pick
        let e = commit_wait_blocking(scripted(), Duration::from_millis(30), Some(1)).unwrap_err();
        assert!(
            matches!(
                e,
                WaitError::Timeout {
                    status: Status::Synchronized,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn async_and_blocking_waits_agree() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let a = rt
            .block_on(wait_async(
                scripted(),
                5_000_000,
                Duration::from_secs(5),
                None,
            ))
            .unwrap();
        let b = wait_blocking(scripted(), 5_000_000, Duration::from_secs(5), None).unwrap();
        assert_eq!(a.last, b.last);
        assert_eq!(a.last.earliest_ns, Some(6_000_000));
        let c = rt
            .block_on(commit_wait_async(scripted(), Duration::from_secs(5), None))
            .unwrap();
        assert_eq!(c.timestamp_leapfree_ns, 6_000_000);
    }
}
