//! What applications link: the interval from shared memory at about the
//! cost of the clock reads themselves, TrueTime's `after` / `before`, and
//! commit-wait. Every type a caller sees is exported here.
//!
//! ```no_run
//! use skewd::client::{Clock, LeapFree, Status, Utc};
//! use std::time::Duration;
//! let clock = Clock::open_default()?;
//! let t = clock.now()?; // t.utc.earliest <= true time (UTC) <= t.utc.latest
//! if t.status == Status::Synchronized && clock.after(Utc(1_900_000_000_000_000_000))? {
//!     // the lease surely expired
//! }
//! let s = clock.commit_wait(Duration::from_secs(1), None)?;
//! // s.timestamp_leapfree_ns is now surely in the past (leap-free timescale)
//! clock.wait_until(LeapFree(s.timestamp_leapfree_ns), Duration::ZERO, None)?;
//! # Ok::<(), skewd::client::ClientError>(())
//! ```
//!
//! `now()` is lock-free, allocation-free and makes no system call beyond
//! the vDSO clock reads: one seqlock read of the segment, the clock read,
//! then [`crate::core::read::interval`] — the one function every reader of
//! skewd uses. **Strict** mode (the default) reads CLOCK_MONOTONIC,
//! CLOCK_MONOTONIC_RAW and CLOCK_BOOTTIME and checks that BOOTTIME −
//! MONOTONIC still equals what the agent saw: a suspend since the anchor
//! (which freezes MONOTONIC_RAW while true time goes on) is caught on the
//! read itself. **Fast** mode ([`Clock::open_fast`]) reads MONOTONIC_RAW
//! alone: after a suspend it can return a too-early interval until the agent
//! notices (within its refresh period, 0.5 s). Use it only on hosts that
//! never suspend.

use crate::clock;
pub use crate::clock::Mode;
pub use crate::core::model::Status;
use crate::core::read::{self as read, ReadError};
pub use crate::core::read::{Bounds, LeapFree, TimeInterval, Timescale, Utc};
use crate::shm::vmclock::VmClock;
pub use crate::shm::ShmError;
use crate::shm::{Env, Reader};
use crate::wait::{self, Observation};
pub use crate::wait::{CommitWait, WaitError};
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Why a read or a wait gives no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The segment cannot be used.
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// No segment was found where the agent puts it.
    #[error("{0}")]
    NotFound(String),
    /// The agent has no model (status given).
    #[error("no clock model yet (status {0})")]
    NoModel(Status),
    /// The interval's status is not one to act on (`unknown`, `disrupted`):
    /// `after`/`before` refuse it as the waits do.
    #[error("the interval is {0} and cannot be acted on")]
    Unusable(Status),
    /// The host was suspended since the anchor; the agent will rebuild.
    #[error("the host was suspended since the last update ({0} ns); retry shortly")]
    Interrupted(i64),
    /// The VMClock disruption marker changed since the model was made: the
    /// VM was migrated or restored; the agent will rebuild.
    #[error("the VM was disrupted (live migration or snapshot restore) since the last update; retry shortly")]
    VmDisrupted,
    /// The VMClock page named with [`Clock::with_vmclock`] cannot be used.
    #[error("VMClock: {0}")]
    VmClock(String),
    /// This process's steady clock reads earlier than the agent's last
    /// write, which cannot happen on one timeline: a faked clock.
    #[error("this process's CLOCK_MONOTONIC_RAW is {0} ns behind the agent's last update: not the agent's timeline (another time namespace, or a faked clock)")]
    ForeignTimeline(i64),
    /// This process is in another time namespace than the agent (a
    /// container with its own MONOTONIC/BOOTTIME offsets), or only one side
    /// can tell which one it is in: its clocks are not the agent's timeline.
    #[error("this process is in another time namespace than the agent (ours {ours:?}, the agent's {agent:?}; unknown where /proc/self/ns/time cannot be read): read the interval over HTTP instead")]
    ForeignTimeNamespace {
        /// This process's namespace (inode, device), if known.
        ours: Option<(u64, u64)>,
        /// The agent's, if it could tell.
        agent: Option<(u64, u64)>,
    },
    /// The interval does not fit 64-bit Unix nanoseconds (beyond the year
    /// 2262): it is refused rather than clamped, which would narrow it.
    #[error("the interval does not fit in 64-bit Unix nanoseconds")]
    Unrepresentable,
    /// A wait passed its deadline first (unsynchronized, or the error
    /// bound above the caller's cap, or simply not yet).
    #[error("timed out: status {status}, error bound {}", epsilon_ns.map_or("none".into(), |e| format!("{e} ns")))]
    Timeout {
        /// The status at the last read.
        status: Status,
        /// The error bound at the last read (ns), if there was an interval.
        epsilon_ns: Option<i64>,
    },
}

