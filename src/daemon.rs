//! Wiring of the agent: the engine task (timers, replies, local clock
//! checks), the HTTP server, the drift file, signals and sd_notify.
//!
//! The engine lives in one task and is the only writer of the snapshot;
//! HTTP handlers read it. Every deadline is on CLOCK_MONOTONIC_RAW.

use crate::clock;
use crate::config::{FileConfig, DEFAULT_LISTEN, DEFAULT_POOL, DEFAULT_SHM, DEFAULT_STATE_DIR};
use crate::core::engine::{Action, Engine, EngineConfig, SourceConfig};
use crate::core::leap::{LeapEvent, LeapTable};
use crate::core::model::Status;
use crate::core::sample::RxStamps;
use crate::core::time::{Nanos, Rate, Steady};
use crate::net::{Incoming, Slot};
use crate::snapshot::{Snapshot, SourceView};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Everything `skewd run` needs, after merging flags over the config file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Servers (`host:port`); each is one slot of N.
    pub servers: Vec<String>,
    /// Per server: it ages its root dispersion itself (config only).
    pub dispersion_aged_by_server: Vec<bool>,
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Shared-memory segment path (`None`: not published).
    pub shm_path: Option<PathBuf>,
    /// State directory.
    pub state_dir: PathBuf,
    /// Engine settings.
    pub engine: EngineConfig,
    /// Use kernel receive timestamps.
    pub kernel_timestamps: bool,
    /// Whether the directories were given explicitly (no fallback then).
    pub explicit_dirs: bool,
    /// The VMClock page to watch, and whether the operator named it (then
    /// failing to read it is worth a warning; the default is optional).
    pub vmclock: (PathBuf, bool),
}

impl RunOptions {
    /// Merge the config file with flags (flags win).
    pub fn from_parts(
        file: FileConfig,
        servers: Vec<String>,
        listen: Option<SocketAddr>,
        shm: Option<PathBuf>,
        state_dir: Option<PathBuf>,
        poll: Option<Duration>,
    ) -> anyhow::Result<RunOptions> {
        let mut file = file;
        if let Some(p) = poll {
            file.poll_interval_s = Some(p.as_secs_f64());
        }
        if let Some(l) = listen {
            file.listen = Some(l.to_string());
            file.allow_remote_http = Some(true); // an explicit flag is the operator saying so
        }
        for s in &servers {
            crate::config::validate_address(s)?;
        }
        file.validate()?;
        let from_file = servers.is_empty();
        let mut servers: Vec<String> = if from_file {
            file.server.iter().map(|s| s.address.clone()).collect()
        } else {
            servers
        };
        let dispersion_aged_by_server: Vec<bool> = if from_file {
            file.server
                .iter()
                .map(|s| s.dispersion_aged_by_server)
                .collect()
        } else {
            vec![false; servers.len()]
        };
        if servers.is_empty() {
            tracing::info!(
                "no servers configured: using the public pool ({})",
                DEFAULT_POOL.join(", ")
            );
            servers = DEFAULT_POOL.iter().map(|s| s.to_string()).collect();
        }
        let explicit_dirs = shm.is_some()
            || state_dir.is_some()
            || file.shm_path.is_some()
            || file.state_dir.is_some();
        let dispersion_aged_by_server = if dispersion_aged_by_server.len() == servers.len() {
            dispersion_aged_by_server
        } else {
            vec![false; servers.len()]
        };
        crate::config::refuse_duplicates(&servers)?;
        Ok(RunOptions {
            dispersion_aged_by_server,
            servers,
            listen: file.listen.as_deref().unwrap_or(DEFAULT_LISTEN).parse()?,
            shm_path: Some(
                shm.or(file.shm_path.clone())
                    .unwrap_or_else(|| DEFAULT_SHM.into()),
            ),
            state_dir: state_dir
                .or(file.state_dir.clone())
                .unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
            engine: file.engine_config(),
            kernel_timestamps: file.kernel_timestamps.unwrap_or(true),
            explicit_dirs,
            vmclock: match &file.vmclock_path {
                Some(p) => (p.clone(), true),
                None => (crate::shm::vmclock::DEFAULT_PATH.into(), false),
            },
        })
    }
}

/// State shared between the engine task and the readers.
#[derive(Debug)]
pub struct Shared {
    /// The latest snapshot.
    pub snapshot: RwLock<Snapshot>,
    /// Bumped on every publish; waiters watch it.
    pub published: watch::Sender<u64>,
}

