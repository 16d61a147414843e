//! What the engine publishes after every event: exactly what the shell
//! writes to the shared-memory segment and shows operators (HTTP status,
//! metrics, sd_notify), so what apps read is what the simulator checks.

use super::budget::Sides;
use super::leap::LeapState;
use super::local::Interruptions;
use super::model::{Model, Status};
use super::source::SourceReport;
use super::time::{clamp_i64, Nanos, Steady};

/// The system clock against the model: the skew operators alert on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skew {
    /// REALTIME minus the model's centre (ns).
    pub offset: Nanos,
    /// The model's half-width plus half the pairing bracket (ns).
    pub uncertainty: Nanos,
}

/// The leap-second state, as shown to operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct LeapView {
    /// A leap not yet final: its UTC instant (Unix ns). The UTC view is the
    /// hull of both readings after it until it is resolved.
    pub pending_at_unix_ns: Option<i64>,
    /// +1 s insertion, -1 s deletion (ns), when pending.
    pub pending_delta_ns: Option<i64>,
    /// Leap-free minus UTC now (ns).
    pub leapfree_minus_utc_ns: i64,
    /// Announced leaps that did not happen.
    pub cancelled: u64,
}

impl LeapView {
    /// The view of `l`.
    pub fn of(l: &LeapState) -> LeapView {
        let pending = l.mapping().leap.filter(|_| l.pending());
        LeapView {
            pending_at_unix_ns: l.pending_at().map(|t| clamp_i64(t.0)),
            pending_delta_ns: pending.map(|m| clamp_i64(m.delta.0)),
            leapfree_minus_utc_ns: clamp_i64(l.offset().0),
            cancelled: l.cancelled(),
        }
    }
}

/// One publication.
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    /// When (CLOCK_MONOTONIC_RAW): readers whose clock reads earlier are not
    /// on this timeline.
    pub at: Steady,
    /// The model, if any, with void-after and sync-until no later than
    /// `at` + the publication grace: a publisher that stops (killed, frozen)
    /// shows as a status change, never as a stale narrow interval.
    pub model: Option<Model>,
    /// The status at `at` (with or without a model).
    pub status: Status,
    /// BOOTTIME − MONOTONIC the model is valid for (the strict read checks
    /// it has not changed: no suspend since).
    pub offs_boot_ns: i64,
    /// The clocksource the model was made on.
    pub clocksource: Option<String>,
    /// The VMClock disruption marker the model was made under.
    pub vmclock_marker: Option<u64>,
    /// Bound violations counted (a reader's clamp restarts when it changes).
    pub violations: u64,
    /// REALTIME steps counted.
    pub steps: u64,
    /// Timeline interruptions counted.
    pub interruptions: Interruptions,
    /// The system clock against the model, at the last local reading.
    pub skew: Option<Skew>,
    /// Every source's figures, in slot order.
    pub sources: Vec<SourceReport>,
    /// Leap seconds.
    pub leap: LeapView,
    /// What the model's anchor bound is made of (with a model; see
    /// [`Model::budget_at`]).
    pub budget: Option<Sides>,
}

impl Publication {
    /// What a stopping agent leaves behind: no model (readers see
    /// `unknown` at once instead of the last model until it expires).
    pub fn stopped(at: Steady, offs_boot_ns: i64) -> Publication {
        Publication::unchecked(at, None, Status::Unknown, offs_boot_ns)
    }

    /// A publication of `model` alone at `at` (no counters, no sources),
    /// for tests and benches. Only the engine makes publications with a
    /// model for the agent: it caps each model's validity at the
    /// publication grace, which this does not.
    #[cfg(any(test, feature = "testing"))]
    pub fn bare(
        at: Steady,
        model: Option<Model>,
        status: Status,
        offs_boot_ns: i64,
    ) -> Publication {
        Publication::unchecked(at, model, status, offs_boot_ns)
    }

    fn unchecked(
        at: Steady,
        model: Option<Model>,
        status: Status,
        offs_boot_ns: i64,
    ) -> Publication {
        Publication {
            at,
            model,
            status,
            offs_boot_ns,
            clocksource: None,
            vmclock_marker: None,
            violations: 0,
            steps: 0,
            interruptions: Interruptions::default(),
            skew: None,
            sources: vec![],
            leap: LeapView::default(),
            budget: None,
        }
    }
}
