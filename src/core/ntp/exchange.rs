//! One NTP exchange (four timestamps) turned into a hard bound on reference
//! time at the local instant the reply was received: the NTP kind's sample.
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

use super::packet::{log2_to_nanos_ceil, Packet};
use crate::core::budget::{Part, Parts};
use crate::core::sample::Sample;
use crate::core::time::{rate_spread_ceil, Interval, Nanos, Rate, RefTime, Steady};

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
    let dispersion_ageing = rate_spread_ceil(params.server_dispersion_rate, since_ref);
    let e_lo = lambda + rho_s + dispersion_ageing;
    // hold was measured by the server and may be fuzzed by up to 2*rho_s; the
    // fuzz on t3 itself is already in e_lo, the one on t2 is added here.
    let local_rate = rate_spread_ceil(params.local_rate_bound, rtt);
    let e_hi = e_lo + delay + rho_s + params.local_precision + local_rate + Nanos(1); // t3 was floored to the nanosecond
    let bound = Interval {
        lo: t3 - e_lo - params.local_precision,
        hi: t3 + e_hi,
    };
    // The same terms, named, for the ε budget (both ends centred on t3).
    let common = Parts::default()
        .with(Part::RootDistance, lambda)
        .with(Part::RootDispersionAgeing, dispersion_ageing)
        .with(Part::LocalPrecision, params.local_precision);
    let lo_parts = common.with(Part::ServerPrecision, rho_s);
    let hi_parts = common
        .with(Part::ServerPrecision, rho_s + rho_s)
        .with(Part::NetworkDelay, delay)
        .with(Part::LocalRate, local_rate)
        .with(Part::Rounding, Nanos(1));
    Ok(Sample {
        at: t4,
        bound,
        leap: p.leap,
        delay: Some(delay),
        root_distance: Some(lambda),
        centre: t3,
        lo_parts,
        hi_parts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::leap::Leap;
    use crate::core::ntp::packet::{NtpTimestamp, MODE_SERVER};
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
    fn the_bound_is_its_named_terms_around_t3() {
        use crate::core::budget::{Part, Sides};
        use crate::core::source::SourceId;
        let params = SampleParams::default();
        let t = RefTime(1_800_000_000 * NS_PER_S);
        let mut p = reply(t, t + Nanos::from_micros(10));
        p.reference = NtpTimestamp::from_ref(t - Nanos::from_secs(100));
        p.root_delay = 1 << 10; // 1/64 s in 16.16 seconds
        let s = sample_from_exchange(&p, Steady(0), Steady(1_000_000), t, &params).unwrap();
        let b = Sides::of(SourceId(0), s.centre, s.lo_parts, s.hi_parts).of_bound(s.bound);
        assert!(b.consistent, "{s:?}");
        assert_eq!(b.agreement_twice, Nanos(0));
        assert_eq!(s.centre, p.transmit.to_ref_floor(t));
        // The round trip less the hold (t2, t3 floored apart) is on the
        // upper side only.
        let hold = p.transmit.to_ref_floor(t) - p.receive.to_ref_floor(t);
        assert_eq!(
            s.hi_parts.get(Part::NetworkDelay),
            (Nanos(1_000_000) - hold).0 as i64
        );
        assert_eq!(s.lo_parts.get(Part::NetworkDelay), 0);
        // 100 s at 15 ppm on both sides; root delay / 2 on both sides.
        // (the stamps are floored to the ns, the ageing rounded up).
        let aged = s.lo_parts.get(Part::RootDispersionAgeing);
        assert!((1_500_000..=1_500_001).contains(&aged), "{aged}");
        assert_eq!(s.hi_parts.get(Part::RootDistance), 7_812_500);
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
