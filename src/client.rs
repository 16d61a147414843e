//! What applications link: the interval from shared memory at about the
//! cost of the clock reads themselves, TrueTime's `after` / `before`, and
//! commit-wait.
//!
//! ```no_run
//! use skewd::client::{Clock, LeapFree, Utc};
//! let clock = Clock::open(std::path::Path::new("/run/skewd/clock"))?;
//! let t = clock.now()?;       // t.utc.earliest <= true time (UTC) <= t.utc.latest
//! let lease_end = Utc(1_900_000_000_000_000_000);
//! if clock.after(lease_end)? { /* the lease surely expired */ }
//! let s = clock.commit_wait(std::time::Duration::from_secs(1), None)?;
//! // s.timestamp_leapfree_ns is now surely in the past (leap-free scale)
//! clock.wait_until(LeapFree(s.timestamp_leapfree_ns), std::time::Duration::ZERO, None)?;
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
pub use crate::core::model::Status;
use crate::core::time::{Interval, Nanos, RefTime, Steady};
use crate::shm::layout::{FLAG_FAST, FLAG_LEAP, FLAG_MODEL, FLAG_VMCLOCK, FLAG_VMCLOCK_DEFAULT};
use crate::shm::vmclock::VmClock;
use crate::shm::{Reader, ShmError};
pub use crate::timescale::{Bounds, LeapFree, Timescale, Utc};
pub use crate::wait::CommitWait;
use crate::wait::{self, Observation, WaitError};
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
    /// The interval's status is not one to act on (`unknown`, `disrupted`):
    /// `after`/`before` refuse it as the waits do.
    #[error("the interval is {} and cannot be acted on", .0.as_str())]
    Unusable(Status),
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
    /// This process is in another time namespace than the agent (a
    /// container with its own MONOTONIC/BOOTTIME offsets), or cannot tell
    /// which one it is in: its clocks are not the agent's timeline.
    #[error("this process is in another time namespace than the agent (ours {ours:?}, the agent's {agent:?}; unknown where /proc/self/ns/time cannot be read): read the interval over HTTP instead")]
    ForeignTimeNamespace {
        /// This process's namespace (inode, device), if known.
        ours: Option<(u64, u64)>,
        /// The agent's, if it could tell.
        agent: Option<(u64, u64)>,
    },
    /// The interval does not fit 64-bit nanoseconds (beyond the year 2262):
    /// it is refused rather than clamped, which would narrow it.
    #[error("the interval does not fit in 64-bit Unix nanoseconds")]
    Unrepresentable,
    /// A wait did not finish.
    #[error(transparent)]
    Wait(#[from] WaitError),
}

/// An interval that contains true time, on both timescales.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeInterval {
    /// On the UTC timescale (Unix ns).
    pub utc: Bounds<Utc>,
    /// On the leap-free timescale commit-wait uses (equal to `utc` unless a
    /// leap second passed since 2017).
    pub leapfree: Bounds<LeapFree>,
    /// What the interval is good for.
    pub status: Status,
}

impl TimeInterval {
    /// Half the width, rounded up (the same on both timescales away from a
    /// leap second).
    pub fn epsilon_ns(&self) -> i64 {
        let w = self
            .leapfree
            .latest
            .0
            .saturating_sub(self.leapfree.earliest.0);
        w / 2 + w % 2
    }

    /// The bounds on timescale `S`.
    pub fn on<S: Timescale>(&self) -> Bounds<S> {
        S::pick(self.utc, self.leapfree)
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
    /// This process's time namespace, read once at open.
    timens: Option<(u64, u64)>,
    /// The hypervisor's VMClock page, when this process can read it, and
    /// whether it was named ([`Clock::with_vmclock`]) rather than found at
    /// the default path.
    vmclock: Option<(VmClock, bool)>,
}

fn fit(v: i128) -> Result<i64, ClientError> {
    i64::try_from(v).map_err(|_| ClientError::Unrepresentable)
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
            timens: clock::time_namespace(),
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
    /// daemon start (true time is monotone). The clamp works on the
    /// leap-free timescale (UTC repeats a second at a leap: clamping UTC
    /// there would put `earliest` above true time); the UTC view is then
    /// derived from the clamped bounds. Costs one atomic per read.
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
        // Both sides must name the same namespace; only where neither can
        // tell (no time namespaces, or /proc hidden from both) is there
        // nothing to compare.
        let agent_ns = (f.timens != (0, 0)).then_some(f.timens);
        if agent_ns != self.timens {
            return Err(ClientError::ForeignTimeNamespace {
                ours: self.timens,
                agent: agent_ns,
            });
        }
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
        let extra = extra as i128;
        // The leap-free interval and the status, then its UTC view.
        let fast = f.flags & (FLAG_FAST | FLAG_LEAP) == FLAG_FAST && at.0 >= f.anchor;
        let (mut lf, status, model) = if fast {
            // Hot path: multiplies and shifts only.
            let (lo, hi) = f.form.bound_at(f.lo as i128, f.hi as i128, at.0 - f.anchor);
            let status = if at.0 > f.void_after {
                Status::Unknown
            } else {
                match Status::from_u8(f.status as u8) {
                    Some(Status::Synchronized) if at.0 > f.sync_until => Status::FreeRunning,
                    Some(s) => s,
                    None => Status::Unknown,
                }
            };
            (
                Interval {
                    lo: RefTime(lo),
                    hi: RefTime(hi),
                },
                status,
                None,
            )
        } else {
            // Before the anchor, around a leap, or no fast form: the exact
            // model (a second seqlock read; the model may have moved on, and
            // any published model read at any instant is sound).
            let (model, status, _, _) = self.reader.read_model()?;
            let model = model.ok_or(ClientError::NoModel(status))?;
            let r = model.interval_at(at);
            (r.interval, r.status, Some(model))
        };
        lf = lf.widen(Nanos(extra), Nanos(extra));
        if self.clamp {
            lf.lo = RefTime(
                self.clamped(fit(lf.lo.0)?, fit(lf.hi.0)?, &f, status)
                    .into(),
            );
        }
        let utc = match model {
            Some(m) => m.utc.to_utc(lf),
            None => Interval {
                lo: RefTime(lf.lo.0 - f.utc_offset as i128),
                hi: RefTime(lf.hi.0 - f.utc_offset as i128),
            },
        };
        Ok(TimeInterval {
            utc: Bounds {
                earliest: Utc(fit(utc.lo.0)?),
                latest: Utc(fit(utc.hi.0)?),
            },
            leapfree: Bounds {
                earliest: LeapFree(fit(lf.lo.0)?),
                latest: LeapFree(fit(lf.hi.0)?),
            },
            status,
        })
    }

