//! One NTP exchange (four timestamps) turned into a hard bound on reference
//! time at the local instant the reply was received.
//!
//! With t1 (steady, before send), t2/t3 (server receive/transmit), t4
//! (steady, after receive), delta = (t4 - t1) - (t3 - t2) and
//! Lambda = root_delay/2 + root_dispersion, reference time at t4 lies in
//! `[t3 - E_lo, t3 + E_hi]` where
//!
//! - `E_lo = Lambda + rho_s + Phi_s * max(0, t3 - reftime)`: the reply left
//!   the server before t4, and the server was within its root distance
//!   (aged at Phi_s, because ntpd-style servers send it unaged) and its
//!   precision (servers fuzz the bits below it);
//! - `E_hi = E_lo + max(delta, 0) + rho_l + phi * (t4 - t1)`: the reply cannot
//!   have spent longer in flight than the whole round trip minus the server's
//!   hold time, plus our precision and our rate error during the exchange.
//!
//! Every term is rounded outward. No term assumes a symmetric path.

use super::packet::{log2_to_nanos_ceil, Leap, Packet};
use super::time::{rate_spread_ceil, Interval, Nanos, Rate, RefTime, Steady};

/// Assumptions used to turn an exchange into a bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleParams {
    /// Rate at which a server's root dispersion is aged (Phi_s, >= 15 ppm).
    pub server_dispersion_rate: Rate,
    /// Bound on our steady clock's rate error during one exchange.
    pub local_rate_bound: Rate,
    /// Our own timestamping uncertainty (rho_l): clock resolution plus the
    /// error of mapping receive stamps onto the steady timeline.
    pub local_precision: Nanos,
}

impl Default for SampleParams {
    fn default() -> Self {
        SampleParams {
            server_dispersion_rate: Rate::from_ppm(15),
            local_rate_bound: Rate::from_ppm(200),
            local_precision: Nanos(100),
        }
    }
}

/// A bound from one exchange, with what it was made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Local steady instant the bound is for (t4).
    pub at: Steady,
    /// Reference time at `at` lies in this interval.
    pub bound: Interval,
    /// Round-trip delay delta (clamped at 0).
    pub delay: Nanos,
    /// Advertised root distance Lambda (not aged).
    pub root_distance: Nanos,
    /// The server's leap indicator.
    pub leap: Leap,
    /// The server's stratum.
    pub stratum: u8,
}

/// Why an exchange gives no bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SampleError {
    /// t4 before t1 on the steady timeline (a shell bug or a timeline break).
    #[error("receive instant precedes send instant")]
    NegativeRoundTrip,
    /// The server claims to have held the request longer than the round trip
    /// by more than its precision allows.
    #[error("server hold time exceeds the round trip")]
    ImpossibleHold,
    /// The server's reference time (its last update) is after its transmit
    /// time: the age of its root dispersion would be taken as zero, so the
    /// sample cannot be bounded.
    #[error("reference time is after the transmit time")]
    ReferenceAfterTransmit,
}

