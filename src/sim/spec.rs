//! What a simulated world is made of: servers (honest, lying, Byzantine), the
//! network, the local oscillator, local clock events and leap seconds — and
//! the figures one run produces. Plain data; [`super::world`] runs it.

use crate::core::engine::EngineConfig;
use crate::core::leap::LeapTable;
use crate::core::model::Status;

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
    /// A Byzantine server: the strategy chooses every field of every reply
    /// (see [`super::adversary`]).
    Byzantine(Strategy),
}

/// How a Byzantine server picks its replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Every field random: timestamps in any era or near truth by a random
    /// power of two, reference time, root delay and dispersion, precision,
    /// stratum, leap bits; sometimes silence, sometimes two different
    /// replies to one request, sometimes an old reply again.
    Random,
    /// Truth plus a growing multiple of (2^31 − 10^8) s: walks the NTP era
    /// forward (the review's attack), or backward.
    EraWalk {
        /// Forward in time (else backward).
        forward: bool,
    },
    /// Truth plus or minus half an era (2^31 s), alternately.
    HalfEra,
    /// Offset by `permille`/1000 of an honest interval's width with a tiny
    /// advertised root distance: overlaps the honest intervals while
    /// excluding true time.
    Overlap {
        /// Fraction of the honest width, in thousandths.
        permille: i64,
    },
    /// Honest time with leap bits that lie: insertions and deletions
    /// announced at random, early, or never withdrawn.
    LeapBits,
    /// Answers with its own stale time (an old reply's timestamps, fresh
    /// nonce), a random number of polls old.
    Stale,
    /// A different one of the above on every reply.
    Mixed,
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
    /// (`SourceConfig::dispersion_aged_by_server`): a stated assumption that
    /// is only true when `ages_dispersion` is.
    pub declared_aged: bool,
    /// A server of the public NTP pool: polled by the pool's guidance
    /// (`SourceConfig::Ntp::public_pool`).
    pub public_pool: bool,
    /// Answers interleaved requests as chronyd does: its basic transmit
    /// timestamp is read before it sends (here 5 to 15 µs before the reply
    /// leaves), its interleaved one is the true departure of the previous
    /// reply.
    pub interleaved: bool,
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
            public_pool: false,
            interleaved: false,
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
            public_pool: false,
            interleaved: false,
        }
    }
    /// A Byzantine server with `strategy`.
    pub const fn byzantine(strategy: Strategy) -> ServerSpec {
        ServerSpec::liar(Behaviour::Byzantine(strategy))
    }
}

/// A one-way source (the second source kind, as a PTP hardware clock read
/// against the steady clock would be): read when the engine asks, it hands
/// over a bound directly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DirectSpec {
    /// Half-width of the bound it reports (ns).
    pub half_width_ns: i64,
    /// How long a read takes (ns): the bound is for the instant it ends.
    pub read_ns: i64,
    /// Its bound is offset by this from true time (ns): inside the
    /// half-width for an honest source, outside it for a lying one.
    pub offset_ns: i64,
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

/// The shell's receive path: kernel stamps and how clock sets are seen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StampSpec {
    /// The shell passes kernel receive stamps (REALTIME at arrival) with
    /// REALTIME/RAW pairs, as the agent does.
    pub kernel: bool,
    /// The shell has a watcher that counts REALTIME sets (timerfd).
    pub watcher: bool,
    /// Mean delay between a datagram's arrival and `recv()` returning (ns).
    pub recv_lag_mean_ns: i64,
}

impl StampSpec {
    /// Userspace stamps only.
    pub const fn userspace() -> StampSpec {
        StampSpec {
            kernel: false,
            watcher: false,
            recv_lag_mean_ns: 0,
        }
    }
}

/// Local clock events, at steady instants (ns).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LocalEvent {
    /// System REALTIME stepped by this much (ns).
    RealtimeStep(i64),
    /// Steps of REALTIME at random instants, about this many ns apart, each
    /// of a random size up to +-the second value (ns), for the rest of the run.
    RealtimeStepStorm(i64, i64),
    /// Suspend: RAW freezes for this long (ns); the shell detects it
    /// (BOOTTIME - MONOTONIC changed) at its next local reading, or at the
    /// next reply (each reply carries the boot offset read with it).
    Suspend(i64),
    /// Suspends at random instants, about this many ns apart, each of a
    /// random length between 1 ms and the second value (ns, log-uniform),
    /// for the rest of the run: many land while an exchange is in flight
    /// or between a reply and the next local reading.
    SuspendStorm(i64, i64),
    /// VM pause: every guest clock freezes for this long (ns); undetectable
    /// locally.
    VmPause(i64),
    /// Clocksource switch: the rate jumps by this much (ppm); the shell sees
    /// the clocksource change and interrupts the engine.
    ClocksourceSwitch(f64),
    /// The rate jumps by this much (ppm) unannounced: beyond D.
    FrequencyStep(f64),
}

/// A leap second at the end of a UTC month.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeapSpec {
    /// Steady instant (ns) near which true time reaches the month end where
    /// the leap happens.
    pub at_ns: i64,
    /// Servers announce it this long before (ns); may be days.
    pub announce_ns: i64,
    /// A server that applies it late, and by how much (ns).
    pub late: Option<(usize, i64)>,
    /// A server that announces a deletion nobody else does.
    pub bogus_announcer: Option<usize>,
    /// Whether the leap happens: `false` is an announcement that is
    /// withdrawn at the instant without the clocks stepping.
    pub happens: bool,
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
    /// One-way sources, configured after the servers.
    pub direct: Vec<DirectSpec>,
    /// Network.
    pub net: NetSpec,
    /// Oscillator.
    pub osc: OscSpec,
    /// The shell's receive stamps.
    pub stamps: StampSpec,
    /// Local events at steady instants (ns).
    pub events: Vec<(i64, LocalEvent)>,
    /// Simulated duration (ns).
    pub duration_ns: i64,
    /// Engine configuration (its `sources` are filled from `servers`, its
    /// `leap_table` from `leap_table`).
    pub engine: EngineConfig,
    /// Mean time between checks (ns).
    pub check_every_ns: i64,
    /// Instant of the fault that must be detected (outside assumptions).
    pub fault_at_ns: Option<i64>,
    /// A leap second, if any.
    pub leap: Option<LeapSpec>,
    /// The host's leap-second table (the leap-free origin); the world's
    /// truth is UTC-based, its leap-free truth is UTC plus the table's
    /// offset at the start.
    pub leap_table: LeapTable,
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
    /// Violations while the status was synchronized or free-running (the
    /// statuses a reader acts on).
    pub violations_usable: u64,
    /// Of the synchronized ones, how many came after the fault had been
    /// detected once (the status went back to synchronized on a model that
    /// still misses).
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
    /// Replies whose kernel stamp the core refused (a set in between).
    pub kernel_stamp_fallbacks: u64,
    /// Interleaved replies (samples completed with a server's departure).
    pub interleaved_replies: u64,
    /// Reads the default (strict) reader refused: the host slept since the
    /// segment was written.
    pub refused_suspended: u64,
    /// Of those, how many a fast reader (no suspend check) would have got
    /// wrong (the documented price of `Clock::open_fast`).
    pub fast_only_violations: u64,
    /// Segment reads that failed other than for want of a model (mid-write,
    /// unrepresentable).
    pub read_errors: u64,
    /// Checks of the ε budget against the half-width read.
    pub budget_checks: u64,
    /// Of those, how many did not add up (or had a negative part).
    pub budget_mismatches: u64,
}
