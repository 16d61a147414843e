//! The shared-memory segment that apps read without locks or system calls:
//! layout ([`layout`]), the daemon's writer and the readers' seqlock read.
//!
//! All of the crate's `unsafe` for shared memory lives here. The segment is a
//! file (default `/run/skewd/clock`, mode 0644: any local user reads it, only
//! the daemon writes it) mapped by both sides; it survives daemon restarts,
//! so readers keep their mapping, and the daemon resets it when it starts.

pub mod layout;
pub mod vmclock;

use crate::core::leap::{LeapMark, LeapPhase, UtcMapping};
use crate::core::model::FastForm;
use crate::core::model::{Ageing, Model, Status};
use crate::core::time::{Interval, Nanos, Rate, RefTime, Steady};
use layout::{
    pack, unpack, Segment, FLAG_EVIDENCE, FLAG_FAST, FLAG_LEAP, FLAG_LEAP_PENDING, FLAG_MODEL,
    FLAG_VMCLOCK, FLAG_VMCLOCK_DEFAULT, MAGIC, SEGMENT_SIZE, VERSION,
};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{fence, Ordering};

/// Why a segment cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    /// The file could not be opened or mapped.
    #[error("cannot open {path}: {cause}")]
    Open {
        /// Path.
        path: String,
        /// Cause.
        cause: std::io::Error,
    },
    /// The file is shorter than the layout.
    #[error("segment is truncated: {0} bytes, need {SEGMENT_SIZE}")]
    Truncated(u64),
    /// Not a skewd segment.
    #[error("not a skewd segment (bad magic)")]
    BadMagic,
    /// A layout this reader does not know.
    #[error("segment layout version {found}, this reader knows {VERSION}")]
    Version {
        /// The version found.
        found: u32,
    },
    /// The writer stayed mid-update (killed while writing, or stalled): the
    /// daemon resets the segment when it starts.
    #[error("the writer is mid-update (killed while writing?); restart the daemon")]
    MidWrite,
}

/// What one consistent read of the segment holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Random per daemon start.
    pub epoch: u64,
    /// The model, if any.
    pub model: Option<Model>,
    /// The status when there is no model.
    pub status: Status,
    /// BOOTTIME - MONOTONIC when written.
    pub offs_boot_ns: i64,
    /// Clocksource name.
    pub clocksource: String,
    /// Boot id prefix.
    pub boot_id: String,
    /// RAW instant of this write.
    pub written_at_ns: i64,
    /// Bound violations the agent has counted (readers restart their
    /// monotone clamp when it changes).
    pub violations: u64,
    /// The VMClock disruption marker the model was made under, if the
    /// daemon watches a VMClock page, and whether that page is the default
    /// `/dev/vmclock0`.
    pub vmclock_marker: Option<(u64, bool)>,
}

/// Why the writer cannot take the segment.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// Another process holds the segment's lock: two writers would leave
    /// readers a mix of two models under an even generation.
    #[error("{path} is held by another skewd (pid {pid}): one agent per segment")]
    Held {
        /// The segment.
        path: String,
        /// The holder, as it wrote itself into the segment (0: unknown).
        pid: u64,
    },
    /// The file could not be created, locked, sized or mapped.
    #[error("{path}: {cause}")]
    Io {
        /// The segment.
        path: String,
        /// Cause.
        cause: std::io::Error,
    },
}

/// The daemon's side. It holds a write lock on `<segment>.lock` for its
/// whole life (released by the kernel when the process dies), so exactly one
/// writer publishes to a segment. The lock file is mode 0600: readers (who
/// may open the 0644 segment) cannot take the lock from under it.
#[derive(Debug)]
pub struct Writer {
    map: memmap2::MmapMut,
    _file: std::fs::File,
    /// Holds the lock.
    _lock: std::fs::File,
}

/// Open (creating with `mode`) a regular file of ours at `path`, never
/// through a symlink: a file planted by another user (in a directory they
/// can write) is refused.
fn open_ours(path: &Path, mode: u32) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::MetadataExt;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let m = f.metadata()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if !m.is_file() || m.uid() != me {
        return Err(std::io::Error::other(format!(
            "not a regular file owned by uid {me} (planted?)"
        )));
    }
    Ok(f)
}

