//! What applications link: the interval from shared memory at about the
//! cost of the clock reads themselves, TrueTime's `after` / `before`, and
//! commit-wait.
//!
//! ```no_run
//! let clock = skewd::client::Clock::open(std::path::Path::new("/run/skewd/clock"))?;
//! let t = clock.now()?;                 // t.earliest_ns <= true time <= t.latest_ns
//! let s = clock.commit_wait(std::time::Duration::from_secs(1), None)?;
//! // s.timestamp_ns is now surely in the past
//! # Ok::<(), skewd::client::ClientError>(())
//! ```
//!
//! `now()` is lock-free, allocation-free and makes no system call beyond
//! the vDSO clock reads. **Strict** mode (the default) reads
//! CLOCK_MONOTONIC, CLOCK_MONOTONIC_RAW and CLOCK_BOOTTIME and checks that
//! BOOTTIME - MONOTONIC still equals what the daemon saw: a suspend since the
//! anchor (which freezes MONOTONIC_RAW while true time goes on) is caught on
//! the read itself. **Fast** mode ([`Clock::open_fast`]) reads
//! MONOTONIC_RAW alone: it gives up that check, so after a suspend it can
//! return a too-early interval until the daemon notices (within its refresh
//! period, 0.5 s). Use it only on hosts that never suspend (servers, VMs
//! without suspend).

use crate::clock;
use crate::core::model::Status;
use crate::core::time::clamp_i64;
use crate::core::time::{Nanos, Steady};
use crate::shm::layout::{FLAG_FAST, FLAG_LEAP, FLAG_MODEL, FLAG_VMCLOCK, FLAG_VMCLOCK_DEFAULT};
use crate::shm::vmclock::VmClock;
use crate::shm::{Reader, ShmError};
use crate::wait::{self, CommitWait, Observation, WaitError};
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Why `now()` gives no interval.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The segment cannot be used.
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// The daemon has no model (status given).
    #[error("no clock model yet (status {})", .0.as_str())]
    NoModel(Status),
    /// The host was suspended since the anchor; the daemon will rebuild.
    #[error("the host was suspended since the last update ({0} ns); retry shortly")]
    Interrupted(i64),
    /// The VMClock disruption marker changed since the model was made: the
    /// VM was migrated or restored; the daemon will rebuild.
    #[error("the VM was disrupted (live migration or snapshot restore) since the last update; retry shortly")]
    VmDisrupted,
    /// The VMClock page named with [`Clock::with_vmclock`] cannot be used.
    #[error("VMClock: {0}")]
    VmClock(String),
    /// This process's steady clock reads earlier than the daemon's last
    /// write, which cannot happen on one timeline: the reader is in another
    /// time namespace or under a faked clock, and an interval computed from
    /// its clock would be for some other instant.
    #[error("this process's CLOCK_MONOTONIC_RAW is {0} ns behind the agent's last update: not the agent's timeline (another time namespace, or a faked clock)")]
    ForeignTimeline(i64),
    /// A wait did not finish.
    #[error(transparent)]
    Wait(#[from] WaitError),
}

/// An interval that contains true time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeInterval {
    /// True time (Unix ns, UTC) is not before this.
    pub earliest_ns: i64,
    /// True time (Unix ns, UTC) is not after this.
    pub latest_ns: i64,
    /// What the interval is good for.
    pub status: Status,
    /// The same bounds on the leap-free timescale commit-wait uses (equal to
    /// the UTC ones unless a leap second passed while the daemon ran).
    pub leapfree: (i64, i64),
}

impl TimeInterval {
    /// Half the width, rounded up.
    pub fn epsilon_ns(&self) -> i64 {
        let w = self.latest_ns.saturating_sub(self.earliest_ns);
        w / 2 + w % 2
    }
}

/// Read mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Three clock reads and the suspend check (default).
    Strict,
    /// MONOTONIC_RAW alone; see the module docs for what it gives up.
    Fast,
}

/// A handle on the daemon's segment. `Send + Sync`; share it freely.
#[derive(Debug)]
pub struct Clock {
    reader: Reader,
    mode: Mode,
    clamp: bool,
    last_earliest: AtomicI64,
    last_epoch: AtomicU64,
    /// The hypervisor's VMClock page, when this process can read it, and
    /// whether it was named ([`Clock::with_vmclock`]) rather than found at
    /// the default path.
    vmclock: Option<(VmClock, bool)>,
}

