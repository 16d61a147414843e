//! The simulated world: true time, a local oscillator, NTP servers (honest
//! and lying), a faulty network, and local clock events. It drives the real
//! [`Engine`] through real packet bytes, and checks every published model at
//! random instants against true time.
//!
//! The event clock is the local steady timeline `x` (what the engine sees);
//! true time `T(x)` is an exact integer function of it, piecewise quadratic
//! (a rate that changes linearly with a bounded slope), with jumps where the
//! local clocks froze (suspend, VM pause).

use super::rng::Rng;
use crate::core::engine::{Action, Engine, EngineConfig};
use crate::core::model::{Model, Status};
use crate::core::packet::{nanos_to_short_ceil, Leap, NtpTimestamp, Packet, MODE_SERVER};
use crate::core::select::select;
use crate::core::time::{Interval, Nanos, RefTime, Steady, NS_PER_S, RATE_ONE};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// How a server behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Behaviour {
    /// Within its advertised root distance. `ntpd_style`: sends its root
    /// dispersion unaged, with a reference time that gets old between its
    /// own updates (its error grows at up to 10 ppm meanwhile).
    Honest {
        /// Send dispersion unaged.
        ntpd_style: bool,
    },
    /// Honest at the very edge of the ntpd model: error +0.95 x its root
    /// distance right after each update (every 64 s), then growing at +10 ppm
    /// while its dispersion is sent unaged. Within Lambda + Phi_s * age only
    /// because skewd ages the dispersion itself.
    NtpdWorstCase,
    /// Constant offset (ns), advertising a tiny root distance.
    Constant(i64),
    /// Offset growing at this rate (ppb) from the start.
    Drifting(i64),
    /// A fresh random offset in +-this (ns) on every reply.
    Random(i64),
    /// Offset by about one honest interval width, so its interval overlaps
    /// the honest ones while excluding true time.
    Overlapping,
    /// Honest until `at` (steady, ns), then offset by `by` ns.
    StepsAt {
        /// When (steady ns).
        at: i64,
        /// Offset after it (ns).
        by: i64,
    },
}

/// One simulated server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerSpec {
    /// Behaviour.
    pub behaviour: Behaviour,
    /// Advertised root delay (ns).
    pub root_delay_ns: i64,
    /// Advertised root dispersion (ns).
    pub root_dispersion_ns: i64,
    /// Precision exponent.
    pub precision: i8,
    /// Stratum.
    pub stratum: u8,
    /// Down (no replies) during these steady windows (ns).
    pub down: &'static [(i64, i64)],
    /// The server ages its root dispersion itself before sending, at its own
    /// drift bound of 10 ppm (chrony-style), so the advertised root distance
    /// holds at transmit.
    pub ages_dispersion: bool,
    /// The engine is told this server ages its dispersion itself
    /// (`Engine::set_dispersion_aged_by_server`): a stated assumption that is
    /// only true when `ages_dispersion` is.
    pub declared_aged: bool,
}

impl ServerSpec {
    /// An honest stratum-1 server with the given root dispersion.
    pub const fn honest(root_dispersion_ns: i64) -> ServerSpec {
        ServerSpec {
            behaviour: Behaviour::Honest { ntpd_style: false },
            root_delay_ns: 0,
            root_dispersion_ns,
            precision: -23,
            stratum: 1,
            down: &[],
            ages_dispersion: false,
            declared_aged: false,
        }
    }
    /// A liar advertising a tiny root distance.
    pub const fn liar(behaviour: Behaviour) -> ServerSpec {
        ServerSpec {
            behaviour,
            root_delay_ns: 0,
            root_dispersion_ns: 1_000,
            precision: -23,
            stratum: 1,
            down: &[],
            ages_dispersion: false,
            declared_aged: false,
        }
    }
}

/// One direction of the network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathSpec {
    /// Minimum one-way delay (ns).
    pub base_ns: i64,
    /// Mean of the exponential queueing delay on top (ns).
    pub jitter_mean_ns: i64,
}

/// The network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetSpec {
    /// Client to server.
    pub out: PathSpec,
    /// Server to client.
    pub back: PathSpec,
    /// Probability a packet is lost.
    pub loss: f64,
    /// Probability a packet is delivered twice.
    pub duplicate: f64,
    /// Probability a packet is held back a random extra 0..50 ms (reordering).
    pub reorder: f64,
    /// Probability an old reply is replayed to the client.
    pub replay: f64,
}

