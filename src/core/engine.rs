//! The sans-IO engine: every source's state machine, the estimator, leap
//! seconds, and every decision about the host's own clocks.
//!
//! The shell calls [`Engine::handle_timer`] at (or after) the deadline it was
//! last given and performs the [`Action`]s: `Send` (then
//! [`Engine::handle_sent`] or [`Engine::send_failed`]), `Read` a one-way
//! source (then [`Engine::handle_reading`]), `Publish`. Each datagram goes
//! to [`Engine::handle_reply`] with the stamps read around `recv()`; every
//! reading of the host's clocks to [`Engine::handle_local`], which decides
//! what a suspend, a clocksource change, a VMClock disruption or a REALTIME
//! step means. Nothing here reads a clock or touches a socket; randomness
//! (request nonces) is passed in.
//!
//! NTP eras are resolved against the *published model* (its UTC at the
//! sample's instant), or the last published one, or [`BUILD_PIVOT`] before
//! any: never against a raw sample, so one source's bytes cannot change what
//! the other sources' timestamps mean.

use super::budget::{Part, Sides};
use super::direct::{DirectError, DirectReading};
use super::estimator::{Assumptions, Estimator, Round, Timetable};
use super::leap::{Leap, LeapEvent, LeapState, LeapTable};
use super::local::{Interruption, LocalReading, LocalState};
use super::model::{Model, Status};
use super::ntp::packet::BUILD_PIVOT;
use super::ntp::{Rejected, SampleParams};
use super::poll::PollConfig;
use super::publish::{LeapView, Publication, Skew};
use super::sample::Sample;
use super::source::{centre, Kind, Record, SourceConfig, SourceId, SourceReport};
use super::stamps::{RxStamps, SentStamps};
use super::time::{Interval, Nanos, Rate, RefTime, Steady, NS_PER_S};

/// Engine settings: everything the engine needs, complete at construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Poll policy, shared by all sources.
    pub poll: PollConfig,
    /// Per-exchange bound parameters (NTP).
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
    /// A published model reads as `unknown` this long after its
    /// publication unless a newer one replaces it (a dead or frozen
    /// publisher shows as a status change, never a stale narrow interval).
    pub publish_grace: Nanos,
}

impl EngineConfig {
    /// Defaults for a poll interval and `sources` plain NTP sources.
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
            publish_grace: Nanos::from_secs(3),
        }
    }

    /// A source's poll ceiling: a public-pool source settles towards
    /// [`PollConfig::public_pool`]'s `max_poll`, any other keeps `poll`.
    pub fn poll_ceiling(&self, source: &SourceConfig) -> Nanos {
        match source {
            SourceConfig::Ntp {
                public_pool: true, ..
            } => PollConfig::public_pool(self.poll.poll).max_poll,
            _ => self.poll.max_poll,
        }
    }

    /// How old a sample of `source`, polled every `scheduled` while it
    /// answers, may be and still take part: 8 of its own polls (at least
    /// [`EngineConfig::max_sample_age`]; its ceiling, or more when a RATE
    /// kiss slowed it). Per source: a silent named server's samples expire
    /// after 8 of *its* polls, however slowly a pool server beside it is
    /// polled.
    pub fn sample_age_limit(&self, source: &SourceConfig, scheduled: Nanos) -> Nanos {
        self.max_sample_age
            .max(Nanos(self.poll_ceiling(source).max(scheduled).0 * 8))
    }

    /// Stretch `free_run_after` once `sources` is set, so that the status
    /// does not fall to free_running between the polls of the sources a
    /// majority needs: 4 polls of the (2f+1)-th fastest source. A round
    /// that finds no majority still publishes free_running at once; this
    /// only bounds how long `synchronized` lasts without any round.
    pub fn fit_to_sources(&mut self) {
        let mut ceilings: Vec<Nanos> = self.sources.iter().map(|s| self.poll_ceiling(s)).collect();
        ceilings.sort();
        let k = 2 * crate::core::select::tolerated_faults(ceilings.len()) + 1;
        if let Some(c) = ceilings.get(k - 1) {
            self.timetable.free_run_after = self.timetable.free_run_after.max(Nanos(c.0 * 4));
        }
    }
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub enum Action {
    /// Send these bytes to NTP source `source`, then report the stamps read
    /// around `send()` with [`Engine::handle_sent`] (or
    /// [`Engine::send_failed`]).
    Send {
        /// The source.
        source: SourceId,
        /// The request.
        packet: Vec<u8>,
    },
    /// Read one-way source `source` now and hand the reading to
    /// [`Engine::handle_reading`].
    Read {
        /// The source.
        source: SourceId,
    },
    /// Run an NTS key exchange with NTS source `source`'s key-exchange
    /// server: TLS 1.3 with ALPN `ntske/1`, send `request`, read the
    /// response records, export the keys; then report with
    /// [`Engine::handle_key_exchange`] and this `id` (always, success or
    /// failure).
    #[cfg(feature = "nts")]
    KeyExchange {
        /// The source.
        source: SourceId,
        /// Which exchange (a result for another one is ignored).
        id: u64,
        /// The request records.
        request: Vec<u8>,
    },
    /// Call `handle_timer` at this instant.
    WakeAt(Steady),
    /// Publish this: write it to the segment, show it to operators.
    Publish(Box<Publication>),
}

