//! The Byzantine server: a strategy that chooses every field of every reply
//! — timestamps in any era, reference time, root delay and dispersion,
//! precision, stratum, leap bits — and whether to answer at all, once or
//! twice. Up to f configured sources may be one; the one promise must hold
//! whatever they send. The adversary knows true time (the worst case).

use super::rng::Rng;
use super::spec::Strategy;
use crate::core::ntp::packet::{Leap, NtpTimestamp, Packet};
use crate::core::time::{RefTime, NS_PER_S};

/// (2^31 − 10^8) s: just under half an era, so each step lands in the next
/// era as seen from the previous lie.
const ERA_STEP_S: i128 = (1i128 << 31) - 100_000_000;
const HALF_ERA_S: i128 = 1i128 << 31;

/// One Byzantine server's state.
#[derive(Debug, Clone)]
pub struct Adversary {
    strategy: Strategy,
    rng: Rng,
    replies: u64,
    /// Its own recent (t2, t3) lies, for stale answers.
    history: Vec<(i128, i128)>,
    /// Sticky leap bit and how many more replies it lasts.
    leap: (Leap, u32),
    /// After a leap instant: whether its time reads as having applied it,
    /// and how many more replies that lasts (flipping at will).
    applied: (bool, u32),
    sign: i128,
}

fn ts(t: i128) -> NtpTimestamp {
    NtpTimestamp::from_ref(RefTime(t))
}

impl Adversary {
    /// A Byzantine server playing `strategy`, seeded.
    pub fn new(strategy: Strategy, seed: u64) -> Adversary {
        let mut rng = Rng::new(seed);
        let sign = if rng.chance(0.5) { 1 } else { -1 };
        Adversary {
            strategy,
            rng,
            replies: 0,
            history: Vec::new(),
            leap: (Leap::None, 0),
            applied: (false, 0),
            sign,
        }
    }

    /// The replies to `request`, which reached the server at true time
    /// `t2_true` and would leave at `t3_true`. `honest_width_ns` is about
    /// the width of an honest source's interval (for overlap strategies);
    /// `leap_true` the instant a leap second happens, if one does.
    pub fn replies(
        &mut self,
        request: &Packet,
        t2_true: i128,
        t3_true: i128,
        honest_width_ns: i128,
        leap_true: Option<i128>,
    ) -> Vec<[u8; 48]> {
        self.replies += 1;
        let strategy = match self.strategy {
            Strategy::Mixed => match self.rng.below(6) {
                0 => Strategy::Random,
                1 => Strategy::EraWalk {
                    forward: self.rng.chance(0.5),
                },
                2 => Strategy::HalfEra,
                3 => Strategy::Overlap {
                    permille: 100 + self.rng.below(900) as i64,
                },
                4 => Strategy::LeapBits,
                _ => Strategy::Stale,
            },
            s => s,
        };
        let mut out = Vec::new();
        if strategy == Strategy::Random && self.rng.chance(0.05) {
            return out; // silence
        }
        let n = if self.rng.chance(0.05) { 2 } else { 1 };
        for _ in 0..n {
            let p = self.reply(
                strategy,
                request,
                t2_true,
                t3_true,
                honest_width_ns,
                leap_true,
            );
            out.push(p.serialize());
        }
        out
    }

    fn base(&self, request: &Packet, t2: i128, t3: i128) -> Packet {
        Packet {
            precision: -23,
            root_dispersion: 10, // ~150 ns: as narrow as it gets
            ref_id: *b"EVIL",
            reference: ts(t3 - NS_PER_S),
            receive: ts(t2),
            ..Packet::server_reply(request.transmit, RefTime(t3))
        }
    }