impl From<WaitError<ClientError>> for ClientError {
    fn from(e: WaitError<ClientError>) -> ClientError {
        match e {
            WaitError::Timeout { status, epsilon_ns } => {
                ClientError::Timeout { status, epsilon_ns }
            }
            WaitError::Read(e) => e,
        }
    }
}

impl From<ReadError<ShmError>> for ClientError {
    fn from(e: ReadError<ShmError>) -> ClientError {
        match e {
            ReadError::NoModel(s) => ClientError::NoModel(s),
            ReadError::Unrepresentable => ClientError::Unrepresentable,
            ReadError::Source(e) => ClientError::Shm(e),
        }
    }
}

/// A handle on the agent's segment. `Send + Sync`; share it freely.
#[derive(Debug)]
pub struct Clock {
    reader: Reader,
    mode: Mode,
    clamp: bool,
    last_earliest: AtomicI64,
    last_key: AtomicU64,
    /// This process's time namespace, read once at open.
    timens: Option<(u64, u64)>,
    /// The hypervisor's VMClock page, when this process can read it, and
    /// whether it was named ([`Clock::with_vmclock`]) rather than found at
    /// the default path.
    vmclock: Option<(VmClock, bool)>,
}

impl Clock {
    /// Open the agent's segment where it puts it (`/run/skewd/clock`, or
    /// the per-user fallback of an agent run by a plain user), strict mode.
    pub fn open_default() -> Result<Clock, ClientError> {
        let path = crate::paths::find_segment().map_err(ClientError::NotFound)?;
        Clock::open(&path)
    }