/// Something worth telling an operator, drained by the shell
/// ([`Engine::take_events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A leap second was scheduled, completed or cancelled.
    Leap(LeapEvent),
    /// A timeline interruption dropped the model.
    Interrupted(Interruption),
    /// The system clock (REALTIME) was stepped by about this much.
    RealtimeStep(Nanos),
}

/// A REALTIME change beyond rate and slew limits by more than this is a step.
pub const STEP_THRESHOLD: Nanos = Nanos(1_000_000);
/// The kernel slews REALTIME by at most 500 ppm; our oscillator adds phi_hw.
const REALTIME_SLEW: Rate = Rate::from_ppm(500);
/// A good sample farther than this from the published model is counted as
/// implausible (a source hours off, or one lying about the NTP era).
pub const IMPLAUSIBLE: Nanos = Nanos(3600 * NS_PER_S);

/// The engine.
#[derive(Debug, Clone)]
pub struct Engine {
    cfg: EngineConfig,
    records: Vec<Record>,
    estimator: Estimator,
    /// The UTC centre of the last published model: the era pivot while
    /// there is no model (kept across dropped models).
    last_pivot: Option<RefTime>,
    last_realtime: Option<(Steady, RefTime)>,
    /// The last timeline interruption: no sample from before it is used.
    interrupted_at: Option<Steady>,
    steps: u64,
    leap: LeapState,
    local: LocalState,
    skew: Option<Skew>,
    events: Vec<Event>,
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
            records: cfg
                .sources
                .iter()
                .enumerate()
                .map(|(i, c)| Record::new(SourceId(i), *c, cfg.poll, now))
                .collect(),
            cfg,
            estimator,
            last_pivot: None,
            last_realtime: None,
            interrupted_at: None,
            steps: 0,
            leap,
            local: LocalState::default(),
            skew: None,
            events: Vec::new(),
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

    /// What the model's anchor bound is made of (see [`Model::budget_at`]).
    pub fn budget(&self) -> Option<Sides> {
        self.estimator.budget()
    }

    /// Bound violations counted.
    pub fn violations(&self) -> u64 {
        self.estimator.violations()
    }

    /// The leap-second state.
    pub fn leap_state(&self) -> &LeapState {
        &self.leap
    }