/// The lock next to the segment: an open-file-description write lock on
/// `<path>.lock` (it conflicts even within one process, and dies with the
/// holder). The holder writes its pid into the file, to be named.
fn take_lock(path: &Path) -> Result<std::fs::File, WriterError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = std::path::PathBuf::from(name);
    let io = |cause| WriterError::Io {
        path: lock_path.display().to_string(),
        cause,
    };
    let f = open_ours(&lock_path, 0o600).map_err(io)?;
    // SAFETY: an all-zero flock is a valid value of this plain C struct
    // (l_pid must be 0 for open-file-description locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: fcntl(F_OFD_SETLK) on a descriptor we own, with a pointer to
    // a live flock that it only reads.
    if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &fl) } != 0 {
        let e = std::io::Error::last_os_error();
        if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) {
            let pid = std::fs::read_to_string(&lock_path)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0);
            return Err(WriterError::Held {
                path: path.display().to_string(),
                pid,
            });
        }
        return Err(io(e));
    }
    // For the next one to name us.
    let _ = f.set_len(0);
    let _ = (&f).write_all(format!("{}\n", std::process::id()).as_bytes());
    Ok(f)
}

impl Writer {
    /// Create (or reopen) the segment at `path`, lock it, and reset it: a
    /// writer killed mid-update leaves the generation odd; this makes it
    /// even again and marks "no model" until the first publish. A segment
    /// locked by a live writer is refused ([`WriterError::Held`]) before
    /// anything in it is touched. The path's last component is not followed
    /// if it is a symlink.
    pub fn create(path: &Path) -> Result<Writer, WriterError> {
        let io = |cause| WriterError::Io {
            path: path.display().to_string(),
            cause,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let lock = take_lock(path)?;
        let f = open_ours(path, 0o644).map_err(io)?;
        let meta = f.metadata().map_err(io)?;
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io)?;
        if meta.len() != SEGMENT_SIZE as u64 {
            f.set_len(SEGMENT_SIZE as u64).map_err(io)?;
        }
        // Allocate the blocks now: a sparse file on a full tmpfs would fault
        // (SIGBUS) on the first store through the mapping instead.
        // SAFETY: posix_fallocate on a descriptor we own; no memory is passed.
        let rc = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, SEGMENT_SIZE as libc::off_t) };
        if rc != 0 {
            return Err(io(std::io::Error::from_raw_os_error(rc)));
        }
        // SAFETY: the file is SEGMENT_SIZE bytes long, allocated, and only
        // this process writes it (we hold its lock; mode 0644, owned by the
        // daemon's user); other processes only read through atomics, so a
        // shared mutable mapping is fine.
        let map =
            unsafe { memmap2::MmapOptions::new().len(SEGMENT_SIZE).map_mut(&f) }.map_err(io)?;
        let w = Writer {
            map,
            _file: f,
            _lock: lock,
        };
        let s = w.seg();
        let g = s.generation.load(Ordering::Relaxed);
        let g = if g % 2 == 1 { g + 1 } else { g };
        s.generation.store(g + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        s.magic.store(MAGIC, Ordering::Relaxed);
        s.version.store(VERSION, Ordering::Relaxed);
        s.size.store(SEGMENT_SIZE as u32, Ordering::Relaxed);
        s.epoch.store(rand::random(), Ordering::Relaxed);
        s.flags.store(0, Ordering::Relaxed);
        s.status.store(Status::Unknown as u32, Ordering::Relaxed);
        let (ino, dev) = crate::clock::time_namespace().unwrap_or((0, 0));
        s.timens_ino.store(ino, Ordering::Relaxed);
        s.timens_dev.store(dev, Ordering::Relaxed);
        s.writer_pid
            .store(u64::from(std::process::id()), Ordering::Relaxed);
        for r in &s.reserved {
            r.store(0, Ordering::Relaxed);
        }
        s.generation.store(g + 2, Ordering::Release);
        Ok(w)
    }

    fn seg(&self) -> &Segment {
        // SAFETY: the mapping is SEGMENT_SIZE bytes, page-aligned (so aligned
        // for Segment), lives as long as `self`, and every bit pattern is a
        // valid Segment (all fields are integer atomics).
        unsafe { &*(self.map.as_ptr() as *const Segment) }
    }

    /// Publish one snapshot (one seqlock write).
    pub fn publish(&self, p: &Published) {
        let s = self.seg();
        let g = s.generation.load(Ordering::Relaxed);
        s.generation.store(g.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        let r = Ordering::Relaxed;
        let mut flags = 0;
        match p.model.as_ref().and_then(|m| Some((m, Fields::of(m)?))) {
            Some((m, v)) => {
                flags |= FLAG_MODEL;
                s.status.store(m.status as u32, r);
                s.anchor_ns.store(m.anchor.0, r);
                s.bound_lo_ns.store(v.lo, r);
                s.bound_hi_ns.store(v.hi, r);
                s.rate_ppt.store(v.rate, r);
                s.phi_ppt.store(v.phi, r);
                if let Some((a, b)) = m.ageing.evidence {
                    flags |= FLAG_EVIDENCE;
                    s.evidence_from_ns.store(a.0, r);
                    s.evidence_to_ns.store(b.0, r);
                }
                s.wander_ppt_per_s.store(v.wander, r);
                s.phi_hw_ppt.store(v.phi_hw, r);
                s.sync_until_ns.store(m.sync_until.0, r);
                s.void_after_ns.store(m.void_after.0, r);
                s.utc_offset_ns.store(v.utc_offset, r);
                if let Some(f) = FastForm::of(m) {
                    flags |= FLAG_FAST;
                    let v = [f.rate_lo_q, f.a1_q, f.a2_q, f.hw_q, f.cross_d];
                    for (a, x) in s.fast.iter().zip(v) {
                        a.store(x, r);
                    }
                }
                if let Some((at, delta, phase)) = v.leap {
                    flags |= FLAG_LEAP;
                    if phase == LeapPhase::Pending {
                        flags |= FLAG_LEAP_PENDING;
                    }
                    s.leap_at_ns.store(at, r);
                    s.leap_delta_ns.store(delta, r);
                }
            }
            // No model, or one whose figures do not fit the layout: a
            // saturated bound would be a narrower interval, so none is
            // published rather than a wrong one.
            None => {
                let st = if p.model.is_some() {
                    Status::Disrupted
                } else {
                    p.status
                };
                s.status.store(st as u32, r);
            }
        }
        if let Some((m, default_page)) = p.vmclock_marker {
            flags |= FLAG_VMCLOCK;
            if default_page {
                flags |= FLAG_VMCLOCK_DEFAULT;
            }
            s.vmclock_marker.store(m, r);
        }
        s.flags.store(flags, r);
        s.offs_boot_ns.store(p.offs_boot_ns, r);
        for (a, v) in s.clocksource.iter().zip(pack::<4>(&p.clocksource)) {
            a.store(v, r);
        }
        for (a, v) in s.boot_id.iter().zip(pack::<2>(&p.boot_id)) {
            a.store(v, r);
        }
        s.written_at_ns.store(p.written_at_ns, r);
        s.violations.store(p.violations, r);
        s.generation.store(g.wrapping_add(2), Ordering::Release);
    }

    /// Begin an update and never finish it (tests: a writer killed mid-write).
    pub fn abandon_mid_write(&self) {
        let s = self.seg();
        let g = s.generation.load(Ordering::Relaxed);
        s.generation.store(g | 1, Ordering::Release);
    }
}

