//! The readers' side: the seqlock read of a segment into what the one read
//! function needs ([`crate::core::read::View`]) and what a reader checks
//! about its own environment ([`Env`]), and the read-only file mapping.
//!
//! Read protocol: generation (Acquire), the fields (Relaxed), Acquire fence,
//! generation again; retry while odd or changed, a bounded number of times.

use super::layout::{
    unpack, Segment, FLAG_EVIDENCE, FLAG_FAST, FLAG_LEAP, FLAG_LEAP_PENDING, FLAG_MODEL,
    FLAG_VMCLOCK, FLAG_VMCLOCK_DEFAULT, MAGIC, SEGMENT_SIZE, VERSION,
};
use crate::core::leap::{LeapMark, LeapPhase, UtcMapping};
use crate::core::model::{Ageing, FastForm, Model, Status};
use crate::core::read::{HotModel, View};
use crate::core::time::{Interval, Nanos, Rate, RefTime, Steady};
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
    /// Another user could have put the file there or changed it (see
    /// [`crate::paths::trusted_dir`]): its interval proves nothing.
    #[error("not trusting {path}: {why}")]
    Untrusted {
        /// Path.
        path: String,
        /// Why.
        why: String,
    },
    /// The file is shorter than the layout.
    #[error("segment is truncated: {0} bytes, need {SEGMENT_SIZE}")]
    Truncated(u64),
    /// Not a skewd segment.
    #[error("not a skewd segment (bad magic)")]
    BadMagic,
    /// A layout this reader does not know.
    #[error("segment layout version {found} of {size} bytes, this reader knows version {VERSION} of {SEGMENT_SIZE} bytes")]
    Version {
        /// The version found.
        found: u32,
        /// The size field found.
        size: u32,
    },
    /// The writer stayed mid-update (killed while writing, or stalled): the
    /// agent resets the segment when it starts.
    #[error("the writer is mid-update (killed while writing?); restart the agent")]
    MidWrite,
}

/// What a reader checks about its own environment before trusting a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Env {
    /// BOOTTIME − MONOTONIC the model is valid for.
    pub offs_boot: i64,
    /// Random per agent start.
    pub epoch: u64,
    /// RAW instant of the write (a reader earlier than this is not on the
    /// agent's timeline).
    pub written_at: i64,
    /// Bound violations the agent counted.
    pub violations: u64,
    /// The VMClock disruption marker the model was made under, and whether
    /// it is the one of `/dev/vmclock0`.
    pub vmclock_marker: Option<(u64, bool)>,
    /// The writer's time namespace (inode, device), if it could tell.
    pub timens: Option<(u64, u64)>,
}

/// Everything in one consistent read (tests, tools).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The model, if any.
    pub model: Option<Model>,
    /// The status stored.
    pub status: Status,
    /// The environment fields.
    pub env: Env,
    /// Clocksource name.
    pub clocksource: String,
    /// Boot id prefix.
    pub boot_id: String,
    /// The writer's pid.
    pub writer_pid: u64,
}

/// Seqlock retries spent spinning before a read starts yielding to the
/// writer (a publish takes well under a microsecond).
pub const MAX_RETRIES: u32 = 10_000;
/// How long an odd generation is waited out, yielding, before the read
/// reports [`ShmError::MidWrite`]: a writer preempted mid-publish on a busy
/// host is not dead (a flood of clients on two cores showed one held for
/// longer than the spins).
pub const MID_WRITE_PATIENCE: std::time::Duration = std::time::Duration::from_millis(20);

/// Run `f` over `s` until it sees one writer generation from start to end.
#[inline(always)]
pub fn consistent<T>(s: &Segment, f: impl Fn(&Segment) -> T) -> Result<T, ShmError> {
    consistent_within(s, f, 3)
}

/// [`consistent`], waiting for a slow writer `waits` more times. (The
/// closure is passed on by value: taking its address in the hot path cost
/// the fast read 10 ns.)
#[inline(always)]
fn consistent_within<T>(s: &Segment, f: impl Fn(&Segment) -> T, waits: u32) -> Result<T, ShmError> {
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
    // A writer preempted mid-publish is slow, not dead: wait for it a few
    // times; one that stays odd, or writes without pause, is reported.
    if waits > 0 && wait_for_writer(s) {
        return consistent_within(s, f, waits - 1);
    }
    Err(ShmError::MidWrite)
}

/// The slow path, out of line: yield until the generation is even, or
/// [`MID_WRITE_PATIENCE`] has passed. Whether it came back even.
#[cold]
#[inline(never)]
fn wait_for_writer(s: &Segment) -> bool {
    let deadline = std::time::Instant::now() + MID_WRITE_PATIENCE;
    while std::time::Instant::now() < deadline {
        if s.generation.load(Ordering::Acquire).is_multiple_of(2) {
            return true;
        }
        std::thread::yield_now();
    }
    false
}