    /// Events since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
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
        self.records.len()
    }

    /// The earliest deadline of any source.
    pub fn poll_timeout(&self) -> Option<Steady> {
        self.records.iter().filter_map(|r| r.deadline()).min()
    }

    /// The era pivot for a sample taken at `at`: the published model's UTC
    /// centre there, else the last model's, else the build pivot.
    fn pivot(&self, at: Steady) -> RefTime {
        match self.estimator.model() {
            Some(m) => centre(m.utc_at(at).interval),
            None => self.last_pivot.unwrap_or(BUILD_PIVOT),
        }
    }

    fn wake(&self, out: &mut Vec<Action>) {
        if let Some(t) = self.poll_timeout() {
            out.push(Action::WakeAt(t));
        }
    }

    /// Timer: ask for what is due and say when to wake next.
    pub fn handle_timer(&mut self, now: Steady, nonce: &mut dyn FnMut() -> u64) -> Vec<Action> {
        let mut out = Vec::new();
        for r in &mut self.records {
            if r.deadline().is_none_or(|d| d > now) {
                continue;
            }
            match &mut r.kind {
                Kind::Ntp(s) => {
                    if let Some(packet) = s.handle_timer(now, nonce()) {
                        out.push(Action::Send {
                            source: r.id,
                            packet: packet.to_vec(),
                        });
                    }
                }
                Kind::Direct(s) => {
                    if s.handle_timer(now) {
                        out.push(Action::Read { source: r.id });
                    }
                }
                #[cfg(feature = "nts")]
                Kind::Nts(s) => {
                    let t = s.handle_timer(now, nonce);
                    if let Some((id, request)) = t.key_exchange {
                        out.push(Action::KeyExchange {
                            source: r.id,
                            id,
                            request,
                        });
                    }
                    if let Some(packet) = t.send {
                        out.push(Action::Send {
                            source: r.id,
                            packet,
                        });
                    }
                }
            }
        }
        self.wake(&mut out);
        out
    }

    /// The shell sent `source`'s request, reading `stamps` around `send()`.
    pub fn handle_sent(&mut self, source: SourceId, stamps: SentStamps) {
        match self.records.get_mut(source.0).map(|r| &mut r.kind) {
            Some(Kind::Ntp(s)) => s.handle_sent(stamps),
            #[cfg(feature = "nts")]
            Some(Kind::Nts(s)) => s.handle_sent(stamps),
            _ => {}
        }
    }

    /// The shell could not send `source`'s request (no address yet, or the
    /// socket refused it).
    pub fn send_failed(&mut self, source: SourceId) {
        match self.records.get_mut(source.0).map(|r| &mut r.kind) {
            Some(Kind::Ntp(s)) => s.send_failed(),
            #[cfg(feature = "nts")]
            Some(Kind::Nts(s)) => s.send_failed(),
            _ => {}
        }
    }

    /// The shell ran key exchange `id` of NTS source `source` at `now`,
    /// which gave `result`; when to wake next (a poll that waited for the
    /// keys goes out at once).
    #[cfg(feature = "nts")]
    pub fn handle_key_exchange(
        &mut self,
        source: SourceId,
        id: u64,
        now: Steady,
        result: Result<super::nts::KeOutcome, super::nts::KeFailure>,
    ) -> Vec<Action> {
        if let Some(Kind::Nts(s)) = self.records.get_mut(source.0).map(|r| &mut r.kind) {
            s.handle_key_exchange(id, now, result);
        }
        let mut out = Vec::new();
        self.wake(&mut out);
        out
    }

    /// A datagram from NTP source `source`, with what the shell read around
    /// `recv()`.
    pub fn handle_reply(
        &mut self,
        source: SourceId,
        bytes: &[u8],
        rx: &RxStamps,
    ) -> Result<Vec<Action>, Rejected> {
        // A suspend since the last local reading voids the request in
        // flight and the model before the reply is looked at.
        if let Some(i) = self.local.observe_boot(rx.boot_offset) {
            self.interrupt(rx.at);
            self.events.push(Event::Interrupted(i));
            return Ok(vec![Action::Publish(Box::new(self.publication(rx.at)))]);
        }
        let pivot = self.pivot(rx.at);
        let mut params = self.cfg.sample;
        let Some(r) = self.records.get_mut(source.0) else {
            return Err(Rejected::Unexpected);
        };
        if r.cfg.dispersion_aged_by_server() {
            params.server_dispersion_rate = Rate(0);
        }
        let sample = match &mut r.kind {
            Kind::Ntp(s) => s.handle_reply(bytes, rx, pivot, &params)?,
            // Authenticated first: a forged reply never gets further.
            #[cfg(feature = "nts")]
            Kind::Nts(s) => s.handle_reply(bytes, rx, pivot, &params)?,
            Kind::Direct(_) => return Err(Rejected::Unexpected),
        };
        // An interleaved reply completes the previous exchange: its sample
        // is a poll old, the round is now.
        Ok(self.accept(source, sample, rx.at))
    }

    /// What the shell read from one-way source `source`.
    pub fn handle_reading(
        &mut self,
        source: SourceId,
        reading: &DirectReading,
    ) -> Result<Vec<Action>, DirectError> {
        let Some(Kind::Direct(s)) = self.records.get_mut(source.0).map(|r| &mut r.kind) else {
            return Err(DirectError::Unexpected);
        };
        let sample = s.handle_reading(reading)?;
        Ok(self.accept(source, sample, reading.at))
    }

    /// A sample from any kind of source: onto the leap-free timescale, into
    /// the source's filter, a selection round, leap bookkeeping, publish.
    fn accept(&mut self, source: SourceId, sample: Sample, now: Steady) -> Vec<Action> {
        let now = now.max(sample.at);
        // A sample from before the last timeline interruption (an
        // interleaved reply completing an older exchange) is on the old
        // timeline: never used, whatever produced it.
        if self.interrupted_at.is_some_and(|t| sample.at < t) {
            return vec![Action::Publish(Box::new(self.publication(now)))];
        }
        let model_iv = self.model().map(|m| m.interval_at(sample.at).interval);
        let base = self.leap.offset();
        let bound = self.leap.to_internal(source.0, sample.bound, model_iv);
        let r = &mut self.records[source.0];
        if let Some(m) = model_iv {
            let gap = (bound.lo - m.hi).max(m.lo - bound.hi);
            if gap > IMPLAUSIBLE {
                r.poller_mut().counters.implausible += 1;
            }
        }
        // The leap mapping moves the bound and may widen it (the hull of
        // both readings).
        r.filter.push(sample.moved_to(bound, base));
        r.leap_bit = sample.leap;
        let round = self.round(now);
        if let Some(m) = round.published {
            self.fix_origin(&m);
            self.estimator.set_utc(self.leap.mapping());
        }
        if let (Ok(sel), Some(m)) = (round.selection, self.estimator.model()) {
            let bits: Vec<Option<Leap>> = self
                .records
                .iter()
                .map(|r| (r.used && !r.falseticker).then_some(r.leap_bit))
                .collect();
            let utc_now = centre(m.utc_at(now).interval);
            if let Some(e) = self.leap.observe(&bits, sel.f, utc_now) {
                self.events.push(Event::Leap(e));
            }
        }
        self.estimator.set_utc(self.leap.mapping());
        if let Some(m) = self.estimator.model() {
            self.last_pivot = Some(centre(m.utc_at(m.anchor).interval));
        }
        let mut out = vec![Action::Publish(Box::new(self.publication(now)))];
        self.wake(&mut out);
        out
    }

    /// At the first model: fix the leap-free origin from its UTC, moving
    /// every internal instant computed on the provisional one.
    fn fix_origin(&mut self, m: &Model) {
        let shift = self.leap.fix_origin(centre(m.utc_at(m.anchor).interval));
        if shift != Nanos(0) {
            self.estimator.shift(shift);
            self.leap.shift(shift);
            for r in &mut self.records {
                r.filter.shift(shift);
            }
        }
    }

    /// Run a selection round at `now` with every source's best aged interval.
    fn round(&mut self, now: Steady) -> Round {
        let ageing = self.estimator.ageing();
        let limits: Vec<Nanos> = self
            .records
            .iter()
            .map(|r| {
                self.cfg
                    .sample_age_limit(&r.cfg, r.poller().scheduled_interval())
            })
            .collect();
        let (intervals, sides): (Vec<Option<Interval>>, Vec<Option<Sides>>) = self
            .records
            .iter()
            .zip(&limits)
            .enumerate()
            .map(|(i, (r, max_age))| {
                let Some((iv, s)) = r.filter.best_at(now, *max_age, &ageing) else {
                    return (None, None);
                };
                let mut sides = Sides::of(SourceId(i), s.centre, s.lo_parts, s.hi_parts);
                ageing.age_sides(&mut sides, Part::SampleAgeing, s.at, now);
                (Some(iv), Some(sides))
            })
            .unzip();
        let round = self.estimator.update_explained(now, &intervals, &sides);
        if round.published.is_some() {
            for ((r, f), iv) in self
                .records
                .iter_mut()
                .zip(&round.falseticker)
                .zip(&intervals)
            {
                r.falseticker = *f;
                r.used = iv.is_some();
            }
            // Synchronized no longer than 2f+1 valid intervals (the count a
            // majority round needs, falsetickers included, as in selection)
            // can still be formed without a new sample: until the (2f+1)-th
            // latest expiry (a round needs a reply; when none comes, the
            // status must not outlive the evidence).
            let mut expiries: Vec<Steady> = self
                .records
                .iter()
                .zip(&limits)
                .filter(|(r, _)| r.used)
                .filter_map(|(r, limit)| r.filter.latest().map(|l| l.at.plus(*limit)))
                .collect();
            expiries.sort_unstable_by(|a, b| b.cmp(a));
            let k = 2 * crate::core::select::tolerated_faults(self.records.len()) + 1;
            let until = expiries.get(k - 1).copied().unwrap_or(now);
            self.estimator.cap_sync_until(until);
        }
        round
    }

    /// A timeline interruption at `now`: drop the model and every sample
    /// from before it. (The shell reports local readings with
    /// [`Engine::handle_local`], which decides when to call this.)
    fn interrupt(&mut self, now: Steady) {
        self.interrupted_at = Some(now);
        self.estimator.interrupt(now);
        for r in &mut self.records {
            r.interrupt(now);
        }
        self.last_realtime = None;
    }

    /// A reading of the host's own clocks: interruptions, the REALTIME skew
    /// and steps, then a publication.
    pub fn handle_local(&mut self, reading: &LocalReading) -> Vec<Action> {
        if let Some(i) = self.local.observe(reading) {
            self.interrupt(reading.at);
            self.events.push(Event::Interrupted(i));
        }
        if let Some(p) = reading.realtime {
            let (step, offset) = self.observe_realtime(p.steady, p.realtime);
            if let Some(by) = step {
                self.events.push(Event::RealtimeStep(by));
            }
            self.skew = offset.map(|(o, u)| Skew {
                offset: o,
                uncertainty: u + Nanos((p.span.0 + 1) / 2),
            });
        }
        vec![Action::Publish(Box::new(self.publication(reading.at)))]
    }

    /// Compare a paired reading of the steady clock and REALTIME with the
    /// model: whether it stepped (and by about how much), and its offset and
    /// uncertainty.
    fn observe_realtime(
        &mut self,
        now: Steady,
        realtime: RefTime,
    ) -> (Option<Nanos>, Option<(Nanos, Nanos)>) {
        let mut step = None;
        if let Some((t0, r0)) = self.last_realtime {
            let steady = now.since(t0);
            let real = realtime - r0;
            let allowed = super::time::rate_spread_ceil(
                Rate(REALTIME_SLEW.0 + self.cfg.assumptions.phi_hw.0),
                steady,
            ) + STEP_THRESHOLD;
            if (real - steady).abs() > allowed {
                step = Some(real - steady);
                self.steps += 1;
            }
        }
        self.last_realtime = Some((now, realtime));
        let offset = self.model().map(|m| {
            let iv = m.utc_at(now).interval;
            (realtime - centre(iv), iv.half_width_ceil())
        });
        (step, offset)
    }

    /// What to publish at `now`.
    pub fn publication(&self, now: Steady) -> Publication {
        let grace = now.plus(self.cfg.publish_grace);
        let model = self.model().map(|m| {
            let mut m = *m;
            m.void_after = m.void_after.min(grace);
            m.sync_until = m.sync_until.min(m.void_after);
            m
        });
        Publication {
            at: now,
            model,
            status: self.status_at(now),
            offs_boot_ns: self.local.boot_offset.map_or(0, |b| b.0),
            clocksource: self.local.clocksource.clone(),
            vmclock_marker: self.local.vmclock_marker,
            violations: self.violations(),
            steps: self.steps,
            interruptions: self.local.counts,
            skew: self.skew,
            sources: self.source_reports(),
            leap: LeapView::of(&self.leap),
            budget: self.estimator.budget(),
        }
    }

    /// Each source's newest sample.
    pub fn latest_samples(&self) -> Vec<Option<Sample>> {
        self.records
            .iter()
            .map(|r| r.filter.latest().copied())
            .collect()
    }

    /// Every source's figures.
    pub fn source_reports(&self) -> Vec<SourceReport> {
        let model = self.model();
        self.records.iter().map(|r| r.report(model)).collect()
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
