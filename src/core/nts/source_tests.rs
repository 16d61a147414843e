//! The NTS source against a fake NTS server (the server's side of the
//! extension fields from `ef::server`).

use super::*;
use crate::core::ntp::packet::{NtpTimestamp, Packet};
use crate::core::nts::ef::server::{nak, open_request, seal_reply};
use crate::core::time::NS_PER_S;
use proptest::prelude::*;

const T: RefTime = RefTime(1_800_000_000 * NS_PER_S);

fn keys() -> (Key, Key) {
    (Key([1; 32]), Key([2; 32]))
}

fn outcome(n: usize) -> KeOutcome {
    let (c2s, s2c) = keys();
    KeOutcome {
        c2s,
        s2c,
        cookies: (0..n).map(|i| vec![i as u8; 100]).collect(),
    }
}

fn counter() -> impl FnMut() -> u64 {
    let mut x = 0u64;
    move || {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x
    }
}

/// A source that has done its key exchange (8 cookies) and is due to poll.
fn keyed() -> (NtsSource, impl FnMut() -> u64) {
    let mut rand = counter();
    let mut s = NtsSource::new(PollConfig::with_poll(Nanos::from_secs(1)), Steady(0));
    let t = s.handle_timer(Steady(0), &mut rand);
    let (id, req) = t
        .key_exchange
        .expect("the first poll starts a key exchange");
    assert_eq!(req, crate::core::nts::ke::request());
    assert_eq!(t.send, None, "no NTP request before keys");
    assert_eq!(s.deadline(), Some(Steady(0).plus(KE_TIMEOUT)));
    s.handle_key_exchange(id, Steady(1_000), Ok(outcome(8)));
    assert_eq!(s.deadline(), Some(Steady(0)), "the poll goes out at once");
    (s, rand)
}

/// Send the due request at `now`; the request bytes.
fn send(s: &mut NtsSource, now: Steady, rand: &mut dyn FnMut() -> u64) -> Vec<u8> {
    let t = s.handle_timer(now, rand);
    assert_eq!(t.key_exchange, None);
    let req = t.send.expect("a request");
    s.handle_sent(SentStamps::steady(now));
    req
}

/// The server's authentic answer to `req` (with as many cookies as it
/// asks for), its header changed by `tweak`.
fn answer(req: &[u8], tweak: impl FnOnce(&mut Packet)) -> Vec<u8> {
    let (c2s, s2c) = keys();
    let (uid, _cookie, placeholders) = open_request(req, &c2s).expect("an authentic request");
    let q = Packet::parse(req).unwrap();
    let mut p = Packet::server_reply(q.transmit, T);
    tweak(&mut p);
    let fresh: Vec<Vec<u8>> = (0..=placeholders)
        .map(|i| vec![0xc0 + i as u8; 100])
        .collect();
    seal_reply(&p.serialize(), &uid, &fresh, &s2c, &[7; 16])
}

fn rx(at: i64) -> RxStamps {
    RxStamps::steady(Steady(at))
}

#[test]
fn an_authentic_reply_is_a_sample_and_replenishes_the_cookies() {
    let (mut s, mut rand) = keyed();
    let req = send(&mut s, Steady(0), &mut rand);
    assert_eq!(s.report().cookies, 7);
    let reply = answer(&req, |_| {});
    let sample = s
        .handle_reply(&reply, &rx(50_000), T, &SampleParams::default())
        .expect("a sample");
    assert!(sample.bound.contains(T));
    let r = s.report();
    assert_eq!(
        (r.cookies, r.authenticated_replies, r.auth_failures),
        (8, 1, 0)
    );
    assert!(r.authenticated);
    // The same reply again (a replay or duplicate) is not used.
    assert!(s
        .handle_reply(&reply, &rx(60_000), T, &SampleParams::default())
        .is_err());
    assert_eq!(s.poller().counters.ok, 1);
}

