//! The only place that reads the host's clocks (`clock_gettime`) and the
//! kernel's time status (`adjtimex`, read-only: `modes = 0`, it never sets
//! anything). Everything else takes instants as arguments.

use crate::core::time::{Nanos, RefTime, Steady};

/// Nanoseconds of `clock` (i64: good until the year 2262).
#[inline(always)]
fn read_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes it.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    debug_assert_eq!(rc, 0, "clock_gettime({clock}) failed");
    ts.tv_sec
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec)
}

/// While held, the calling thread's sleeps end within about a microsecond
/// of when they are due instead of the default 50 µs timer slack (a
/// blocking wait sleeps close to its instant instead of spinning, which a
/// busy neighbour preempts for milliseconds). Dropping it restores the
/// thread's own setting.
#[derive(Debug)]
pub struct FineTimerSlack(Option<libc::c_ulong>);

impl FineTimerSlack {
    /// The slack a blocking wait sleeps with (ns).
    pub const SLACK_NS: libc::c_ulong = 1_000;

    /// Set it for the calling thread (no effect where `prctl` refuses).
    pub fn hold() -> FineTimerSlack {
        // SAFETY: PR_GET_TIMERSLACK takes no pointer and only returns the
        // calling thread's value.
        let old = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) };
        if old <= 0 || old as libc::c_ulong == Self::SLACK_NS {
            return FineTimerSlack(None);
        }
        // SAFETY: PR_SET_TIMERSLACK takes a value, no pointer; it changes
        // only the calling thread's timer slack.
        let rc = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, Self::SLACK_NS, 0, 0, 0) };
        FineTimerSlack((rc == 0).then_some(old as libc::c_ulong))
    }
}

impl Drop for FineTimerSlack {
    fn drop(&mut self) {
        if let Some(old) = self.0 {
            // SAFETY: as in `hold`; `old` is the value the thread had.
            unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, old, 0, 0, 0) };
        }
    }
}

/// CLOCK_MONOTONIC_RAW: the steady timeline (never slewed or stepped).
#[inline]
pub fn raw() -> Steady {
    Steady(read_ns(libc::CLOCK_MONOTONIC_RAW))
}

/// CLOCK_MONOTONIC, in ns.
#[inline]
pub fn monotonic_ns() -> i64 {
    read_ns(libc::CLOCK_MONOTONIC)
}

/// CLOCK_BOOTTIME, in ns.
#[inline]
pub fn boottime_ns() -> i64 {
    read_ns(libc::CLOCK_BOOTTIME)
}

/// CLOCK_REALTIME as Unix ns.
pub fn realtime() -> RefTime {
    RefTime(read_ns(libc::CLOCK_REALTIME) as i128)
}

/// How a reader reads its clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// MONOTONIC, MONOTONIC_RAW and BOOTTIME, with the suspend check
    /// (default).
    Strict,
    /// MONOTONIC_RAW alone: no suspend check (hosts that never suspend).
    Fast,
}

/// One clock read in `mode` for a model published with BOOTTIME −
/// MONOTONIC = `offs_boot_ns`: the reading [`crate::core::read::interval`]
/// takes, or `Err(mismatch)` when the host was suspended since.
#[inline(always)]
pub fn read(mode: Mode, offs_boot_ns: i64) -> Result<crate::core::read::Reading, i64> {
    let (at, extra_ns) = match mode {
        Mode::Fast => (raw(), 0),
        Mode::Strict => strict_steady(offs_boot_ns)?,
    };
    Ok(crate::core::read::Reading { at, extra_ns })
}

/// A BOOTTIME - MONOTONIC mismatch up to this much is absorbed into the
/// error bound; more means the host slept since the model was written.
pub const SUSPEND_TOLERANCE_NS: i64 = 1_000_000;
/// Strict reads retried this often before a mismatch counts as a suspend
/// (a preemption between the three reads looks like one).
const STRICT_TRIES: u32 = 4;