/// A model's figures as the layout stores them; `None` when one does not
/// fit an i64 (then no model is published: clamping would narrow).
struct Fields {
    lo: i64,
    hi: i64,
    rate: i64,
    phi: i64,
    wander: i64,
    phi_hw: i64,
    utc_offset: i64,
    leap: Option<(i64, i64, LeapPhase)>,
}

impl Fields {
    fn of(m: &Model) -> Option<Fields> {
        let f = |v: i128| i64::try_from(v).ok();
        Some(Fields {
            lo: f(m.bound.lo.0)?,
            hi: f(m.bound.hi.0)?,
            rate: f(m.ageing.rate.0)?,
            phi: f(m.ageing.phi.0)?,
            wander: f(m.ageing.wander.0)?,
            phi_hw: f(m.ageing.phi_hw.0)?,
            utc_offset: f(m.utc.offset.0)?,
            leap: match m.utc.leap {
                Some(l) => Some((f(l.at.0)?, f(l.delta.0)?, l.phase)),
                None => None,
            },
        })
    }
}

/// The hot-path fields of one consistent read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastRead {
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Status as stored.
    pub status: u32,
    /// Anchor (RAW ns).
    pub anchor: i64,
    /// Lower bound at the anchor.
    pub lo: i64,
    /// Upper bound at the anchor.
    pub hi: i64,
    /// Fast form (valid when `flags & FLAG_FAST`).
    pub form: FastForm,
    /// Synchronized until.
    pub sync_until: i64,
    /// Void after.
    pub void_after: i64,
    /// Leap-free minus UTC.
    pub utc_offset: i64,
    /// BOOTTIME - MONOTONIC when written.
    pub offs_boot: i64,
    /// Daemon start epoch.
    pub epoch: u64,
    /// RAW instant of the write read.
    pub written_at: i64,
    /// Bound violations counted by the agent.
    pub violations: u64,
    /// The VMClock marker (valid when `flags & FLAG_VMCLOCK`).
    pub vmclock_marker: u64,
    /// The writer's time namespace (inode, device; zeros if unknown).
    pub timens: (u64, u64),
}