impl NetSpec {
    /// A clean LAN: 20 us + exp(30 us) each way.
    pub const fn lan() -> NetSpec {
        NetSpec {
            out: PathSpec {
                base_ns: 20_000,
                jitter_mean_ns: 30_000,
            },
            back: PathSpec {
                base_ns: 20_000,
                jitter_mean_ns: 30_000,
            },
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            replay: 0.0,
        }
    }
}

/// The local oscillator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OscSpec {
    /// Initial rate error is drawn from +-this (ppm).
    pub initial_ppm: f64,
    /// Largest rate slope used, as a fraction of the assumed D.
    pub wander_fraction: f64,
    /// Mean time between slope changes (s).
    pub slope_change_s: f64,
}

/// Local clock events, at steady instants (ns).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LocalEvent {
    /// System REALTIME stepped by this much (ns).
    RealtimeStep(i64),
    /// Suspend: RAW freezes for this long (ns); the shell detects it
    /// (BOOTTIME - MONOTONIC changed) and interrupts the engine.
    Suspend(i64),
    /// VM pause: every guest clock freezes for this long (ns); undetectable
    /// locally.
    VmPause(i64),
    /// Clocksource switch: the rate jumps by this much (ppm); the shell sees
    /// the clocksource change and interrupts the engine.
    ClocksourceSwitch(f64),
    /// The rate jumps by this much (ppm) unannounced: beyond D.
    FrequencyStep(f64),
}

/// A leap second inserted at the end of a UTC day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeapSpec {
    /// Steady instant (ns) of the UTC midnight where the leap happens.
    pub at_ns: i64,
    /// Servers announce it this long before (ns).
    pub announce_ns: i64,
    /// A server that applies it late, and by how much (ns).
    pub late: Option<(usize, i64)>,
    /// A server that announces a deletion nobody else does.
    pub bogus_announcer: Option<usize>,
}

/// A whole scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Name.
    pub name: &'static str,
    /// Whether the scenario stays inside the stated assumptions.
    pub within_assumptions: bool,
    /// Servers.
    pub servers: Vec<ServerSpec>,
    /// Network.
    pub net: NetSpec,
    /// Oscillator.
    pub osc: OscSpec,
    /// Local events at steady instants (ns).
    pub events: Vec<(i64, LocalEvent)>,
    /// Simulated duration (ns).
    pub duration_ns: i64,
    /// Engine configuration.
    pub engine: EngineConfig,
    /// Mean time between checks (ns).
    pub check_every_ns: i64,
    /// Instant of the fault that must be detected (outside assumptions).
    pub fault_at_ns: Option<i64>,
    /// A leap second, if any.
    pub leap: Option<LeapSpec>,
    /// Leap-free minus UTC at start, as the host's leap-second list gives it
    /// (`Engine::set_leap_offset`); the world's truth is UTC-based.
    pub leapfree_offset_ns: i128,
}

/// Figures of one run.
#[derive(Debug, Clone, Default)]
pub struct RunStats {
    /// Checked intervals.
    pub intervals: u64,
    /// Intervals that did not contain true time.
    pub violations: u64,
    /// Violations while the status was synchronized.
    pub violations_synchronized: u64,
    /// Of those, how many came after the fault had been detected once (the
    /// status went back to synchronized on a model that still misses).
    pub violations_synchronized_after_detection: u64,
    /// Half-widths at synchronized checks (ns).
    pub eps_sync: Vec<i64>,
    /// Half-widths of the floor hull at the same checks (ns).
    pub floor: Vec<i64>,
    /// Checks where the interval narrowed with no new model published.
    pub shrunk_without_evidence: u64,
    /// Status at each change: (steady ns, status).
    pub transitions: Vec<(i64, Status)>,
    /// Delay from the fault to the first status other than synchronized.
    pub detection_delay_ns: Option<i64>,
    /// REALTIME steps detected by the engine.
    pub steps_detected: u64,
    /// REALTIME steps injected.
    pub steps_injected: u64,
    /// Bound violations the engine counted itself.
    pub engine_violations: u64,
    /// Checks per status.
    pub by_status: [u64; 4],
}