/// The strict read (docs/model.md, "Timelines"): MONOTONIC, MONOTONIC_RAW and
/// BOOTTIME, checking that BOOTTIME - MONOTONIC still equals `offs_boot_ns`
/// (what the writer saw). Returns the RAW instant and the mismatch to add to
/// the error bound, or `Err(mismatch)` when the host was suspended since.
#[inline]
pub fn strict_steady(offs_boot_ns: i64) -> Result<(Steady, i64), i64> {
    let mut drift = 0;
    for _ in 0..STRICT_TRIES {
        let mono = monotonic_ns();
        let raw = raw();
        let boot = boottime_ns();
        drift = (boot - mono - offs_boot_ns).abs();
        if drift <= SUSPEND_TOLERANCE_NS {
            return Ok((raw, drift));
        }
    }
    Err(drift)
}

/// A REALTIME reading paired with the steady instant it was taken at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paired {
    /// Midpoint of the two steady reads around the REALTIME read.
    pub steady: Steady,
    /// The REALTIME reading.
    pub realtime: RefTime,
    /// Span of the bracket: the pairing is good to +-span/2.
    pub span: Nanos,
}

/// Read RAW, REALTIME, RAW a few times and keep the tightest bracket.
pub fn paired_realtime() -> Paired {
    let mut best: Option<Paired> = None;
    for _ in 0..5 {
        let a = raw();
        let r = realtime();
        let b = raw();
        let p = Paired {
            steady: Steady(a.0 + (b.0 - a.0) / 2),
            realtime: r,
            span: b.since(a),
        };
        if best.is_none_or(|x| p.span < x.span) {
            best = Some(p);
        }
    }
    best.expect("five tries")
}

/// BOOTTIME - MONOTONIC: grows by the time spent suspended. Read as
/// MONOTONIC, BOOTTIME, MONOTONIC; returns the offset and the bracket span.
pub fn boot_offset() -> (i64, i64) {
    let a = monotonic_ns();
    let b = boottime_ns();
    let c = monotonic_ns();
    (b - (a + (c - a) / 2), c - a)
}

/// The kernel's view of its clock (read-only `adjtimex`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct KernelStatus {
    /// `adjtimex` return value: TIME_OK (0), TIME_INS, ..., TIME_ERROR (5).
    pub state: i32,
    /// The `status` bits (STA_*).
    pub status_bits: i32,
    /// Whether STA_UNSYNC is clear.
    pub synchronized: bool,
    /// Kernel's maximum error estimate (us).
    pub maxerror_us: i64,
    /// Kernel's estimated error (us).
    pub esterror_us: i64,
    /// Frequency adjustment in ppm.
    pub frequency_ppm: f64,
    /// TAI - UTC offset the kernel holds (s).
    pub tai_s: i32,
}

