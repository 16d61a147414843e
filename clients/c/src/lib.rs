//! skewd's C ABI: `include/skewd.h`, built from the Rust client
//! ([`skewd::client::Clock`]) as `libskewd_c.so` and `libskewd_c.a`.
//!
//! Every function returns 0 (or a boolean 1/0) on success and a negative
//! `SKEWD_E_*` code on failure; `skewd_strerror` names each. A handle is
//! safe to share between threads (the Rust `Clock` is `Send + Sync`): every
//! function but `skewd_close` takes it by `const` pointer. No function
//! unwinds into C: a panic becomes `SKEWD_E_INTERNAL`.
//!
//! The header is checked against this file by a test (`header_matches`).

use skewd::client::{ClientError, Clock, LeapFree, Mode, ShmError, Status, TimeInterval, Utc};
use std::ffi::{c_char, c_int, CStr};
use std::path::Path;
use std::time::Duration;

/// Success.
pub const SKEWD_OK: c_int = 0;
/// A NULL pointer, an unknown flag or timescale, a negative timeout.
pub const SKEWD_E_INVAL: c_int = -1;
/// No segment where the agent puts it (no agent running?).
pub const SKEWD_E_NOT_FOUND: c_int = -2;
/// The segment could not be opened or mapped.
pub const SKEWD_E_OPEN: c_int = -3;
/// Another user could have written the segment: not trusted.
pub const SKEWD_E_UNTRUSTED: c_int = -4;
/// Not a skewd segment of this layout (truncated, bad magic, version).
pub const SKEWD_E_FORMAT: c_int = -5;
/// The agent stayed mid-update (killed while writing?).
pub const SKEWD_E_MID_WRITE: c_int = -6;
/// The agent has no model: no interval (the status says why).
pub const SKEWD_E_NO_MODEL: c_int = -7;
/// The interval is `unknown` or `disrupted`: not to be acted on.
pub const SKEWD_E_UNUSABLE: c_int = -8;
/// The host was suspended since the agent's last update; retry shortly.
pub const SKEWD_E_INTERRUPTED: c_int = -9;
/// The VM was migrated or restored since the last update; retry shortly.
pub const SKEWD_E_VM_DISRUPTED: c_int = -10;
/// This process's steady clock is not the agent's timeline (faked).
pub const SKEWD_E_FOREIGN_TIMELINE: c_int = -11;
/// This process is in another time namespace than the agent: use HTTP.
pub const SKEWD_E_FOREIGN_TIME_NAMESPACE: c_int = -12;
/// The interval does not fit 64-bit Unix nanoseconds.
pub const SKEWD_E_UNREPRESENTABLE: c_int = -13;
/// A wait passed its deadline first.
pub const SKEWD_E_TIMEOUT: c_int = -14;
/// A bug in skewd (a caught panic).
pub const SKEWD_E_INTERNAL: c_int = -15;

/// `skewd_open` flag: one clock read per `skewd_now`, no suspend check.
pub const SKEWD_FAST: c_int = 1;
/// Timescale: UTC (Unix time as `date` shows it).
pub const SKEWD_UTC: c_int = 0;
/// Timescale: leap-free (UTC plus the leap seconds since 2017; commit-wait
/// timestamps are on it).
pub const SKEWD_LEAPFREE: c_int = 1;

/// Status: no model, or a model past its void-after.
pub const SKEWD_STATUS_UNKNOWN: i32 = 0;
/// Status: a fault-tolerant majority of sources agreed recently.
pub const SKEWD_STATUS_SYNCHRONIZED: i32 = 1;
/// Status: still a hard bound, widening.
pub const SKEWD_STATUS_FREE_RUNNING: i32 = 2;
/// Status: the model was contradicted and rebuilt.
pub const SKEWD_STATUS_DISRUPTED: i32 = 3;

/// An open segment. Opaque to C.
pub struct SkewdClock(Clock);

/// An interval that contains true time, on one timescale.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SkewdInterval {
    /// True time is not before this (ns since the Unix epoch).
    pub earliest_ns: i64,
    /// True time is not after this.
    pub latest_ns: i64,
    /// A `SKEWD_STATUS_*`.
    pub status: i32,
}

