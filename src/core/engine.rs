//! The sans-IO engine: every source's state machine plus the estimator.
//!
//! The shell calls [`Engine::handle_timer`] at (or after) the deadline it was
//! last given, [`Engine::handle_sent`] / [`Engine::send_failed`] for each
//! `Send` it performed, [`Engine::handle_reply`] for each datagram, and
//! [`Engine::observe_realtime`] / [`Engine::interrupt`] for local clock
//! events. Each returns [`Action`]s for the shell to perform. Nothing here
//! reads a clock or touches a socket; randomness (request nonces) is passed in.
//!
//! NTP eras are resolved against the *published model* (its UTC at the
//! sample's instant), or the last published one, or [`BUILD_PIVOT`] before
//! any: never against a raw sample, so one source's bytes cannot change what
//! the other sources' timestamps mean.

use super::estimator::{Assumptions, Estimator, Round, Timetable};
use super::leap::{LeapEvent, LeapState, LeapTable};
use super::model::{Model, Status};
use super::packet::{Leap, BUILD_PIVOT, HEADER_LEN};
use super::sample::{RxStamps, Sample, SampleParams, SentStamps};
use super::source::{PollConfig, Rejected, Source};
use super::time::{Interval, Nanos, Rate, RefTime, Steady, NS_PER_S};

/// What the engine is told about one configured source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SourceConfig {
    /// The server ages its root dispersion itself before sending (chrony
    /// does; ntpd sends it as of its last update), so skewd does not age it
    /// again at Phi_s. A stated assumption: declared for an ntpd-style
    /// server, that server's error since its reference time escapes the
    /// bound (the simulator shows the violations).
    pub dispersion_aged_by_server: bool,
}

/// Engine settings: everything the engine needs, complete at construction.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// One entry per configured source: N is their number.
    pub sources: Vec<SourceConfig>,
    /// The host's leap-second table: where the leap-free timescale starts.
    pub leap_table: LeapTable,
    /// A saved rate estimate (drift file) to centre the hardware bound on.
    /// It never narrows anything.
    pub rate_hint: Option<Rate>,
}

