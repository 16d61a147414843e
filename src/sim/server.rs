//! Simulated NTP servers: what each one's clock reads at a true instant
//! (honest within its root distance, ntpd-style ageing, the classic liars),
//! its leap-second handling, and the reply it sends — or, for a Byzantine
//! server, whatever its [`Adversary`] chooses.

use super::adversary::Adversary;
use super::rng::Rng;
use super::spec::{Behaviour, LeapSpec, ServerSpec};
use crate::core::ntp::packet::MODE_SERVER;
use crate::core::ntp::packet::{
    log2_to_nanos_ceil, nanos_to_short_ceil, Leap, NtpTimestamp, Packet,
};
use crate::core::time::{Nanos, RefTime, NS_PER_S};

/// One simulated server and its state.
#[derive(Debug, Clone)]
pub struct Server {
    /// What it is.
    pub spec: ServerSpec,
    /// Honest servers' error at their last update, and drift since (ppb).
    err0: i64,
    drift_ppb: i64,
    updated_at: i128,
    adversary: Option<Adversary>,
    /// An interleaved server's last reply: its receive timestamp (what the
    /// next request names) and its true departure, as the server read it.
    last: Option<(NtpTimestamp, NtpTimestamp)>,
}

/// What the world tells a server about one request.
#[derive(Debug, Clone, Copy)]
pub struct Exchange {
    /// Steady instant the request arrives (ns).
    pub x: i64,
    /// How long the server holds it (ns).
    pub hold: i64,
    /// True time at arrival and at transmit.
    pub t2_true: i128,
    /// True time at transmit.
    pub t3_true: i128,
    /// How long before the reply leaves an interleaved server reads its
    /// basic transmit timestamp (ns, at most `hold`).
    pub pre: i64,
    /// True time at that reading.
    pub t3_pre_true: i128,
    /// True time at the start of the run (drifting liars start there).
    pub start_true: i128,
    /// The instant the leap happens on the true timescale, if any.
    pub leap_true: Option<i128>,
    /// About the width of an honest interval (for overlapping adversaries).
    pub honest_width_ns: i128,
}

impl Server {
    /// A server as specified; `seed` drives a Byzantine one's choices.
    pub fn new(spec: ServerSpec, seed: u64) -> Server {
        Server {
            spec,
            err0: 0,
            drift_ppb: 0,
            updated_at: i128::MIN / 4,
            last: None,
            adversary: match spec.behaviour {
                Behaviour::Byzantine(s) => Some(Adversary::new(s, seed)),
                _ => None,
            },
        }
    }

    /// Down at steady instant `x`.
    pub fn down(&self, x: i64) -> bool {
        self.spec.down.iter().any(|&(a, b)| a <= x && x < b)
    }

    /// The server's clock reading at true time `t` (steady instant `x`), and
    /// its reference time (last update).
    fn time(&mut self, rng: &mut Rng, x: i64, t: i128, start_true: i128) -> (i128, i128) {
        let lambda = self.spec.root_delay_ns as i128 / 2 + self.spec.root_dispersion_ns as i128;
        match self.spec.behaviour {
            Behaviour::Honest { ntpd_style } => {
                let period = if ntpd_style { 64 * NS_PER_S } else { NS_PER_S };
                if t - self.updated_at >= period {
                    // The server re-synchronises: a new error within 90 % of
                    // its root distance, and a new small drift.
                    self.err0 = (rng.symmetric(0.9) * lambda as f64) as i64;
                    self.drift_ppb = if ntpd_style {
                        (rng.symmetric(1.0) * 10_000.0) as i64
                    } else {
                        0
                    };
                    self.updated_at = t;
                }
                let err =
                    self.err0 as i128 + self.drift_ppb as i128 * (t - self.updated_at) / NS_PER_S;
                (t + err, self.updated_at)
            }
            Behaviour::NtpdWorstCase => {
                let period = 64 * NS_PER_S;
                if t - self.updated_at >= period {
                    self.updated_at = t - t.rem_euclid(period);
                }
                let err = lambda * 95 / 100 + 10 * (t - self.updated_at) / 1_000_000;
                (t + err, self.updated_at)
            }
            Behaviour::Constant(o) => (t + o as i128, t),
            Behaviour::Drifting(ppb) => (t + ppb as i128 * (t - start_true) / NS_PER_S, t),
            Behaviour::Random(r) => (t + (rng.symmetric(1.0) * r as f64) as i128, t),
            // Just outside true time, by about one honest half-interval
            // (delay ~100 us): overlaps honest intervals, excludes truth.
            Behaviour::Overlapping => (t + 70_000, t),
            Behaviour::StepsAt { at, by } => (t + if x >= at { by as i128 } else { 0 }, t),
            Behaviour::Byzantine(_) => (t, t),
        }
    }