/// What a commit-wait chose and how long it waited.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SkewdCommit {
    /// The commit timestamp, leap-free: surely in the past on return.
    pub timestamp_leapfree_ns: i64,
    /// How long the wait took.
    pub waited_ns: i64,
    /// The error bound when the timestamp was chosen.
    pub epsilon_ns: i64,
}

#[cold]
fn code(e: &ClientError) -> c_int {
    match e {
        ClientError::Shm(s) => match s {
            ShmError::Open { .. } => SKEWD_E_OPEN,
            ShmError::Untrusted { .. } => SKEWD_E_UNTRUSTED,
            ShmError::Truncated(_) | ShmError::BadMagic | ShmError::Version { .. } => {
                SKEWD_E_FORMAT
            }
            ShmError::MidWrite => SKEWD_E_MID_WRITE,
        },
        ClientError::NotFound(_) => SKEWD_E_NOT_FOUND,
        ClientError::NoModel(_) => SKEWD_E_NO_MODEL,
        ClientError::Unusable(_) => SKEWD_E_UNUSABLE,
        ClientError::Interrupted(_) => SKEWD_E_INTERRUPTED,
        ClientError::VmDisrupted => SKEWD_E_VM_DISRUPTED,
        ClientError::VmClock(_) => SKEWD_E_OPEN,
        ClientError::ForeignTimeline(_) => SKEWD_E_FOREIGN_TIMELINE,
        ClientError::ForeignTimeNamespace { .. } => SKEWD_E_FOREIGN_TIME_NAMESPACE,
        ClientError::Unrepresentable => SKEWD_E_UNREPRESENTABLE,
        ClientError::Timeout { .. } => SKEWD_E_TIMEOUT,
    }
}

/// Run `f`, turning a panic into `SKEWD_E_INTERNAL`.
#[inline(always)]
fn guard(f: impl FnOnce() -> c_int + std::panic::UnwindSafe) -> c_int {
    std::panic::catch_unwind(f).unwrap_or(SKEWD_E_INTERNAL)
}

fn status_code(s: Status) -> i32 {
    s as i32
}

fn timeout(ns: i64) -> Option<Duration> {
    u64::try_from(ns).ok().map(Duration::from_nanos)
}

fn max_epsilon(ns: i64) -> Option<i64> {
    (ns >= 0).then_some(ns)
}

/// Open the segment at `path` (NULL: where the agent puts it) with `flags`
/// (0 strict, `SKEWD_FAST`); on success `*out` is a handle for
/// `skewd_close`.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` points to writable
/// storage for a pointer.
#[no_mangle]
pub unsafe extern "C" fn skewd_open(
    path: *const c_char,
    flags: c_int,
    out: *mut *mut SkewdClock,
) -> c_int {
    if out.is_null() || flags & !SKEWD_FAST != 0 {
        return SKEWD_E_INVAL;
    }
    let mode = if flags & SKEWD_FAST != 0 {
        Mode::Fast
    } else {
        Mode::Strict
    };
    let path = if path.is_null() {
        None
    } else {
        // SAFETY: the caller passes a NUL-terminated string. A path is
        // bytes (POSIX), not necessarily UTF-8.
        use std::os::unix::ffi::OsStrExt;
        let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
        Some(std::ffi::OsStr::from_bytes(bytes).to_owned())
    };
    let opened = std::panic::catch_unwind(move || {
        let p = match path {
            Some(p) => std::path::PathBuf::from(p),
            None => skewd::paths::find_segment().map_err(ClientError::NotFound)?,
        };
        Clock::open_with(Path::new(&p), mode)
    });
    match opened {
        Ok(Ok(c)) => {
            // SAFETY: `out` is non-NULL and writable (the caller's promise).
            unsafe { *out = Box::into_raw(Box::new(SkewdClock(c))) };
            SKEWD_OK
        }
        Ok(Err(e)) => code(&e),
        Err(_) => SKEWD_E_INTERNAL,
    }
}