impl Shared {
    /// A fresh, empty state.
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared {
            snapshot: RwLock::new(Snapshot::default()),
            published: watch::channel(0).0,
        })
    }

    /// A copy of the snapshot (poison-tolerant: a panicked writer leaves the
    /// last whole value).
    pub fn get(&self) -> Snapshot {
        match self.snapshot.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set(&self, f: impl FnOnce(&mut Snapshot)) {
        let mut g = match self.snapshot.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut g);
        drop(g);
        self.published.send_modify(|v| *v += 1);
    }
}

/// Whether `dir` can be created and written by this process.
fn writable_dir(dir: &Path) -> bool {
    if std::fs::create_dir_all(dir).is_err() {
        return false;
    }
    let probe = dir.join(format!(".skewd-probe-{}", std::process::id()));
    let ok = std::fs::write(&probe, b"").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// Per-user fallbacks for a user who cannot write /run or /var/lib.
/// The per-user runtime directory: `$XDG_RUNTIME_DIR/skewd`, else
/// `$TMPDIR/skewd-$UID/skewd` — that one only while `skewd-$UID` is ours and
/// nobody else can write it: in a shared /tmp another user could otherwise
/// plant a segment there with a narrow, wrong interval for our readers.
pub fn user_runtime_dir() -> Result<PathBuf, String> {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(x) => Ok(PathBuf::from(x).join("skewd")),
        None => private_dir(&std::env::temp_dir().join(format!("skewd-{}", uid())))
            .map(|d| d.join("skewd")),
    }
}

/// Per-user state directory candidates, best first.
fn user_state_dirs() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(x) = std::env::var_os("XDG_STATE_HOME") {
        v.push(PathBuf::from(x).join("skewd"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        v.push(PathBuf::from(h).join(".local/state/skewd"));
    }
    match private_dir(&std::env::temp_dir().join(format!("skewd-{}-state", uid()))) {
        Ok(d) => v.push(d),
        Err(e) => tracing::warn!("{e}"),
    }
    v
}

/// `dir` in a shared directory such as /tmp, created 0700 if missing, and
/// accepted only if it is a real directory of ours that nobody else can
/// write.
pub fn private_dir(dir: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    let m = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !m.file_type().is_dir() || m.uid() != uid() || m.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is not a directory that only uid {} can write: not using it",
            dir.display(),
            uid()
        ));
    }
    Ok(dir.to_path_buf())
}

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Pick usable directories, falling back to per-user ones (and saying so)
/// when the defaults are not writable.
pub fn settle_dirs(opts: &mut RunOptions) {
    // A path the operator gave is kept: if it cannot be created, the
    // writer says why when it tries.
    let shm_dir = opts.shm_path.as_deref().and_then(Path::parent);
    if !opts.explicit_dirs && !shm_dir.is_some_and(writable_dir) {
        let from = shm_dir.map_or("?".into(), |d| d.display().to_string());
        opts.shm_path = match user_runtime_dir() {
            Ok(d) => {
                tracing::warn!(
                    "cannot write {from} (not root?): using {} for the shared-memory segment instead",
                    d.display()
                );
                Some(d.join("clock"))
            }
            Err(e) => {
                tracing::warn!(
                    "cannot write {from}, and {e}: the shared-memory segment is disabled"
                );
                None
            }
        };
    }
    if !writable_dir(&opts.state_dir) {
        if opts.explicit_dirs {
            tracing::warn!(
                "cannot write {}: the drift file is disabled",
                opts.state_dir.display()
            );
        } else if let Some(d) = user_state_dirs().into_iter().find(|d| writable_dir(d)) {
            tracing::warn!(
                "cannot write {} (not root?): using {} for the drift file instead",
                opts.state_dir.display(),
                d.display()
            );
            opts.state_dir = d;
        } else {
            tracing::warn!("no writable state directory: the drift file is disabled");
        }
    }
}

/// Watch the VMClock page at `path` if it exists (or was named).
fn open_vmclock(path: &Path, named: bool) -> Option<crate::shm::vmclock::Watch> {
    if !named && !path.exists() {
        return None;
    }
    match crate::shm::vmclock::VmClock::open(path) {
        Ok(c) => {
            tracing::info!(
                "watching the VMClock disruption marker at {}",
                path.display()
            );
            Some(crate::shm::vmclock::Watch::new(c))
        }
        Err(e) => {
            tracing::warn!(
                "VMClock: {e}; VM disruptions will only be caught by the next exchange's audit"
            );
            None
        }
    }
}