#[test]
fn forged_and_altered_replies_are_never_samples_and_change_nothing() {
    let (mut s, mut rand) = keyed();
    let req = send(&mut s, Steady(0), &mut rand);
    let genuine = answer(&req, |_| {});
    // An on-path attacker shifts the timestamps by a second, keeping the
    // packet well-formed (the authenticator no longer matches).
    let mut shifted = genuine.clone();
    for at in [32, 40] {
        let v = u64::from_be_bytes(shifted[at..at + 8].try_into().unwrap()) + (1 << 32);
        shifted[at..at + 8].copy_from_slice(&v.to_be_bytes());
    }
    // Or forges a reply of its own with the unique identifier it saw, but
    // its own key; or a plain NTP reply without any NTS field.
    let own_key = {
        let (c2s, _) = keys();
        let (uid, _, _) = open_request(&req, &c2s).unwrap();
        let q = Packet::parse(&req).unwrap();
        let p = Packet::server_reply(q.transmit, T + Nanos::from_secs(1));
        seal_reply(
            &p.serialize(),
            &uid,
            &[vec![1; 100]],
            &Key([9; 32]),
            &[7; 16],
        )
    };
    let plain = Packet::server_reply(Packet::parse(&req).unwrap().transmit, T).serialize();
    let before = format!("{:?}", s.ntp());
    for (forged, why) in [
        (&shifted[..], OpenError::Forged),
        (&own_key[..], OpenError::Forged),
        (&plain[..], OpenError::NotOurs),
    ] {
        assert_eq!(
            s.handle_reply(forged, &rx(50_000), T, &SampleParams::default()),
            Err(Rejected::Nts(NtsError::Open(why)))
        );
    }
    let r = s.report();
    assert_eq!(
        (r.auth_failures, r.authenticated_replies, r.cookies),
        (2, 0, 7)
    );
    // The NTP machine saw none of it: the request is still in flight, the
    // schedule, reach and exchange state as they were (the stray plain
    // reply is counted as unexpected, as any stray).
    let after = format!("{:?}", s.ntp()).replace("unexpected: 1", "unexpected: 0");
    assert_eq!(before, after);
    assert!(s.poller().in_flight());
    // The genuine reply, arriving after the forgeries, is used.
    assert!(s
        .handle_reply(&genuine, &rx(60_000), T, &SampleParams::default())
        .is_ok());
}

#[test]
fn cookies_run_out_without_replies_then_a_key_exchange_starts() {
    let (mut s, mut rand) = keyed();
    let mut now = Steady(0);
    let mut spent = 0;
    // Every request goes unanswered (timed out by the next poll).
    while spent < 8 {
        let t = s.handle_timer(now, &mut rand);
        assert_eq!(t.key_exchange, None, "re-keyed with cookies left");
        if t.send.is_some() {
            s.handle_sent(SentStamps::steady(now));
            spent += 1;
            assert_eq!(s.report().cookies as usize, 8 - spent);
        }
        now = s.deadline().unwrap();
    }
    let t = s.handle_timer(now, &mut rand);
    let (id, _) = t.key_exchange.expect("no cookie left: re-key");
    assert_eq!(t.send, None);
    s.handle_key_exchange(id, now.plus(Nanos(1_000)), Ok(outcome(3)));
    // Three cookies held: the next request spends one and asks for six.
    let req = loop {
        let at = s.deadline().unwrap();
        let t = s.handle_timer(at, &mut rand);
        if let Some(req) = t.send {
            break req;
        }
    };
    let (_, _, placeholders) = open_request(&req, &keys().0).unwrap();
    assert_eq!(placeholders, 5);
    assert_eq!(s.report().key_exchanges, 2);
}

#[test]
fn a_nak_forces_a_key_exchange_unless_an_authentic_reply_follows() {
    let (mut s, mut rand) = keyed();
    let req = send(&mut s, Steady(0), &mut rand);
    let (uid, _, _) = open_request(&req, &keys().0).unwrap();
    let h = Packet::server_reply(Packet::parse(&req).unwrap().transmit, T).serialize();
    let refused = nak(&h, &uid);
    assert_eq!(
        s.handle_reply(&refused, &rx(50_000), T, &SampleParams::default()),
        Err(Rejected::Nts(NtsError::Open(OpenError::Nak)))
    );
    assert_eq!(s.report().naks, 1);
    // A forged NAK is followed by the authentic reply: nothing changes.
    assert!(s
        .handle_reply(
            &answer(&req, |_| {}),
            &rx(60_000),
            T,
            &SampleParams::default()
        )
        .is_ok());
    let next = s.deadline().unwrap();
    let req = send(&mut s, next, &mut rand);
    let (uid, _, _) = open_request(&req, &keys().0).unwrap();
    let _ = s.handle_reply(&nak(&h, &uid), &rx(1), T, &SampleParams::default());
    // This NAK stays alone: the next poll drops the cookies and re-keys.
    let t = loop {
        let now = s.deadline().unwrap();
        let t = s.handle_timer(now, &mut rand);
        if t.key_exchange.is_some() || t.send.is_some() {
            break t;
        }
    };
    assert!(t.key_exchange.is_some(), "{t:?}");
    assert_eq!(s.report().cookies, 0);
}

