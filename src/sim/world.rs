//! The simulated world's event loop: it drives the real [`Engine`] through
//! real packet bytes — requests to [`Server`]s over a faulty network,
//! replies back with userspace and kernel receive stamps — reads one-way
//! sources when asked, reports the host's clocks every 0.5 s as the agent
//! does, writes every publication into a segment, and checks, at random
//! instants, the interval apps would read from it — through
//! [`crate::core::read::interval`], the one function every reader uses —
//! against true time.
//!
//! The event clock is the local steady timeline `x` (what the engine sees);
//! true time `T(x)` is an exact integer function of it
//! ([`super::oscillator::Segment`]), with jumps where the local clocks froze.
//! The system clock REALTIME is `T(x)` plus the steps injected so far.

pub use super::spec::{
    Behaviour, DirectSpec, LeapSpec, LocalEvent, NetSpec, OscSpec, PathSpec, RunStats, Scenario,
    ServerSpec, StampSpec, Strategy,
};

use super::oscillator::Segment;
use super::rng::Rng;
use super::server::{Exchange, Server};
use crate::core::direct::DirectReading;
use crate::core::engine::{Action, Engine, EngineConfig};
use crate::core::leap::Leap;
use crate::core::local::LocalReading;
use crate::core::model::Status;
use crate::core::ntp::packet::Packet;
use crate::core::source::{SourceConfig, SourceId};
use crate::core::stamps::{ClockPair, RxStamps, SentStamps};
use crate::core::time::{end_of_month, Interval, Nanos, RefTime, Steady, NS_PER_S};
use crate::shm::layout::Segment as ShmSegment;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Debug, Clone)]
enum Kind {
    Wake,
    ServerRx {
        src: usize,
        req: [u8; 48],
    },
    /// A reply reaches the host (the kernel stamps it here).
    Arrive {
        src: usize,
        bytes: [u8; 48],
    },
    /// `recv()` returns it to the shell.
    Recv {
        src: usize,
        bytes: [u8; 48],
        kernel: RefTime,
    },
    Check,
    Local(LocalEvent),
    Slope,
    /// The agent's 0.5 s reading of the host's clocks.
    Refresh,
}

/// How often the agent reads the host's clocks and republishes.
const REFRESH_NS: i64 = 500_000_000;

struct Ev {
    x: i64,
    seq: u64,
    kind: Kind,
}
impl PartialEq for Ev {
    fn eq(&self, o: &Self) -> bool {
        (self.x, self.seq) == (o.x, o.seq)
    }
}
impl Eq for Ev {}
impl PartialOrd for Ev {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ev {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.x, self.seq).cmp(&(o.x, o.seq))
    }
}

/// A running world.
pub struct World<'a> {
    pub(super) sc: &'a Scenario,
    rng: Rng,
    seg: Segment,
    queue: BinaryHeap<Reverse<Ev>>,
    seq: u64,
    pub(super) engine: Engine,
    /// Where every publication is written, as the agent writes its file.
    pub(super) segment: Box<ShmSegment>,
    servers: Vec<Server>,
    /// REALTIME minus true time (the steps injected so far).
    sys_offset: i128,
    /// REALTIME sets so far (what a timerfd watcher would count).
    clock_sets: u64,
    replay_buf: Vec<(usize, [u8; 48])>,
    /// The last check: the published model's anchor, the instant, the
    /// half-width.
    pub(super) last_check: Option<(Steady, Steady, i128)>,
    /// BOOTTIME − MONOTONIC as the host would report it (grows across a
    /// suspend).
    pub(super) boot_offset: i64,
    /// The clocksource's name (changes on a switch).
    clocksource: u32,
    pub(super) stats: RunStats,
    pub(super) last_status: Option<Status>,
    start_true: i128,
    rate_limit: i128,
    wander: i128,
    /// The leap instant on the true (UTC-based) timescale.
    pub(super) leap_true: Option<i128>,
    /// Leap-free minus UTC, from the scenario's table.
    pub(super) leapfree_offset: i128,
    honest_width_ns: i128,
    /// The one pending engine wake-up.
    wake_at: Option<i64>,
    /// Per source, the kernel transmit stamp (REALTIME at departure) of
    /// its latest request.
    sent_kernel: Vec<Option<(u32, RefTime)>>,
    /// Per source, datagrams sent (the kernel's transmit-stamp identifiers).
    tx_sends: Vec<u32>,
}