impl Clock {
    /// Open the segment in strict mode.
    pub fn open(path: &Path) -> Result<Clock, ClientError> {
        Clock::open_with(path, Mode::Strict)
    }

    /// Open the segment in fast mode (one clock read; no suspend check).
    pub fn open_fast(path: &Path) -> Result<Clock, ClientError> {
        Clock::open_with(path, Mode::Fast)
    }

    /// Open with an explicit mode. Maps the hypervisor's VMClock page
    /// (`/dev/vmclock0`) too when it exists and is readable; see
    /// [`Clock::with_vmclock`].
    pub fn open_with(path: &Path, mode: Mode) -> Result<Clock, ClientError> {
        Ok(Clock {
            reader: Reader::open(path)?,
            mode,
            vmclock: VmClock::open(Path::new(crate::shm::vmclock::DEFAULT_PATH))
                .ok()
                .map(|c| (c, false)),
            clamp: false,
            last_earliest: AtomicI64::new(i64::MIN),
            last_epoch: AtomicU64::new(0),
        })
    }

    /// Check every read against the VMClock page at `page` (the one the
    /// daemon watches): when its disruption marker differs from the one the
    /// published model was made under, the VM was migrated or restored
    /// since, and `now()` fails with [`ClientError::VmDisrupted`] at once,
    /// without waiting for the daemon's next refresh.
    pub fn with_vmclock(mut self, page: &Path) -> Result<Clock, ClientError> {
        let page = VmClock::open(page).map_err(|e| ClientError::VmClock(e.to_string()))?;
        self.vmclock = Some((page, true));
        Ok(self)
    }

    /// Never return an `earliest` below one already returned for the same
    /// daemon start (true time is monotone). Costs one atomic per read.
    pub fn with_monotonic_earliest(mut self, on: bool) -> Clock {
        self.clamp = on;
        self
    }

    /// One clock read in the configured mode: the steady instant and the
    /// extra uncertainty the strict suspend check found.
    #[inline(always)]
    fn clock_read(&self, offs_boot: i64) -> Result<(Steady, i64), ClientError> {
        match self.mode {
            Mode::Fast => Ok((clock::raw(), 0)),
            Mode::Strict => clock::strict_steady(offs_boot).map_err(ClientError::Interrupted),
        }
    }

    /// The interval that contains true time now.
    #[inline(always)]
    pub fn now(&self) -> Result<TimeInterval, ClientError> {
        let f = self.reader.read_fast()?;
        if f.flags & FLAG_MODEL == 0 {
            return Err(ClientError::NoModel(
                Status::from_u8(f.status as u8).unwrap_or(Status::Unknown),
            ));
        }
        if f.flags & FLAG_VMCLOCK != 0 {
            if let Some((page, named)) = &self.vmclock {
                // Compare like with like: the default page only against the
                // daemon's marker of the default page. A marker that cannot
                // be read (the hypervisor mid-update for every try) counts
                // as changed: the safe side.
                if (*named || f.flags & FLAG_VMCLOCK_DEFAULT != 0)
                    && page.disruption_marker() != Some(f.vmclock_marker)
                {
                    return Err(ClientError::VmDisrupted);
                }
            }
        }
        let (at, extra) = self.clock_read(f.offs_boot)?;
        if at.0 < f.written_at {
            return Err(ClientError::ForeignTimeline(f.written_at - at.0));
        }
        let mut t = if f.flags & (FLAG_FAST | FLAG_LEAP) == FLAG_FAST && at.0 >= f.anchor {
            // Hot path: multiplies and shifts only.
            let (lo, hi) = f.form.bound_at(f.lo as i128, f.hi as i128, at.0 - f.anchor);
            let lo = clamp_i64(lo).saturating_sub(extra);
            let hi = clamp_i64(hi).saturating_add(extra);
            let status = if at.0 > f.void_after {
                Status::Unknown
            } else {
                match Status::from_u8(f.status as u8) {
                    Some(Status::Synchronized) if at.0 > f.sync_until => Status::FreeRunning,
                    Some(s) => s,
                    None => Status::Unknown,
                }
            };
            TimeInterval {
                earliest_ns: lo.saturating_sub(f.utc_offset),
                latest_ns: hi.saturating_sub(f.utc_offset),
                status,
                leapfree: (lo, hi),
            }
        } else {
            // Before the anchor, around a leap, or no fast form: the exact
            // model (a second seqlock read; the model may have moved on, and
            // any published model read at any instant is sound).
            let (model, status, _, _) = self.reader.read_model()?;
            let model = model.ok_or(ClientError::NoModel(status))?;
            let r = model.interval_at(at);
            let extra = Nanos(extra as i128);
            let leapfree = r.interval.widen(extra, extra);
            let utc = model.utc.to_utc(leapfree);
            TimeInterval {
                earliest_ns: clamp_i64(utc.lo.0),
                latest_ns: clamp_i64(utc.hi.0),
                status: r.status,
                leapfree: (clamp_i64(leapfree.lo.0), clamp_i64(leapfree.hi.0)),
            }
        };
        if self.clamp {
            let epoch = f.epoch;
            if self.last_epoch.swap(epoch, Ordering::Relaxed) == epoch {
                let prev = self
                    .last_earliest
                    .fetch_max(t.earliest_ns, Ordering::Relaxed);
                t.earliest_ns = t.earliest_ns.max(prev).min(t.latest_ns);
            } else {
                self.last_earliest.store(t.earliest_ns, Ordering::Relaxed);
            }
        }
        Ok(t)
    }