/// The host's leap-second table (tzdata's list). Where the leap-free
/// timescale starts is looked up in it at the UTC of the first model (the
/// sources' time, never this host's REALTIME); a list that contradicts the
/// known origin is refused.
fn leap_table(state_dir: &Path) -> LeapTable {
    let path = Path::new(crate::leaps::DEFAULT_PATH);
    let mut table = match crate::leaps::load(path) {
        Ok(t) => {
            let now_s = (clock::realtime().0 / crate::core::time::NS_PER_S) as i64;
            if t.expired(now_s) {
                tracing::info!(
                    "leap-second list {} has expired: a leap second after its expiry would be known only from the sources' announcement; update tzdata",
                    path.display()
                );
            }
            t
        }
        Err(e) => {
            tracing::warn!("not using the leap-second list: {e}; the leap-free timescale assumes no leap second since 2017 (none has been announced)");
            LeapTable::default()
        }
    };
    // Leaps this agent saw happen, beyond an expired list: a restart keeps
    // the same leap-free timescale.
    for (at, tai) in load_seen_leaps(state_dir) {
        if table.extend(at, tai) {
            tracing::info!("leap second seen at {at} (Unix s) kept from the state directory: TAI - UTC = {tai} s");
        }
    }
    table
}

const SEEN_LEAPS: &str = "leap-seconds-seen.json";