/// Close a handle from `skewd_open` (NULL is ignored).
///
/// # Safety
/// `c` is NULL or a handle from `skewd_open` not closed before, and no
/// other thread uses it any more.
#[no_mangle]
pub unsafe extern "C" fn skewd_close(c: *mut SkewdClock) {
    if !c.is_null() {
        // SAFETY: `c` came from Box::into_raw in skewd_open, closed once.
        drop(unsafe { Box::from_raw(c) });
    }
}

/// The handle behind `c`, or `SKEWD_E_INVAL`.
///
/// # Safety
/// `c` is NULL or a live handle.
unsafe fn clock<'a>(c: *const SkewdClock) -> Result<&'a Clock, c_int> {
    // SAFETY: the caller's promise.
    unsafe { c.as_ref() }.map(|c| &c.0).ok_or(SKEWD_E_INVAL)
}

fn now_on(c: &Clock, scale: c_int) -> Result<(TimeInterval, c_int), c_int> {
    if scale != SKEWD_UTC && scale != SKEWD_LEAPFREE {
        return Err(SKEWD_E_INVAL);
    }
    c.now().map(|t| (t, scale)).map_err(|e| code(&e))
}

fn write_interval(t: &TimeInterval, scale: c_int, out: &mut SkewdInterval) {
    let (lo, hi) = if scale == SKEWD_LEAPFREE {
        (t.leapfree.earliest.0, t.leapfree.latest.0)
    } else {
        (t.utc.earliest.0, t.utc.latest.0)
    };
    *out = SkewdInterval {
        earliest_ns: lo,
        latest_ns: hi,
        status: status_code(t.status),
    };
}

/// The interval that contains true time now, on timescale `timescale`
/// (`SKEWD_UTC` or `SKEWD_LEAPFREE`). Lock-free; no system call beyond the
/// clock reads.
///
/// # Safety
/// `c` is a live handle; `out` points to a writable `skewd_interval`.
#[no_mangle]
pub unsafe extern "C" fn skewd_now_on(
    c: *const SkewdClock,
    timescale: c_int,
    out: *mut SkewdInterval,
) -> c_int {
    // SAFETY: the caller's promise.
    let (c, out) = match (unsafe { clock(c) }, unsafe { out.as_mut() }) {
        (Ok(c), Some(o)) => (c, o),
        _ => return SKEWD_E_INVAL,
    };
    guard(std::panic::AssertUnwindSafe(|| {
        match now_on(c, timescale) {
            Ok((t, s)) => {
                write_interval(&t, s, out);
                SKEWD_OK
            }
            Err(e) => e,
        }
    }))
}

/// `skewd_now_on(c, SKEWD_UTC, out)`: the UTC interval now (the hot path,
/// without the timescale's dispatch).
///
/// # Safety
/// As `skewd_now_on`.
#[no_mangle]
pub unsafe extern "C" fn skewd_now(c: *const SkewdClock, out: *mut SkewdInterval) -> c_int {
    // SAFETY: the caller's promise.
    let (Some(c), Some(out)) = (unsafe { c.as_ref() }, unsafe { out.as_mut() }) else {
        return SKEWD_E_INVAL;
    };
    guard(std::panic::AssertUnwindSafe(|| match c.0.now() {
        Ok(t) => {
            *out = SkewdInterval {
                earliest_ns: t.utc.earliest.0,
                latest_ns: t.utc.latest.0,
                status: t.status as i32,
            };
            SKEWD_OK
        }
        Err(e) => code(&e),
    }))
}

fn compare(c: *const SkewdClock, t_ns: i64, timescale: c_int, after: bool) -> c_int {
    // SAFETY: the caller's promise (see the public functions).
    let Ok(c) = (unsafe { clock(c) }) else {
        return SKEWD_E_INVAL;
    };
    guard(std::panic::AssertUnwindSafe(|| {
        let r = match (timescale, after) {
            (SKEWD_UTC, true) => c.after(Utc(t_ns)),
            (SKEWD_UTC, false) => c.before(Utc(t_ns)),
            (SKEWD_LEAPFREE, true) => c.after(LeapFree(t_ns)),
            (SKEWD_LEAPFREE, false) => c.before(LeapFree(t_ns)),
            _ => return SKEWD_E_INVAL,
        };
        match r {
            Ok(b) => c_int::from(b),
            Err(e) => code(&e),
        }
    }))
}

