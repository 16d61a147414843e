//! The engine pump: the one task that owns the engine. It moves bytes and
//! instants and nothing more — datagrams and their stamps in, requests out,
//! a reading of the host's clocks every 0.5 s, every publication written to
//! the segment and handed to the in-process readers. Every decision is the
//! engine's.

use super::options::RunOptions;
use super::sources::{until, Resolved, Sources};
use super::state_files;
use crate::clock;
use crate::core::engine::{Action, Engine, Event};
use crate::core::leap::LeapEvent;
use crate::core::local::{Interruption, LocalReading};
use crate::core::publish::Publication;
use crate::core::source::SourceId;
use crate::core::stamps::{ClockPair, RxStamps};
use crate::core::time::{Nanos, Steady, NS_PER_S};
use crate::net::Incoming;
use crate::shm::vmclock::VmClock;
use crate::shm::writer::Health;
use crate::state::{Shared, ShmState, Snapshot};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How often the pump reads the host's clocks and republishes.
const REFRESH: Duration = Duration::from_millis(500);

/// The engine task.
pub struct Pump {
    engine: Engine,
    sources: Sources,
    shared: Arc<Shared>,
    state_dir: PathBuf,
    last_drift_save: Steady,
    shm: Option<crate::shm::Writer>,
    vmclock: Option<VmClock>,
    /// Counts REALTIME sets, for the core's kernel-stamp check.
    clock_sets: Option<clock::ClockSetWatch>,
    clocksource: clock::ClocksourceFile,
    /// Whether the segment is being published (for health and metrics).
    shm_state: Option<ShmState>,
    /// When to try again to create a segment that could not be created
    /// (a full tmpfs, a missing directory, another agent holding it).
    shm_retry: Option<std::time::Instant>,
    vmclock_default: bool,
    /// What was last logged (transitions are logged once).
    seen: Seen,
    /// NTS: the TLS configuration of key exchanges, and where their results
    /// come back.
    nts_tls: Option<Arc<rustls::ClientConfig>>,
    ke_tx: mpsc::Sender<KeReport>,
    ke_rx: Option<mpsc::Receiver<KeReport>>,
    /// When each source's last authentication failure was warned about.
    auth_warned: Vec<Option<std::time::Instant>>,
}

/// A finished NTS key exchange: the source, the exchange's id, its result.
type KeReport = (
    SourceId,
    u64,
    Result<super::nts::KeDone, super::nts::KeFailed>,
);

/// The last status, violation count and source states logged.
#[derive(Debug, Default)]
struct Seen {
    status: Option<crate::core::model::Status>,
    violations: u64,
    sources: Vec<Option<&'static str>>,
}

/// How often the agent tries again to create its segment.
const SHM_RETRY: Duration = Duration::from_secs(5);

/// Watch the VMClock page at `path` if it exists (or was named).
fn open_vmclock(path: &Path, named: bool) -> Option<VmClock> {
    if !named && !path.exists() {
        return None;
    }
    match VmClock::open(path) {
        Ok(c) => {
            tracing::info!(
                "watching the VMClock disruption marker at {}",
                path.display()
            );
            Some(c)
        }
        Err(e) => {
            tracing::warn!(
                "VMClock: {e}; VM disruptions will only be caught by the next exchange's audit"
            );
            None
        }
    }
}