/// The engine configuration a scenario describes: its servers as sources,
/// its leap table.
pub fn engine_config(sc: &Scenario) -> EngineConfig {
    let mut cfg = sc.engine.clone();
    cfg.sources = sc
        .servers
        .iter()
        .map(|s| SourceConfig::Ntp {
            dispersion_aged_by_server: s.declared_aged,
            public_pool: s.public_pool,
        })
        .chain(sc.direct.iter().map(|_| SourceConfig::Direct))
        .collect();
    cfg.leap_table = sc.leap_table.clone();
    cfg.fit_to_sources();
    cfg
}

impl<'a> World<'a> {
    /// A world for `sc` with random seed `seed`.
    pub fn new(sc: &'a Scenario, seed: u64) -> World<'a> {
        let mut rng = Rng::new(seed);
        let mut start_true = 1_800_000_000 * NS_PER_S + rng.below(NS_PER_S as u64) as i128;
        let mut leap_true = None;
        if let Some(l) = &sc.leap {
            // Put a month end (where RFC 5905 leaps happen) near steady
            // instant l.at_ns: true time runs within 200 ppm of steady time,
            // and the world reads the leap instant on the true timescale.
            let month_end = end_of_month(RefTime(start_true + l.at_ns as i128)).0;
            start_true = month_end - l.at_ns as i128;
            leap_true = Some(month_end);
        }
        let r0 = (rng.symmetric(1.0) * sc.osc.initial_ppm * 1e6) as i128;
        let wander = (sc.engine.assumptions.wander.0 as f64 * sc.osc.wander_fraction) as i128;
        let servers = sc
            .servers
            .iter()
            .enumerate()
            .map(|(i, spec)| Server::new(*spec, seed ^ (0xad5e_0000 + i as u64)))
            .collect();
        let n = &sc.net;
        let honest_width_ns =
            (n.out.base_ns + n.out.jitter_mean_ns + n.back.base_ns + n.back.jitter_mean_ns) as i128
                + 20_000;
        let mut w = World {
            sc,
            rng,
            seg: Segment {
                x0: 0,
                t0: start_true,
                r0,
                slope: 0,
            },
            queue: BinaryHeap::new(),
            seq: 0,
            engine: Engine::new(engine_config(sc), Steady(0)),
            segment: Box::default(),
            servers,
            sys_offset: 0,
            clock_sets: 0,
            replay_buf: Vec::new(),
            last_check: None,
            boot_offset: 0,
            clocksource: 0,
            stats: RunStats::default(),
            last_status: None,
            start_true,
            rate_limit: sc.engine.assumptions.phi_hw.0 * 9 / 10,
            wander,
            wake_at: Some(0),
            sent_kernel: vec![None; sc.servers.len()],
            tx_sends: vec![0; sc.servers.len()],
            leap_true,
            leapfree_offset: sc.leap_table.leapfree_offset_at(RefTime(start_true)).0,
            honest_width_ns,
        };
        crate::shm::writer::reset(&w.segment, seed, 0, (0, 0), "");
        w.push(0, Kind::Refresh);
        w.push(0, Kind::Wake);
        w.push(0, Kind::Slope);
        let first_check = w.exp(sc.check_every_ns);
        w.push(first_check, Kind::Check);
        for (at, e) in &sc.events {
            w.push(*at, Kind::Local(*e));
        }
        w
    }

    fn push(&mut self, x: i64, kind: Kind) {
        self.seq += 1;
        self.queue.push(Reverse(Ev {
            x,
            seq: self.seq,
            kind,
        }));
    }

    fn exp(&mut self, mean: i64) -> i64 {
        (self.rng.exponential() * mean as f64) as i64
    }

    pub(super) fn truth(&self, x: i64) -> RefTime {
        RefTime(self.seg.true_at(x))
    }

    /// CLOCK_REALTIME at steady instant `x` (now or in the past).
    fn realtime(&self, x: i64) -> RefTime {
        RefTime(self.seg.true_at(x) + self.sys_offset)
    }

    fn pair(&self, x: i64) -> ClockPair {
        ClockPair {
            steady: Steady(x),
            realtime: self.realtime(x),
            span: Nanos(40),
        }
    }

    fn sets(&self) -> Option<u64> {
        self.sc.stamps.watcher.then_some(self.clock_sets)
    }

    /// Process every event up to steady instant `x` (ns).
    pub fn run_until(&mut self, x: i64) {
        while self.queue.peek().is_some_and(|Reverse(ev)| ev.x <= x) {
            if let Some(Reverse(ev)) = self.queue.pop() {
                self.handle(ev.x, ev.kind);
            }
        }
    }

    /// The engine under test.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Run to the end; return the figures.
    pub fn run(mut self) -> RunStats {
        self.run_until(self.sc.duration_ns);
        self.stats.steps_detected = self.engine.steps();
        self.stats.engine_violations = self.engine.violations();
        self.stats.kernel_stamp_fallbacks = self
            .engine
            .source_reports()
            .iter()
            .map(|r| r.counters.kernel_stamp_fallbacks)
            .sum();
        self.stats.interleaved_replies = self
            .engine
            .source_reports()
            .iter()
            .map(|r| r.counters.interleaved)
            .sum();
        self.stats
    }

    fn perform(&mut self, x: i64, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send { source, packet } => {
                    let pair = self.sc.stamps.kernel.then(|| self.pair(x));
                    // The kernel numbers a socket's datagrams (OPT_ID).
                    let tx_id = self.tx_sends.get(source.0).copied();
                    if let Some(n) = self.tx_sends.get_mut(source.0) {
                        *n = n.wrapping_add(1);
                    }
                    let stamps = SentStamps {
                        at: Steady(x),
                        pair,
                        clock_sets: self.sets(),
                        tx_id: tx_id.filter(|_| self.sc.stamps.kernel),
                    };
                    self.engine.handle_sent(source, stamps);
                    // With kernel stamps, the request leaves the stack a
                    // moment after the userspace stamp, and the kernel
                    // stamps that departure.
                    let departure = if self.sc.stamps.kernel {
                        let lag = self.exp(self.sc.stamps.recv_lag_mean_ns);
                        let d = x + lag;
                        let stamp = self.realtime(d);
                        if let (Some(slot), Some(id)) = (self.sent_kernel.get_mut(source.0), tx_id)
                        {
                            *slot = Some((id, stamp));
                        }
                        d
                    } else {
                        x
                    };
                    if let Ok(req) = <[u8; 48]>::try_from(packet.as_slice()) {
                        self.send(departure, source.0, req);
                    }
                }
                Action::Read { source } => self.read_direct(x, source),
                // The simulated world configures no NTS sources (the NTS
                // machine is tested against its own fake server in
                // `core::nts`): none is ever asked for.
                #[cfg(feature = "nts")]
                Action::KeyExchange { .. } => {}
                Action::WakeAt(t) => {
                    // One pending wake at a time: the earliest asked for.
                    let t = t.0.max(x);
                    if self.wake_at.is_none_or(|w| t < w || w < x) {
                        self.wake_at = Some(t);
                        self.push(t, Kind::Wake);
                    }
                }
                Action::Publish(p) => crate::shm::writer::write(&self.segment, &p, false),
            }
        }
    }

    fn path_delay(&mut self, p: PathSpec) -> i64 {
        let mut d = p.base_ns + self.exp(p.jitter_mean_ns);
        if self.rng.chance(self.sc.net.reorder) {
            d += self.rng.below(50_000_000) as i64;
        }
        d
    }

    fn copies(&mut self) -> usize {
        if self.rng.chance(self.sc.net.loss) {
            0
        } else if self.rng.chance(self.sc.net.duplicate) {
            2
        } else {
            1
        }
    }

    fn send(&mut self, x: i64, src: usize, req: [u8; 48]) {
        for _ in 0..self.copies() {
            let d = self.path_delay(self.sc.net.out);
            self.push(x + d, Kind::ServerRx { src, req });
        }
    }

    fn server_rx(&mut self, x: i64, src: usize, req: [u8; 48]) {
        if self.servers[src].down(x) {
            return;
        }
        let Ok(q) = Packet::parse(&req) else { return };
        let hold = 5_000 + self.rng.below(20_000) as i64;
        // Drawn only for interleaved servers: the other scenarios keep
        // their random sequences.
        let pre = if self.sc.servers[src].interleaved {
            (5_000 + self.rng.below(10_000) as i64).min(hold)
        } else {
            0
        };
        let e = Exchange {
            x,
            hold,
            t2_true: self.seg.true_at(x),
            t3_true: self.seg.true_at(x + hold),
            pre,
            t3_pre_true: self.seg.true_at(x + hold - pre),
            start_true: self.start_true,
            leap_true: self.leap_true,
            honest_width_ns: self.honest_width_ns,
        };
        let replies = self.servers[src].answer(&mut self.rng, &q, &e, self.sc.leap.as_ref(), src);
        for reply in replies {
            for _ in 0..self.copies() {
                let d = self.path_delay(self.sc.net.back);
                self.push(x + hold + d, Kind::Arrive { src, bytes: reply });
            }
        }
    }

    fn handle(&mut self, x: i64, kind: Kind) {
        match kind {
            Kind::Wake => {
                if self.wake_at != Some(x) {
                    return; // superseded by an earlier wake
                }
                self.wake_at = None;
                let rng = &mut self.rng;
                let mut nonce = || rng.next_u64();
                let actions = self.engine.handle_timer(Steady(x), &mut nonce);
                self.perform(x, actions);
            }
            Kind::ServerRx { src, req } => self.server_rx(x, src, req),
            Kind::Arrive { src, bytes } => {
                let kernel = self.realtime(x);
                let lag = self.exp(self.sc.stamps.recv_lag_mean_ns);
                self.push(x + lag, Kind::Recv { src, bytes, kernel });
            }
            Kind::Recv { src, bytes, kernel } => self.recv(x, src, bytes, kernel),
            Kind::Check => {
                self.check(x);
                let next = x + 1 + self.exp(self.sc.check_every_ns);
                self.push(next, Kind::Check);
            }
            Kind::Slope => {
                self.seg = self.seg.rebased(x);
                let r = self.seg.r0;
                let mut s = (self.rng.symmetric(1.0) * self.wander as f64) as i128;
                // steer back inside 90 % of phi_hw
                if (r > self.rate_limit * 8 / 10 && s > 0)
                    || (r < -self.rate_limit * 8 / 10 && s < 0)
                {
                    s = -s;
                }
                self.seg.slope = s;
                let next = x + 1 + self.exp((self.sc.osc.slope_change_s * 1e9) as i64);
                self.push(next, Kind::Slope);
            }
            Kind::Local(e) => self.local(x, e),
            Kind::Refresh => {
                self.refresh(x);
                self.push(x + REFRESH_NS, Kind::Refresh);
            }
        }
    }

    /// The agent's periodic reading of the host's clocks.
    fn refresh(&mut self, x: i64) {
        let r = LocalReading {
            at: Steady(x),
            boot_offset: Some((self.boot_offset, 0)),
            clocksource: Some(format!("cs{}", self.clocksource)),
            vmclock_marker: None,
            realtime: Some(self.pair(x)),
        };
        let actions = self.engine.handle_local(&r);
        self.perform(x, actions);
    }

    /// Read one-way source `source` (asked at steady `x`).
    fn read_direct(&mut self, x: i64, source: SourceId) {
        let Some(spec) = self
            .sc
            .direct
            .get(source.0 - self.sc.servers.len())
            .copied()
        else {
            return;
        };
        let at = x + spec.read_ns;
        let t = self.seg.true_at(at);
        let (leap, utc) = match (self.sc.leap, self.leap_true) {
            (Some(l), Some(lt)) => {
                let applied = l.happens && t >= lt;
                let bit = if t >= lt - l.announce_ns as i128 && t < lt {
                    Leap::Insert
                } else {
                    Leap::None
                };
                (bit, if applied { t - NS_PER_S } else { t })
            }
            _ => (Leap::None, t),
        };
        let c = utc + spec.offset_ns as i128;
        let h = spec.half_width_ns as i128;
        let reading = DirectReading {
            at: Steady(at),
            utc: Interval {
                lo: RefTime(c - h),
                hi: RefTime(c + h),
            },
            leap,
        };
        if let Ok(actions) = self.engine.handle_reading(source, &reading) {
            self.perform(at, actions);
        }
    }

    fn recv(&mut self, x: i64, src: usize, bytes: [u8; 48], kernel: RefTime) {
        let rx = |w: &World, at: i64| RxStamps {
            at: Steady(at),
            kernel: w.sc.stamps.kernel.then_some(kernel),
            pair: w.sc.stamps.kernel.then(|| w.pair(at)),
            clock_sets: w.sets(),
            boot_offset: Some((w.boot_offset, 0)),
            sent_kernel: if w.sc.stamps.kernel {
                w.sent_kernel[src]
            } else {
                None
            },
        };
        if self.rng.chance(self.sc.net.replay) && !self.replay_buf.is_empty() {
            let i = self.rng.below(self.replay_buf.len() as u64) as usize;
            let (s, b) = self.replay_buf[i];
            let _ = self.engine.handle_reply(SourceId(s), &b, &rx(self, x));
        }
        if self.sc.net.replay > 0.0 {
            if self.replay_buf.len() < 64 {
                self.replay_buf.push((src, bytes));
            } else {
                let i = self.rng.below(64) as usize;
                self.replay_buf[i] = (src, bytes);
            }
        }
        let stamps = rx(self, x);
        if let Ok(actions) = self.engine.handle_reply(SourceId(src), &bytes, &stamps) {
            self.perform(x, actions);
        }
    }

    fn step_realtime(&mut self, by: i128) {
        self.sys_offset += by;
        self.clock_sets += 1;
        self.stats.steps_injected += 1;
    }

    fn local(&mut self, x: i64, e: LocalEvent) {
        match e {
            LocalEvent::RealtimeStep(d) => self.step_realtime(d as i128),
            LocalEvent::RealtimeStepStorm(mean, max) => {
                let by = (self.rng.symmetric(1.0) * max as f64) as i128;
                self.step_realtime(by);
                let next = x + 1 + self.exp(mean);
                self.push(next, Kind::Local(e));
            }
            LocalEvent::Suspend(d) | LocalEvent::VmPause(d) => {
                // Local clocks stand still while true time goes on by d.
                self.seg = self.seg.rebased(x);
                self.seg.t0 += d as i128;
                if matches!(e, LocalEvent::Suspend(_)) {
                    // BOOTTIME went on while MONOTONIC stood still: the
                    // agent's next local reading (within REFRESH) or the
                    // next reply shows it.
                    self.boot_offset += d;
                }
            }
            LocalEvent::SuspendStorm(mean, max) => {
                let lo = 1e6f64.ln();
                let hi = (max.max(1_000_000) as f64).ln();
                let d = (lo + self.rng.unit() * (hi - lo)).exp() as i64;
                self.local(x, LocalEvent::Suspend(d));
                let next = x + 1 + self.exp(mean);
                self.push(next, Kind::Local(e));
            }
            LocalEvent::ClocksourceSwitch(ppm) => {
                self.seg = self.seg.rebased(x);
                self.seg.r0 =
                    (self.seg.r0 + (ppm * 1e6) as i128).clamp(-self.rate_limit, self.rate_limit);
                self.clocksource += 1;
                self.refresh(x);
            }
            LocalEvent::FrequencyStep(ppm) => {
                self.seg = self.seg.rebased(x);
                self.seg.r0 += (ppm * 1e6) as i128;
            }
        }
    }
}

/// Run `sc` with `seed`.
pub fn run(sc: &Scenario, seed: u64) -> RunStats {
    World::new(sc, seed).run()
}
