//! Commit-wait and wait-until, shared by the library, HTTP and the CLI.
//!
//! Spanner's rule: pick `s = now().latest`; acknowledge once
//! `now().earliest > s`. A waiter reads the interval, sleeps most of the gap,
//! re-reads, and finishes with a short spin, so it returns microseconds after
//! the first instant at which the condition holds. The decision of each step
//! is the pure [`next_step`]; the blocking and async loops only perform it.

use crate::core::model::Status;
use std::time::Duration;

/// One read of the interval, as a waiter needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// Earliest reference time (Unix ns), if there is a model.
    pub earliest_ns: Option<i128>,
    /// Half-width (ns), if there is a model.
    pub epsilon_ns: Option<i128>,
    /// Status.
    pub status: Status,
}

/// Why a wait ended without success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// The deadline passed first.
    #[error("timed out: status {status}, error bound {epsilon}")]
    Timeout {
        /// The status at the last read.
        status: &'static str,
        /// The error bound at the last read, or "none".
        epsilon: String,
    },
    /// The interval could not be read at all.
    #[error("cannot read the clock: {0}")]
    Read(String),
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

/// Statuses whose interval a waiter may act on.
pub fn usable(s: Status) -> bool {
    matches!(s, Status::Synchronized | Status::FreeRunning)
}

/// Gaps below this are closed by spinning rather than sleeping.
pub const SPIN_BELOW: Duration = Duration::from_micros(150);
/// Re-read at least this often while the interval is unusable.
const POLL_UNUSABLE: Duration = Duration::from_millis(10);

/// Decide the next step of a wait for `earliest > until_ns`, given one
/// observation, the time left before the deadline and an optional cap on
/// the error bound.
pub fn next_step(
    o: &Observation,
    until_ns: i128,
    left: Duration,
    max_epsilon_ns: Option<i128>,
) -> Step {
    let within_cap = match (o.epsilon_ns, max_epsilon_ns) {
        (Some(e), Some(cap)) => e <= cap,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let ok = usable(o.status) && within_cap;
    if ok {
        if let Some(e) = o.earliest_ns {
            if e > until_ns {
                return Step::Done;
            }
        }
    }
    if left.is_zero() {
        return Step::Fail(WaitError::Timeout {
            status: o.status.as_str(),
            epsilon: o.epsilon_ns.map_or("none".into(), |e| format!("{e} ns")),
        });
    }
    let gap = match (ok, o.earliest_ns) {
        (true, Some(e)) => until_ns - e + 1,
        _ => return Step::Sleep(POLL_UNUSABLE.min(left)),
    };
    // earliest advances at (1 + R) minus the growth of the bound: never
    // faster than 1 + phi_hw, so sleeping gap / (1 + 0.001) never overshoots.
    let gap = Duration::from_nanos((gap - gap / 1000).clamp(0, u64::MAX as i128) as u64);
    if gap <= SPIN_BELOW {
        Step::Spin
    } else {
        Step::Sleep((gap - SPIN_BELOW / 2).min(left))
    }
}

/// Result of a successful commit-wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CommitWait {
    /// The chosen timestamp `s` (the latest bound when it was chosen).
    pub timestamp_ns: i64,
    /// How long the wait took on the steady clock.
    pub waited_ns: i64,
    /// The error bound when `s` was chosen.
    pub epsilon_ns: i64,
}

/// Blocking wait: `read` gives an observation, `elapsed` the time since the
/// wait began. Sleeps with `std::thread::sleep`, spins the last stretch.
pub fn wait_blocking(
    mut read: impl FnMut() -> Result<Observation, WaitError>,
    until_ns: i128,
    timeout: Duration,
    max_epsilon_ns: Option<i128>,
) -> Result<Observation, WaitError> {
    let start = std::time::Instant::now();
    loop {
        let o = read()?;
        let left = timeout.saturating_sub(start.elapsed());
        match next_step(&o, until_ns, left, max_epsilon_ns) {
            Step::Done => return Ok(o),
            Step::Fail(e) => return Err(e),
            Step::Sleep(d) => std::thread::sleep(d),
            Step::Spin => std::hint::spin_loop(),
        }
    }
}

/// Async wait (tokio): sleeps on the runtime's timer (1 ms granularity) and
/// yields for the last millisecond.
pub async fn wait_async(
    mut read: impl FnMut() -> Result<Observation, WaitError>,
    until_ns: i128,
    timeout: Duration,
    max_epsilon_ns: Option<i128>,
) -> Result<Observation, WaitError> {
    let start = std::time::Instant::now();
    loop {
        let o = read()?;
        let left = timeout.saturating_sub(start.elapsed());
        match next_step(&o, until_ns, left, max_epsilon_ns) {
            Step::Done => return Ok(o),
            Step::Fail(e) => return Err(e),
            Step::Sleep(d) if d > Duration::from_millis(2) => {
                tokio::time::sleep(d - Duration::from_millis(1)).await
            }
            Step::Sleep(_) | Step::Spin => tokio::task::yield_now().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(earliest: i128, eps: i128, status: Status) -> Observation {
        Observation {
            earliest_ns: Some(earliest),
            epsilon_ns: Some(eps),
            status,
        }
    }

    #[test]
    fn steps() {
        let left = Duration::from_secs(1);
        assert_eq!(
            next_step(&obs(101, 5, Status::Synchronized), 100, left, None),
            Step::Done
        );
        assert_eq!(
            next_step(&obs(100, 5, Status::Synchronized), 100, left, None),
            Step::Spin
        );
        match next_step(&obs(0, 5, Status::Synchronized), 10_000_000, left, None) {
            Step::Sleep(d) => {
                assert!(d < Duration::from_millis(10) && d > Duration::from_millis(9))
            }
            s => panic!("{s:?}"),
        }
        // unusable status or epsilon above the cap never completes
        assert!(matches!(
            next_step(&obs(101, 5, Status::Unknown), 100, left, None),
            Step::Sleep(_)
        ));
        assert!(matches!(
            next_step(&obs(101, 5, Status::Synchronized), 100, left, Some(4)),
            Step::Sleep(_)
        ));
        assert!(matches!(
            next_step(&obs(0, 5, Status::Disrupted), 100, Duration::ZERO, None),
            Step::Fail(WaitError::Timeout {
                status: "disrupted",
                ..
            })
        ));
    }
}