impl EngineConfig {
    /// Defaults for a poll interval and `sources` plain sources.
    pub fn new(poll: Nanos, sources: usize) -> EngineConfig {
        EngineConfig {
            poll: PollConfig::with_poll(poll),
            sample: SampleParams::default(),
            assumptions: Assumptions::default(),
            timetable: Timetable::for_poll(poll),
            max_sample_age: Nanos(poll.0 * 8),
            sources: vec![SourceConfig::default(); sources],
            leap_table: LeapTable::default(),
            rate_hint: None,
        }
    }
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Action {
    /// Send these bytes to source `source`, then report the stamps read
    /// around `send()` with [`Engine::handle_sent`] (or
    /// [`Engine::send_failed`]).
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
/// A good sample farther than this from the published model is counted as
/// implausible (a source hours off, or one lying about the NTP era).
pub const IMPLAUSIBLE: Nanos = Nanos(3600 * NS_PER_S);

/// Everything the engine keeps per configured source, in one place.
#[derive(Debug, Clone)]
struct Slot {
    cfg: SourceConfig,
    source: Source,
    /// Disjoint from the last published anchor.
    falseticker: bool,
    /// Had a valid interval in the last selection that published.
    used: bool,
    /// The leap indicator of its newest sample.
    leap_bit: Leap,
}

/// The engine.
#[derive(Debug, Clone)]
pub struct Engine {
    cfg: EngineConfig,
    slots: Vec<Slot>,
    estimator: Estimator,
    /// The UTC centre of the last published model: the era pivot while
    /// there is no model (kept across dropped models).
    last_pivot: Option<RefTime>,
    last_realtime: Option<(Steady, RefTime)>,
    steps: u64,
    leap: LeapState,
    /// Leap events for the shell to log, oldest first (drained by it).
    leap_events: Vec<LeapEvent>,
}

impl Engine {
    /// An engine for `cfg` (N = `cfg.sources.len()`), starting at `now`.
    pub fn new(cfg: EngineConfig, now: Steady) -> Engine {
        let n = cfg.sources.len();
        let mut estimator = Estimator::new(n, cfg.assumptions, cfg.timetable);
        if let Some(r) = cfg.rate_hint {
            estimator.set_rate_hint(r);
        }
        let leap = LeapState::new(n, cfg.leap_table.clone());
        estimator.set_utc(leap.mapping());
        Engine {
            slots: cfg
                .sources
                .iter()
                .map(|c| Slot {
                    cfg: *c,
                    source: Source::new(cfg.poll, now),
                    falseticker: false,
                    used: false,
                    leap_bit: Leap::None,
                })
                .collect(),
            cfg,
            estimator,
            last_pivot: None,
            last_realtime: None,
            steps: 0,
            leap,
            leap_events: Vec::new(),
        }
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

    /// Leap events since the last call (scheduled, completed, cancelled).
    pub fn take_leap_events(&mut self) -> Vec<LeapEvent> {
        std::mem::take(&mut self.leap_events)
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
        self.slots.len()
    }

    /// The earliest deadline of any source.
    pub fn poll_timeout(&self) -> Option<Steady> {
        self.slots.iter().filter_map(|s| s.source.deadline()).min()
    }

    /// The era pivot for a sample taken at `at`: the published model's UTC
    /// centre there, else the last model's, else the build pivot.
    fn pivot(&self, at: Steady) -> RefTime {
        match self.estimator.model() {
            Some(m) => centre(m.utc_at(at).interval),
            None => self.last_pivot.unwrap_or(BUILD_PIVOT),
        }
    }

    /// Timer: send what is due and say when to wake next.
    pub fn handle_timer(&mut self, now: Steady, nonce: &mut dyn FnMut() -> u64) -> Vec<Action> {
        let mut out = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if s.source.deadline().is_some_and(|d| d <= now) {
                if let Some(req) = s.source.handle_timer(now, nonce()) {
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

    /// The shell sent source `source`'s request, reading `stamps` around
    /// `send()`.
    pub fn handle_sent(&mut self, source: usize, stamps: SentStamps) {
        if let Some(s) = self.slots.get_mut(source) {
            s.source.handle_sent(stamps);
        }
    }

    /// The shell could not send `source`'s request (no address yet, or the
    /// socket refused it).
    pub fn send_failed(&mut self, source: usize) {
        if let Some(s) = self.slots.get_mut(source) {
            s.source.send_failed();
        }
    }

    /// A datagram from source `source`, with what the shell read around
    /// `recv()`.
    pub fn handle_reply(
        &mut self,
        source: usize,
        bytes: &[u8],
        rx: &RxStamps,
    ) -> Result<Vec<Action>, Rejected> {
        let pivot = self.pivot(rx.at);
        let model_then = |e: &Estimator, at: Steady| e.model().map(|m| m.interval_at(at).interval);
        let Some(slot) = self.slots.get_mut(source) else {
            return Err(Rejected::Unexpected);
        };
        let mut params = self.cfg.sample;
        if slot.cfg.dispersion_aged_by_server {
            params.server_dispersion_rate = Rate(0);
        }
        let sample = slot.source.handle_reply(bytes, rx, pivot, &params)?;
        let model_iv = model_then(&self.estimator, sample.at);
        let bound = self.leap.to_internal(source, sample.bound, model_iv);
        if let Some(m) = model_iv {
            let gap = (bound.lo - m.hi).max(m.lo - bound.hi);
            if gap > IMPLAUSIBLE {
                slot.source.counters.implausible += 1;
            }
        }
        slot.source.filter.push(Sample { bound, ..sample });
        slot.leap_bit = sample.leap;
        let round = self.round(sample.at);
        if let Some(m) = round.published {
            self.fix_origin(&m);
            self.estimator.set_utc(self.leap.mapping());
        }
        if let (Ok(sel), Some(m)) = (round.selection, self.estimator.model()) {
            let bits: Vec<Option<Leap>> = self
                .slots
                .iter()
                .map(|s| (s.used && !s.falseticker).then_some(s.leap_bit))
                .collect();
            let utc_now = centre(m.utc_at(sample.at).interval);
            if let Some(e) = self.leap.observe(&bits, sel.f, utc_now) {
                self.leap_events.push(e);
            }
        }
        self.estimator.set_utc(self.leap.mapping());
        if let Some(m) = self.estimator.model() {
            self.last_pivot = Some(centre(m.utc_at(m.anchor).interval));
        }
        let mut out = vec![Action::Publish(self.model().copied())];
        if let Some(t) = self.poll_timeout() {
            out.push(Action::WakeAt(t));
        }
        Ok(out)
    }

    /// At the first model: fix the leap-free origin from its UTC, moving
    /// every internal instant computed on the provisional one.
    fn fix_origin(&mut self, m: &Model) {
        let shift = self.leap.fix_origin(centre(m.utc_at(m.anchor).interval));
        if shift != Nanos(0) {
            self.estimator.shift(shift);
            self.leap.shift(shift);
            for s in &mut self.slots {
                s.source.filter.shift(shift);
            }
        }
    }

    /// Run a selection round at `now` with every source's best aged interval.
    pub fn round(&mut self, now: Steady) -> Round {
        let ageing = self.estimator.ageing();
        let max_age = self.cfg.max_sample_age;
        let intervals: Vec<Option<Interval>> = self
            .slots
            .iter()
            .map(|s| {
                s.source
                    .filter
                    .best_at(now, max_age, &ageing)
                    .map(|(iv, _)| iv)
            })
            .collect();
        let round = self.estimator.update(now, &intervals);
        if round.published.is_some() {
            for ((s, f), iv) in self
                .slots
                .iter_mut()
                .zip(&round.falseticker)
                .zip(&intervals)
            {
                s.falseticker = *f;
                s.used = iv.is_some();
            }
        }
        round
    }

    /// A timeline interruption (suspend, clocksource change) detected at
    /// `now`: drop the model and every sample from before it.
    pub fn interrupt(&mut self, now: Steady) -> Vec<Action> {
        self.estimator.interrupt(now);
        for s in &mut self.slots {
            s.source.filter.drop_before(now);
            s.source.cancel_outstanding();
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
            (realtime - centre(iv), iv.half_width_ceil())
        });
        RealtimeReport { offset, stepped }
    }

    /// Each source's newest sample.
    pub fn latest_samples(&self) -> Vec<Option<Sample>> {
        self.slots
            .iter()
            .map(|s| s.source.filter.latest().copied())
            .collect()
    }

    /// Every source's figures.
    pub fn source_reports(&self) -> Vec<SourceReport> {
        let model = self.model();
        self.slots
            .iter()
            .map(|slot| {
                let s = &slot.source;
                let latest = s.filter.latest();
                let offset = latest.and_then(|l| {
                    let m = model?.interval_at(l.at).interval;
                    Some(centre(l.bound) - centre(m))
                });
                let state = if s.stopped().is_some() || (s.last_error.is_some() && s.reach() == 0) {
                    SourceState::Invalid
                } else if latest.is_none() || s.reach() == 0 {
                    SourceState::Unreachable
                } else if slot.falseticker {
                    SourceState::Falseticker
                } else if slot.used {
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

/// The midpoint of an interval, rounded down.
fn centre(iv: Interval) -> RefTime {
    RefTime(iv.lo.0 + (iv.hi.0 - iv.lo.0).div_euclid(2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::packet::{NtpTimestamp, Packet, MODE_SERVER};

    /// Four sources, one of which walks the NTP era forward (the review's
    /// attack): the honest three keep the interval on true time.
    #[test]
    fn one_source_cannot_walk_the_era() {
        let truth0 = RefTime(1_800_000_000 * NS_PER_S);
        let poll = Nanos::from_secs(16);
        let mut e = Engine::new(EngineConfig::new(poll, 4), Steady(0));
        let mut nonce = 1u64;
        let mut now = Steady(0);
        let era_step = (1i128 << 31) - 100_000_000;
        let mut lies = 0i128;
        for _ in 0..200 {
            let actions = e.handle_timer(now, &mut || {
                nonce += 1;
                nonce
            });
            for a in actions {
                if let Action::Send { source, packet } = a {
                    e.handle_sent(source, SentStamps::steady(now));
                    let q = Packet::parse(&packet).unwrap();
                    let t = truth0 + Nanos(now.0 as i128 + 50_000);
                    let told = if source == 3 {
                        lies += 1;
                        t + Nanos::from_secs(era_step * lies.min(3))
                    } else {
                        t
                    };
                    let reply = Packet {
                        leap: Leap::None,
                        version: 4,
                        mode: MODE_SERVER,
                        stratum: 1,
                        poll: 4,
                        precision: -20,
                        root_delay: 0,
                        root_dispersion: 100,
                        ref_id: *b"TEST",
                        reference: NtpTimestamp::from_ref(told),
                        origin: q.transmit,
                        receive: NtpTimestamp::from_ref(told),
                        transmit: NtpTimestamp::from_ref(told),
                    };
                    let rx = RxStamps::steady(now.plus(Nanos(100_000)));
                    let _ = e.handle_reply(source, &reply.serialize(), &rx);
                }
            }
            let at = now.plus(Nanos(100_000));
            if let Some(m) = e.model() {
                let truth = truth0 + Nanos(at.0 as i128);
                let iv = m.interval_at(at).interval;
                assert!(iv.contains(truth), "{iv:?} misses {truth:?}");
            }
            now = e.poll_timeout().unwrap();
        }
        assert_eq!(e.status_at(now), Status::Synchronized);
        assert_eq!(e.violations(), 0);
        let r = e.source_reports();
        assert_eq!(r[3].state, SourceState::Falseticker);
        assert!(r[3].counters.implausible > 0);
    }
}
