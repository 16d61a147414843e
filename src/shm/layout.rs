//! The shared-memory segment: a fixed, versioned `repr(C)` layout whose
//! every field is an atomic, guarded by a 64-bit seqlock generation.
//!
//! ```text
//! offset size  field              meaning
//! ------ ----  -----------------  ------------------------------------------
//!      0    8  magic              b"SKEWDCLK" as a little-endian u64
//!      8    4  version            layout version (VERSION)
//!     12    4  size               size of this struct in bytes (SEGMENT_SIZE)
//!     16    8  generation         seqlock: odd while the writer is mid-update
//!     24    8  epoch              random per daemon start (readers' clamp key)
//!     32    4  flags              bit 0 model present, bit 1 rate evidence,
//!                                 bit 2 leap mark present, bit 3 fast form,
//!                                 bit 4 vmclock_marker valid, bit 5 it is
//!                                 the marker of /dev/vmclock0, bit 6 the
//!                                 leap is pending (unresolved: UTC is the
//!                                 hull of both readings after it)
//!     36    4  status             Status as u8 (0 unknown, 1 synchronized,
//!                                 2 free_running, 3 disrupted)
//!     40    8  anchor_ns          anchor on CLOCK_MONOTONIC_RAW (ns)
//!     48    8  bound_lo_ns        reference time at the anchor, lower end
//!     56    8  bound_hi_ns          ... upper end (leap-free Unix ns)
//!     64    8  rate_ppt           R: rate - 1, parts per 10^12
//!     72    8  phi_ppt            phi_m: half-width of the measured rate
//!     80    8  evidence_from_ns   rate evidence span start (RAW ns)
//!     88    8  evidence_to_ns     rate evidence span end (RAW ns)
//!     96    8  wander_ppt_per_s   D: largest rate change per second
//!    104    8  phi_hw_ppt         phi_hw: hardware rate bound
//!    112    8  sync_until_ns      synchronized reads as free_running after
//!    120    8  void_after_ns      reads as unknown after (RAW ns)
//!    128    8  utc_offset_ns      leap-free minus UTC before the leap mark
//!    136    8  leap_at_ns         pending/last leap, leap-free Unix ns
//!    144    8  leap_delta_ns      +1e9 insertion, -1e9 deletion
//!    152    8  offs_boot_ns       BOOTTIME - MONOTONIC when written
//!    160   32  clocksource        NUL-padded name (4 x u64)
//!    192   16  boot_id            NUL-padded boot id prefix (2 x u64)
//!    208   40  fast               FastForm: rate_lo_q, a1_q, a2_q, hw_q,
//!                                 cross_d (5 x i64; see core::model::FastForm)
//!    248    8  written_at_ns      RAW instant of this write: a reader whose
//!                                 own RAW is earlier is not on this timeline
//!    256    8  vmclock_marker     the VMClock disruption marker the model was
//!                                 made under (valid with bit 4 of flags)
//!    264    8  timens_ino         the writer's time namespace (inode of
//!    272    8  timens_dev          /proc/self/ns/time and its device; 0 if
//!                                 unknown): a reader in another one reads
//!                                 other MONOTONIC_RAW/BOOTTIME and refuses
//!    280    8  writer_pid         the process holding the segment's lock
//!    288    8  violations         bound violations the agent has counted: a
//!                                 reader's monotone clamp restarts when it
//!                                 changes (the model it clamped on was wrong)
//!    296   24  reserved           zero
//!    320       end (SEGMENT_SIZE)
//! ```
//!
//! All integers are native-endian (the segment never leaves the host).
//! Writers: generation += 1 (odd), Release fence, fields (Relaxed),
//! generation += 1 (Release). Readers: generation (Acquire), fields
//! (Relaxed), Acquire fence, generation again; retry while odd or changed.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64};

/// `b"SKEWDCLK"` read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SKEWDCLK");
/// Layout version; a reader refuses any other.
pub const VERSION: u32 = 3;
/// Bytes in the segment.
pub const SEGMENT_SIZE: usize = 320;

/// Flag: a model is present.
pub const FLAG_MODEL: u32 = 1;
/// Flag: the model has rate evidence.
pub const FLAG_EVIDENCE: u32 = 2;
/// Flag: a leap is pending or recent.
pub const FLAG_LEAP: u32 = 4;
/// Flag: the fast form is valid.
pub const FLAG_FAST: u32 = 8;
/// Flag: `vmclock_marker` holds the VMClock disruption marker.
pub const FLAG_VMCLOCK: u32 = 16;
/// Flag: ... of the page at the default path (`/dev/vmclock0`), the one
/// readers map by themselves.
pub const FLAG_VMCLOCK_DEFAULT: u32 = 32;
/// Flag: the leap mark is pending (not yet applied by every source).
pub const FLAG_LEAP_PENDING: u32 = 64;

