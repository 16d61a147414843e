//! What the agent shows its in-process readers (HTTP, metrics, sd_notify):
//! the engine's latest [`Publication`] — the same one written to the
//! segment — plus what only the shell knows (source names and addresses,
//! the kernel's view), and the health rule. Readers compute their interval
//! from their own clock read through the one read function.

use crate::clock::KernelStatus;
use crate::core::model::Status;
use crate::core::publish::{LeapView, Publication};
use crate::core::read::{self, ReadError, TimeInterval};
use crate::core::source::SourceReport;
use crate::core::time::{Nanos, Steady};
use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use tokio::sync::watch;

/// One source as shown to operators.
#[derive(Debug, Clone)]
pub struct SourceView {
    /// The configured `host:port`.
    pub name: String,
    /// The address it resolved to, if any.
    pub address: Option<std::net::SocketAddr>,
    /// Every address its name resolves to is used by these other sources.
    pub duplicate_of: Option<String>,
    /// The core's figures.
    pub report: SourceReport,
}

/// Whether the shared-memory segment is being published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShmState {
    /// Where.
    pub path: std::path::PathBuf,
    /// The last publication reached it.
    pub publishing: bool,
    /// Why not, if not.
    pub problem: Option<String>,
}

/// Everything the agent shows.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The engine's latest publication.
    pub publication: Publication,
    /// Per source, in slot order.
    pub sources: Vec<SourceView>,
    /// The kernel's view (read-only adjtimex).
    pub kernel: Option<KernelStatus>,
    /// Whether a VMClock page is watched.
    pub vmclock_watched: bool,
    /// The shared-memory segment, if one is configured.
    pub shm: Option<ShmState>,
}

/// A read of the snapshot at one instant.
pub type Now = Result<TimeInterval, ReadError<Infallible>>;

impl Snapshot {
    /// Nothing published yet.
    pub fn empty() -> Snapshot {
        Snapshot {
            publication: Publication {
                at: Steady(0),
                model: None,
                status: Status::Unknown,
                offs_boot_ns: crate::clock::boot_offset().0,
                clocksource: None,
                vmclock_marker: None,
                violations: 0,
                steps: 0,
                interruptions: Default::default(),
                skew: None,
                sources: vec![],
                leap: LeapView::default(),
                budget: None,
            },
            sources: vec![],
            kernel: None,
            vmclock_watched: false,
            shm: None,
        }
    }

    /// The interval now, read strictly (a suspend since the publication
    /// gives none, status `disrupted`, until the agent's next refresh), or
    /// why there is none.
    pub fn now(&self) -> (Now, Steady) {
        let (now, r) = self.now_read();
        (now, r.at)
    }

    /// [`Snapshot::now`] with the clock reading it was computed for.
    pub fn now_read(&self) -> (Now, read::Reading) {
        let p = &self.publication;
        match crate::clock::read(crate::clock::Mode::Strict, p.offs_boot_ns) {
            Ok(r) => (read::interval_of(p.model.as_ref(), p.status, r), r),
            Err(_) => (
                Err(ReadError::NoModel(Status::Disrupted)),
                read::Reading {
                    at: crate::clock::raw(),
                    extra_ns: 0,
                },
            ),
        }
    }

    /// What the strict read `r` (its interval `now`) is made of, if it gave
    /// an interval.
    pub fn budget(&self, now: &Now, r: read::Reading) -> Option<crate::core::budget::Budget> {
        let p = &self.publication;
        now.as_ref().ok()?;
        let b = p.model.as_ref()?.budget_at(p.budget?, r.at);
        Some(b.widened(crate::core::budget::Part::Read, Nanos(r.extra_ns as i128)))
    }

    /// The interval at steady instant `at` (no suspend check: for figures
    /// taken at a known instant).
    pub fn at(&self, at: Steady) -> Now {
        let p = &self.publication;
        read::interval_of(
            p.model.as_ref(),
            p.status,
            read::Reading { at, extra_ns: 0 },
        )
    }