    /// The monotone clamp of the leap-free `earliest` (see
    /// [`Clock::with_monotonic_earliest`]). The floor is kept per agent
    /// start and per count of bound violations: once the agent has found a
    /// model wrong, an earliest taken from it proves nothing. A floor above
    /// this read's `latest` says the same (one of the two is wrong): it is
    /// dropped, never used to collapse the interval. Unusable statuses
    /// restart it too.
    fn clamped(&self, lo: i64, hi: i64, f: &crate::shm::FastRead, status: Status) -> i64 {
        let key = f
            .epoch
            .wrapping_add(f.violations.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let same = self.last_epoch.swap(key, Ordering::Relaxed) == key;
        if !same || !wait::usable(status) {
            self.last_earliest.store(lo, Ordering::Relaxed);
            return lo;
        }
        let floor = self.last_earliest.fetch_max(lo, Ordering::Relaxed);
        if floor > hi {
            self.last_earliest.store(lo, Ordering::Relaxed);
            return lo;
        }
        lo.max(floor)
    }

    /// One read as a waiter sees it, on timescale `S`.
    fn observe<S: Timescale>(&self) -> Result<Observation, WaitError> {
        match self.now() {
            Ok(t) => {
                let b = t.on::<S>();
                Ok(Observation {
                    earliest_ns: Some(b.earliest.ns().into()),
                    latest_ns: Some(b.latest.ns().into()),
                    epsilon_ns: Some(t.epsilon_ns().into()),
                    status: t.status,
                })
            }
            Err(ClientError::NoModel(s)) => Ok(Observation::without_model(s)),
            Err(ClientError::Interrupted(_) | ClientError::VmDisrupted) => {
                Ok(Observation::without_model(Status::Disrupted))
            }
            Err(e) => Err(WaitError::Read(e.to_string())),
        }
    }

    /// An interval a decision may rest on: `synchronized` or `free_running`.
    fn usable(&self) -> Result<TimeInterval, ClientError> {
        let t = self.now()?;
        if wait::usable(t.status) {
            Ok(t)
        } else {
            Err(ClientError::Unusable(t.status))
        }
    }

    /// TrueTime's `TT.after(t)`: true time is surely after `t` (on its own
    /// timescale). Refuses an `unknown` or `disrupted` interval.
    pub fn after<S: Timescale>(&self, t: S) -> Result<bool, ClientError> {
        Ok(self.usable()?.on::<S>().earliest > t)
    }

    /// TrueTime's `TT.before(t)`: true time is surely before `t`. Refuses an
    /// `unknown` or `disrupted` interval.
    pub fn before<S: Timescale>(&self, t: S) -> Result<bool, ClientError> {
        Ok(self.usable()?.on::<S>().latest < t)
    }

    /// Block until `t` (on its own timescale) is surely in the past, or fail
    /// at `timeout` (also while unsynchronized or above `max_epsilon_ns`).
    pub fn wait_until<S: Timescale>(
        &self,
        t: S,
        timeout: Duration,
        max_epsilon_ns: Option<i64>,
    ) -> Result<(), ClientError> {
        wait::wait_blocking(
            || self.observe::<S>(),
            t.ns().into(),
            timeout,
            max_epsilon_ns.map(i128::from),
        )?;
        Ok(())
    }

    /// Spanner's commit-wait: pick `s = now().latest` (leap-free) from the
    /// first usable read (within `max_epsilon_ns`), return once
    /// `now().earliest > s`.
    pub fn commit_wait(
        &self,
        timeout: Duration,
        max_epsilon_ns: Option<i64>,
    ) -> Result<CommitWait, ClientError> {
        Ok(wait::commit_wait_blocking(
            || self.observe::<LeapFree>(),
            timeout,
            max_epsilon_ns.map(i128::from),
        )?)
    }

    /// Async `wait_until` (tokio).
    #[cfg(feature = "tokio")]
    pub async fn wait_until_async<S: Timescale>(
        &self,
        t: S,
        timeout: Duration,
        max_epsilon_ns: Option<i64>,
    ) -> Result<(), ClientError> {
        wait::wait_async(
            || self.observe::<S>(),
            t.ns().into(),
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
        Ok(wait::commit_wait_async(
            || self.observe::<LeapFree>(),
            timeout,
            max_epsilon_ns.map(i128::from),
        )
        .await?)
    }
}

// `Clock` is shared across threads by design.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Clock>();
};