/// `(from_unix_s, tai_minus_utc_s)` of leaps seen happening.
fn load_seen_leaps(dir: &Path) -> Vec<(i64, i64)> {
    std::fs::read_to_string(dir.join(SEEN_LEAPS))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn save_seen_leap(dir: &Path, at_unix_s: i64, tai_minus_utc_s: i64) {
    let mut v = load_seen_leaps(dir);
    if !v.iter().any(|e| e.0 == at_unix_s) {
        v.push((at_unix_s, tai_minus_utc_s));
    }
    let ok = serde_json::to_vec(&v)
        .ok()
        .and_then(|b| std::fs::write(dir.join(SEEN_LEAPS), b).ok());
    if ok.is_none() {
        tracing::warn!("could not record the leap second in {}", dir.display());
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct DriftFile {
    frequency_ppb: f64,
    clocksource: Option<String>,
    boot_id: Option<String>,
}

/// The saved rate, if the file is ours to trust: well-formed, for this
/// clocksource, and within the hardware bound `phi_hw` (checked before any
/// conversion: `-1e36` would saturate and wrap).
fn load_drift(dir: &Path, phi_hw: Rate, clocksource: &Option<String>) -> Option<Rate> {
    let path = dir.join("drift.json");
    let text = std::fs::read_to_string(&path).ok()?;
    let refuse = |why: &str| {
        tracing::warn!("ignoring the drift file {}: {why}", path.display());
        None
    };
    let d: DriftFile = match serde_json::from_str(&text) {
        Ok(d) => d,
        Err(e) => return refuse(&e.to_string()),
    };
    let bound_ppb = phi_hw.0 as f64 / 1e3;
    if !(d.frequency_ppb.is_finite() && d.frequency_ppb.abs() <= bound_ppb) {
        return refuse(&format!(
            "frequency {} ppb is outside the hardware bound of {bound_ppb} ppb",
            d.frequency_ppb
        ));
    }
    if &d.clocksource != clocksource {
        return None; // another clocksource: another oscillator
    }
    Some(Rate((d.frequency_ppb * 1e3).round() as i128))
}

fn save_drift(dir: &Path, rate: Rate) {
    let d = DriftFile {
        frequency_ppb: rate.0 as f64 / 1e3,
        clocksource: clock::clocksource(),
        boot_id: clock::boot_id(),
    };
    let tmp = dir.join("drift.json.tmp");
    let ok = serde_json::to_vec_pretty(&d)
        .ok()
        .and_then(|b| std::fs::write(&tmp, b).ok())
        .and_then(|_| std::fs::rename(&tmp, dir.join("drift.json")).ok());
    if ok.is_none() {
        tracing::debug!("could not save the drift file in {}", dir.display());
    }
}

/// How often the engine task re-reads local clocks and refreshes readers.
const REFRESH: Duration = Duration::from_millis(500);
/// Readers of the shared memory see `unknown` this long after the daemon's
/// last refresh (a killed or frozen daemon).
pub const SHM_GRACE: Nanos = Nanos::from_secs(3);
/// A BOOTTIME - MONOTONIC change beyond this (plus read spans) is a suspend.
const SUSPEND_THRESHOLD_NS: i64 = 1_000_000;

/// The engine task: owns the engine and the sockets.
pub struct Agent {
    engine: Engine,
    slots: Vec<Slot>,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Incoming>,
    state_dir: PathBuf,
    boot_offset: (i64, i64),
    clocksource: Option<String>,
    last_drift_save: Steady,
    shm: Option<crate::shm::Writer>,
    vmclock: Option<crate::shm::vmclock::Watch>,
    /// Whether that page is the default path readers map by themselves.
    vmclock_default: bool,
    boot_id: String,
    resolved_tx: mpsc::Sender<(usize, std::io::Result<Vec<SocketAddr>>)>,
    resolved_rx: Option<mpsc::Receiver<(usize, std::io::Result<Vec<SocketAddr>>)>>,
    /// Counts REALTIME sets, for the core's kernel-stamp check.
    clock_sets: Option<clock::ClockSetWatch>,
}

impl Agent {
    /// Build the agent (sockets are connected by `run`).
    pub fn new(
        opts: &RunOptions,
        shared: Arc<Shared>,
        tx: mpsc::Sender<Incoming>,
        shm: Option<crate::shm::Writer>,
    ) -> Agent {
        let now = clock::raw();
        let clocksource = clock::clocksource();
        let mut cfg = opts.engine.clone();
        cfg.sources = opts
            .dispersion_aged_by_server
            .iter()
            .map(|yes| SourceConfig {
                dispersion_aged_by_server: *yes,
            })
            .collect();
        cfg.leap_table = leap_table(&opts.state_dir);
        cfg.rate_hint = load_drift(&opts.state_dir, cfg.assumptions.phi_hw, &clocksource);
        if let Some(r) = cfg.rate_hint {
            tracing::info!("drift file: centring the rate on {:.3} ppm", r.as_ppm_f64());
        }
        let engine = Engine::new(cfg, now);
        let vmclock = open_vmclock(&opts.vmclock.0, opts.vmclock.1);
        let (resolved_tx, resolved_rx) = mpsc::channel(64);
        let kernel_timestamps = opts.kernel_timestamps;
        let clock_sets = if kernel_timestamps {
            let w = clock::ClockSetWatch::new();
            if w.is_none() {
                tracing::warn!("cannot watch CLOCK_REALTIME for steps (timerfd): kernel receive stamps are mapped assuming at most one step per exchange");
            }
            w
        } else {
            None
        };
        Agent {
            vmclock,
            vmclock_default: opts.vmclock.0 == Path::new(crate::shm::vmclock::DEFAULT_PATH),
            resolved_tx,
            resolved_rx: Some(resolved_rx),
            shm,
            boot_id: clock::boot_id().unwrap_or_default(),
            engine,
            slots: opts
                .servers
                .iter()
                .map(|n| Slot::new(n.clone(), kernel_timestamps))
                .collect(),
            shared,
            tx,
            state_dir: opts.state_dir.clone(),
            boot_offset: clock::boot_offset(),
            clocksource,
            last_drift_save: now,
            clock_sets,
        }
    }

    /// Start resolving every slot (or only those unreachable and not tried
    /// in the last minute) in background tasks; results come back on
    /// `resolved`, so a slow or failing DNS never stalls the engine.
    fn resolve_all(&mut self, only_unreachable: bool) {
        let now = clock::raw();
        let reports = self.engine.source_reports();
        let mut literal = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.resolving {
                continue;
            }
            if only_unreachable {
                let reachable = reports.get(i).is_some_and(|r| r.reach != 0);
                let recent = slot
                    .resolved_at
                    .is_some_and(|t| now.since(t) < Nanos::from_secs(60));
                if reachable || recent {
                    continue;
                }
            }
            slot.resolved_at = Some(now);
            if let Ok(addr) = slot.name.parse::<SocketAddr>() {
                literal.push((i, vec![addr])); // no lookup needed: connect now
                continue;
            }
            slot.resolving = true;
            let name = slot.name.clone();
            let tx = self.resolved_tx.clone();
            tokio::spawn(async move {
                let r = crate::net::resolve(&name).await;
                let _ = tx.send((i, r)).await;
            });
        }
        for (i, addr) in literal {
            self.resolved(i, Ok(addr));
        }
    }

    /// A slot's name resolved to `r`: attach it to the first address no
    /// other slot holds. One server in two slots would count twice toward
    /// the f tolerated faults (an overlapping liar in two slots outvotes
    /// the honest ones), so a name whose every address is taken stays
    /// unresolved, and says so.
    fn resolved(&mut self, i: usize, r: std::io::Result<Vec<SocketAddr>>) {
        let tx = self.tx.clone();
        let held: Vec<(SocketAddr, String)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .filter_map(|(_, s)| Some((crate::net::canonical(s.address?), s.name.clone())))
            .collect();
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        slot.resolving = false;
        let r = r.and_then(|addrs| {
            // Keep the current address if it is still among the answers.
            let free = |a: &SocketAddr| !held.iter().any(|(h, _)| *h == crate::net::canonical(*a));
            let pick = addrs
                .iter()
                .find(|a| Some(**a) == slot.address && free(a))
                .or_else(|| addrs.iter().find(|a| free(a)))
                .copied();
            match pick {
                Some(a) => Ok(a),
                None => {
                    let others: Vec<&str> = held
                        .iter()
                        .filter(|(h, _)| addrs.iter().any(|a| crate::net::canonical(*a) == *h))
                        .map(|(_, n)| n.as_str())
                        .collect();
                    let others = others.join(", ");
                    if slot.duplicate_of.as_deref() != Some(others.as_str()) {
                        tracing::warn!(
                            "source {}: every address it resolves to ({addrs:?}) is already used by {others}: not using it (one server in two slots would count twice toward the fault tolerance)",
                            slot.name
                        );
                    }
                    slot.detach();
                    slot.duplicate_of = Some(others);
                    Err(std::io::Error::new(
                        std::io::ErrorKind::AddrInUse,
                        "duplicate of another source",
                    ))
                }
            }
        });
        match r.and_then(|addr| slot.attach(addr, i, tx)) {
            Ok(()) => {
                if slot.failures > 0 {
                    tracing::info!("source {}: resolved to {:?}", slot.name, slot.address);
                }
                slot.failures = 0;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(e) => {
                if slot.failures == 0 {
                    tracing::warn!(
                        "source {}: {e} (retrying every minute while unreachable)",
                        slot.name
                    );
                } else {
                    tracing::debug!("source {}: {e}", slot.name);
                }
                slot.failures += 1;
            }
        }
    }

    fn perform(&mut self, actions: Vec<Action>) -> Option<Steady> {
        let mut wake = None;
        for a in actions {
            match a {
                Action::Send { source, packet } => {
                    let sets = self.clock_sets.as_mut().map(|w| w.poll());
                    match self
                        .slots
                        .get_mut(source)
                        .and_then(|s| s.send(&packet, sets))
                    {
                        Some(stamps) => self.engine.handle_sent(source, stamps),
                        None => self.engine.send_failed(source),
                    }
                }
                Action::WakeAt(t) => wake = Some(t),
                Action::Publish(m) => {
                    if let Some(m) = m {
                        tracing::debug!(
                            "anchor width {} ns, rate {} ppt, phi {} ppt, evidence {:?}",
                            m.bound.width().0,
                            m.ageing.rate.0,
                            m.ageing.phi.0,
                            m.ageing.evidence.map(|(a, b)| (a.0, b.0))
                        );
                    }
                    self.publish()
                }
            }
        }
        wake
    }

    fn publish(&mut self) {
        let e = &self.engine;
        let now = clock::raw();
        let model = e.model().copied();
        let sources = e
            .source_reports()
            .into_iter()
            .zip(&self.slots)
            .map(|(report, s)| SourceView {
                name: s.name.clone(),
                address: s.address,
                report,
                duplicate_of: s.duplicate_of.clone(),
            })
            .collect();
        let ls = e.leap_state();
        let m = ls.mapping();
        let pending = m
            .leap
            .filter(|l| l.phase == crate::core::leap::LeapPhase::Pending);
        let leap = crate::snapshot::LeapView {
            pending_at_unix_ns: ls.pending_at().map(|t| crate::core::time::clamp_i64(t.0)),
            pending_delta_ns: pending.map(|l| crate::core::time::clamp_i64(l.delta.0)),
            leapfree_minus_utc_ns: crate::core::time::clamp_i64(ls.offset().0),
            cancelled: ls.cancelled(),
        };
        let status_without_model = e.status_at(now);
        if let Some(w) = &self.shm {
            // A dead or frozen daemon must show as a status change within
            // SHM_GRACE, not as a model that stays "synchronized".
            let m = model.map(|mut m| {
                m.void_after = m.void_after.min(now.plus(SHM_GRACE));
                m.sync_until = m.sync_until.min(m.void_after);
                m
            });
            w.publish(&crate::shm::Published {
                epoch: 0,
                model: m,
                status: status_without_model,
                offs_boot_ns: self.boot_offset.0,
                clocksource: self.clocksource.clone().unwrap_or_default(),
                boot_id: self.boot_id.clone(),
                written_at_ns: now.0,
                violations: e.violations(),
                vmclock_marker: self
                    .vmclock
                    .as_ref()
                    .and_then(|w| Some((w.marker()?, self.vmclock_default))),
            });
        }
        let steps = e.steps();
        let violations = e.violations();
        let offs_boot = self.boot_offset.0;
        self.shared.set(|s| {
            s.model = model;
            s.status_without_model = status_without_model;
            s.sources = sources;
            s.frequency_ppm = model.map(|m| m.ageing.rate.as_ppm_f64());
            s.steps = steps;
            s.violations = violations;
            s.refreshed_at = now;
            s.offs_boot_ns = offs_boot;
            s.leap = leap;
        });
    }

    fn refresh(&mut self) {
        // Timeline interruptions first: a suspend invalidates everything.
        let (off, span) = clock::boot_offset();
        let cs = clock::clocksource();
        let now = clock::raw();
        if (off - self.boot_offset.0).abs() > SUSPEND_THRESHOLD_NS + span + self.boot_offset.1 {
            tracing::warn!(
                "the host was suspended for about {} ms: dropping the model",
                (off - self.boot_offset.0) / 1_000_000
            );
            let a = self.engine.interrupt(now);
            self.perform(a);
        }
        self.boot_offset = (off, span);
        if self.vmclock.as_mut().is_some_and(|w| w.poll()) {
            tracing::warn!(
                "the hypervisor's VMClock disruption marker changed (live migration, snapshot restore or a reported pause): dropping the model"
            );
            let a = self.engine.interrupt(now);
            self.perform(a);
        }
        if cs != self.clocksource {
            tracing::warn!(
                "clocksource changed from {:?} to {:?}: dropping the model",
                self.clocksource,
                cs
            );
            let a = self.engine.interrupt(now);
            self.perform(a);
            self.clocksource = cs.clone();
        }
        let p = clock::paired_realtime();
        let rt = self.engine.observe_realtime(p.steady, p.realtime);
        if rt.stepped {
            tracing::warn!("the system clock (REALTIME) was stepped");
        }
        let kernel = clock::kernel_status().ok();
        self.publish();
        let offset = rt.offset.map(|(o, u)| (o.0, u.0 + (p.span.0 + 1) / 2));
        let vmclock = self.vmclock.as_ref().map(|w| (w.marker(), w.disruptions));
        self.shared.set(|s| {
            s.realtime_offset = offset;
            s.kernel = kernel;
            s.clocksource = cs;
            s.vmclock = vmclock;
        });
        if now.since(self.last_drift_save) > Nanos::from_secs(600) {
            self.save_drift();
        }
    }

    fn save_drift(&mut self) {
        self.last_drift_save = clock::raw();
        if let Some(m) = self.engine.model() {
            if m.ageing.evidence.is_some() {
                save_drift(&self.state_dir, m.ageing.rate);
            }
        }
    }

    fn nonce() -> u64 {
        rand::random()
    }

    /// Run until `shutdown` fires.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Incoming>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let Some(mut resolved_rx) = self.resolved_rx.take() else {
            return;
        };
        self.resolve_all(false);
        let actions = self.engine.handle_timer(clock::raw(), &mut Self::nonce);
        let mut wake = self.perform(actions);
        self.refresh();
        let mut refresh = tokio::time::interval(REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut resolve = tokio::time::interval(Duration::from_secs(16));
        resolve.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let until = wake.map_or(Duration::from_secs(1), |w| {
                Duration::from_nanos(w.since(clock::raw()).0.clamp(0, 1_000_000_000) as u64)
            });
            tokio::select! {
                _ = tokio::time::sleep(until) => {
                    let now = clock::raw();
                    if wake.is_some_and(|w| w <= now) || wake.is_none() {
                        let actions = self.engine.handle_timer(now, &mut Self::nonce);
                        wake = self.perform(actions);
                    }
                }
                Some(msg) = rx.recv() => {
                    let Some(slot) = self.slots.get(msg.slot) else { continue };
                    if msg.generation != slot.generation {
                        continue;
                    }
                    let rx = RxStamps {
                        at: msg.received_at,
                        kernel: msg.kernel_stamp,
                        pair: Some(msg.after),
                        clock_sets: self.clock_sets.as_mut().map(|w| w.poll()),
                    };
                    match self.engine.handle_reply(msg.slot, &msg.bytes[..msg.len], &rx) {
                        Ok(actions) => {
                            if let Some(w) = self.perform(actions) {
                                wake = Some(w);
                            }
                            self.log_leap_events();
                        }
                        Err(e) => tracing::debug!("source {}: reply refused: {e}", slot.name),
                    }
                }
                _ = refresh.tick() => self.refresh(),
                Some((i, r)) = resolved_rx.recv() => self.resolved(i, r),
                _ = resolve.tick() => self.resolve_all(true),
                _ = shutdown.changed() => break,
            }
        }
        self.save_drift();
    }

    fn log_leap_events(&mut self) {
        for e in self.engine.take_leap_events() {
            match e {
                LeapEvent::Scheduled(at) => tracing::warn!(
                    "a leap second is announced by a quorum of the sources for {} (Unix s): the UTC view widens by a second from then until the sources show whether it happened",
                    at.0 / crate::core::time::NS_PER_S
                ),
                LeapEvent::Completed { at_utc, delta } => {
                    tracing::info!("the leap second was applied by the sources");
                    let at_s = (at_utc.0 / crate::core::time::NS_PER_S) as i64;
                    let table = self.engine.config().leap_table.clone();
                    if let Some(before) = table.tai_utc_at(at_s - 1) {
                        let after = before + (delta.0 / crate::core::time::NS_PER_S) as i64;
                        if table.tai_utc_at(at_s) != Some(after) {
                            save_seen_leap(&self.state_dir, at_s, after);
                        }
                    }
                }
                LeapEvent::Cancelled => {
                    tracing::warn!("the announced leap second did not happen: cancelled")
                }
            }
        }
    }

    /// The status now (for sd_notify STATUS lines).
    pub fn status_line(shared: &Shared) -> String {
        let s = shared.get();
        let now = clock::raw();
        let r = s.read(now);
        match r.epsilon_ns {
            Some(e) => format!("{} (error bound {:.3} ms)", r.status, e as f64 / 1e6),
            None => format!("{} (no model yet)", r.status),
        }
    }
}

/// Whether the status counts as healthy for `/healthz`.
pub fn healthy(s: Status) -> bool {
    s == Status::Synchronized
}

/// sd_notify: READY once serving, STATUS every few seconds, WATCHDOG at half
/// the watchdog interval (only while the engine task keeps refreshing the
/// snapshot: a wedged engine stops the pings and systemd restarts it).
pub async fn notify_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let watchdog = sd_notify::watchdog_enabled();
    let period = watchdog.map_or(Duration::from_secs(5), |w| {
        (w / 2).max(Duration::from_millis(100))
    });
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let line = Agent::status_line(&shared);
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&line)]);
        if let Some(w) = watchdog {
            let fresh = clock::raw().since(shared.get().refreshed_at) < Nanos(w.as_nanos() as i128);
            if fresh {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn private_dir_refuses_what_others_could_have_planted() {
        let base = std::env::temp_dir().join(format!("skewd-private-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        // created fresh: ours, 0700
        let fresh = base.join("fresh");
        assert_eq!(private_dir(&fresh).unwrap(), fresh);
        assert_eq!(std::fs::metadata(&fresh).unwrap().mode() & 0o777, 0o700);
        // anyone may write it: refused
        let open = base.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(private_dir(&open).is_err());
        // a symlink to a directory of ours: refused (it could be re-pointed)
        let link = base.join("link");
        std::os::unix::fs::symlink(&fresh, &link).unwrap();
        assert!(private_dir(&link).is_err());
        // a plain file: refused
        let file = base.join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(private_dir(&file).is_err());
        // another user's directory (only checkable as root)
        if uid() == 0 {
            let theirs = base.join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
            assert!(private_dir(&theirs).is_err());
        }
        std::fs::remove_dir_all(&base).unwrap();
    }
}
