//! The sans-IO engine: every source's state machine plus the estimator.
//!
//! The shell calls [`Engine::handle_timer`] at (or after) the deadline it was
//! last given, [`Engine::handle_reply`] for each datagram, and
//! [`Engine::observe_realtime`] / [`Engine::interrupt`] for local clock
//! events. Each returns [`Action`]s for the shell to perform. Nothing here
//! reads a clock or touches a socket; randomness (request nonces) is passed in.

use super::estimator::{Assumptions, Estimator, Round, Timetable};
use super::leap::LeapState;
use super::model::{Model, Status};
use super::packet::{Leap, BUILD_PIVOT, HEADER_LEN};
use super::sample::{Sample, SampleParams};
use super::source::{PollConfig, Rejected, Source};
use super::time::{Interval, Nanos, Rate, RefTime, Steady};

/// Engine settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Poll policy, shared by all sources.
    pub poll: PollConfig,
    /// Per-exchange bound parameters.
    pub sample: SampleParams,
    /// Oscillator assumptions.
    pub assumptions: Assumptions,
    /// Status timetable.
    pub timetable: Timetable,
    /// Samples older than this are not used.
    pub max_sample_age: Nanos,
}

impl EngineConfig {
    /// Defaults for a poll interval.
    pub fn with_poll(poll: Nanos) -> EngineConfig {
        EngineConfig {
            poll: PollConfig::with_poll(poll),
            sample: SampleParams::default(),
            assumptions: Assumptions::default(),
            timetable: Timetable::for_poll(poll),
            max_sample_age: Nanos(poll.0 * 8),
        }
    }
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Action {
    /// Send these bytes to source `source`; read the steady clock just before.
    Send {
        /// Source index.
        source: usize,
        /// The request.
        packet: [u8; HEADER_LEN],
    },
    /// Call `handle_timer` at this instant.
    WakeAt(Steady),
    /// Publish this model (`None`: there is no usable model; see `status_at`).
    Publish(Option<Model>),
}

/// How a source stands, for `/v1/status` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    /// Its interval took part in the last selection and meets the anchor.
    Selected,
    /// It has a valid interval but no selection used it yet.
    Candidate,
    /// Its interval is disjoint from the published anchor.
    Falseticker,
    /// No valid sample recently.
    Unreachable,
    /// Its replies are refused (bad packets, kiss-o'-death).
    Invalid,
}

impl SourceState {
    /// Lower-case name for JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceState::Selected => "selected",
            SourceState::Candidate => "candidate",
            SourceState::Falseticker => "falseticker",
            SourceState::Unreachable => "unreachable",
            SourceState::Invalid => "invalid",
        }
    }
}

/// A source's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceReport {
    /// State.
    pub state: SourceState,
    /// Reachability register.
    pub reach: u8,
    /// Centre of its latest sample minus the model's centre at that instant.
    pub offset: Option<Nanos>,
    /// Round-trip delay of its latest sample.
    pub delay: Option<Nanos>,
    /// Advertised root distance of its latest sample.
    pub root_distance: Option<Nanos>,
    /// Outcome counters.
    pub counters: super::source::Counters,
}

/// The result of comparing the system clock with the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealtimeReport {
    /// System REALTIME minus the model's centre, with the model's half-width
    /// as its uncertainty. `None` without a model.
    pub offset: Option<(Nanos, Nanos)>,
    /// Whether REALTIME stepped since the previous observation.
    pub stepped: bool,
}

/// A REALTIME change beyond rate and slew limits by more than this is a step.
pub const STEP_THRESHOLD: Nanos = Nanos(1_000_000);
/// The kernel slews REALTIME by at most 500 ppm; our oscillator adds phi_hw.
const REALTIME_SLEW: Rate = Rate::from_ppm(500);

/// The engine.
#[derive(Debug, Clone)]
pub struct Engine {
    cfg: EngineConfig,
    sources: Vec<Source>,
    falseticker: Vec<bool>,
    used: Vec<bool>,
    estimator: Estimator,
    pivot: RefTime,
    last_realtime: Option<(Steady, RefTime)>,
    steps: u64,
    leap_bits: Vec<Leap>,
    leap: LeapState,
    /// Per source: the server ages its root dispersion itself (see
    /// [`Engine::set_dispersion_aged_by_server`]).
    aged_by_server: Vec<bool>,
}

