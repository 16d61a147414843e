//! What the daemon publishes to its in-process readers (HTTP, metrics): the
//! model plus the figures around it. Written by the daemon task, read by
//! request handlers; readers compute their interval from their own clock read.

use crate::clock::KernelStatus;
use crate::core::engine::SourceReport;
use crate::core::model::{Model, Status};
use crate::core::time::{Nanos, Steady};
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
    /// Every address its name resolves to is used by these other sources.
    pub duplicate_of: Option<String>,
}

/// The leap-second state, as shown in `/v1/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct LeapView {
    /// A leap announced by a quorum, not yet resolved: its UTC instant
    /// (Unix ns). The UTC view is the hull of both readings after it.
    pub pending_at_unix_ns: Option<i64>,
    /// +1 s insertion, -1 s deletion (ns), when pending.
    pub pending_delta_ns: Option<i64>,
    /// Leap-free minus UTC now (ns).
    pub leapfree_minus_utc_ns: i64,
    /// Announced leaps that did not happen.
    pub cancelled: u64,
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
    /// Leap seconds.
    pub leap: LeapView,
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
            leap: LeapView::default(),
        }
    }
}

/// An interval read at one instant, in the JSON shape of `/v1/now`. The
/// plain `_ns` bounds are UTC (Unix ns); the `_leapfree_ns` ones are on the
/// leap-free timescale commit-wait uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NowReading {
    /// UTC is surely not before this (Unix ns); null without a model.
    pub earliest_ns: Option<i64>,
    /// UTC is surely not after this (Unix ns); null without a model.
    pub latest_ns: Option<i64>,
    /// The same lower bound on the leap-free timescale.
    pub earliest_leapfree_ns: Option<i64>,
    /// The same upper bound on the leap-free timescale.
    pub latest_leapfree_ns: Option<i64>,
    /// Half the width, rounded up.
    pub epsilon_ns: Option<i64>,
    /// What the interval is good for.
    pub status: Status,
    /// The local CLOCK_MONOTONIC_RAW instant it was computed for.
    pub steady_ns: i64,
    /// Why the bounds are null although there is a model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
}

impl NowReading {
    /// No interval, with `status`.
    pub fn empty(status: Status, now: Steady) -> NowReading {
        NowReading {
            earliest_ns: None,
            latest_ns: None,
            earliest_leapfree_ns: None,
            latest_leapfree_ns: None,
            epsilon_ns: None,
            status,
            steady_ns: now.0,
            error: None,
        }
    }

    /// The reading of `model` at `now`, widened by `extra` ns on each side
    /// (or an empty one with `status`). Bounds that do not fit 64-bit Unix
    /// ns are null, never clamped (clamping would narrow the interval).
    pub fn of(
        model: Option<&Model>,
        status_without_model: Status,
        now: Steady,
        extra: i64,
    ) -> NowReading {
        let Some(m) = model else {
            return NowReading::empty(status_without_model, now);
        };
        let r = m.interval_at(now);
        let e = Nanos(extra.into());
        let lf = r.interval.widen(e, e);
        let utc = m.utc.to_utc(lf);
        let fit = |v: i128| i64::try_from(v).ok();
        match (
            fit(utc.lo.0),
            fit(utc.hi.0),
            fit(lf.lo.0),
            fit(lf.hi.0),
            fit(lf.half_width_ceil().0),
        ) {
            (Some(a), Some(b), Some(c), Some(d), Some(eps)) => NowReading {
                earliest_ns: Some(a),
                latest_ns: Some(b),
                earliest_leapfree_ns: Some(c),
                latest_leapfree_ns: Some(d),
                epsilon_ns: Some(eps),
                status: r.status,
                steady_ns: now.0,
                error: None,
            },
            _ => NowReading {
                error: Some("the interval does not fit 64-bit Unix nanoseconds"),
                ..NowReading::empty(r.status, now)
            },
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
                NowReading::of(self.model.as_ref(), self.status_without_model, now, extra)
            }
            Err(_) => NowReading::empty(Status::Disrupted, crate::clock::raw()),
        }
    }

    /// The interval at steady instant `now`.
    pub fn read(&self, now: Steady) -> NowReading {
        NowReading::of(self.model.as_ref(), self.status_without_model, now, 0)
    }

    /// The status at `now`.
    pub fn status_at(&self, now: Steady) -> Status {
        self.model
            .as_ref()
            .map_or(self.status_without_model, |m| m.status_at(now))
    }
}