/// Compute the bound of one validated exchange. `pivot` resolves NTP eras.
pub fn sample_from_exchange(
    p: &Packet,
    t1: Steady,
    t4: Steady,
    pivot: RefTime,
    params: &SampleParams,
) -> Result<Sample, SampleError> {
    let rtt = t4.since(t1);
    if rtt.0 < 0 {
        return Err(SampleError::NegativeRoundTrip);
    }
    let t2 = p.receive.to_ref_floor(pivot);
    let t3 = p.transmit.to_ref_floor(pivot);
    let rho_s = log2_to_nanos_ceil(p.precision);
    // t3 - t2 is the server's hold time; both are floored so it is exact to 1 ns.
    let hold = t3 - t2;
    let raw_delay = rtt - hold;
    if raw_delay.0 < -(2 * rho_s.0 + 2) {
        return Err(SampleError::ImpossibleHold);
    }
    let delay = Nanos(raw_delay.0.max(0));
    let reftime = p.reference.to_ref_floor(pivot);
    // Within the server's precision a reference time "after" t3 is fuzz;
    // beyond it the age of the root dispersion is unknown.
    if (reftime - t3) > rho_s + Nanos(1) {
        return Err(SampleError::ReferenceAfterTransmit);
    }
    let since_ref = Nanos((t3 - reftime).0.max(0));
    let lambda = p.root_distance();
    let e_lo = lambda + rho_s + rate_spread_ceil(params.server_dispersion_rate, since_ref);
    // hold was measured by the server and may be fuzzed by up to 2*rho_s; the
    // fuzz on t3 itself is already in e_lo, the one on t2 is added here.
    let e_hi = e_lo
        + delay
        + rho_s
        + params.local_precision
        + rate_spread_ceil(params.local_rate_bound, rtt)
        + Nanos(1); // t3 was floored to the nanosecond
    let bound = Interval {
        lo: t3 - e_lo - params.local_precision,
        hi: t3 + e_hi,
    };
    Ok(Sample {
        at: t4,
        bound,
        delay,
        root_distance: lambda,
        leap: p.leap,
        stratum: p.stratum,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::packet::{NtpTimestamp, MODE_SERVER};
    use crate::core::time::NS_PER_S;

    fn reply(t2: RefTime, t3: RefTime) -> Packet {
        Packet {
            leap: Leap::None,
            version: 4,
            mode: MODE_SERVER,
            stratum: 1,
            poll: 0,
            precision: -30,
            root_delay: 0,
            root_dispersion: 0,
            ref_id: *b"GPS\0",
            reference: NtpTimestamp::from_ref(t3),
            origin: NtpTimestamp(1),
            receive: NtpTimestamp::from_ref(t2),
            transmit: NtpTimestamp::from_ref(t3),
        }
    }

    #[test]
    fn bound_contains_truth_with_any_asymmetry() {
        let params = SampleParams::default();
        let truth0 = RefTime(1_800_000_000 * NS_PER_S);
        // Out-path 10 us..990 us, back-path the rest of 1 ms: truth always inside.
        for out_us in [0i128, 10, 500, 990, 1000] {
            let t1 = Steady(5_000);
            let t4 = Steady(5_000 + 1_000_000);
            let t2 = truth0 + Nanos::from_micros(out_us);
            let t3 = t2; // zero hold
            let s = sample_from_exchange(&reply(t2, t3), t1, t4, truth0, &params).unwrap();
            let truth_at_t4 = truth0 + Nanos::from_millis(1);
            assert!(s.bound.contains(truth_at_t4), "out {out_us} us: {s:?}");
            assert!(s.bound.width() < Nanos::from_micros(1_010));
        }
    }

    #[test]
    fn root_dispersion_is_aged() {
        let params = SampleParams::default();
        let t = RefTime(1_800_000_000 * NS_PER_S);
        let mut p = reply(t, t);
        let fresh = sample_from_exchange(&p, Steady(0), Steady(100), t, &params).unwrap();
        p.reference = NtpTimestamp::from_ref(t - Nanos::from_secs(1000));
        let old = sample_from_exchange(&p, Steady(0), Steady(100), t, &params).unwrap();
        // 1000 s at 15 ppm = 15 ms more on each side.
        assert!(old.bound.lo <= fresh.bound.lo - Nanos::from_millis(15));
        assert!(old.bound.hi >= fresh.bound.hi + Nanos::from_millis(15));
    }

    #[test]
    fn impossible_exchanges_are_refused() {
        let params = SampleParams::default();
        let t = RefTime(1_800_000_000 * NS_PER_S);
        let p = reply(t, t + Nanos::from_millis(5));
        assert_eq!(
            sample_from_exchange(&p, Steady(0), Steady(1_000), t, &params),
            Err(SampleError::ImpossibleHold)
        );
        assert_eq!(
            sample_from_exchange(&p, Steady(10), Steady(0), t, &params),
            Err(SampleError::NegativeRoundTrip)
        );
        // A reference time after t3 would switch off the dispersion ageing.
        let mut p = reply(t, t);
        p.reference = NtpTimestamp::from_ref(t + Nanos::from_secs(100));
        assert_eq!(
            sample_from_exchange(&p, Steady(0), Steady(1_000), t, &params),
            Err(SampleError::ReferenceAfterTransmit)
        );
    }
}

/// A REALTIME reading paired with the steady instant it was taken at (the
/// midpoint of a steady bracket of width `span`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockPair {
    /// Steady instant (midpoint of the bracket).
    pub steady: Steady,
    /// REALTIME at that instant.
    pub realtime: RefTime,
    /// Width of the steady bracket around the REALTIME read.
    pub span: Nanos,
}

/// What the shell read around one `send()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentStamps {
    /// Steady instant read just before `send()` (t1).
    pub at: Steady,
    /// A REALTIME/steady pair read just before that (for kernel stamps).
    pub pair: Option<ClockPair>,
    /// How many times the shell has seen CLOCK_REALTIME set (stepped), if it
    /// can tell (a `timerfd` with `TFD_TIMER_CANCEL_ON_SET`).
    pub clock_sets: Option<u64>,
}

