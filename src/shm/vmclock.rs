//! The hypervisor's VMClock page (`/dev/vmclock0`, Linux `ptp_vmclock`):
//! its `disruption_marker` changes to a new value whenever the guest's
//! counter was disrupted — live migration, a snapshot restored, a pause the
//! hypervisor reports. Every local clock reading taken before such an event
//! may be off by an unknown amount afterwards, so the agent treats a change
//! as a timeline interruption (the model is dropped, status `disrupted`).
//!
//! Only the header and the marker are read (little-endian, as the ABI
//! defines them):
//!
//! ```text
//! offset size  field
//!      0    4  magic              0x4b4c4356 ("VCLK")
//!      4    4  size               bytes in the structure's region
//!      8    2  version            1
//!     10    1  counter_id
//!     11    1  time_type
//!     12    4  seq_count          odd while the hypervisor updates
//!     16    8  disruption_marker
//! ```

use std::path::Path;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// The structure's magic, "VCLK".
pub const MAGIC: u32 = 0x4b4c_4356;
/// Where the kernel exposes it.
pub const DEFAULT_PATH: &str = "/dev/vmclock0";
/// Bytes up to and including the marker.
const HEADER_LEN: usize = 24;
/// Seqlock reads tried before giving up on one poll.
const TRIES: usize = 64;

/// Why the page cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum VmClockError {
    /// Cannot open or map it.
    #[error("cannot map {path}: {cause}")]
    Open {
        /// Path.
        path: String,
        /// Cause.
        cause: std::io::Error,
    },
    /// Not a VMClock page of a version this reader knows.
    #[error("{path}: not a VMClock page (magic {magic:#x}, version {version}, size {size})")]
    Foreign {
        /// Path.
        path: String,
        /// Magic found.
        magic: u32,
        /// Version found.
        version: u16,
        /// Size found.
        size: u32,
    },
}

/// A read-only mapping of the VMClock page.
#[derive(Debug)]
pub struct VmClock {
    map: memmap2::Mmap,
}

impl VmClock {
    /// Map `path` and check its header.
    pub fn open(path: &Path) -> Result<VmClock, VmClockError> {
        let name = path.display().to_string();
        let open_err = |cause| VmClockError::Open {
            path: name.clone(),
            cause,
        };
        let f = std::fs::File::open(path).map_err(open_err)?;
        // A regular file shorter than the header would fault (SIGBUS) when
        // read through the mapping; the device itself reports length 0.
        let meta = f.metadata().map_err(open_err)?;
        if meta.is_file() && (meta.len() as usize) < HEADER_LEN {
            return Err(VmClockError::Foreign {
                path: name,
                magic: 0,
                version: 0,
                size: meta.len() as u32,
            });
        }
        // SAFETY: a read-only shared mapping of HEADER_LEN bytes. The
        // hypervisor (or a test) may change the bytes underneath; they are
        // only ever read through atomics (`word32`/`word64`), never as
        // references to plain integers.
        let map =
            unsafe { memmap2::MmapOptions::new().len(HEADER_LEN).map(&f) }.map_err(open_err)?;
        let v = VmClock { map };
        let (magic, size) = (v.word32(0), v.word32(4));
        let version = (v.word32(8) & 0xffff) as u16;
        if magic != MAGIC || version != 1 || (size as usize) < HEADER_LEN {
            return Err(VmClockError::Foreign {
                path: name,
                magic,
                version,
                size,
            });
        }
        Ok(v)
    }

    fn word32(&self, offset: usize) -> u32 {
        debug_assert!(offset.is_multiple_of(4) && offset + 4 <= HEADER_LEN);
        // SAFETY: the mapping is page-aligned and HEADER_LEN long, so the
        // 4-aligned offset is in bounds and aligned for AtomicU32; atomic
        // loads from read-only memory are permitted for lock-free integers.
        let a = unsafe { &*(self.map.as_ptr().add(offset) as *const AtomicU32) };
        u32::from_le(a.load(Ordering::Relaxed))
    }

    fn word64(&self, offset: usize) -> u64 {
        debug_assert!(offset.is_multiple_of(8) && offset + 8 <= HEADER_LEN);
        // SAFETY: as in `word32`, for an 8-aligned offset and AtomicU64.
        let a = unsafe { &*(self.map.as_ptr().add(offset) as *const AtomicU64) };
        u64::from_le(a.load(Ordering::Relaxed))
    }

    /// The disruption marker, read under the page's seqlock; `None` if the
    /// hypervisor stayed mid-update for every try.
    pub fn disruption_marker(&self) -> Option<u64> {
        for _ in 0..TRIES {
            let before = self.word32(12);
            fence(Ordering::Acquire);
            let marker = self.word64(16);
            fence(Ordering::Acquire);
            if before & 1 == 0 && self.word32(12) == before {
                return Some(marker);
            }
            std::hint::spin_loop();
        }
        None
    }
}

/// Write a VMClock page at `path` as a hypervisor would, for tests and
/// benches: created (4 KiB, header only) if missing, then the marker
/// updated in place under the seqlock (odd while writing), so a process
/// that has it mapped sees the change.
#[cfg(any(test, feature = "testing"))]
pub fn write_page(path: &Path, seq: u32, marker: u64) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    if !path.exists() {
        let mut b = vec![0u8; 4096];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&104u32.to_le_bytes());
        b[8..10].copy_from_slice(&1u16.to_le_bytes());
        std::fs::write(path, b)?;
    }
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    let odd = seq | 1;
    for (at, bytes) in [
        (12, odd.to_le_bytes().to_vec()),
        (16, marker.to_le_bytes().to_vec()),
        (12, (odd + 1).to_le_bytes().to_vec()),
    ] {
        f.seek(SeekFrom::Start(at))?;
        f.write_all(&bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_marker_and_refuses_foreign_pages() {
        let dir = std::env::temp_dir().join(format!("skewd-vmclock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("vmclock0");
        write_page(&p, 2, 7).unwrap();
        let c = VmClock::open(&p).unwrap();
        assert_eq!(c.disruption_marker(), Some(7));
        // The file is rewritten in place (same inode): the mapping sees it.
        let mut f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        use std::io::{Seek, SeekFrom, Write};
        f.seek(SeekFrom::Start(16)).unwrap();
        f.write_all(&8u64.to_le_bytes()).unwrap();
        f.flush().unwrap();
        assert_eq!(c.disruption_marker(), Some(8));
        // Mid-update (odd sequence): no reading.
        f.seek(SeekFrom::Start(12)).unwrap();
        f.write_all(&3u32.to_le_bytes()).unwrap();
        assert_eq!(c.disruption_marker(), None);
        // Foreign files are refused with what was found.
        std::fs::write(dir.join("other"), vec![0u8; 64]).unwrap();
        assert!(matches!(
            VmClock::open(&dir.join("other")),
            Err(VmClockError::Foreign { magic: 0, .. })
        ));
        std::fs::write(dir.join("short"), b"VCLK").unwrap();
        assert!(VmClock::open(&dir.join("short")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