#[derive(Debug, Clone)]
enum Kind {
    Wake,
    ServerRx {
        src: usize,
        req: [u8; 48],
        sent_at: Steady,
    },
    Deliver {
        src: usize,
        bytes: [u8; 48],
        sent_at: Steady,
    },
    Check,
    Local(LocalEvent),
    Slope,
}

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

/// True time as a function of steady time: rate r(x) = r0 + s (x - x0).
#[derive(Debug, Clone, Copy)]
struct Segment {
    x0: i64,
    t0: i128,
    r0: i128,    // parts per 1e12
    slope: i128, // parts per 1e12 per second
}

impl Segment {
    fn true_at(&self, x: i64) -> i128 {
        let d = (x - self.x0) as i128;
        self.t0
            + d
            + (self.r0 * d).div_euclid(RATE_ONE)
            + (self.slope * d * d).div_euclid(2 * RATE_ONE * NS_PER_S)
    }
    fn rate_at(&self, x: i64) -> i128 {
        self.r0 + self.slope * (x - self.x0) as i128 / NS_PER_S
    }
}

struct Server {
    spec: ServerSpec,
    /// Honest servers' error at their last update, and drift since (ppb).
    err0: i64,
    drift_ppb: i64,
    updated_at: i128,
}

/// A running world.
pub struct World<'a> {
    sc: &'a Scenario,
    rng: Rng,
    seg: Segment,
    queue: BinaryHeap<Reverse<Ev>>,
    seq: u64,
    engine: Engine,
    published: Option<Model>,
    published_seq: u64,
    servers: Vec<Server>,
    sys_offset: i128,
    replay_buf: Vec<(usize, [u8; 48], Steady)>,
    last_check: Option<(u64, Steady, i128)>,
    stats: RunStats,
    last_status: Option<Status>,
    start_true: i128,
    rate_limit: i128,
    wander: i128,
    /// The leap instant on the true (leap-free) timescale.
    leap_true: Option<i128>,
    /// The one pending engine wake-up.
    wake_at: Option<i64>,
}

impl<'a> World<'a> {
    /// A world for `sc` with random seed `seed`.
    pub fn new(sc: &'a Scenario, seed: u64) -> World<'a> {
        let mut rng = Rng::new(seed);
        let mut start_true = 1_800_000_000 * NS_PER_S + rng.below(NS_PER_S as u64) as i128;
        if let Some(l) = &sc.leap {
            // Put a UTC midnight at steady instant l.at_ns (true time runs
            // within 200 ppm of steady time: align to within a few ms, then
            // the world reads the leap instant from T(at_ns) exactly).
            let day = 86_400 * NS_PER_S;
            let midnight = (start_true.div_euclid(day) + 1) * day;
            start_true = midnight - l.at_ns as i128;
        }
        let r0 = (rng.symmetric(1.0) * sc.osc.initial_ppm * 1e6) as i128;
        let wander = (sc.engine.assumptions.wander.0 as f64 * sc.osc.wander_fraction) as i128;
        let seg = Segment {
            x0: 0,
            t0: start_true,
            r0,
            slope: 0,
        };
        let servers = sc
            .servers
            .iter()
            .map(|spec| Server {
                spec: *spec,
                err0: 0,
                drift_ppb: 0,
                updated_at: i128::MIN / 4,
            })
            .collect();
        let mut engine = Engine::new(sc.engine, sc.servers.len(), Steady(0));
        engine.set_leap_offset(Nanos(sc.leapfree_offset_ns));
        for (i, spec) in sc.servers.iter().enumerate() {
            engine.set_dispersion_aged_by_server(i, spec.declared_aged);
        }
        let mut w = World {
            sc,
            rng,
            seg,
            queue: BinaryHeap::new(),
            seq: 0,
            engine,
            published: None,
            published_seq: 0,
            servers,
            sys_offset: 0,
            replay_buf: Vec::new(),
            last_check: None,
            stats: RunStats::default(),
            last_status: None,
            start_true,
            rate_limit: sc.engine.assumptions.phi_hw.0 * 9 / 10,
            wander,
            wake_at: Some(0),
            leap_true: sc.leap.map(|_| {
                let day = 86_400 * NS_PER_S;
                (start_true.div_euclid(day) + 1) * day
            }),
        };
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

    fn truth(&self, x: i64) -> RefTime {
        RefTime(self.seg.true_at(x))
    }

    /// Move the oscillator's segment start to `x` (keeps T(x) continuous).
    fn rebase(&mut self, x: i64) {
        let t = self.seg.true_at(x);
        let r = self.seg.rate_at(x);
        self.seg = Segment {
            x0: x,
            t0: t,
            r0: r,
            slope: self.seg.slope,
        };
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
        self.stats
    }

    fn perform(&mut self, x: i64, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send { source, packet } => self.send(x, source, packet),
                Action::WakeAt(t) => {
                    // One pending wake at a time: the earliest asked for.
                    let t = t.0.max(x);
                    if self.wake_at.is_none_or(|w| t < w || w < x) {
                        self.wake_at = Some(t);
                        self.push(t, Kind::Wake);
                    }
                }
                Action::Publish(m) => {
                    self.published = m;
                    self.published_seq += 1;
                }
            }
        }
    }