#[test]
fn failed_key_exchanges_back_off_and_their_polls_are_misses() {
    let mut rand = counter();
    let mut s = NtsSource::new(PollConfig::with_poll(Nanos::from_secs(1)), Steady(0));
    let (id, _) = s.handle_timer(Steady(0), &mut rand).key_exchange.unwrap();
    // A result for another exchange is ignored.
    s.handle_key_exchange(id + 1, Steady(10), Ok(outcome(8)));
    assert_eq!(s.report().cookies, 0);
    s.handle_key_exchange(id, Steady(10), Err(KeFailure::Tls));
    let r = s.report();
    assert_eq!(
        (r.key_exchange_failures, r.last_key_exchange_failure),
        (1, Some(KeFailure::Tls))
    );
    // The poll goes on as a miss until the retry, 2 s later.
    let t = s.handle_timer(Steady(10), &mut rand);
    assert_eq!(t, Timer::default());
    assert_eq!(s.poller().counters.unsent, 1);
    let (id, at) = loop {
        let now = s.deadline().unwrap();
        if let Some((id, _)) = s.handle_timer(now, &mut rand).key_exchange {
            break (id, now);
        }
    };
    assert!(at >= Steady(10).plus(KE_RETRY_MIN), "{at:?}");
    // It never reports: given up after KE_TIMEOUT, counted, and the next
    // attempt waits twice as long.
    assert_eq!(s.deadline(), Some(at.plus(KE_TIMEOUT)));
    let _ = s.handle_timer(at.plus(KE_TIMEOUT), &mut rand);
    let r = s.report();
    assert_eq!(
        (r.key_exchange_failures, r.last_key_exchange_failure),
        (2, Some(KeFailure::TimedOut))
    );
    // Its late result is ignored.
    s.handle_key_exchange(id, at.plus(KE_TIMEOUT).plus(Nanos(1)), Ok(outcome(8)));
    assert_eq!(s.report().cookies, 0);
    assert_eq!(
        s.ke_not_before,
        Some(at.plus(KE_TIMEOUT).plus(Nanos(2 * KE_RETRY_MIN.0)))
    );
}

proptest! {
    /// Whatever an attacker sends (any bytes, or the genuine reply with any
    /// byte changed), it is never a sample unless it is the genuine reply,
    /// and a refused datagram leaves the NTP machine as it was.
    #[test]
    fn forged_bytes_are_never_samples(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        i in 0usize..2000,
        x in 1u8..=255,
        shift_s in 1u32..1_000_000,
    ) {
        let (mut s, mut rand) = keyed();
        let req = send(&mut s, Steady(0), &mut rand);
        let genuine = answer(&req, |_| {});
        let mut altered = genuine.clone();
        let n = altered.len();
        altered[i % n] ^= x;
        let shifted = answer(&req, |p| p.transmit = NtpTimestamp(p.transmit.0 + ((shift_s as u64) << 32)));
        let mut resealed_elsewhere = shifted.clone();
        resealed_elsewhere[48..].copy_from_slice(&genuine[48..]);
        let before = format!("{:?}", s.ntp());
        for forged in [&bytes[..], &altered[..], &resealed_elsewhere[..]] {
            let r = s.handle_reply(forged, &rx(50_000), T, &SampleParams::default());
            prop_assert!(r.is_err(), "accepted a forgery");
            let after = format!("{:?}", s.ntp());
            let strip = |t: &str| {
                let k = t.find("unexpected: ").unwrap();
                let end = t[k..].find(',').unwrap();
                format!("{}{}", &t[..k], &t[k + end..])
            };
            prop_assert_eq!(strip(&before), strip(&after));
        }
        prop_assert!(s.handle_reply(&genuine, &rx(60_000), T, &SampleParams::default()).is_ok());
    }
}