    /// One read as a waiter sees it (leap-free).
    fn observe(&self) -> Result<Observation, WaitError> {
        match self.now() {
            Ok(t) => Ok(Observation {
                earliest_ns: Some(t.leapfree.0 as i128),
                latest_ns: Some(t.leapfree.1 as i128),
                epsilon_ns: Some(t.epsilon_ns() as i128),
                status: t.status,
            }),
            Err(ClientError::NoModel(s)) => Ok(Observation::without_model(s)),
            Err(ClientError::Interrupted(_) | ClientError::VmDisrupted) => {
                Ok(Observation::without_model(Status::Disrupted))
            }
            Err(e) => Err(WaitError::Read(e.to_string())),
        }
    }

    /// TrueTime's `TT.after(t)`: true time is surely after `t_ns`.
    pub fn after(&self, t_ns: i64) -> Result<bool, ClientError> {
        Ok(self.now()?.leapfree.0 > t_ns)
    }

    /// TrueTime's `TT.before(t)`: true time is surely before `t_ns`.
    pub fn before(&self, t_ns: i64) -> Result<bool, ClientError> {
        Ok(self.now()?.leapfree.1 < t_ns)
    }

    /// Block until `t_ns` (leap-free Unix ns) is surely in the past, or fail
    /// at `timeout` (also while unsynchronized or above `max_epsilon_ns`).
    pub fn wait_until(
        &self,
        t_ns: i64,
        timeout: Duration,
        max_epsilon_ns: Option<i64>,
    ) -> Result<(), ClientError> {
        wait::wait_blocking(
            || self.observe(),
            t_ns.into(),
            timeout,
            max_epsilon_ns.map(i128::from),
        )?;
        Ok(())
    }

    /// Spanner's commit-wait: pick `s = now().latest` from the first usable
    /// read (within `max_epsilon_ns`), return once `now().earliest > s`.
    pub fn commit_wait(
        &self,
        timeout: Duration,
        max_epsilon_ns: Option<i64>,
    ) -> Result<CommitWait, ClientError> {
        Ok(wait::commit_wait_blocking(
            || self.observe(),
            timeout,
            max_epsilon_ns.map(i128::from),
        )?)
    }

    /// Async `wait_until` (tokio).
    #[cfg(feature = "tokio")]
    pub async fn wait_until_async(
        &self,
        t_ns: i64,
        timeout: Duration,
        max_epsilon_ns: Option<i64>,
    ) -> Result<(), ClientError> {
        wait::wait_async(
            || self.observe(),
            t_ns.into(),
            timeout,
            max_epsilon_ns.map(i128::from),
        )
        .await?;
        Ok(())
    }

    /// Async commit-wait (tokio).
    #[cfg(feature = "tokio")]
    pub async fn commit_wait_async(
        &self,
        timeout: Duration,
        max_epsilon_ns: Option<i64>,
    ) -> Result<CommitWait, ClientError> {
        Ok(
            wait::commit_wait_async(|| self.observe(), timeout, max_epsilon_ns.map(i128::from))
                .await?,
        )
    }
}

// `Clock` is shared across threads by design.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Clock>();
};
