//! The only place that reads the host's clocks (`clock_gettime`) and the
//! kernel's time status (`adjtimex`, read-only: `modes = 0`, it never sets
//! anything). Everything else takes instants as arguments.

use crate::core::time::{Nanos, RefTime, Steady};

/// Nanoseconds of `clock` (i64: good until the year 2262).
#[inline(always)]
fn read(clock: libc::clockid_t) -> i64 {
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

/// CLOCK_MONOTONIC_RAW: the steady timeline (never slewed or stepped).
#[inline]
pub fn raw() -> Steady {
    Steady(read(libc::CLOCK_MONOTONIC_RAW))
}

/// CLOCK_MONOTONIC, in ns.
#[inline]
pub fn monotonic_ns() -> i64 {
    read(libc::CLOCK_MONOTONIC)
}

/// CLOCK_BOOTTIME, in ns.
#[inline]
pub fn boottime_ns() -> i64 {
    read(libc::CLOCK_BOOTTIME)
}

/// CLOCK_REALTIME as Unix ns.
pub fn realtime() -> RefTime {
    RefTime(read(libc::CLOCK_REALTIME) as i128)
}

/// A BOOTTIME - MONOTONIC mismatch up to this much is absorbed into the
/// error bound; more means the host slept since the model was written.
pub const SUSPEND_TOLERANCE_NS: i64 = 1_000_000;
/// Strict reads retried this often before a mismatch counts as a suspend
/// (a preemption between the three reads looks like one).
const STRICT_TRIES: u32 = 4;

/// The strict read (DESIGN.md "Timelines"): MONOTONIC, MONOTONIC_RAW and
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

/// The current clocksource (e.g. `tsc`, `kvm-clock`), if readable.
pub fn clocksource() -> Option<String> {
    std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        .ok()
        .map(|s| s.trim().to_owned())
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
    }
}