    /// The status at `at`.
    pub fn status_at(&self, at: Steady) -> Status {
        match self.at(at) {
            Ok(t) => t.status,
            Err(ReadError::NoModel(s)) => s,
            Err(_) => Status::Disrupted,
        }
    }
}

/// Whether the status counts as healthy for `/healthz`.
pub fn healthy(s: Status) -> bool {
    s == Status::Synchronized
}

impl Snapshot {
    /// Why the agent is not healthy although its status may be, if so: the
    /// shared-memory segment (what applications read) is not published.
    pub fn publishing_problem(&self) -> Option<String> {
        let s = self.shm.as_ref()?;
        (!s.publishing).then(|| {
            format!(
                "shared memory {} is not published: {}",
                s.path.display(),
                s.problem.as_deref().unwrap_or("unknown")
            )
        })
    }
}

/// One source in a [`Point`] of the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourcePoint {
    /// Its state then.
    pub state: crate::core::source::SourceState,
    /// Its latest sample's centre minus the model's centre.
    pub offset: Option<crate::core::time::Nanos>,
    /// Half the width of that sample's interval.
    pub half_width: Option<crate::core::time::Nanos>,
}

/// The agent's figures at one publication, kept for the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    /// The publication's steady instant.
    pub at: Steady,
    /// Its status at that instant.
    pub status: Status,
    /// The interval's half-width at that instant, rounded up.
    pub epsilon_ns: Option<i64>,
    /// The system clock's skew.
    pub skew: Option<crate::core::publish::Skew>,
    /// Per source, in slot order.
    pub sources: Vec<SourcePoint>,
}

impl Point {
    /// The figures of `snap` at its publication.
    pub fn of(snap: &Snapshot) -> Point {
        let at = snap.publication.at;
        let r = snap.at(at);
        Point {
            at,
            status: snap.status_at(at),
            epsilon_ns: r.ok().map(|t| t.epsilon_ns()),
            skew: snap.publication.skew,
            sources: snap
                .sources
                .iter()
                .map(|v| SourcePoint {
                    state: v.report.state,
                    offset: v.report.offset,
                    half_width: v.report.half_width,
                })
                .collect(),
        }
    }
}

/// The history keeps a point at most this often (steady time)...
pub const HISTORY_EVERY: crate::core::time::Nanos = crate::core::time::Nanos(10_000_000_000);
/// ...and this many: the last hour.
pub const HISTORY_POINTS: usize = 360;

/// State shared between the engine task and the readers.
#[derive(Debug)]
pub struct Shared {
    snapshot: RwLock<Arc<Snapshot>>,
    /// A point every [`HISTORY_EVERY`], the newest last.
    history: std::sync::Mutex<std::collections::VecDeque<Arc<Point>>>,
    /// Bumped on every publish; waiters watch it.
    pub published: watch::Sender<u64>,
    /// The HTTP server's connection counts.
    pub http: Arc<crate::serve::Counts>,
}

impl Shared {
    /// A fresh, empty state.
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared {
            snapshot: RwLock::new(Arc::new(Snapshot::empty())),
            history: Default::default(),
            published: watch::channel(0).0,
            http: Arc::default(),
        })
    }

    /// The latest snapshot (poison-tolerant: a panicked writer leaves the
    /// last whole value).
    pub fn get(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The history, oldest first.
    pub fn history(&self) -> Vec<Arc<Point>> {
        let g = self.history.lock().unwrap_or_else(|p| p.into_inner());
        g.iter().cloned().collect()
    }

    /// Replace the snapshot (and keep a point of it in the history when
    /// the newest is [`HISTORY_EVERY`] old).
    pub fn set(&self, s: Snapshot) {
        {
            let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
            let at = s.publication.at;
            let due = h.back().is_none_or(|last| {
                let age = at.since(last.at).0;
                !(0..HISTORY_EVERY.0).contains(&age)
            });
            if due {
                if h.len() == HISTORY_POINTS {
                    h.pop_front();
                }
                h.push_back(Arc::new(Point::of(&s)));
            }
        }
        let mut g = match self.snapshot.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = Arc::new(s);
        drop(g);
        self.published.send_modify(|v| *v += 1);
    }
}