/// The segment, as mapped. Every field is atomic: racing plain reads of
/// memory another process writes would be undefined behaviour.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Segment {
    /// [`MAGIC`].
    pub magic: AtomicU64,
    /// [`VERSION`].
    pub version: AtomicU32,
    /// [`SEGMENT_SIZE`].
    pub size: AtomicU32,
    /// Seqlock generation.
    pub generation: AtomicU64,
    /// Random per daemon start.
    pub epoch: AtomicU64,
    /// `FLAG_*` bits.
    pub flags: AtomicU32,
    /// Status at the anchor.
    pub status: AtomicU32,
    /// Anchor (RAW ns).
    pub anchor_ns: AtomicI64,
    /// Lower bound at the anchor.
    pub bound_lo_ns: AtomicI64,
    /// Upper bound at the anchor.
    pub bound_hi_ns: AtomicI64,
    /// R.
    pub rate_ppt: AtomicI64,
    /// phi_m.
    pub phi_ppt: AtomicI64,
    /// Evidence span start.
    pub evidence_from_ns: AtomicI64,
    /// Evidence span end.
    pub evidence_to_ns: AtomicI64,
    /// D.
    pub wander_ppt_per_s: AtomicI64,
    /// phi_hw.
    pub phi_hw_ppt: AtomicI64,
    /// Synchronized until.
    pub sync_until_ns: AtomicI64,
    /// Void after.
    pub void_after_ns: AtomicI64,
    /// Leap-free minus UTC before the last leap.
    pub utc_offset_ns: AtomicI64,
    /// Leap instant (leap-free).
    pub leap_at_ns: AtomicI64,
    /// Leap size.
    pub leap_delta_ns: AtomicI64,
    /// BOOTTIME - MONOTONIC at write.
    pub offs_boot_ns: AtomicI64,
    /// Clocksource name.
    pub clocksource: [AtomicU64; 4],
    /// Boot id prefix.
    pub boot_id: [AtomicU64; 2],
    /// The model's [`crate::core::model::FastForm`].
    pub fast: [AtomicI64; 5],
    /// CLOCK_MONOTONIC_RAW instant of the last write.
    pub written_at_ns: AtomicI64,
    /// The VMClock disruption marker the model was made under: a reader
    /// that sees the page's marker differ knows the VM was disrupted since
    /// (live migration, snapshot restore), before the daemon does.
    pub vmclock_marker: AtomicU64,
    /// The writer's time namespace: inode of `/proc/self/ns/time`.
    pub timens_ino: AtomicU64,
    /// ... and the device of that inode.
    pub timens_dev: AtomicU64,
    /// The process that holds the segment (its writer's lock).
    pub writer_pid: AtomicU64,
    /// Bound violations the agent has counted.
    pub violations: AtomicU64,
    /// Zero.
    pub reserved: [AtomicU64; 3],
}

const _: () = assert!(std::mem::size_of::<Segment>() == SEGMENT_SIZE);
const _: () = assert!(std::mem::align_of::<Segment>() == 8);
const _: () = assert!(std::mem::offset_of!(Segment, generation) == 16);
const _: () = assert!(std::mem::offset_of!(Segment, anchor_ns) == 40);
const _: () = assert!(std::mem::offset_of!(Segment, offs_boot_ns) == 152);
const _: () = assert!(std::mem::offset_of!(Segment, clocksource) == 160);
const _: () = assert!(std::mem::offset_of!(Segment, boot_id) == 192);
const _: () = assert!(std::mem::offset_of!(Segment, fast) == 208);
const _: () = assert!(std::mem::offset_of!(Segment, written_at_ns) == 248);
const _: () = assert!(std::mem::offset_of!(Segment, timens_ino) == 264);
const _: () = assert!(std::mem::offset_of!(Segment, writer_pid) == 280);

/// Pack up to `N * 8` bytes of a string into words (NUL padded).
pub fn pack<const N: usize>(s: &str) -> [u64; N] {
    let mut out = [0u64; N];
    for (i, b) in s.bytes().take(N * 8).enumerate() {
        out[i / 8] |= (b as u64) << ((i % 8) * 8);
    }
    out
}

/// The string packed by [`pack`].
pub fn unpack(words: &[u64]) -> String {
    let bytes: Vec<u8> = words
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .take_while(|b| *b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}