/// Read the kernel's time status without changing anything.
pub fn kernel_status() -> std::io::Result<KernelStatus> {
    // SAFETY: an all-zero timex is a valid value of this plain C struct.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = 0; // read only: nothing is set
                  // SAFETY: `tx` is valid and writable; with modes == 0 adjtimex only reads
                  // kernel state into it.
    let rc = unsafe { libc::adjtimex(&mut tx) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(KernelStatus {
        state: rc,
        status_bits: tx.status,
        synchronized: tx.status & libc::STA_UNSYNC == 0,
        maxerror_us: tx.maxerror as i64,
        esterror_us: tx.esterror as i64,
        frequency_ppm: tx.freq as f64 / 65536.0,
        tai_s: tx.tai,
    })
}

/// The clocksource file, kept open: re-read without a new descriptor, so
/// that running out of descriptors (a flood of connections) never reads as
/// a clocksource change.
#[derive(Debug)]
pub struct ClocksourceFile(Option<std::fs::File>);

const CLOCKSOURCE: &str = "/sys/devices/system/clocksource/clocksource0/current_clocksource";

impl ClocksourceFile {
    /// Open it (a missing file reads as unknown).
    pub fn open() -> ClocksourceFile {
        ClocksourceFile(std::fs::File::open(CLOCKSOURCE).ok())
    }

    /// The current clocksource, if it could be read (a file that could not
    /// be opened before is opened again first).
    pub fn read(&mut self) -> Option<String> {
        use std::os::unix::fs::FileExt;
        if self.0.is_none() {
            self.0 = std::fs::File::open(CLOCKSOURCE).ok();
        }
        let f = self.0.as_ref()?;
        let mut buf = [0u8; 64];
        let n = f.read_at(&mut buf, 0).ok()?;
        let s = std::str::from_utf8(&buf[..n]).ok()?.trim();
        (!s.is_empty()).then(|| s.to_owned())
    }
}

/// The current clocksource (e.g. `tsc`, `kvm-clock`), if readable.
pub fn clocksource() -> Option<String> {
    std::fs::read_to_string(CLOCKSOURCE)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Counts every time CLOCK_REALTIME is *set* (stepped: `settimeofday`,
/// `clock_settime`, `adjtimex` with `ADJ_SETOFFSET`), as opposed to slewed:
/// a `timerfd` on CLOCK_REALTIME armed with `TFD_TIMER_CANCEL_ON_SET` fails
/// its next read with ECANCELED after any set. The shell reads the count
/// around each exchange; the core refuses a kernel receive stamp when it
/// changed (a REALTIME stamp mapped across a step could land before the
/// datagram arrived).
#[cfg(feature = "daemon")]
#[derive(Debug)]
pub struct ClockSetWatch {
    fd: nix::sys::timerfd::TimerFd,
    sets: u64,
}

#[cfg(feature = "daemon")]
impl ClockSetWatch {
    /// A watcher, or `None` where timerfds are not available.
    pub fn new() -> Option<ClockSetWatch> {
        use nix::sys::timerfd::{ClockId, TimerFd, TimerFlags};
        let fd = TimerFd::new(
            ClockId::CLOCK_REALTIME,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .ok()?;
        let w = ClockSetWatch { fd, sets: 0 };
        // Arming reports a set that raced with it as ECANCELED: try again.
        (0..8).find(|_| w.arm().is_ok())?;
        Some(w)
    }

    /// Arm a one-shot timer far in the future (it never fires; only a set
    /// of the clock ends it).
    fn arm(&self) -> nix::Result<()> {
        use nix::sys::time::TimeSpec;
        use nix::sys::timerfd::{Expiration, TimerSetTimeFlags};
        self.fd.set(
            // Year 2255: before the kernel's ktime limit, after anything real.
            Expiration::OneShot(TimeSpec::new(9_000_000_000, 0)),
            TimerSetTimeFlags::TFD_TIMER_ABSTIME | TimerSetTimeFlags::TFD_TIMER_CANCEL_ON_SET,
        )
    }

    /// The number of sets seen so far (one non-blocking read).
    pub fn poll(&mut self) -> u64 {
        use nix::errno::Errno;
        let mut buf = [0u8; 8];
        for _ in 0..8 {
            match nix::unistd::read(&self.fd, &mut buf) {
                Err(Errno::ECANCELED) => {
                    self.sets += 1;
                    let _ = self.arm();
                }
                Err(Errno::EINTR) => {}
                // EAGAIN: nothing happened; anything else: nothing to learn.
                _ => return self.sets,
            }
        }
        self.sets
    }
}

/// This process's time namespace: the inode and device of
/// `/proc/self/ns/time` (`None` where the kernel has no time namespaces or
/// /proc is not mounted). Processes in different time namespaces read
/// different CLOCK_MONOTONIC(_RAW) and CLOCK_BOOTTIME, so a model anchored on
/// one timeline is meaningless on the other.
pub fn time_namespace() -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/time")
        .ok()
        .map(|m| (m.ino(), m.dev()))
}

/// This boot's id, if readable.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_are_sane() {
        let a = raw();
        let b = raw();
        assert!(b >= a);
        let p = paired_realtime();
        assert!(p.span.0 >= 0 && p.span < Nanos::from_millis(10));
        assert!(p.realtime.0 > 1_600_000_000 * crate::core::time::NS_PER_S);
        let (off, span) = boot_offset();
        assert!(off >= -span && span >= 0);
        let k = kernel_status().expect("read-only adjtimex works");
        assert!(k.maxerror_us >= 0);
        assert_eq!(ClocksourceFile::open().read(), clocksource());
    }
}
