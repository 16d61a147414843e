//! Tests of [`super`].
use super::*;
use crate::core::ntp::packet::{NtpTimestamp, Packet};
use crate::core::source::SourceState;

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
                let told = if source == SourceId(3) {
                    lies += 1;
                    t + Nanos::from_secs(era_step * lies.min(3))
                } else {
                    t
                };
                let reply = Packet::server_reply(q.transmit, told);
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

/// Publications carry the grace: a model published at `t` reads as
/// `unknown` after `t + publish_grace` unless a newer one replaces it.
#[test]
fn publications_expire_without_the_publisher() {
    let mut e = Engine::new(EngineConfig::new(Nanos::from_secs(16), 1), Steady(0));
    let actions = e.handle_timer(Steady(0), &mut || 7);
    e.handle_sent(SourceId(0), SentStamps::steady(Steady(0)));
    let t = RefTime(1_800_000_000 * NS_PER_S);
    let reply = Packet::server_reply(NtpTimestamp(7), t);
    assert!(matches!(actions[0], Action::Send { .. }));
    let out = e
        .handle_reply(
            SourceId(0),
            &reply.serialize(),
            &RxStamps::steady(Steady(1000)),
        )
        .unwrap();
    let Action::Publish(p) = &out[0] else {
        panic!("{out:?}")
    };
    let m = p.model.unwrap();
    assert_eq!(m.void_after, Steady(1000).plus(Nanos::from_secs(3)));
    assert_eq!(m.status_at(Steady(1000)), Status::Synchronized);
    assert_eq!(
        m.status_at(Steady(1000).plus(Nanos::from_secs(4))),
        Status::Unknown
    );
}

/// A reply that shows a suspend since the last local reading (its boot
/// offset moved) is not used: the request in flight and the model before
/// it are void, and the interruption is published at once, before the
/// next local reading would have shown it.
#[test]
fn a_reply_after_a_suspend_interrupts_instead_of_counting() {
    let mut e = Engine::new(EngineConfig::new(Nanos::from_secs(16), 1), Steady(0));
    let local = |at: i64, boot: i64| LocalReading {
        at: Steady(at),
        boot_offset: Some((boot, 100)),
        clocksource: None,
        vmclock_marker: None,
        realtime: None,
    };
    e.handle_local(&local(0, 5_000));
    let t = RefTime(1_800_000_000 * NS_PER_S);
    let exchange = |e: &mut Engine, at: i64, nonce: u64, boot: i64| {
        e.handle_timer(Steady(at), &mut || nonce);
        e.handle_sent(SourceId(0), SentStamps::steady(Steady(at)));
        let reply = Packet::server_reply(NtpTimestamp(nonce), t + Nanos(at as i128));
        let mut rx = RxStamps::steady(Steady(at + 1000));
        rx.boot_offset = Some((boot, 100));
        e.handle_reply(SourceId(0), &reply.serialize(), &rx)
    };
    exchange(&mut e, 0, 7, 5_000).unwrap();
    assert!(e.model().is_some());
    // The host slept 2 s while the next request was in flight.
    let at = e.poll_timeout().unwrap().0;
    let out = exchange(&mut e, at, 8, 2_000_005_000).unwrap();
    let Action::Publish(p) = &out[0] else {
        panic!("{out:?}")
    };
    assert!(
        p.model.is_none(),
        "the model from before the suspend is void"
    );
    assert_eq!(p.interruptions.suspends, 1);
    assert!(e
        .take_events()
        .iter()
        .any(|ev| matches!(ev, Event::Interrupted(Interruption::Suspend(_)))));
    // The local reading that follows sees no second suspend.
    e.handle_local(&local(at + 500_000_000, 2_000_005_000));
    assert_eq!(
        e.publication(Steady(at + 500_000_000))
            .interruptions
            .suspends,
        1
    );
}
