//! What the daemon publishes to its in-process readers (HTTP, metrics): the
//! model plus the figures around it. Written by the daemon task, read by
//! request handlers; readers compute their interval from their own clock read.

use crate::clock::KernelStatus;
use crate::core::engine::SourceReport;
use crate::core::model::{Model, Status};
use crate::core::time::clamp_i64;
use crate::core::time::{Interval, Steady};
use serde::Serialize;

/// One source as shown to operators.
#[derive(Debug, Clone)]
pub struct SourceView {
    /// The configured `host:port`.
    pub name: String,
    /// The address it resolved to, if any.
    pub address: Option<std::net::SocketAddr>,
    /// The core's figures.
    pub report: SourceReport,
}

/// Everything the daemon publishes.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The model, if any.
    pub model: Option<Model>,
    /// The status when there is no model (unknown or disrupted).
    pub status_without_model: Status,
    /// Per-source figures.
    pub sources: Vec<SourceView>,
    /// REALTIME minus the reference at the last paired read, and its
    /// uncertainty (ns).
    pub realtime_offset: Option<(i128, i128)>,
    /// Frequency of the steady clock against the reference (ppm).
    pub frequency_ppm: Option<f64>,
    /// The kernel's view (read-only adjtimex).
    pub kernel: Option<KernelStatus>,
    /// REALTIME steps seen.
    pub steps: u64,
    /// Bound violations the self-audit counted.
    pub violations: u64,
    /// Current clocksource.
    pub clocksource: Option<String>,
    /// The VMClock page, when watched: its last disruption marker and the
    /// changes seen since start.
    pub vmclock: Option<(Option<u64>, u64)>,
    /// Steady instant of the last refresh.
    pub refreshed_at: Steady,
    /// BOOTTIME - MONOTONIC at the last refresh (the strict read's check).
    pub offs_boot_ns: i64,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            model: None,
            status_without_model: Status::Unknown,
            sources: vec![],
            realtime_offset: None,
            frequency_ppm: None,
            kernel: None,
            steps: 0,
            violations: 0,
            clocksource: None,
            vmclock: None,
            refreshed_at: Steady(0),
            offs_boot_ns: crate::clock::boot_offset().0,
        }
    }
}

/// An interval read at one instant, in the JSON shape of `/v1/now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NowReading {
    /// Reference time is surely not before this (Unix ns); null without a model.
    pub earliest_ns: Option<i64>,
    /// Reference time is surely not after this (Unix ns); null without a model.
    pub latest_ns: Option<i64>,
    /// Half the width, rounded up.
    pub epsilon_ns: Option<i64>,
    /// What the interval is good for.
    pub status: &'static str,
    /// The local CLOCK_MONOTONIC_RAW instant it was computed for.
    pub steady_ns: i64,
}

impl NowReading {
    /// The reading of `model` at `now` (or an empty one with `status`).
    pub fn of(model: Option<&Model>, status_without_model: Status, now: Steady) -> NowReading {
        match model {
            Some(m) => {
                let r = m.utc_at(now);
                NowReading::from_interval(r.interval, r.status, now)
            }
            None => NowReading {
                earliest_ns: None,
                latest_ns: None,
                epsilon_ns: None,
                status: status_without_model.as_str(),
                steady_ns: now.0,
            },
        }
    }

    /// From an interval and a status.
    pub fn from_interval(iv: Interval, status: Status, now: Steady) -> NowReading {
        NowReading {
            earliest_ns: Some(clamp_i64(iv.lo.0)),
            latest_ns: Some(clamp_i64(iv.hi.0)),
            epsilon_ns: Some(clamp_i64(iv.half_width_ceil().0)),
            status: status.as_str(),
            steady_ns: now.0,
        }
    }
}

impl Snapshot {
    /// Read the host's clocks strictly (suspend check against the last
    /// refresh) and return the interval then; a host suspended since the
    /// model was made gets no interval and status `disrupted` until the
    /// daemon's next refresh rebuilds.
    pub fn read_now(&self) -> NowReading {
        match crate::clock::strict_steady(self.offs_boot_ns) {
            Ok((now, extra)) => {
                let mut r = self.read(now);
                if let (Some(lo), Some(hi), Some(e)) = (r.earliest_ns, r.latest_ns, r.epsilon_ns) {
                    r.earliest_ns = Some(lo.saturating_sub(extra));
                    r.latest_ns = Some(hi.saturating_add(extra));
                    r.epsilon_ns = Some(e.saturating_add(extra));
                }
                r
            }
            Err(_) => NowReading {
                earliest_ns: None,
                latest_ns: None,
                epsilon_ns: None,
                status: Status::Disrupted.as_str(),
                steady_ns: crate::clock::raw().0,
            },
        }
    }

    /// The interval at steady instant `now`.
    pub fn read(&self, now: Steady) -> NowReading {
        NowReading::of(self.model.as_ref(), self.status_without_model, now)
    }

    /// The status at `now`.
    pub fn status_at(&self, now: Steady) -> Status {
        self.model
            .as_ref()
            .map_or(self.status_without_model, |m| m.status_at(now))
    }
}