/// TrueTime's `after(t)`: 1 when true time is surely after `t_ns` on
/// `timescale`, 0 when not surely; negative on error (an `unknown` or
/// `disrupted` interval is `SKEWD_E_UNUSABLE`).
///
/// # Safety
/// `c` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn skewd_after(c: *const SkewdClock, t_ns: i64, timescale: c_int) -> c_int {
    compare(c, t_ns, timescale, true)
}

/// TrueTime's `before(t)`: 1 when true time is surely before `t_ns`.
///
/// # Safety
/// `c` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn skewd_before(c: *const SkewdClock, t_ns: i64, timescale: c_int) -> c_int {
    compare(c, t_ns, timescale, false)
}

/// Block until `t_ns` (on `timescale`) is surely in the past: 0, or
/// `SKEWD_E_TIMEOUT` after `timeout_ns` (also while not synchronized, or
/// while the error bound exceeds `max_epsilon_ns`; negative: no cap).
///
/// # Safety
/// `c` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn skewd_wait_until(
    c: *const SkewdClock,
    t_ns: i64,
    timescale: c_int,
    timeout_ns: i64,
    max_epsilon_ns: i64,
) -> c_int {
    // SAFETY: the caller's promise.
    let (Ok(c), Some(timeout)) = (unsafe { clock(c) }, timeout(timeout_ns)) else {
        return SKEWD_E_INVAL;
    };
    guard(std::panic::AssertUnwindSafe(|| {
        let cap = max_epsilon(max_epsilon_ns);
        let r = match timescale {
            SKEWD_UTC => c.wait_until(Utc(t_ns), timeout, cap),
            SKEWD_LEAPFREE => c.wait_until(LeapFree(t_ns), timeout, cap),
            _ => return SKEWD_E_INVAL,
        };
        match r {
            Ok(()) => SKEWD_OK,
            Err(e) => code(&e),
        }
    }))
}

/// Spanner's commit-wait: choose `s = latest` (leap-free) from the first
/// usable read (error bound ≤ `max_epsilon_ns` unless negative), return 0
/// once `s` is surely in the past, with `*out` filled; `SKEWD_E_TIMEOUT`
/// after `timeout_ns`.
///
/// # Safety
/// `c` is a live handle; `out` points to a writable `skewd_commit`.
#[no_mangle]
pub unsafe extern "C" fn skewd_commit_wait(
    c: *const SkewdClock,
    timeout_ns: i64,
    max_epsilon_ns: i64,
    out: *mut SkewdCommit,
) -> c_int {
    // SAFETY: the caller's promise.
    let (Ok(c), Some(out), Some(timeout)) = (
        unsafe { clock(c) },
        unsafe { out.as_mut() },
        timeout(timeout_ns),
    ) else {
        return SKEWD_E_INVAL;
    };
    guard(std::panic::AssertUnwindSafe(|| {
        match c.commit_wait(timeout, max_epsilon(max_epsilon_ns)) {
            Ok(w) => {
                *out = SkewdCommit {
                    timestamp_leapfree_ns: w.timestamp_leapfree_ns,
                    waited_ns: w.waited_ns,
                    epsilon_ns: w.epsilon_ns,
                };
                SKEWD_OK
            }
            Err(e) => code(&e),
        }
    }))
}