    fn server_down(&self, src: usize, x: i64) -> bool {
        self.servers[src]
            .spec
            .down
            .iter()
            .any(|&(a, b)| a <= x && x < b)
    }

    fn path_delay(&mut self, p: PathSpec) -> i64 {
        let mut d = p.base_ns + self.exp(p.jitter_mean_ns);
        if self.rng.chance(self.sc.net.reorder) {
            d += self.rng.below(50_000_000) as i64;
        }
        d
    }

    fn send(&mut self, x: i64, src: usize, req: [u8; 48]) {
        if self.rng.chance(self.sc.net.loss) {
            return;
        }
        let copies = if self.rng.chance(self.sc.net.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let d = self.path_delay(self.sc.net.out);
            self.push(
                x + d,
                Kind::ServerRx {
                    src,
                    req,
                    sent_at: Steady(x),
                },
            );
        }
    }

    /// The server's clock reading at true time `t`, and whether honest-style
    /// ageing applies.
    fn server_time(&mut self, src: usize, x: i64, t: i128) -> (i128, i128) {
        let s = &self.servers[src];
        let lambda = s.spec.root_delay_ns as i128 / 2 + s.spec.root_dispersion_ns as i128;
        match s.spec.behaviour {
            Behaviour::Honest { ntpd_style } => {
                let period = if ntpd_style { 64 * NS_PER_S } else { NS_PER_S };
                if t - s.updated_at >= period {
                    // The server re-synchronises: a new error within 90 % of
                    // its root distance, and a new small drift.
                    let e = (self.rng.symmetric(0.9) * lambda as f64) as i64;
                    let dr = if ntpd_style {
                        (self.rng.symmetric(1.0) * 10_000.0) as i64
                    } else {
                        0
                    };
                    let s = &mut self.servers[src];
                    s.err0 = e;
                    s.drift_ppb = dr;
                    s.updated_at = t;
                }
                let s = &self.servers[src];
                let err = s.err0 as i128 + s.drift_ppb as i128 * (t - s.updated_at) / NS_PER_S;
                (t + err, s.updated_at)
            }
            Behaviour::NtpdWorstCase => {
                let period = 64 * NS_PER_S;
                if t - s.updated_at >= period {
                    let s = &mut self.servers[src];
                    s.updated_at = t - t.rem_euclid(period);
                }
                let s = &self.servers[src];
                let err = lambda * 95 / 100 + 10 * (t - s.updated_at) / 1_000_000;
                (t + err, s.updated_at)
            }
            Behaviour::Constant(o) => (t + o as i128, t),
            Behaviour::Drifting(ppb) => (t + ppb as i128 * (t - self.start_true) / NS_PER_S, t),
            Behaviour::Random(r) => (t + (self.rng.symmetric(1.0) * r as f64) as i128, t),
            Behaviour::Overlapping => {
                // Just outside true time, by about one honest half-interval
                // (delay ~100 us): overlaps honest intervals, excludes truth.
                (t + 70_000, t)
            }
            Behaviour::StepsAt { at, by } => {
                let o = if x >= at { by as i128 } else { 0 };
                (t + o, t)
            }
        }
    }

