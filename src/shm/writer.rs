//! The agent's side: one seqlock write of a [`Publication`] into a segment,
//! and the file-backed [`Writer`] that holds the segment's lock.
//!
//! Write protocol: generation += 1 (odd), Release fence, fields (Relaxed),
//! generation += 1 (Release).

use super::layout::{
    pack, Segment, FLAG_EVIDENCE, FLAG_FAST, FLAG_LEAP, FLAG_LEAP_PENDING, FLAG_MODEL,
    FLAG_VMCLOCK, FLAG_VMCLOCK_DEFAULT, MAGIC, SEGMENT_SIZE, VERSION,
};
use crate::core::leap::LeapPhase;
use crate::core::model::{FastForm, Model, Status};
use crate::core::publish::Publication;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{fence, Ordering};

/// Why the writer cannot take the segment.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// Another process holds the segment's lock: two writers would leave
    /// readers a mix of two models under an even generation.
    #[error("{path} is held by another skewd (pid {pid}): one agent per segment")]
    Held {
        /// The segment.
        path: String,
        /// The holder, as it wrote itself into the lock file (0: unknown).
        pid: u64,
    },
    /// The directory could have been changed by another user (see
    /// [`crate::paths::trusted_dir`]): readers could be handed their file.
    #[error("{path}: not publishing here: {why}")]
    Untrusted {
        /// The segment.
        path: String,
        /// Which directory, and why.
        why: String,
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

/// Reset `s` for a new writer: a writer killed mid-update left the
/// generation odd; make it even again, mark "no model", and say who writes
/// (`epoch`, `pid`, time namespace, boot id).
pub fn reset(s: &Segment, epoch: u64, pid: u64, timens: (u64, u64), boot_id: &str) {
    let r = Ordering::Relaxed;
    let g = s.generation.load(r);
    let g = if g % 2 == 1 { g + 1 } else { g };
    s.generation.store(g + 1, r);
    fence(Ordering::Release);
    s.magic.store(MAGIC, r);
    s.version.store(VERSION, r);
    s.size.store(SEGMENT_SIZE as u32, r);
    s.epoch.store(epoch, r);
    s.flags.store(0, r);
    s.status.store(Status::Unknown as u32, r);
    s.timens_ino.store(timens.0, r);
    s.timens_dev.store(timens.1, r);
    s.writer_pid.store(pid, r);
    s.violations.store(0, r);
    for (a, v) in s.boot_id.iter().zip(pack::<2>(boot_id)) {
        a.store(v, r);
    }
    for x in &s.reserved {
        x.store(0, r);
    }
    s.generation.store(g + 2, Ordering::Release);
}

/// One seqlock write of `p` into `s`. `vmclock_default`: the marker (if
/// any) is the one of `/dev/vmclock0`, which readers map by themselves.
pub fn write(s: &Segment, p: &Publication, vmclock_default: bool) {
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
        // No model, or one whose figures do not fit the layout: a saturated
        // bound would be a narrower interval, so none is published rather
        // than a wrong one.
        None => {
            let st = if p.model.is_some() {
                Status::Disrupted
            } else {
                p.status
            };
            s.status.store(st as u32, r);
        }
    }
    if let Some(m) = p.vmclock_marker {
        flags |= FLAG_VMCLOCK;
        if vmclock_default {
            flags |= FLAG_VMCLOCK_DEFAULT;
        }
        s.vmclock_marker.store(m, r);
    }
    s.flags.store(flags, r);
    s.offs_boot_ns.store(p.offs_boot_ns, r);
    for (a, v) in s
        .clocksource
        .iter()
        .zip(pack::<4>(p.clocksource.as_deref().unwrap_or("")))
    {
        a.store(v, r);
    }
    s.written_at_ns.store(p.at.0, r);
    s.violations.store(p.violations, r);
    s.generation.store(g.wrapping_add(2), Ordering::Release);
}