impl Pump {
    /// The engine for `opts`, its sources forwarding datagrams to `tx`.
    pub fn new(
        opts: &RunOptions,
        shared: Arc<Shared>,
        tx: mpsc::Sender<Incoming>,
        shm: Option<crate::shm::Writer>,
    ) -> (Pump, mpsc::Receiver<Resolved>) {
        let now = clock::raw();
        let mut cfg = opts.engine.clone();
        cfg.sources = opts
            .servers
            .iter()
            .zip(&opts.dispersion_aged_by_server)
            .zip(&opts.nts)
            .map(|((name, aged), nts)| crate::config::source_config(name, *aged, *nts))
            .collect();
        cfg.fit_to_sources();
        cfg.leap_table = state_files::leap_table(&opts.state_dir);
        cfg.rate_hint = state_files::load_drift(
            &opts.state_dir,
            cfg.assumptions.phi_hw,
            &clock::clocksource(),
        );
        if let Some(r) = cfg.rate_hint {
            tracing::info!("drift file: centring the rate on {:.3} ppm", r.as_ppm_f64());
        }
        let clock_sets = if opts.kernel_timestamps {
            let w = clock::ClockSetWatch::new();
            if w.is_none() {
                tracing::warn!("cannot watch CLOCK_REALTIME for steps (timerfd): kernel receive stamps are mapped assuming at most one step per exchange");
            }
            w
        } else {
            None
        };
        let (sources, resolved_rx) =
            Sources::new(&opts.servers, &opts.nts, opts.kernel_timestamps, tx);
        let (ke_tx, ke_rx) = mpsc::channel(64);
        let vmclock_default = opts.vmclock.path == Path::new(crate::shm::vmclock::DEFAULT_PATH);
        let mut shm = shm;
        if let Some(w) = &mut shm {
            w.set_vmclock_default(vmclock_default);
        }
        let shm_created = shm.is_some();
        let pump = Pump {
            engine: Engine::new(cfg, now),
            sources,
            shared,
            state_dir: opts.state_dir.clone(),
            last_drift_save: now,
            shm,
            vmclock: open_vmclock(&opts.vmclock.path, opts.vmclock.named),
            clock_sets,
            clocksource: clock::ClocksourceFile::open(),
            shm_state: opts.shm_path.as_ref().map(|p| ShmState {
                path: p.clone(),
                publishing: shm_created,
                problem: (!shm_created).then(|| "could not be created (see the log)".into()),
            }),
            shm_retry: (!shm_created).then(|| std::time::Instant::now() + SHM_RETRY),
            vmclock_default,
            seen: Seen::default(),
            nts_tls: opts.nts_tls.clone(),
            ke_tx,
            ke_rx: Some(ke_rx),
            auth_warned: Vec::new(),
        };
        (pump, resolved_rx)
    }

    fn perform(&mut self, actions: Vec<Action>) -> Option<Steady> {
        let mut wake = None;
        for a in actions {
            match a {
                Action::Send { source, packet } => {
                    let sets = self.clock_sets.as_mut().map(|w| w.poll());
                    match self.sources.send(source, &packet, sets) {
                        Some(stamps) => self.engine.handle_sent(source, stamps),
                        None => self.engine.send_failed(source),
                    }
                }
                // The agent configures no one-way sources (yet): nothing to read.
                Action::Read { .. } => {}
                Action::KeyExchange {
                    source,
                    id,
                    request,
                } => self.start_key_exchange(source, id, request),
                Action::WakeAt(t) => wake = Some(t),
                Action::Publish(p) => self.publish(&p),
            }
        }
        self.log_events();
        wake
    }