impl Engine {
    /// An engine for `sources` configured servers (N), starting at `now`.
    pub fn new(cfg: EngineConfig, sources: usize, now: Steady) -> Engine {
        Engine {
            cfg,
            sources: (0..sources).map(|_| Source::new(cfg.poll, now)).collect(),
            falseticker: vec![false; sources],
            used: vec![false; sources],
            estimator: Estimator::new(sources, cfg.assumptions, cfg.timetable),
            pivot: BUILD_PIVOT,
            last_realtime: None,
            steps: 0,
            leap_bits: vec![Leap::None; sources],
            leap: LeapState::new(sources),
            aged_by_server: vec![false; sources],
        }
    }

    /// Declare that source `source` ages its root dispersion itself before
    /// sending (chrony does; ntpd sends it as of its last update), so skewd
    /// does not age it again at Phi_s. A stated assumption: declared for an
    /// ntpd-style server, that server's error since its reference time
    /// escapes the bound (the simulator shows the violations).
    pub fn set_dispersion_aged_by_server(&mut self, source: usize, yes: bool) {
        if let Some(x) = self.aged_by_server.get_mut(source) {
            *x = yes;
        }
    }

    /// Start the leap-free timescale at UTC + `offset`: the leap seconds
    /// since 2017-01-01 (TAI − UTC − 37 s) from the host's leap-second list,
    /// so that every host and every restart use the same timescale (a
    /// commit-wait timestamp must compare across both). Only before the
    /// first sample; ignored after.
    pub fn set_leap_offset(&mut self, offset: Nanos) {
        if self.model().is_none() && !self.leap.pending() {
            self.leap = LeapState::with_offset(self.sources.len(), offset);
            self.estimator.set_utc(self.leap.mapping());
        }
    }

    /// Centre the initial rate on a saved estimate (drift file).
    pub fn set_rate_hint(&mut self, rate: Rate) {
        self.estimator.set_rate_hint(rate);
    }

    /// The current model.
    pub fn model(&self) -> Option<&Model> {
        self.estimator.model()
    }

    /// The status at `now`.
    pub fn status_at(&self, now: Steady) -> Status {
        self.estimator.status_at(now)
    }

    /// Bound violations counted.
    pub fn violations(&self) -> u64 {
        self.estimator.violations()
    }

    /// The leap-second state.
    pub fn leap_state(&self) -> &LeapState {
        &self.leap
    }

    /// REALTIME steps counted.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Number of configured sources.
    pub fn source_count(&self) -> usize {
        self.sources.len()
    }

    /// The earliest deadline of any source.
    pub fn poll_timeout(&self) -> Option<Steady> {
        self.sources.iter().filter_map(Source::deadline).min()
    }

    /// Timer: send what is due and say when to wake next.
    pub fn handle_timer(&mut self, now: Steady, nonce: &mut dyn FnMut() -> u64) -> Vec<Action> {
        let mut out = Vec::new();
        for (i, s) in self.sources.iter_mut().enumerate() {
            if s.deadline().is_some_and(|d| d <= now) {
                if let Some(req) = s.handle_timer(now, nonce()) {
                    out.push(Action::Send {
                        source: i,
                        packet: req.packet,
                    });
                }
            }
        }
        if let Some(t) = self.poll_timeout() {
            out.push(Action::WakeAt(t));
        }
        out
    }

    /// A datagram from source `source`, sent at `sent_at`, received at
    /// `received_at` (steady instants read around `send()` / `recv()`).
    pub fn handle_reply(
        &mut self,
        source: usize,
        bytes: &[u8],
        sent_at: Steady,
        received_at: Steady,
    ) -> Result<Vec<Action>, Rejected> {
        let Some(src) = self.sources.get_mut(source) else {
            return Err(Rejected::Unexpected);
        };
        let mut params = self.cfg.sample;
        if self.aged_by_server.get(source).copied().unwrap_or(false) {
            params.server_dispersion_rate = Rate(0);
        }
        let sample = src.handle_reply(bytes, sent_at, received_at, self.pivot, &params)?;
        self.pivot = sample.bound.lo.max(self.pivot);
        let model_then = self
            .estimator
            .model()
            .map(|m| m.interval_at(sample.at).interval);
        let bound = self.leap.to_internal(source, sample.bound, model_then);
        src.filter.push(Sample { bound, ..sample });
        self.leap_bits[source] = sample.leap;
        let round = self.round(received_at);
        if let (Ok(sel), Some(m)) = (round.selection, self.estimator.model()) {
            let bits: Vec<Option<Leap>> = (0..self.sources.len())
                .map(|i| (self.used[i] && !self.falseticker[i]).then_some(self.leap_bits[i]))
                .collect();
            let iv = m.utc_at(received_at).interval;
            let utc_now = RefTime(iv.lo.0 + (iv.hi.0 - iv.lo.0) / 2);
            self.leap.observe(&bits, sel.k, sel.f, utc_now);
        }
        self.estimator.set_utc(self.leap.mapping());
        let mut out = vec![Action::Publish(self.model().copied())];
        if let Some(t) = self.poll_timeout() {
            out.push(Action::WakeAt(t));
        }
        Ok(out)
    }