/// The readers' side: a read-only mapping.
#[derive(Debug)]
pub struct Reader {
    map: memmap2::Mmap,
}

/// Seqlock retries before a read reports [`ShmError::MidWrite`]. A publish
/// takes well under a microsecond, so this only trips on a dead writer.
pub const MAX_RETRIES: u32 = 10_000;

impl Reader {
    /// Map the segment at `path` read-only and check its header.
    pub fn open(path: &Path) -> Result<Reader, ShmError> {
        let open_err = |cause| ShmError::Open {
            path: path.display().to_string(),
            cause,
        };
        let f = std::fs::File::open(path).map_err(open_err)?;
        let len = f.metadata().map_err(open_err)?.len();
        if len < SEGMENT_SIZE as u64 {
            return Err(ShmError::Truncated(len));
        }
        // SAFETY: read-only mapping of at least SEGMENT_SIZE bytes; the file
        // is only ever grown to exactly SEGMENT_SIZE by the daemon, and we
        // only access it through atomic loads.
        let map =
            unsafe { memmap2::MmapOptions::new().len(SEGMENT_SIZE).map(&f) }.map_err(open_err)?;
        let r = Reader { map };
        let s = r.seg();
        if s.magic.load(Ordering::Acquire) != MAGIC {
            return Err(ShmError::BadMagic);
        }
        let v = s.version.load(Ordering::Relaxed);
        if v != VERSION || s.size.load(Ordering::Relaxed) != SEGMENT_SIZE as u32 {
            return Err(ShmError::Version { found: v });
        }
        Ok(r)
    }

    /// The mapped segment.
    pub fn seg(&self) -> &Segment {
        // SAFETY: as in Writer::seg; the mapping is read-only, and atomic
        // loads of lock-free integers up to 64 bits on read-only memory are
        // permitted (std::sync::atomic, "Atomic accesses to read-only memory").
        unsafe { &*(self.map.as_ptr() as *const Segment) }
    }

    /// Run `f` over the segment until it sees one writer generation from
    /// start to end (the seqlock read protocol): generation (Acquire), the
    /// fields (Relaxed, inside `f`), Acquire fence, generation again. Retries
    /// a bounded number of times, then reports [`ShmError::MidWrite`].
    #[inline(always)]
    fn consistent<T>(&self, f: impl Fn(&Segment) -> T) -> Result<T, ShmError> {
        let s = self.seg();
        for _ in 0..MAX_RETRIES {
            let g1 = s.generation.load(Ordering::Acquire);
            if g1 % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let v = f(s);
            fence(Ordering::Acquire);
            if s.generation.load(Ordering::Relaxed) == g1 {
                return Ok(v);
            }
        }
        Err(ShmError::MidWrite)
    }

    /// One consistent snapshot.
    pub fn read(&self) -> Result<Published, ShmError> {
        self.consistent(Self::fields)
    }