    /// A server's leap handling: its readings `t2`, `t3` on the leap-free
    /// timescale become UTC (one second behind once it applied the leap);
    /// the leap bit is set while it is announced and not yet applied.
    fn apply_leap(&self, src: usize, t2: i128, t3: i128) -> (Leap, i128, i128) {
        let (Some(spec), Some(at)) = (self.sc.leap, self.leap_true) else {
            return (Leap::None, t2, t3);
        };
        let late = spec.late.filter(|l| l.0 == src).map_or(0, |l| l.1 as i128);
        let applies_at = at + late;
        let utc = |t: i128| if t >= applies_at { t - NS_PER_S } else { t };
        let bit = if spec.bogus_announcer == Some(src) {
            Leap::Delete // a wrong leap bit; its time is right
        } else if t3 >= at - spec.announce_ns as i128 && t3 < applies_at {
            Leap::Insert
        } else {
            Leap::None
        };
        (bit, utc(t2), utc(t3))
    }

    fn fuzz(&mut self, t: i128, precision: i8) -> NtpTimestamp {
        let rho = crate::core::packet::log2_to_nanos_ceil(precision).0.max(1);
        let f = self.rng.below(rho as u64) as i128;
        NtpTimestamp::from_ref(RefTime(t - rho / 2 + f))
    }