    fn reply(
        &mut self,
        strategy: Strategy,
        request: &Packet,
        t2_true: i128,
        t3_true: i128,
        honest_width_ns: i128,
        leap_true: Option<i128>,
    ) -> Packet {
        let hold = t3_true - t2_true;
        let shifted = |by: i128| (t2_true + by, t3_true + by);
        let (t2, t3) = match strategy {
            Strategy::EraWalk { forward } => {
                let k = self.replies.min(1 << 20) as i128;
                let by = k * ERA_STEP_S * NS_PER_S;
                shifted(if forward { by } else { -by })
            }
            Strategy::HalfEra => {
                let by = HALF_ERA_S * NS_PER_S;
                shifted(if self.replies.is_multiple_of(2) {
                    by
                } else {
                    -by
                })
            }
            Strategy::Overlap { permille } => {
                shifted(self.sign * honest_width_ns * permille as i128 / 1000)
            }
            Strategy::Stale => {
                let back = self.rng.below(self.history.len().max(1) as u64) as usize;
                match self.history.iter().rev().nth(back) {
                    Some(&(a, b)) => (a, b),
                    None => shifted(0),
                }
            }
            Strategy::LeapBits | Strategy::Random | Strategy::Mixed => shifted(0),
        };
        let mut p = self.base(request, t2, t3);
        match strategy {
            Strategy::LeapBits => {
                // After the instant its time reads applied or not, flipping
                // at will: copying an on-time server, then a late one.
                if leap_true.is_some_and(|at| t3_true >= at) {
                    if self.applied.1 == 0 {
                        self.applied = (self.rng.chance(0.5), 1 + self.rng.below(200) as u32);
                    }
                    self.applied.1 -= 1;
                    if self.applied.0 {
                        p.transmit = ts(t3 - NS_PER_S);
                        p.receive = ts(t2 - NS_PER_S);
                        p.reference = ts(t3 - 2 * NS_PER_S);
                    }
                }
                if self.leap.1 == 0 {
                    let bit = match self.rng.below(3) {
                        0 => Leap::Insert,
                        1 => Leap::Delete,
                        _ => Leap::None,
                    };
                    self.leap = (bit, 1 + self.rng.below(2000) as u32);
                }
                self.leap.1 -= 1;
                p.leap = self.leap.0;
            }
            Strategy::Random => self.randomise(&mut p, t3_true, hold),
            _ => {}
        }
        if self.history.len() < 256 {
            self.history.push((t2, t3));
        } else {
            let i = self.rng.below(256) as usize;
            self.history[i] = (t2, t3);
        }
        p
    }

    /// A random offset: zero, a random power of two of nanoseconds either
    /// way (up to several eras), or any 64-bit timestamp at all.
    fn random_offset(&mut self) -> Option<i128> {
        match self.rng.below(4) {
            0 => Some(0),
            1 | 2 => {
                let k = self.rng.below(66) as u32;
                let mag = (1i128 << k) + self.rng.below(1 << 20) as i128;
                Some(if self.rng.chance(0.5) { mag } else { -mag })
            }
            _ => None,
        }
    }

    fn randomise(&mut self, p: &mut Packet, t3_true: i128, hold: i128) {
        let t3 = match self.random_offset() {
            Some(by) => ts(t3_true + by),
            None => NtpTimestamp(self.rng.next_u64()),
        };
        let r2 = &mut self.rng;
        p.transmit = t3;
        p.receive = match r2.below(4) {
            0 => NtpTimestamp(r2.next_u64()),
            1 => NtpTimestamp(t3.0.wrapping_sub(r2.next_u64() >> r2.below(64))),
            _ => NtpTimestamp(t3.0.wrapping_sub(((hold.max(0) as u64) << 32) / 1_000_000_000)),
        };
        p.reference = match r2.below(5) {
            0 => NtpTimestamp(r2.next_u64()),
            1 => NtpTimestamp(0),
            2 => t3,
            _ => NtpTimestamp(t3.0.wrapping_sub(r2.next_u64() >> (20 + r2.below(44)))),
        };
        let small = |r: &mut Rng| {
            if r.chance(0.8) {
                r.below(100) as u32
            } else {
                r.next_u64() as u32
            }
        };
        p.root_delay = small(r2);
        p.root_dispersion = small(r2);
        p.precision = if r2.chance(0.9) {
            -(r2.below(33) as i8)
        } else {
            r2.next_u64() as i8
        };
        p.stratum = if r2.chance(0.95) {
            1 + r2.below(15) as u8
        } else {
            r2.next_u64() as u8
        };
        p.leap = match r2.below(8) {
            0 => Leap::Insert,
            1 => Leap::Delete,
            2 => Leap::Alarm,
            _ => Leap::None,
        };
        if r2.chance(0.03) {
            p.version = r2.below(8) as u8;
        }
        if r2.chance(0.03) {
            p.mode = r2.below(8) as u8;
        }
        if r2.chance(0.03) {
            p.origin = NtpTimestamp(r2.next_u64());
        }
    }
}
