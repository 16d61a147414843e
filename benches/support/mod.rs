//! Bench support: a segment with a realistic synchronized model.
#![allow(missing_docs, reason = "bench helpers")]
#![allow(dead_code, reason = "each bench uses a subset")]
//! A segment with a realistic synchronized model, published by an in-process
//! writer, for the benches (no daemon needed).

use skewd::clock;
use skewd::core::leap::UtcMapping;
use skewd::core::model::{Ageing, Model, Status};
use skewd::core::publish::Publication;
use skewd::core::time::Steady;
use skewd::core::time::{Interval, Nanos, Rate, RefTime};
use skewd::shm::Writer;
use std::path::PathBuf;

pub fn segment(tag: &str) -> (Writer, PathBuf) {
    segment_with(tag, None)
}

/// [`segment`], published with a VMClock marker.
pub fn segment_with(tag: &str, vmclock_marker: Option<(u64, bool)>) -> (Writer, PathBuf) {
    let dir = std::env::temp_dir().join(format!("skewd-bench-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("clock");
    let mut w = Writer::create(&path).unwrap();
    let p = clock::paired_realtime();
    let anchor = p.steady;
    let model = Model {
        anchor,
        bound: Interval {
            lo: p.realtime - Nanos::from_micros(40),
            hi: p.realtime + Nanos::from_micros(40),
        },
        ageing: Ageing {
            rate: Rate::from_ppb(1234),
            phi: Rate::from_ppm(1),
            evidence: Some((anchor.plus(Nanos::from_secs(-200)), anchor)),
            wander: Rate::from_ppb(20),
            phi_hw: Rate::from_ppm(200),
        },
        status: Status::Synchronized,
        sync_until: anchor.plus(Nanos::from_secs(3600)),
        void_after: anchor.plus(Nanos::from_secs(3600)),
        utc: UtcMapping::default(),
    };
    let (offs, _) = clock::boot_offset();
    let mut p = Publication::bare(Steady(0), Some(model), Status::Synchronized, offs);
    p.vmclock_marker = vmclock_marker.map(|m| m.0);
    w.set_vmclock_default(vmclock_marker.is_some_and(|m| m.1));
    w.publish(&p);
    let _ = RefTime(0);
    (w, path)
}