/// What a return code means (a static string; never NULL).
#[no_mangle]
pub extern "C" fn skewd_strerror(code: c_int) -> *const c_char {
    let s: &'static CStr = match code {
        SKEWD_OK => c"success",
        SKEWD_E_INVAL => {
            c"invalid argument (NULL pointer, unknown flag or timescale, negative timeout)"
        }
        SKEWD_E_NOT_FOUND => c"no skewd segment found where the agent puts it (is skewd running?)",
        SKEWD_E_OPEN => c"the segment cannot be opened or mapped",
        SKEWD_E_UNTRUSTED => c"the segment is not trusted: another user could have written it",
        SKEWD_E_FORMAT => c"not a skewd segment of this layout (truncated, bad magic or version)",
        SKEWD_E_MID_WRITE => c"the agent stayed mid-update (killed while writing?); restart it",
        SKEWD_E_NO_MODEL => c"the agent has no clock model yet",
        SKEWD_E_UNUSABLE => c"the interval is unknown or disrupted and cannot be acted on",
        SKEWD_E_INTERRUPTED => {
            c"the host was suspended since the agent's last update; retry shortly"
        }
        SKEWD_E_VM_DISRUPTED => {
            c"the VM was migrated or restored since the agent's last update; retry shortly"
        }
        SKEWD_E_FOREIGN_TIMELINE => {
            c"this process's CLOCK_MONOTONIC_RAW is not the agent's timeline"
        }
        SKEWD_E_FOREIGN_TIME_NAMESPACE => {
            c"this process is in another time namespace than the agent: use the HTTP API"
        }
        SKEWD_E_UNREPRESENTABLE => c"the interval does not fit 64-bit Unix nanoseconds",
        SKEWD_E_TIMEOUT => c"timed out",
        SKEWD_E_INTERNAL => c"internal error in skewd",
        _ => c"unknown skewd error code",
    };
    s.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// C's spelling of a Rust FFI type.
    fn c_type(rust: &str) -> String {
        let r = rust.trim();
        match r {
            "c_int" => "int".into(),
            "i64" => "int64_t".into(),
            "i32" => "int32_t".into(),
            "()" | "" => "void".into(),
            "*const c_char" => "const char *".into(),
            "*const SkewdClock" => "const skewd_clock *".into(),
            "*mut SkewdClock" => "skewd_clock *".into(),
            "*mut *mut SkewdClock" => "skewd_clock **".into(),
            "*mut SkewdInterval" => "skewd_interval *".into(),
            "*mut SkewdCommit" => "skewd_commit *".into(),
            other => panic!("no C spelling for {other}"),
        }
    }

    fn squash(s: &str) -> String {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace("( ", "(")
            .replace(" )", ")")
            .replace(" ,", ",")
            .replace("* ", "*")
    }

    /// Every `extern "C"` function, constant and struct of this file, in C,
    /// and the header's declarations: the same set.
    #[test]
    fn header_matches() {
        let src = include_str!("lib.rs");
        let header = include_str!("../../../include/skewd.h");
        let header_flat = squash(&header.replace('\n', " "));
        let mut want = vec![];
        // Functions.
        for chunk in src.split("extern \"C\" fn ").skip(1) {
            let name = chunk.split('(').next().unwrap().trim();
            let args_end = chunk.find(')').unwrap();
            let args = &chunk[chunk.find('(').unwrap() + 1..args_end];
            let rest = &chunk[args_end + 1..chunk.find('{').unwrap()];
            let ret = rest.trim().strip_prefix("->").unwrap_or("()");
            let params: Vec<String> = args
                .split(',')
                .filter(|a| !a.trim().is_empty())
                .map(|a| {
                    let (n, t) = a.split_once(':').unwrap();
                    let t = c_type(t);
                    if t.ends_with('*') {
                        format!("{t}{}", n.trim())
                    } else {
                        format!("{t} {}", n.trim())
                    }
                })
                .collect();
            let ret = c_type(ret);
            let decl = if ret.ends_with('*') {
                format!("{ret}{name}({});", params.join(", "))
            } else {
                format!("{ret} {name}({});", params.join(", "))
            };
            want.push(squash(&decl));
        }
        // Constants.
        for l in src.lines() {
            if let Some(rest) = l.strip_prefix("pub const SKEWD_") {
                let (name, value) = rest.split_once(':').unwrap();
                let value = value
                    .split('=')
                    .nth(1)
                    .unwrap()
                    .trim()
                    .trim_end_matches(';');
                want.push(format!("#define SKEWD_{name} ({value})"));
            }
        }
        // Structs: field names and C types, in order.
        for (rust, c) in [
            ("SkewdInterval", "skewd_interval"),
            ("SkewdCommit", "skewd_commit"),
        ] {
            let body = src
                .split(&format!("pub struct {rust} {{"))
                .nth(1)
                .unwrap()
                .split('}')
                .next()
                .unwrap();
            let fields: Vec<String> = body
                .lines()
                .filter_map(|l| l.trim().strip_prefix("pub "))
                .map(|f| {
                    let (n, t) = f.trim_end_matches(',').split_once(':').unwrap();
                    format!("{} {};", c_type(t), n.trim())
                })
                .collect();
            want.push(squash(&format!(
                "typedef struct {c} {{ {} }} {c};",
                fields.join(" ")
            )));
        }
        let mut missing = vec![];
        for w in &want {
            if !header_flat.contains(w.as_str()) {
                missing.push(w.clone());
            }
        }
        assert!(
            missing.is_empty(),
            "include/skewd.h lacks (or spells differently):\n{}",
            missing.join("\n")
        );
        // And nothing in the header that this file does not define.
        let declared = header_flat.matches("skewd_").count();
        let defines = header
            .lines()
            .filter(|l| l.starts_with("#define SKEWD_"))
            .count();
        let consts = src
            .lines()
            .filter(|l| l.starts_with("pub const SKEWD_"))
            .count();
        assert_eq!(
            defines,
            consts + 1,
            "one #define per constant, plus the include guard"
        );
        assert!(declared > 0);
        let fns_in_header = header
            .lines()
            .filter(|l| {
                let t = l.trim_start();
                t.contains("skewd_")
                    && t.ends_with(");")
                    && !t.starts_with("/*")
                    && !t.starts_with('*')
            })
            .count();
        assert_eq!(
            fns_in_header,
            src.matches("extern \"C\" fn ").count(),
            "the header declares other functions than this file defines"
        );
    }

    #[test]
    fn every_code_has_its_own_message() {
        let mut seen = std::collections::HashSet::new();
        for c in SKEWD_E_INTERNAL..=SKEWD_OK {
            // SAFETY: skewd_strerror returns a static NUL-terminated string.
            let s = unsafe { CStr::from_ptr(skewd_strerror(c)) };
            assert!(seen.insert(s.to_owned()), "{c}: {s:?} repeats");
        }
        // SAFETY: as above.
        let s = unsafe { CStr::from_ptr(skewd_strerror(-999)) };
        assert_eq!(s.to_str().unwrap(), "unknown skewd error code");
    }

    #[test]
    fn bad_arguments_are_refused_not_dereferenced() {
        let mut out = SkewdInterval::default();
        let mut h: *mut SkewdClock = std::ptr::null_mut();
        // SAFETY: NULL handles and pointers are what is being tested.
        unsafe {
            assert_eq!(
                skewd_open(std::ptr::null(), 0, std::ptr::null_mut()),
                SKEWD_E_INVAL
            );
            assert_eq!(
                skewd_open(c"/nonexistent/skewd".as_ptr(), 4, &mut h),
                SKEWD_E_INVAL
            );
            assert_eq!(
                skewd_open(c"/nonexistent/skewd".as_ptr(), 0, &mut h),
                SKEWD_E_OPEN
            );
            assert!(h.is_null());
            assert_eq!(skewd_now(std::ptr::null(), &mut out), SKEWD_E_INVAL);
            assert_eq!(skewd_after(std::ptr::null(), 0, SKEWD_UTC), SKEWD_E_INVAL);
            assert_eq!(skewd_before(std::ptr::null(), 0, SKEWD_UTC), SKEWD_E_INVAL);
            assert_eq!(
                skewd_wait_until(std::ptr::null(), 0, SKEWD_UTC, 0, -1),
                SKEWD_E_INVAL
            );
            assert_eq!(
                skewd_commit_wait(std::ptr::null(), 0, -1, std::ptr::null_mut()),
                SKEWD_E_INVAL
            );
            skewd_close(std::ptr::null_mut());
        }
    }
}