/// Begin an update of `s` and never finish it (tests: a writer killed
/// mid-write).
#[cfg(any(test, feature = "testing"))]
pub fn abandon_mid_write(s: &Segment) {
    let g = s.generation.load(Ordering::Relaxed);
    s.generation.store(g | 1, Ordering::Release);
}

/// Create the segment's directory if missing (0755), and check that no
/// other user could change anything along it.
fn prepare_dir(path: &Path) -> Result<(), WriterError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|cause| WriterError::Io {
        path: path.display().to_string(),
        cause,
    })?;
    let me = crate::paths::euid();
    crate::paths::trusted_dir(dir, me, me)
        .map(|_| ())
        .map_err(|why| WriterError::Untrusted {
            path: path.display().to_string(),
            why,
        })
}

/// Open (or create) the segment file of ours at `path`, 0644, allocated
/// to SEGMENT_SIZE, and map it.
fn open_mapped(path: &Path) -> std::io::Result<(std::fs::File, memmap2::MmapMut)> {
    use std::os::unix::fs::PermissionsExt;
    let f = open_ours(path, 0o644)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    allocate(&f, f.metadata()?.len())?;
    // SAFETY: the file is SEGMENT_SIZE bytes long, allocated, and only this
    // process writes it (the caller holds its lock; mode 0644, owned by the
    // agent's user); other processes only read through atomics, so a
    // shared mutable mapping is fine.
    let map = unsafe { memmap2::MmapOptions::new().len(SEGMENT_SIZE).map_mut(&f)? };
    Ok((f, map))
}

/// Give the segment file (now `len` bytes long) exactly SEGMENT_SIZE
/// allocated bytes. Allocating grows the file only when the blocks exist
/// (a sparse file on a full tmpfs would fault, SIGBUS, on the first touch
/// through a mapping, the agent's or a reader's), so a failure leaves a
/// shorter file that readers refuse as truncated.
fn allocate(f: &std::fs::File, len: u64) -> std::io::Result<()> {
    // SAFETY: posix_fallocate on a descriptor we own; no memory is passed.
    let rc = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, SEGMENT_SIZE as libc::off_t) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    if len > SEGMENT_SIZE as u64 {
        f.set_len(SEGMENT_SIZE as u64)?;
    }
    Ok(())
}

/// The agent's segment: a mapped file, and a write lock on `<segment>.lock`
/// for the writer's whole life (released by the kernel when the process
/// dies), so exactly one writer publishes to a segment. The lock file is
/// mode 0600: readers (who may open the 0644 segment) cannot take the lock
/// from under it.
#[derive(Debug)]
pub struct Writer {
    map: memmap2::MmapMut,
    file: std::fs::File,
    path: std::path::PathBuf,
    /// Holds the lock.
    lock: std::fs::File,
    /// The VMClock marker published is the one of `/dev/vmclock0`.
    vmclock_default: bool,
    epoch: u64,
}

/// What [`Writer::publish`] found about the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Published.
    Ok,
    /// The file had been shrunk (a reader mapping it then faults): sized
    /// and allocated again, and published.
    Restored,
    /// The path no longer names our file (deleted or replaced): a new one
    /// was created there, and published. Readers that mapped the old one
    /// see it go `unknown`, and must reopen.
    Recreated,
    /// Not published: why.
    Failed(String),
}

impl Writer {
    /// Create (or reopen) the segment at `path`, lock it, and reset it (see
    /// [`reset`]). A segment locked by a live writer is refused
    /// ([`WriterError::Held`]) before anything in it is touched. Neither
    /// file is followed through a symlink, and both must be ours.
    pub fn create(path: &Path) -> Result<Writer, WriterError> {
        let io = |cause| WriterError::Io {
            path: path.display().to_string(),
            cause,
        };
        prepare_dir(path)?;
        let lock = take_lock(path)?;
        let (file, map) = open_mapped(path).map_err(io)?;
        let w = Writer {
            map,
            file,
            path: path.to_path_buf(),
            lock,
            vmclock_default: false,
            epoch: rand::random(),
        };
        w.reset();
        Ok(w)
    }