    /// A datagram refused: debug, except an NTS reply that answered our
    /// request but did not authenticate (altered or forged on the path),
    /// which is warned about, at most once a minute per source (an attacker
    /// must not be able to flood the log).
    fn refused(&mut self, slot: usize, e: crate::core::ntp::Rejected) {
        use crate::core::nts::{NtsError, OpenError};
        let name = self.sources.name(slot).to_owned();
        let forged = matches!(
            e,
            crate::core::ntp::Rejected::Nts(NtsError::Open(
                OpenError::Forged | OpenError::NoAuthenticator | OpenError::BadAuthenticator
            ))
        );
        if !forged {
            tracing::debug!("source {name}: reply refused: {e}");
            return;
        }
        if self.auth_warned.len() <= slot {
            self.auth_warned.resize(slot + 1, None);
        }
        let now = std::time::Instant::now();
        if self.auth_warned[slot].is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60)) {
            self.auth_warned[slot] = Some(now);
            tracing::warn!(source = %name, "source {name}: an NTS reply failed authentication ({e}): altered or forged on the path; not used (skewd_nts_authentication_failures_total counts them)");
        }
    }

    /// Run NTS key exchange `id` of `source` in the background; its result
    /// comes back to [`Pump::key_exchanged`].
    fn start_key_exchange(&mut self, source: SourceId, id: u64, request: Vec<u8>) {
        let name = self.sources.name(source.0).to_owned();
        let tx = self.ke_tx.clone();
        let Some(tls) = self.nts_tls.clone() else {
            // Options refuse NTS sources without TLS: cannot happen.
            let _ = tx.try_send((
                source,
                id,
                Err((
                    crate::core::nts::KeFailure::Tls,
                    "no TLS configuration".into(),
                )),
            ));
            return;
        };
        tokio::spawn(async move {
            let r = super::nts::key_exchange(tls, name, request).await;
            let _ = tx.send((source, id, r)).await;
        });
    }

    /// An NTS key exchange finished: attach the source's socket to the NTP
    /// server it named (unless another source holds that address), hand
    /// keys and cookies (or the failure) to the engine.
    fn key_exchanged(&mut self, (source, id, r): KeReport) -> Option<Steady> {
        let name = self.sources.name(source.0).to_owned();
        let result = match r {
            Ok(done) => {
                self.sources.resolved(source.0, Ok(done.ntp_addrs.clone()));
                match self.sources.address(source.0) {
                    Some(a) if done.ntp_addrs.contains(&a) => {
                        tracing::info!(
                            source = %name,
                            "NTS key exchange with {name}: {} cookies, NTP server {} ({a})",
                            done.outcome.cookies.len(),
                            done.ntp_server
                        );
                        Ok(done.outcome)
                    }
                    _ => {
                        tracing::warn!(source = %name, "NTS key exchange with {name}: its NTP server {} is unusable here (taken by another source, or no socket)", done.ntp_server);
                        Err(crate::core::nts::KeFailure::NtpAddress)
                    }
                }
            }
            Err((kind, why)) => {
                tracing::warn!(source = %name, "NTS key exchange with {name} failed: {why}");
                Err(kind)
            }
        };
        let actions = self
            .engine
            .handle_key_exchange(source, id, clock::raw(), result);
        self.perform(actions)
    }

    /// Write the publication to the segment and show it to the readers.
    fn publish(&mut self, p: &Publication) {
        self.retry_shm();
        if let Some(st) = &mut self.shm_state {
            let (ok, problem) = match self.shm.as_mut().map(|w| w.publish(p)) {
                None => (false, st.problem.clone()),
                Some(Health::Ok) => (true, None),
                Some(Health::Restored) => {
                    tracing::warn!("the shared-memory segment {} had been shrunk: restored (a reader mapping it may have faulted)", st.path.display());
                    (true, None)
                }
                Some(Health::Recreated) => {
                    tracing::warn!("the shared-memory segment {} had been removed or replaced: created again (readers must reopen it)", st.path.display());
                    (true, None)
                }
                Some(Health::Failed(why)) => (false, Some(why)),
            };
            if st.problem != problem {
                if let Some(why) = &problem {
                    tracing::error!("not publishing to shared memory: {why}");
                } else if !st.publishing {
                    tracing::info!("publishing to shared memory again");
                }
            }
            st.publishing = ok;
            st.problem = problem;
        }
        self.log_transitions(p);
        let snap = Snapshot {
            sources: self.sources.views(&p.sources),
            kernel: clock::kernel_status().ok(),
            vmclock_watched: self.vmclock.is_some(),
            shm: self.shm_state.clone(),
            publication: p.clone(),
        };
        self.shared.set(snap);
    }

    /// Log each change of status, of a source's state, and each bound
    /// violation once, with structured fields (journald keeps them).
    fn log_transitions(&mut self, p: &Publication) {
        let seen = &mut self.seen;
        if seen.status != Some(p.status) {
            let eps = p
                .model
                .as_ref()
                .map(|m| m.interval_at(p.at).interval.half_width_ceil().0);
            let from = seen.status.map_or("start", |s| s.as_str());
            use crate::core::model::Status as S;
            // Worse than before (and not the first state): a warning.
            let rank = |s: S| match s {
                S::Synchronized => 3,
                S::FreeRunning => 2,
                S::Unknown => 1,
                S::Disrupted => 0,
            };
            let worse = seen.status.is_some_and(|old| rank(p.status) < rank(old));
            match worse {
                false => tracing::info!(
                    status = p.status.as_str(),
                    previous = from,
                    epsilon_ns = eps,
                    "status {from} -> {}",
                    p.status.as_str()
                ),
                true => tracing::warn!(
                    status = p.status.as_str(),
                    previous = from,
                    epsilon_ns = eps,
                    "status {from} -> {}",
                    p.status.as_str()
                ),
            }
            seen.status = Some(p.status);
        }
        if p.violations > seen.violations {
            tracing::error!(
                violations = p.violations,
                "the self-audit contradicted a published interval (a bound violation): an assumption broke"
            );
            seen.violations = p.violations;
        }
        seen.sources.resize(p.sources.len(), None);
        for (i, r) in p.sources.iter().enumerate() {
            let state = r.state.as_str();
            if seen.sources[i] != Some(state) {
                let name = self.sources.name(i);
                let from = seen.sources[i].unwrap_or("start");
                let good = |s: &str| matches!(s, "selected" | "candidate");
                let worse =
                    seen.sources[i].is_some_and(|old| good(old) || !good(state)) && !good(state);
                match !worse {
                    true => tracing::info!(
                        source = %name, state, previous = from,
                        "source {name}: {from} -> {state}"
                    ),
                    false => tracing::warn!(
                        source = %name, state, previous = from,
                        "source {name}: {from} -> {state}"
                    ),
                }
                seen.sources[i] = Some(state);
            }
        }
    }

    /// Try again (every SHM_RETRY) to create a segment that could not be
    /// created at start.
    fn retry_shm(&mut self) {
        let (Some(at), Some(st)) = (self.shm_retry, &mut self.shm_state) else {
            return;
        };
        if std::time::Instant::now() < at {
            return;
        }
        match crate::shm::Writer::create(&st.path) {
            Ok(mut w) => {
                w.set_vmclock_default(self.vmclock_default);
                tracing::info!("shared-memory segment {} created", st.path.display());
                self.shm = Some(w);
                self.shm_retry = None;
            }
            Err(e) => {
                let why = e.to_string();
                if st.problem.as_deref() != Some(why.as_str()) {
                    tracing::warn!("shared memory: {why} (trying again every {SHM_RETRY:?})");
                }
                st.problem = Some(why);
                self.shm_retry = Some(std::time::Instant::now() + SHM_RETRY);
            }
        }
    }

    /// Read the host's clocks and hand them to the engine.
    fn refresh(&mut self) {
        let (off, span) = clock::boot_offset();
        let p = clock::paired_realtime();
        let reading = LocalReading {
            at: clock::raw(),
            boot_offset: Some((off, span)),
            clocksource: self.clocksource.read(),
            vmclock_marker: self.vmclock.as_ref().and_then(VmClock::disruption_marker),
            realtime: Some(ClockPair {
                steady: p.steady,
                realtime: p.realtime,
                span: p.span,
            }),
        };
        let actions = self.engine.handle_local(&reading);
        self.perform(actions);
        if reading.at.since(self.last_drift_save) > Nanos::from_secs(600) {
            self.save_drift();
        }
    }

    fn save_drift(&mut self) {
        self.last_drift_save = clock::raw();
        if let Some(m) = self.engine.model() {
            if m.ageing.evidence.is_some() {
                state_files::save_drift(&self.state_dir, m.ageing.rate);
            }
        }
    }

    fn log_events(&mut self) {
        for e in self.engine.take_events() {
            match e {
                Event::Leap(LeapEvent::Scheduled(at)) => tracing::warn!(
                    "a leap second is announced for {} (Unix s): the UTC view widens by a second from then until the sources show whether it happened",
                    at.0 / NS_PER_S
                ),
                Event::Leap(LeapEvent::Completed { at_utc, delta }) => {
                    tracing::info!("the leap second was applied by the sources");
                    let at_s = (at_utc.0 / NS_PER_S) as i64;
                    let table = &self.engine.config().leap_table;
                    if let Some(before) = table.tai_utc_at(at_s - 1) {
                        let after = before + (delta.0 / NS_PER_S) as i64;
                        if table.tai_utc_at(at_s) != Some(after) {
                            state_files::save_seen_leap(&self.state_dir, at_s, after);
                        }
                    }
                }
                Event::Leap(LeapEvent::Cancelled) => {
                    tracing::warn!("the announced leap second did not happen: cancelled")
                }
                Event::Interrupted(Interruption::Suspend(d)) => tracing::warn!(
                    "the host was suspended for about {} ms: dropping the model",
                    d.0 / 1_000_000
                ),
                Event::Interrupted(Interruption::Clocksource { from, to }) => tracing::warn!(
                    "clocksource changed from {from} to {to}: dropping the model"
                ),
                Event::Interrupted(Interruption::VmClock) => tracing::warn!(
                    "the hypervisor's VMClock disruption marker changed (live migration, snapshot restore or a reported pause): dropping the model"
                ),
                Event::RealtimeStep(by) => tracing::warn!(
                    "the system clock (REALTIME) was stepped by about {:.3} ms",
                    by.0 as f64 / 1e6
                ),
            }
        }
    }

    /// Run until `shutdown` fires.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Incoming>,
        mut resolved_rx: mpsc::Receiver<Resolved>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        self.sources
            .resolve_all(&self.engine.source_reports(), false);
        self.refresh();
        let actions = self
            .engine
            .handle_timer(clock::raw(), &mut || rand::random());
        let mut wake = self.perform(actions);
        let mut refresh = tokio::time::interval(REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut resolve = tokio::time::interval(Duration::from_secs(16));
        resolve.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ke_rx = self.ke_rx.take().expect("the pump runs once");
        loop {
            tokio::select! {
                _ = tokio::time::sleep(until(wake)) => {
                    let now = clock::raw();
                    if wake.is_none_or(|w| w <= now) {
                        let actions = self.engine.handle_timer(now, &mut || rand::random());
                        wake = self.perform(actions);
                    }
                }
                Some(msg) = rx.recv() => {
                    if self.sources.current(&msg).is_none() {
                        continue;
                    }
                    let stamps = RxStamps {
                        at: msg.received_at,
                        kernel: msg.kernel_stamp,
                        pair: Some(msg.after),
                        clock_sets: self.clock_sets.as_mut().map(|w| w.poll()),
                        boot_offset: Some(clock::boot_offset()),
                        sent_kernel: msg.sent_kernel,
                    };
                    let id = SourceId(msg.slot);
                    match self.engine.handle_reply(id, &msg.bytes[..msg.len], &stamps) {
                        Ok(actions) => {
                            if let Some(w) = self.perform(actions) {
                                wake = Some(w);
                            }
                        }
                        Err(e) => self.refused(msg.slot, e),
                    }
                }
                Some(report) = ke_rx.recv() => {
                    if let Some(w) = self.key_exchanged(report) {
                        wake = Some(w);
                    }
                }
                _ = refresh.tick() => self.refresh(),
                Some((i, r)) = resolved_rx.recv() => self.sources.resolved(i, r),
                _ = resolve.tick() => self.sources.resolve_all(&self.engine.source_reports(), true),
                _ = shutdown.changed() => break,
            }
        }
        self.save_drift();
        // Readers see at once that nobody publishes any more, rather than
        // after the grace.
        let now = clock::raw();
        let stopped = Publication::stopped(now, clock::boot_offset().0);
        // Stopping is not a transition to warn about.
        self.seen.status = Some(stopped.status);
        self.publish(&stopped);
    }
}
