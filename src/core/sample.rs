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

/// REALTIME may run faster or slower than MONOTONIC_RAW by up to 10 %
/// (adjtimex tick adjustments; frequency and slew add far less).
pub const REALTIME_RATE_BOUND: Rate = Rate(100_000_000_000);

/// Map a kernel receive stamp (REALTIME, taken when the datagram arrived)
/// onto the steady timeline as an instant no earlier than the arrival, using
/// clock pairs read before the request was sent and after `recv()`.
///
/// Returns `None` (use the userspace stamp) when REALTIME moved against the
/// steady clock between the two pairs by more than its rate bound allows (a
/// step), or when the mapped instant is not inside `(sent_at, after]`.
pub fn map_rx_stamp(
    stamp: RefTime,
    before: ClockPair,
    after: ClockPair,
    sent_at: Steady,
) -> Option<Steady> {
    let off_b = before.realtime.0 - before.steady.0 as i128;
    let off_a = after.realtime.0 - after.steady.0 as i128;
    let elapsed = after.steady.since(before.steady);
    let allowed =
        rate_spread_ceil(REALTIME_RATE_BOUND, elapsed).0 + before.span.0 + after.span.0 + 1_000;
    if (off_a - off_b).abs() > allowed || elapsed.0 < 0 {
        return None; // REALTIME was stepped during the exchange
    }
    let est = stamp.0 - off_a; // steady instant of the arrival, up to the error below
    let age = after.steady.0 as i128 - est;
    if age < 0 {
        return None;
    }
    // REALTIME's offset from steady at the arrival differs from off_a by at
    // most the rate bound over `age`, plus half the bracket.
    let err = rate_spread_ceil(REALTIME_RATE_BOUND, Nanos(age)).0 + (after.span.0 + 1) / 2 + 1;
    let t4 = est + err;
    (t4 > sent_at.0 as i128 && t4 <= after.steady.0 as i128 + after.span.0)
        .then(|| Steady(t4.min(i64::MAX as i128) as i64))
}

#[cfg(test)]
mod rx_tests {
    use super::*;

    fn pair(steady: i64, off: i128) -> ClockPair {
        ClockPair {
            steady: Steady(steady),
            realtime: RefTime(steady as i128 + off),
            span: Nanos(40),
        }
    }

    #[test]
    fn maps_to_no_earlier_than_arrival() {
        let off = 1_700_000_000_000_000_000i128;
        // arrival at steady 1_000_000, read 30 us later
        let t4 = map_rx_stamp(
            RefTime(1_000_000 + off),
            pair(900_000, off),
            pair(1_030_000, off),
            Steady(900_100),
        )
        .unwrap();
        assert!(
            t4.0 >= 1_000_000 && t4.0 < 1_000_000 + 3_100 + 100,
            "{t4:?}"
        );
    }

    #[test]
    fn a_step_during_the_exchange_falls_back() {
        let off = 1_700_000_000_000_000_000i128;
        let stepped = off + 5_000_000;
        assert_eq!(
            map_rx_stamp(
                RefTime(1_000_000 + stepped),
                pair(900_000, off),
                pair(1_030_000, stepped),
                Steady(900_100)
            ),
            None
        );
        // a stamp "from before the send" (bogus) falls back too
        assert_eq!(
            map_rx_stamp(
                RefTime(800_000 + off),
                pair(900_000, off),
                pair(1_030_000, off),
                Steady(900_100)
            ),
            None
        );
    }
}