    fn server_rx(&mut self, x: i64, src: usize, req: [u8; 48], sent_at: Steady) {
        if self.server_down(src, x) {
            return;
        }
        let Ok(q) = Packet::parse(&req) else { return };
        let hold = 5_000 + self.rng.below(20_000) as i64;
        let t2_true = self.seg.true_at(x);
        let t3_true = self.seg.true_at(x + hold);
        let (t2, _) = self.server_time(src, x, t2_true);
        let (t3, reftime) = self.server_time(src, x + hold, t3_true);
        let spec = self.servers[src].spec;
        let (leap_bit, t2, t3) = self.apply_leap(src, t2, t3);
        let (t2f, t3f) = (self.fuzz(t2, spec.precision), self.fuzz(t3, spec.precision));
        let reply = Packet {
            leap: leap_bit,
            version: 4,
            mode: MODE_SERVER,
            stratum: spec.stratum,
            poll: 4,
            precision: spec.precision,
            root_delay: nanos_to_short_ceil(Nanos(spec.root_delay_ns as i128)),
            root_dispersion: nanos_to_short_ceil(Nanos(
                spec.root_dispersion_ns as i128
                    + if spec.ages_dispersion {
                        // its own drift bound (10 ppm) since the reference
                        // time, rounded up, as chrony ages by its skew
                        (10 * (t3 - reftime.min(t3)) + 999_999) / 1_000_000
                    } else {
                        0
                    },
            )),
            ref_id: *b"SIM\0",
            reference: NtpTimestamp::from_ref(RefTime(reftime.min(t3))),
            origin: q.transmit,
            receive: t2f,
            transmit: t3f,
        }
        .serialize();
        if self.rng.chance(self.sc.net.loss) {
            return;
        }
        let copies = if self.rng.chance(self.sc.net.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let d = self.path_delay(self.sc.net.back);
            self.push(
                x + hold + d,
                Kind::Deliver {
                    src,
                    bytes: reply,
                    sent_at,
                },
            );
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
            Kind::ServerRx { src, req, sent_at } => self.server_rx(x, src, req, sent_at),
            Kind::Deliver {
                src,
                bytes,
                sent_at,
            } => {
                if self.rng.chance(self.sc.net.replay) && !self.replay_buf.is_empty() {
                    let i = self.rng.below(self.replay_buf.len() as u64) as usize;
                    let (s, b, t) = self.replay_buf[i];
                    let _ = self.engine.handle_reply(s, &b, t, Steady(x));
                }
                if self.sc.net.replay > 0.0 {
                    if self.replay_buf.len() < 64 {
                        self.replay_buf.push((src, bytes, sent_at));
                    } else {
                        let i = self.rng.below(64) as usize;
                        self.replay_buf[i] = (src, bytes, sent_at);
                    }
                }
                if let Ok(actions) = self.engine.handle_reply(src, &bytes, sent_at, Steady(x)) {
                    self.perform(x, actions);
                }
            }
            Kind::Check => {
                self.check(x);
                let next = x + 1 + self.exp(self.sc.check_every_ns);
                self.push(next, Kind::Check);
            }
            Kind::Slope => {
                self.rebase(x);
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
        }
    }

    fn local(&mut self, x: i64, e: LocalEvent) {
        match e {
            LocalEvent::RealtimeStep(d) => {
                self.sys_offset += d as i128;
                self.stats.steps_injected += 1;
            }
            LocalEvent::Suspend(d) | LocalEvent::VmPause(d) => {
                // Local clocks stand still while true time goes on by d.
                self.rebase(x);
                self.seg.t0 += d as i128;
                if matches!(e, LocalEvent::Suspend(_)) {
                    let actions = self.engine.interrupt(Steady(x));
                    self.perform(x, actions);
                }
            }
            LocalEvent::ClocksourceSwitch(ppm) => {
                self.rebase(x);
                self.seg.r0 =
                    (self.seg.r0 + (ppm * 1e6) as i128).clamp(-self.rate_limit, self.rate_limit);
                let actions = self.engine.interrupt(Steady(x));
                self.perform(x, actions);
            }
            LocalEvent::FrequencyStep(ppm) => {
                self.rebase(x);
                self.seg.r0 += (ppm * 1e6) as i128;
            }
        }
    }

    fn check(&mut self, x: i64) {
        let now = Steady(x);
        let truth = self.truth(x);
        let status = self.engine.status_at(now);
        let _ = self
            .engine
            .observe_realtime(now, RefTime(truth.0 + self.sys_offset));
        if self.last_status != Some(status) {
            self.stats.transitions.push((x, status));
            self.last_status = Some(status);
        }
        if let Some(fault) = self.sc.fault_at_ns {
            if x >= fault
                && status != Status::Synchronized
                && self.stats.detection_delay_ns.is_none()
            {
                self.stats.detection_delay_ns = Some(x - fault);
            }
        }
        let Some(model) = self.published else {
            self.last_check = None;
            return;
        };
        let reading = model.interval_at(now);
        let iv = reading.interval;
        self.stats.intervals += 1;
        self.stats.by_status[status as usize] += 1;
        let utc_ok = match self.leap_true {
            Some(at) => {
                let truth_utc = if truth.0 >= at {
                    truth.0 - NS_PER_S
                } else {
                    truth.0
                };
                model.utc_at(now).interval.contains(RefTime(truth_utc))
            }
            None => true,
        };
        let leapfree_truth = RefTime(truth.0 + self.sc.leapfree_offset_ns);
        if !iv.contains(leapfree_truth) || !utc_ok {
            self.stats.violations += 1;
            if status == Status::Synchronized {
                self.stats.violations_synchronized += 1;
                if self.stats.detection_delay_ns.is_some() {
                    self.stats.violations_synchronized_after_detection += 1;
                }
            }
        }
        let eps = iv.half_width_ceil().0;
        if let Some((seq, t, e)) = self.last_check {
            if seq == self.published_seq && t <= now && eps < e {
                self.stats.shrunk_without_evidence += 1;
            }
        }
        self.last_check = Some((self.published_seq, now, eps));
        if status == Status::Synchronized {
            self.stats.eps_sync.push(eps as i64);
            if let Some(fl) = self.floor_at(x) {
                self.stats.floor.push(fl);
            }
        }
    }

    /// Half-width of the fault-tolerant hull of each source's freshest sample
    /// alone, carried to `x` with the exact true elapsed time (no ageing).
    fn floor_at(&self, x: i64) -> Option<i64> {
        let t = self.truth(x);
        let ivs: Vec<Interval> = self
            .engine
            .latest_samples()
            .into_iter()
            .flatten()
            .map(|s| {
                let moved = t - self.truth(s.at.0);
                Interval {
                    lo: s.bound.lo + moved,
                    hi: s.bound.hi + moved,
                }
            })
            .collect();
        select(&ivs, self.sc.servers.len())
            .ok()
            .map(|s| s.bound.half_width_ceil().0 as i64)
    }
}

/// Run `sc` with `seed`.
pub fn run(sc: &Scenario, seed: u64) -> RunStats {
    World::new(sc, seed).run()
}