/// The whole engine with four NTS sources and an on-path attacker who,
/// after the start, shifts every reply of every server by a second (the
/// attack that moves plain NTP): no shifted reply is ever a sample, every
/// published interval holds true time, and the engine stops claiming to
/// be synchronized instead of following.
#[test]
fn the_engine_never_takes_a_forged_reply() {
    use crate::core::engine::{Action, Engine, EngineConfig};
    use crate::core::model::Status;
    use crate::core::source::SourceConfig;
    let poll = Nanos::from_secs(1);
    let mut cfg = EngineConfig::new(poll, 4);
    cfg.sources = vec![
        SourceConfig::Nts {
            dispersion_aged_by_server: false
        };
        4
    ];
    let mut e = Engine::new(cfg, Steady(0));
    let mut rand = counter();
    let mut now = Steady(0);
    let truth = |at: Steady| T + Nanos(at.0 as i128);
    let attack_from = Steady(30 * NS_PER_S as i64);
    let (mut forged, mut synced_before) = (0, false);
    while now < Steady(60 * NS_PER_S as i64) {
        let mut actions = e.handle_timer(now, &mut rand);
        while let Some(a) = actions.pop() {
            match a {
                Action::KeyExchange { source, id, .. } => {
                    actions.extend(e.handle_key_exchange(source, id, now, Ok(outcome(8))));
                }
                Action::Send { source, packet } => {
                    e.handle_sent(source, SentStamps::steady(now));
                    let at = now.plus(Nanos(50_000));
                    let mut reply = answer(&packet, |p| {
                        let t = NtpTimestamp::from_ref(truth(now.plus(Nanos(25_000))));
                        (p.receive, p.transmit, p.reference) = (t, t, t);
                    });
                    if now >= attack_from {
                        // Every timestamp a second later; the packet stays
                        // well-formed, the authenticator as it was.
                        for off in [16, 32, 40] {
                            let v = u64::from_be_bytes(reply[off..off + 8].try_into().unwrap());
                            reply[off..off + 8].copy_from_slice(&(v + (1 << 32)).to_be_bytes());
                        }
                    }
                    let before = e.latest_samples();
                    match e.handle_reply(source, &reply, &RxStamps::steady(at)) {
                        Ok(more) => {
                            assert!(now < attack_from, "a shifted reply was accepted");
                            actions.extend(more);
                        }
                        Err(Rejected::Nts(NtsError::Open(OpenError::Forged))) => {
                            forged += 1;
                            assert_eq!(
                                before,
                                e.latest_samples(),
                                "a forged reply changed a filter"
                            );
                        }
                        Err(other) => panic!("{other:?}"),
                    }
                }
                _ => {}
            }
        }
        let at = now.plus(Nanos(50_000));
        if let Some(m) = e.model() {
            let iv = m.interval_at(at).interval;
            assert!(iv.contains(truth(at)), "{iv:?} misses the truth at {at:?}");
        }
        if now < attack_from && e.status_at(now) == Status::Synchronized {
            synced_before = true;
        }
        now = e.poll_timeout().unwrap().max(now.plus(Nanos(1)));
    }
    assert!(synced_before, "never synchronized before the attack");
    assert!(forged >= 4 * 8, "only {forged} forged replies seen");
    assert_ne!(e.status_at(now), Status::Synchronized);
    for r in e.source_reports() {
        let n = r.nts.unwrap();
        assert!(n.auth_failures >= 8, "{r:?}");
        assert!(!n.authenticated, "{r:?}");
    }
    assert_eq!(e.violations(), 0);
}

/// A request whose cookie was the last: at its timeout a key exchange
/// starts, and a reply held past the timeout (here 9 s, while the key
/// exchange runs) is refused as late, never a sample (review case).
#[test]
fn a_reply_held_past_its_timeout_during_a_key_exchange_is_refused() {
    let mut rand = counter();
    let mut s = NtsSource::new(PollConfig::with_poll(Nanos::from_secs(16)), Steady(0));
    let (id, _) = s.handle_timer(Steady(0), &mut rand).key_exchange.unwrap();
    s.handle_key_exchange(id, Steady(0), Ok(outcome(1)));
    let now = s.deadline().unwrap().plus(Nanos::from_secs(5));
    let req = s.handle_timer(now, &mut rand).send.expect("request");
    s.handle_sent(SentStamps::steady(now));
    assert_eq!(s.report().cookies, 0);
    let to = s.deadline().unwrap();
    assert_eq!(to, now.plus(Nanos::from_secs(1)));
    assert!(s.handle_timer(to, &mut rand).key_exchange.is_some());
    let timeouts = s.poller().counters.timeout;
    assert!(timeouts >= 1, "the request counts as missed");
    // The server's authentic answer, 9 s after t1.
    let late = T + Nanos(now.0 as i128) + Nanos::from_secs(9);
    let held = |req: &[u8]| answer(req, |p| *p = Packet::server_reply(p.origin, late));
    let reply = held(&req);
    let at = now.plus(Nanos::from_secs(9)).plus(Nanos(100_000));
    let r = s.handle_reply(&reply, &RxStamps::steady(at), T, &Default::default());
    assert!(r.is_err(), "a reply 9 s late (timeout 1 s) became a sample");
    // Even when no timer ran at the timeout, the reply's own instant says
    // it is late.
    let mut s2 = NtsSource::new(PollConfig::with_poll(Nanos::from_secs(16)), Steady(0));
    let (id, _) = s2.handle_timer(Steady(0), &mut rand).key_exchange.unwrap();
    s2.handle_key_exchange(id, Steady(0), Ok(outcome(2)));
    let req = s2.handle_timer(now, &mut rand).send.expect("request");
    s2.handle_sent(SentStamps::steady(now));
    assert!(s2
        .handle_reply(&held(&req), &RxStamps::steady(at), T, &Default::default())
        .is_err());
}