impl SentStamps {
    /// Only the steady instant (no kernel stamps to map).
    pub fn steady(at: Steady) -> SentStamps {
        SentStamps {
            at,
            pair: None,
            clock_sets: None,
        }
    }
}

/// What the shell read around one `recv()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxStamps {
    /// Steady instant read just after `recv()` returned: an upper bound of
    /// the datagram's arrival.
    pub at: Steady,
    /// The kernel's receive stamp (CLOCK_REALTIME at arrival), if any.
    pub kernel: Option<RefTime>,
    /// A REALTIME/steady pair read just after `at`.
    pub pair: Option<ClockPair>,
    /// REALTIME sets seen so far (as in [`SentStamps::clock_sets`]).
    pub clock_sets: Option<u64>,
}

impl RxStamps {
    /// Only the steady instant (no kernel stamp).
    pub fn steady(at: Steady) -> RxStamps {
        RxStamps {
            at,
            kernel: None,
            pair: None,
            clock_sets: None,
        }
    }
}

/// REALTIME may run faster or slower than MONOTONIC_RAW by up to 10 %
/// through the tick adjustment, plus 500 ppm of frequency and 500 ppm of
/// PLL slew: 10.1 %.
pub const REALTIME_RATE_BOUND: Rate = Rate(101_000_000_000);

/// Why the kernel receive stamp of an exchange was not used (the userspace
/// stamp was, which is always sound).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StampFallback {
    /// No kernel stamp, or no clock pairs to map it with.
    Missing,
    /// CLOCK_REALTIME was set (stepped) during the exchange.
    ClockSet,
    /// REALTIME moved against the steady clock between the pairs by more
    /// than slewing allows: a step the watcher did not report.
    Inconsistent,
    /// The mapped instant is not after the send.
    OutOfRange,
}

/// The receive instant t4 of an exchange: the kernel stamp mapped onto the
/// steady timeline when that is sound, else the userspace stamp. Either is
/// an upper bound of the datagram's arrival (t4 must never be earlier than
/// the arrival: the bound would then exclude the instant the reply left).
pub fn receive_instant(sent: &SentStamps, rx: &RxStamps) -> (Steady, Option<StampFallback>) {
    match map_rx_stamp(sent, rx) {
        Ok(t) => (t.min(rx.at), None),
        Err(why) => (rx.at, Some(why)),
    }
}