    /// The replies (none, one, or more) to `request`.
    pub fn answer(
        &mut self,
        rng: &mut Rng,
        request: &Packet,
        e: &Exchange,
        leap: Option<&LeapSpec>,
        src: usize,
    ) -> Vec<[u8; 48]> {
        if let Some(a) = &mut self.adversary {
            return a.replies(
                request,
                e.t2_true,
                e.t3_true,
                e.honest_width_ns,
                e.leap_true,
            );
        }
        let (t2, _) = self.time(rng, e.x, e.t2_true, e.start_true);
        let spec = self.spec;
        // An interleaved server reads its basic transmit timestamp `pre`
        // before the reply leaves, and learns the departure only after.
        let (t3, reftime) = if spec.interleaved {
            self.time(rng, e.x + e.hold - e.pre, e.t3_pre_true, e.start_true)
        } else {
            self.time(rng, e.x + e.hold, e.t3_true, e.start_true)
        };
        let (leap_bit, t2, t3) = apply_leap(leap, e.leap_true, src, t2, t3);
        let (t2f, t3f) = (fuzz(rng, t2, spec.precision), fuzz(rng, t3, spec.precision));
        let departure = if spec.interleaved {
            let (d, _) = self.time(rng, e.x + e.hold, e.t3_true, e.start_true);
            let (_, _, d) = apply_leap(leap, e.leap_true, src, t2, d);
            Some(fuzz(rng, d, spec.precision))
        } else {
            None
        };
        // Interleaved: the request names our last reply by its receive
        // timestamp; answer with that reply's departure.
        let interleaved = match (departure, self.last) {
            (Some(_), Some((rx, dep))) if request.origin.0 != 0 && request.origin == rx => {
                Some(dep)
            }
            _ => None,
        };
        if let Some(d) = departure {
            self.last = Some((t2f, d));
        }
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
            origin: if interleaved.is_some() {
                request.receive
            } else {
                request.transmit
            },
            receive: t2f,
            transmit: interleaved.unwrap_or(t3f),
        };
        vec![reply.serialize()]
    }
}

/// A server's leap handling: its readings `t2`, `t3` on the leap-free
/// timescale become UTC (one second behind once it applied the leap); the
/// leap bit is set while it is announced and not yet applied.
fn apply_leap(
    spec: Option<&LeapSpec>,
    leap_true: Option<i128>,
    src: usize,
    t2: i128,
    t3: i128,
) -> (Leap, i128, i128) {
    let (Some(spec), Some(at)) = (spec, leap_true) else {
        return (Leap::None, t2, t3);
    };
    let late = spec.late.filter(|l| l.0 == src).map_or(0, |l| l.1 as i128);
    let applies_at = at + late;
    let utc = |t: i128| {
        if spec.happens && t >= applies_at {
            t - NS_PER_S
        } else {
            t
        }
    };
    let bit = if spec.bogus_announcer == Some(src) {
        Leap::Delete // a wrong leap bit; its time is right
    } else if t3 >= at - spec.announce_ns as i128 && t3 < applies_at {
        Leap::Insert
    } else {
        Leap::None
    };
    (bit, utc(t2), utc(t3))
}

/// A timestamp as a server of `precision` sends it: fuzzed below it.
fn fuzz(rng: &mut Rng, t: i128, precision: i8) -> NtpTimestamp {
    let rho = log2_to_nanos_ceil(precision).0.max(1);
    let f = rng.below(rho as u64) as i128;
    NtpTimestamp::from_ref(RefTime(t - rho / 2 + f))
}