#[inline(always)]
fn status_of(s: &Segment) -> Status {
    Status::from_u8(s.status.load(Ordering::Relaxed) as u8).unwrap_or(Status::Unknown)
}

#[inline(always)]
fn env_of(s: &Segment, flags: u32) -> Env {
    let r = Ordering::Relaxed;
    let timens = (s.timens_ino.load(r), s.timens_dev.load(r));
    Env {
        offs_boot: s.offs_boot_ns.load(r),
        epoch: s.epoch.load(r),
        written_at: s.written_at_ns.load(r),
        violations: s.violations.load(r),
        vmclock_marker: (flags & FLAG_VMCLOCK != 0)
            .then(|| (s.vmclock_marker.load(r), flags & FLAG_VMCLOCK_DEFAULT != 0)),
        timens: (timens != (0, 0)).then_some(timens),
    }
}

/// The hot fields and the environment: one consistent read, what `now()`
/// needs on its fast path.
#[inline(always)]
pub fn view(s: &Segment) -> Result<(View, Env), ShmError> {
    consistent(s, |s| {
        let r = Ordering::Relaxed;
        let flags = s.flags.load(r);
        let status = status_of(s);
        let model = (flags & FLAG_MODEL != 0).then(|| HotModel {
            anchor: Steady(s.anchor_ns.load(r)),
            lo: s.bound_lo_ns.load(r),
            hi: s.bound_hi_ns.load(r),
            fast: (flags & FLAG_FAST != 0).then(|| FastForm {
                rate_lo_q: s.fast[0].load(r),
                a1_q: s.fast[1].load(r),
                a2_q: s.fast[2].load(r),
                hw_q: s.fast[3].load(r),
                cross_d: s.fast[4].load(r),
            }),
            leap: flags & FLAG_LEAP != 0,
            status,
            sync_until: Steady(s.sync_until_ns.load(r)),
            void_after: Steady(s.void_after_ns.load(r)),
            utc_offset: s.utc_offset_ns.load(r),
        });
        (View { model, status }, env_of(s, flags))
    })
}

/// What a read of *now* needs in the common case, and nothing else: the
/// model's hot fields when its fast form applies without a leap mark, and
/// the environment a reader without a VMClock page or a clamp checks
/// (timeline, time namespace, and for a strict read, suspend).
#[derive(Debug, Clone, Copy)]
pub struct Lean {
    /// The hot fields (`None`: no model, no fast form, or a leap mark: the
    /// full read applies).
    pub model: Option<(HotModel, FastForm)>,
    /// RAW instant of the write.
    pub written_at: i64,
    /// BOOTTIME − MONOTONIC the model is valid for (the strict read's check).
    pub offs_boot: i64,
    /// The writer's time namespace (`(0, 0)`: it could not tell).
    pub timens: (u64, u64),
}

/// One consistent read of [`Lean`].
#[inline(always)]
pub fn lean(s: &Segment) -> Result<Lean, ShmError> {
    consistent(s, |s| {
        let r = Ordering::Relaxed;
        let flags = s.flags.load(r);
        let hot = flags & (FLAG_MODEL | FLAG_FAST | FLAG_LEAP) == FLAG_MODEL | FLAG_FAST;
        Lean {
            model: hot.then(|| {
                (
                    HotModel {
                        anchor: Steady(s.anchor_ns.load(r)),
                        lo: s.bound_lo_ns.load(r),
                        hi: s.bound_hi_ns.load(r),
                        fast: None,
                        leap: false,
                        status: status_of(s),
                        sync_until: Steady(s.sync_until_ns.load(r)),
                        void_after: Steady(s.void_after_ns.load(r)),
                        utc_offset: s.utc_offset_ns.load(r),
                    },
                    FastForm {
                        rate_lo_q: s.fast[0].load(r),
                        a1_q: s.fast[1].load(r),
                        a2_q: s.fast[2].load(r),
                        hw_q: s.fast[3].load(r),
                        cross_d: s.fast[4].load(r),
                    },
                )
            }),
            written_at: s.written_at_ns.load(r),
            offs_boot: s.offs_boot_ns.load(r),
            timens: (s.timens_ino.load(r), s.timens_dev.load(r)),
        }
    })
}

fn model_of(s: &Segment, flags: u32) -> Option<Model> {
    if flags & FLAG_MODEL == 0 {
        return None;
    }
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
    Some(Model {
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
        status: status_of(s),
        sync_until: Steady(s.sync_until_ns.load(r)),
        void_after: Steady(s.void_after_ns.load(r)),
        utc: UtcMapping {
            offset: Nanos(s.utc_offset_ns.load(r) as i128),
            leap,
        },
    })
}

/// The full model, if any (one consistent read).
pub fn model(s: &Segment) -> Result<Option<Model>, ShmError> {
    consistent(s, |s| model_of(s, s.flags.load(Ordering::Relaxed)))
}