/// Map a kernel receive stamp (REALTIME, taken when the datagram arrived)
/// onto the steady timeline as an instant no earlier than the arrival, using
/// the clock pairs read before the request was sent and after `recv()`.
///
/// REALTIME − RAW drifts by at most [`REALTIME_RATE_BOUND`] while nobody
/// sets the clock, so the pair after `recv()` bounds the arrival from
/// above. A set (step) between the pairs breaks that: with a watcher that
/// reports every set, such an exchange is refused; without one, a single
/// step of any size at an unknown instant leaves one of the two pairs valid
/// at the arrival, so the later of the two bounds is taken. A REALTIME/RAW
/// change between the pairs beyond the drift bound is refused in any case
/// (a set the watcher may report late, such as the kernel's own leap).
pub fn map_rx_stamp(sent: &SentStamps, rx: &RxStamps) -> Result<Steady, StampFallback> {
    let (Some(stamp), Some(before), Some(after)) = (rx.kernel, sent.pair, rx.pair) else {
        return Err(StampFallback::Missing);
    };
    let watched = match (sent.clock_sets, rx.clock_sets) {
        (Some(a), Some(b)) if a != b => return Err(StampFallback::ClockSet),
        (Some(_), Some(_)) => true,
        _ => false,
    };
    let off_b = before.realtime.0 - before.steady.0 as i128;
    let off_a = after.realtime.0 - after.steady.0 as i128;
    let elapsed = after.steady.since(before.steady);
    if elapsed.0 < 0 {
        return Err(StampFallback::Inconsistent);
    }
    let allowed =
        rate_spread_ceil(REALTIME_RATE_BOUND, elapsed).0 + before.span.0 + after.span.0 + 1_000;
    if (off_a - off_b).abs() > allowed {
        return Err(StampFallback::Inconsistent);
    }
    let ta = after.steady.0 as i128;
    // From the pair after recv(): REALTIME - RAW at the arrival is at least
    // off_a - rate * (ta - arrival), so arrival <= est + rate * (ta - est)
    // (when the arrival is after est; before it, est bounds it already).
    let est_a = stamp.0 - off_a;
    let ub_a = est_a
        + rate_spread_ceil(REALTIME_RATE_BOUND, Nanos((ta - est_a).max(0))).0
        + (after.span.0 + 1) / 2
        + 1;
    let t4 = if watched {
        ub_a
    } else {
        // From the pair before send(): arrival <= est_b + rate * (arrival -
        // tb), and the arrival is before ta + span/2.
        let est_b = stamp.0 - off_b;
        let tb = before.steady.0 as i128;
        let reach = (ta + (after.span.0 + 1) / 2 - tb).max(0);
        let ub_b = est_b
            + rate_spread_ceil(REALTIME_RATE_BOUND, Nanos(reach)).0
            + (before.span.0 + 1) / 2
            + 1;
        ub_a.max(ub_b)
    };
    if t4 <= sent.at.0 as i128 {
        return Err(StampFallback::OutOfRange);
    }
    Ok(Steady(t4.min(i64::MAX as i128) as i64))
}

#[cfg(test)]
mod rx_tests {
    use super::*;

    const OFF: i128 = 1_700_000_000_000_000_000;

    fn pair(steady: i64, off: i128) -> ClockPair {
        ClockPair {
            steady: Steady(steady),
            realtime: RefTime(steady as i128 + off),
            span: Nanos(40),
        }
    }

    fn sent(at: i64, off: i128, sets: Option<u64>) -> SentStamps {
        SentStamps {
            at: Steady(at),
            pair: Some(pair(at - 100, off)),
            clock_sets: sets,
        }
    }

    fn rx(at: i64, stamp: i128, off: i128, sets: Option<u64>) -> RxStamps {
        RxStamps {
            at: Steady(at),
            kernel: Some(RefTime(stamp)),
            pair: Some(pair(at + 50, off)),
            clock_sets: sets,
        }
    }

    #[test]
    fn maps_to_no_earlier_than_arrival() {
        // arrival at steady 1_000_000, read 30 us later
        for sets in [Some(3), None] {
            let (t4, why) = receive_instant(
                &sent(900_100, OFF, sets),
                &rx(1_030_000, 1_000_000 + OFF, OFF, sets),
            );
            assert_eq!(why, None);
            // With a watcher, the pair after recv() alone: 10 % of the 30 us
            // since the arrival; without, the pair before send() may be the
            // valid one, and its 10 % covers the whole exchange.
            let slack = if sets.is_some() { 3_200 } else { 13_200 };
            assert!(
                t4.0 >= 1_000_000 && t4.0 < 1_000_000 + slack,
                "{t4:?} with {sets:?}"
            );
        }
    }