    /// Run a selection round at `now` with every source's best aged interval.
    pub fn round(&mut self, now: Steady) -> Round {
        let ageing = self.estimator.ageing();
        let max_age = self.cfg.max_sample_age;
        let slots: Vec<Option<Interval>> = self
            .sources
            .iter()
            .map(|s| s.filter.best_at(now, max_age, &ageing).map(|(iv, _)| iv))
            .collect();
        let round = self.estimator.update(now, &slots);
        if round.published.is_some() {
            self.falseticker.clone_from(&round.falseticker);
            for (u, s) in self.used.iter_mut().zip(&slots) {
                *u = s.is_some();
            }
        }
        round
    }

    /// The shell could not send `source`'s request (no address yet, or the
    /// socket refused it).
    pub fn send_failed(&mut self, source: usize) {
        if let Some(s) = self.sources.get_mut(source) {
            s.send_failed();
        }
    }

    /// A timeline interruption (suspend, clocksource change) detected at
    /// `now`: drop the model and every sample from before it.
    pub fn interrupt(&mut self, now: Steady) -> Vec<Action> {
        self.estimator.interrupt(now);
        for s in &mut self.sources {
            s.filter.drop_before(now);
            s.cancel_outstanding();
        }
        self.last_realtime = None;
        vec![Action::Publish(None)]
    }

    /// Compare a paired reading of the steady clock and the system REALTIME
    /// clock with the model: the skew operators alert on, and step detection.
    pub fn observe_realtime(&mut self, now: Steady, realtime: RefTime) -> RealtimeReport {
        let mut stepped = false;
        if let Some((t0, r0)) = self.last_realtime {
            let steady = now.since(t0);
            let real = realtime - r0;
            let allowed = super::time::rate_spread_ceil(
                Rate(REALTIME_SLEW.0 + self.cfg.assumptions.phi_hw.0),
                steady,
            ) + STEP_THRESHOLD;
            if (real - steady).abs() > allowed {
                stepped = true;
                self.steps += 1;
            }
        }
        self.last_realtime = Some((now, realtime));
        let offset = self.model().map(|m| {
            let iv = m.utc_at(now).interval;
            let mid = RefTime(iv.lo.0 + (iv.hi.0 - iv.lo.0) / 2);
            (realtime - mid, iv.half_width_ceil())
        });
        RealtimeReport { offset, stepped }
    }

    /// Each source's newest sample.
    pub fn latest_samples(&self) -> Vec<Option<Sample>> {
        self.sources
            .iter()
            .map(|s| s.filter.latest().copied())
            .collect()
    }

    /// Every source's figures.
    pub fn source_reports(&self) -> Vec<SourceReport> {
        let model = self.model();
        self.sources
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let latest = s.filter.latest();
                let offset = latest.and_then(|l| {
                    let m = model?.interval_at(l.at).interval;
                    let mid_s = l.bound.lo.0 + (l.bound.hi.0 - l.bound.lo.0) / 2;
                    let mid_m = m.lo.0 + (m.hi.0 - m.lo.0) / 2;
                    Some(Nanos(mid_s - mid_m))
                });
                let state = if s.stopped().is_some() || (s.last_error.is_some() && s.reach() == 0) {
                    SourceState::Invalid
                } else if latest.is_none() || s.reach() == 0 {
                    SourceState::Unreachable
                } else if self.falseticker[i] {
                    SourceState::Falseticker
                } else if self.used[i] {
                    SourceState::Selected
                } else {
                    SourceState::Candidate
                };
                SourceReport {
                    state,
                    reach: s.reach(),
                    offset,
                    delay: latest.map(|l| l.delay),
                    root_distance: latest.map(|l| l.root_distance),
                    counters: s.counters,
                }
            })
            .collect()
    }
}