/// Everything (one consistent read).
pub fn decode(s: &Segment) -> Result<Decoded, ShmError> {
    consistent(s, |s| {
        let r = Ordering::Relaxed;
        let flags = s.flags.load(r);
        let cs: Vec<u64> = s.clocksource.iter().map(|a| a.load(r)).collect();
        let bi: Vec<u64> = s.boot_id.iter().map(|a| a.load(r)).collect();
        Decoded {
            model: model_of(s, flags),
            status: status_of(s),
            env: env_of(s, flags),
            clocksource: unpack(&cs),
            boot_id: unpack(&bi),
            writer_pid: s.writer_pid.load(r),
        }
    })
}

/// Whether the segment at `path` (opened, with `meta`) can only have been
/// written by its owner: a regular file nobody else can write, owned by
/// root or by the owner of a directory chain that passes
/// [`crate::paths::trusted_dir`] for that owner and this reader. A segment
/// another user planted (in `/tmp/skewd`, say, made before the agent)
/// would give a `synchronized` interval of their choosing.
fn trusted(path: &Path, meta: &std::fs::Metadata) -> Result<(), ShmError> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |why: String| ShmError::Untrusted {
        path: path.display().to_string(),
        why,
    };
    if !meta.is_file() {
        return Err(refuse("not a regular file".into()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refuse(format!(
            "others can write it (mode {:o})",
            meta.mode() & 0o7777
        )));
    }
    let (owner, me) = (meta.uid(), crate::paths::euid());
    let link = std::fs::symlink_metadata(path).map_err(|e| refuse(e.to_string()))?;
    if link.file_type().is_symlink() && link.uid() != 0 && link.uid() != owner {
        return Err(refuse(format!("a symlink owned by uid {}", link.uid())));
    }
    let real = std::fs::canonicalize(path).map_err(|e| refuse(e.to_string()))?;
    // Right inside a directory everyone can write (a sticky /tmp), a file
    // of another user's proves nothing: anyone could have put it there —
    // the rule trusted_dir applies to such a directory's subdirectories.
    if let Some(parent) = real.parent() {
        let shared = std::fs::metadata(parent).is_ok_and(|m| m.mode() & 0o002 != 0);
        if shared && owner != 0 && owner != me {
            return Err(refuse(format!(
                "a file of uid {owner} right inside {}, which everyone can write",
                parent.display()
            )));
        }
    }
    // The directories as named (their symlinks), then where the file is.
    for p in [path, real.as_path()] {
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        crate::paths::trusted_dir(dir, owner, me).map_err(refuse)?;
    }
    Ok(())
}

/// A read-only mapping of the agent's segment.
#[derive(Debug)]
pub struct Reader {
    map: memmap2::Mmap,
}

impl Reader {
    /// Map the segment at `path` read-only and check its header.
    pub fn open(path: &Path) -> Result<Reader, ShmError> {
        let open_err = |cause| ShmError::Open {
            path: path.display().to_string(),
            cause,
        };
        let f = std::fs::File::open(path).map_err(open_err)?;
        let meta = f.metadata().map_err(open_err)?;
        trusted(path, &meta)?;
        let len = meta.len();
        if len < SEGMENT_SIZE as u64 {
            return Err(ShmError::Truncated(len));
        }
        // SAFETY: read-only mapping of at least SEGMENT_SIZE bytes; the file
        // is only ever grown to exactly SEGMENT_SIZE by the agent, and we
        // only access it through atomic loads.
        let map =
            unsafe { memmap2::MmapOptions::new().len(SEGMENT_SIZE).map(&f) }.map_err(open_err)?;
        let r = Reader { map };
        let s = r.seg();
        if s.magic.load(Ordering::Acquire) != MAGIC {
            return Err(ShmError::BadMagic);
        }
        let v = s.version.load(Ordering::Relaxed);
        let size = s.size.load(Ordering::Relaxed);
        if v != VERSION || size != SEGMENT_SIZE as u32 {
            return Err(ShmError::Version { found: v, size });
        }
        Ok(r)
    }

    /// The mapped segment.
    pub fn seg(&self) -> &Segment {
        // SAFETY: the mapping is SEGMENT_SIZE bytes, page-aligned, lives as
        // long as `self`, every bit pattern is a valid Segment, and atomic
        // loads of lock-free integers up to 64 bits on read-only memory are
        // permitted (std::sync::atomic, "Atomic accesses to read-only
        // memory").
        unsafe { &*(self.map.as_ptr() as *const Segment) }
    }

    /// See [`view`].
    #[inline(always)]
    pub fn view(&self) -> Result<(View, Env), ShmError> {
        view(self.seg())
    }

    /// See [`lean`].
    #[inline(always)]
    pub fn lean(&self) -> Result<Lean, ShmError> {
        lean(self.seg())
    }

    /// See [`model`].
    pub fn model(&self) -> Result<Option<Model>, ShmError> {
        model(self.seg())
    }

    /// See [`decode`].
    pub fn decode(&self) -> Result<Decoded, ShmError> {
        decode(self.seg())
    }
}