    /// The few fields the hot path of `now()` needs (one seqlock read).
    #[inline(always)]
    pub fn read_fast(&self) -> Result<FastRead, ShmError> {
        self.consistent(|s| {
            let r = Ordering::Relaxed;
            FastRead {
                flags: s.flags.load(r),
                status: s.status.load(r),
                anchor: s.anchor_ns.load(r),
                lo: s.bound_lo_ns.load(r),
                hi: s.bound_hi_ns.load(r),
                form: FastForm {
                    rate_lo_q: s.fast[0].load(r),
                    a1_q: s.fast[1].load(r),
                    a2_q: s.fast[2].load(r),
                    hw_q: s.fast[3].load(r),
                    cross_d: s.fast[4].load(r),
                },
                sync_until: s.sync_until_ns.load(r),
                void_after: s.void_after_ns.load(r),
                utc_offset: s.utc_offset_ns.load(r),
                offs_boot: s.offs_boot_ns.load(r),
                epoch: s.epoch.load(r),
                written_at: s.written_at_ns.load(r),
                violations: s.violations.load(r),
                vmclock_marker: s.vmclock_marker.load(r),
                timens: (s.timens_ino.load(r), s.timens_dev.load(r)),
            }
        })
    }

    /// The model (or the status without one), offs_boot and the epoch.
    #[inline]
    pub fn read_model(&self) -> Result<(Option<Model>, Status, i64, u64), ShmError> {
        self.consistent(|s| {
            let r = Ordering::Relaxed;
            let flags = s.flags.load(r);
            let status = Status::from_u8(s.status.load(r) as u8).unwrap_or(Status::Unknown);
            let model = (flags & FLAG_MODEL != 0).then(|| Self::model(s, flags, status));
            (model, status, s.offs_boot_ns.load(r), s.epoch.load(r))
        })
    }

    #[inline]
    fn model(s: &Segment, flags: u32, status: Status) -> Model {
        let r = Ordering::Relaxed;
        let evidence = (flags & FLAG_EVIDENCE != 0).then(|| {
            (
                Steady(s.evidence_from_ns.load(r)),
                Steady(s.evidence_to_ns.load(r)),
            )
        });
        let leap = (flags & FLAG_LEAP != 0).then(|| LeapMark {
            at: RefTime(s.leap_at_ns.load(r) as i128),
            delta: Nanos(s.leap_delta_ns.load(r) as i128),
            phase: if flags & FLAG_LEAP_PENDING != 0 {
                LeapPhase::Pending
            } else {
                LeapPhase::Done
            },
        });
        Model {
            anchor: Steady(s.anchor_ns.load(r)),
            bound: Interval {
                lo: RefTime(s.bound_lo_ns.load(r) as i128),
                hi: RefTime(s.bound_hi_ns.load(r) as i128),
            },
            ageing: Ageing {
                rate: Rate(s.rate_ppt.load(r) as i128),
                phi: Rate(s.phi_ppt.load(r) as i128),
                evidence,
                wander: Rate(s.wander_ppt_per_s.load(r) as i128),
                phi_hw: Rate(s.phi_hw_ppt.load(r) as i128),
            },
            status,
            sync_until: Steady(s.sync_until_ns.load(r)),
            void_after: Steady(s.void_after_ns.load(r)),
            utc: UtcMapping {
                offset: Nanos(s.utc_offset_ns.load(r) as i128),
                leap,
            },
        }
    }

    fn fields(s: &Segment) -> Published {
        let r = Ordering::Relaxed;
        let flags = s.flags.load(r);
        let status = Status::from_u8(s.status.load(r) as u8).unwrap_or(Status::Unknown);
        let cs: Vec<u64> = s.clocksource.iter().map(|a| a.load(r)).collect();
        let bi: Vec<u64> = s.boot_id.iter().map(|a| a.load(r)).collect();
        Published {
            epoch: s.epoch.load(r),
            model: (flags & FLAG_MODEL != 0).then(|| Self::model(s, flags, status)),
            status,
            offs_boot_ns: s.offs_boot_ns.load(r),
            clocksource: unpack(&cs),
            boot_id: unpack(&bi),
            written_at_ns: s.written_at_ns.load(r),
            violations: s.violations.load(r),
            vmclock_marker: (flags & FLAG_VMCLOCK != 0)
                .then(|| (s.vmclock_marker.load(r), flags & FLAG_VMCLOCK_DEFAULT != 0)),
        }
    }
}