    /// The mapped segment.
    pub fn seg(&self) -> &Segment {
        // SAFETY: the mapping is SEGMENT_SIZE bytes, page-aligned (so aligned
        // for Segment), lives as long as `self`, and every bit pattern is a
        // valid Segment (all fields are integer atomics).
        unsafe { &*(self.map.as_ptr() as *const Segment) }
    }

    /// Say whether the VMClock marker published is the one of
    /// `/dev/vmclock0` (readers map that page by themselves).
    pub fn set_vmclock_default(&mut self, yes: bool) {
        self.vmclock_default = yes;
    }

    /// Publish (one seqlock write; see [`write`]), after checking that the
    /// path still names our file at full size (two `stat`s): a shrunk file
    /// is restored, a deleted or replaced one recreated (never through a
    /// symlink, never over someone else's file). A file shrunk in the
    /// microsecond between the check and the write would still fault;
    /// only the agent's own user and root can shrink it.
    pub fn publish(&mut self, p: &Publication) -> Health {
        use std::os::unix::fs::MetadataExt;
        if let Err(why) = self.keep_lock() {
            return Health::Failed(why);
        }
        let mut health = Health::Ok;
        let ours = self.file.metadata();
        let named = std::fs::symlink_metadata(&self.path);
        match (&ours, &named) {
            (Ok(o), Ok(n)) if o.ino() == n.ino() && o.dev() == n.dev() && o.nlink() > 0 => {
                if o.len() < SEGMENT_SIZE as u64 {
                    if let Err(e) = self.restore() {
                        return Health::Failed(format!("cannot restore the shrunk segment: {e}"));
                    }
                    health = Health::Restored;
                }
            }
            _ => {
                if let Err(e) = self.recreate() {
                    return Health::Failed(format!(
                        "the segment was removed or replaced, and cannot be created again: {e}"
                    ));
                }
                health = Health::Recreated;
            }
        }
        write(self.seg(), p, self.vmclock_default);
        health
    }

    /// Make sure `<segment>.lock` is still the file we hold locked: if it
    /// was removed (with the segment, say), a second agent could lock a
    /// new one and both would write. Lock a new one ourselves; if another
    /// agent already has, stop writing.
    fn keep_lock(&mut self) -> Result<(), String> {
        use std::os::unix::fs::MetadataExt;
        let ours = self.lock.metadata().map_err(|e| e.to_string())?;
        let named = std::fs::symlink_metadata(lock_path(&self.path));
        if named.is_ok_and(|n| n.ino() == ours.ino() && n.dev() == ours.dev()) {
            return Ok(());
        }
        if let Err(e) = prepare_dir(&self.path) {
            return Err(e.to_string());
        }
        match take_lock(&self.path) {
            Ok(l) => {
                self.lock = l;
                Ok(())
            }
            Err(e) => Err(format!("the segment's lock file was replaced: {e}")),
        }
    }

    fn restore(&self) -> std::io::Result<()> {
        allocate(&self.file, 0)?;
        // The shrunk pages read as zeros again: start a clean generation.
        self.reset();
        Ok(())
    }

    fn recreate(&mut self) -> std::io::Result<()> {
        prepare_dir(&self.path).map_err(|e| std::io::Error::other(e.to_string()))?;
        (self.file, self.map) = open_mapped(&self.path)?;
        self.reset();
        Ok(())
    }

    /// [`reset`] the segment for this agent (its epoch, pid, time
    /// namespace and boot).
    fn reset(&self) {
        reset(
            self.seg(),
            self.epoch,
            u64::from(std::process::id()),
            crate::clock::time_namespace().unwrap_or((0, 0)),
            &crate::clock::boot_id().unwrap_or_default(),
        );
    }
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
fn lock_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    std::path::PathBuf::from(name)
}

fn take_lock(path: &Path) -> Result<std::fs::File, WriterError> {
    let lock_path = lock_path(path);
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