    /// Open the segment at `path` in strict mode.
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
            last_key: AtomicU64::new(0),
        })
    }

    /// Check every read against the VMClock page at `page` (the one the
    /// agent watches): when its disruption marker differs from the one the
    /// published model was made under, the VM was migrated or restored
    /// since, and `now()` fails with [`ClientError::VmDisrupted`] at once,
    /// without waiting for the agent's next refresh.
    pub fn with_vmclock(mut self, page: &Path) -> Result<Clock, ClientError> {
        let page = VmClock::open(page).map_err(|e| ClientError::VmClock(e.to_string()))?;
        self.vmclock = Some((page, true));
        Ok(self)
    }

    /// Never return an `earliest` below one already returned for the same
    /// agent start (true time is monotone). The clamp works on the
    /// leap-free timescale (UTC repeats a second at a leap: clamping UTC
    /// there would put `earliest` above true time); the UTC view is then
    /// derived from the clamped bounds. Costs one atomic per read.
    pub fn with_monotonic_earliest(mut self, on: bool) -> Clock {
        self.clamp = on;
        self
    }

    /// The checks a reader makes of its own environment before trusting a
    /// read (time namespace, VMClock disruption, timeline), then its clock
    /// read in the configured mode.
    #[inline(always)]
    fn reading(&self, env: &Env) -> Result<read::Reading, ClientError> {
        // Both sides must name the same namespace; only where neither can
        // tell (no time namespaces, or /proc hidden from both) is there
        // nothing to compare.
        if env.timens != self.timens {
            return Err(ClientError::ForeignTimeNamespace {
                ours: self.timens,
                agent: env.timens,
            });
        }
        if let (Some((marker, default_page)), Some((page, named))) =
            (env.vmclock_marker, &self.vmclock)
        {
            // Compare like with like: the default page only against the
            // agent's marker of the default page. A marker that cannot be
            // read (the hypervisor mid-update for every try) counts as
            // changed: the safe side.
            if (*named || default_page) && page.disruption_marker() != Some(marker) {
                return Err(ClientError::VmDisrupted);
            }
        }
        let r = clock::read(self.mode, env.offs_boot).map_err(ClientError::Interrupted)?;
        if r.at.0 < env.written_at {
            return Err(ClientError::ForeignTimeline(env.written_at - r.at.0));
        }
        Ok(r)
    }

    /// The interval the published model gives for the `CLOCK_MONOTONIC_RAW`
    /// instant `raw_ns`, with no clock read and none of the reader's
    /// checks (namespace, suspend, timeline, VMClock): for tools and tests
    /// that compare readers at one instant (`docs/segment.md`). Not for
    /// deciding anything about *now*: use [`Clock::now`].
    pub fn at(&self, raw_ns: i64) -> Result<TimeInterval, ClientError> {
        let (view, _) = self.reader.view()?;
        let reading = read::Reading {
            at: crate::core::time::Steady(raw_ns),
            extra_ns: 0,
        };
        Ok(read::interval(
            &view,
            reading,
            || self.reader.model(),
            read::unclamped,
        )?)
    }

    /// The interval that contains true time now.
    #[inline(always)]
    pub fn now(&self) -> Result<TimeInterval, ClientError> {
        if self.mode == Mode::Fast && !self.clamp && self.vmclock.is_none() {
            if let Some(t) = self.lean_now() {
                return Ok(t);
            }
        }
        self.full_now()
    }

    /// Fast mode's common case in fewer steps (no clamp, no VMClock page, a
    /// model with a fast form and no leap mark): the segment's hot fields
    /// only, one clock read, the fast form. (The strict read gains nothing
    /// from it: its three clock reads dominate, and inlining them here
    /// slowed the fast read by 9 ns.) `None` sends the read
    /// down the full path, which reads again and says what is wrong.
    #[inline(always)]
    fn lean_now(&self) -> Option<TimeInterval> {
        let l = self.reader.lean().ok()?;
        let (h, form) = l.model?;
        if l.timens != self.timens.unwrap_or((0, 0)) {
            return None;
        }
        let at = clock::raw();
        if at.0 < l.written_at {
            return None;
        }
        read::fast_interval(&h, &form, read::Reading { at, extra_ns: 0 })
    }

    #[inline(always)]
    fn full_now(&self) -> Result<TimeInterval, ClientError> {
        let (view, env) = self.reader.view()?;
        let reading = self.reading(&env)?;
        let exact = || self.reader.model();
        Ok(if self.clamp {
            read::interval(&view, reading, exact, |lo, hi, st| {
                self.clamped(lo, hi, &env, st)
            })?
        } else {
            read::interval(&view, reading, exact, read::unclamped)?
        })
    }

    /// The monotone clamp of the leap-free `earliest` (see
    /// [`Clock::with_monotonic_earliest`]). The floor is kept per agent
    /// start and per count of bound violations: once the agent has found a
    /// model wrong, an earliest taken from it proves nothing. A floor above
    /// this read's `latest` says the same (one of the two is wrong): it is
    /// dropped, never used to collapse the interval. Unusable statuses
    /// restart it too.
    fn clamped(&self, lo: i64, hi: i64, env: &Env, status: Status) -> i64 {
        let key = env
            .epoch
            .wrapping_add(env.violations.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let same = self.last_key.swap(key, Ordering::Relaxed) == key;
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
    fn observe<S: Timescale>(&self) -> Result<Observation, ClientError> {
        match self.now() {
            Ok(t) => Ok(Observation::of::<S>(&t)),
            Err(ClientError::NoModel(s)) => Ok(Observation::without_model(s)),
            Err(ClientError::Interrupted(_) | ClientError::VmDisrupted) => {
                Ok(Observation::without_model(Status::Disrupted))
            }
            Err(e) => Err(e),
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