    #[test]
    fn a_step_during_the_exchange_never_maps_early() {
        // The review's case: a +1.9 ms step 10 us after the arrival, on a
        // 20 ms round trip (within the 10 % drift a naive check allows).
        let arrival = 20_900_000i64;
        let stepped = OFF + 1_900_000;
        let s = sent(900_100, OFF, Some(7));
        // The watcher saw the set: the kernel stamp is not used.
        let r = rx(arrival + 30_000, arrival as i128 + OFF, stepped, Some(8));
        assert_eq!(
            receive_instant(&s, &r),
            (Steady(arrival + 30_000), Some(StampFallback::ClockSet))
        );
        // Without a watcher: still never earlier than the arrival.
        let s = sent(900_100, OFF, None);
        let r = rx(arrival + 30_000, arrival as i128 + OFF, stepped, None);
        let (t4, _) = receive_instant(&s, &r);
        assert!(t4.0 >= arrival, "{t4:?} before the arrival {arrival}");
        // A step before the arrival, both ways, without a watcher.
        for step in [-1_900_000i128, 1_900_000, -5_000_000_000, 5_000_000_000] {
            let r = rx(
                arrival + 30_000,
                arrival as i128 + OFF + step,
                OFF + step,
                None,
            );
            let (t4, _) = receive_instant(&s, &r);
            assert!(t4.0 >= arrival, "step {step}: {t4:?}");
        }
    }

    #[test]
    fn bogus_stamps_fall_back() {
        let s = sent(900_100, OFF, Some(1));
        // a stamp "from before the send"
        let r = rx(1_030_000, 800_000 + OFF, OFF, Some(1));
        assert_eq!(
            receive_instant(&s, &r),
            (Steady(1_030_000), Some(StampFallback::OutOfRange))
        );
        // a large step the watcher did not report
        let r = rx(1_030_000, 1_000_000 + OFF, OFF + 5_000_000, Some(1));
        assert_eq!(receive_instant(&s, &r).1, Some(StampFallback::Inconsistent));
        // no kernel stamp
        assert_eq!(
            receive_instant(&s, &RxStamps::steady(Steady(1_030_000))),
            (Steady(1_030_000), Some(StampFallback::Missing))
        );
    }

    proptest::proptest! {
        /// Whatever single step happens at whatever instant between the
        /// pairs, and whatever the watcher says, t4 is never before the
        /// arrival when the watcher is honest about sets.
        #[test]
        fn never_before_the_arrival(
            rtt in 1_000i64..50_000_000,
            arrival_frac in 0.0f64..1.0,
            recv_lag in 0i64..1_000_000,
            step in -10_000_000_000i128..10_000_000_000,
            step_frac in 0.0f64..1.0,
            watcher: bool,
        ) {
            let t_send = 1_000_000i64;
            let arrival = t_send + 1 + ((rtt - 1) as f64 * arrival_frac) as i64;
            let t_recv = arrival + recv_lag;
            let step_at = t_send - 100 + ((t_recv + 50 - (t_send - 100)) as f64 * step_frac) as i64;
            let off_at = |x: i64| if x >= step_at { OFF + step } else { OFF };
            let sets = |x: i64| watcher.then_some(u64::from(x >= step_at && step != 0));
            let s = SentStamps { at: Steady(t_send), pair: Some(pair(t_send - 100, off_at(t_send - 100))), clock_sets: sets(t_send - 100) };
            let r = RxStamps { at: Steady(t_recv), kernel: Some(RefTime(arrival as i128 + off_at(arrival))), pair: Some(pair(t_recv + 50, off_at(t_recv + 50))), clock_sets: sets(t_recv + 50) };
            let (t4, _) = receive_instant(&s, &r);
            proptest::prop_assert!(t4.0 >= arrival, "t4 {} arrival {}", t4.0, arrival);
        }
    }
}
