//! One NTP server as a source: its request/reply state machine on top of
//! the shared poll schedule. Kiss-o'-Death RATE slows the schedule; DENY and
//! RSTR stop the source for good (RFC 5905 section 7.4). A datagram that does
//! not echo the nonce of the request in flight answers nothing of ours and
//! changes nothing.
//!
//! **Interleaved mode** (RFC 9769, as chronyd serves it). A basic reply's
//! transmit timestamp t3 is read before the server sends; the server's
//! kernel knows the departure better, but only after sending. So a request
//! names the previous reply (its origin field carries that reply's receive
//! timestamp t2, exactly as received) and carries a second random nonce in
//! its receive field; a server that still holds that exchange answers with
//! that nonce as origin, this exchange's t2, and as transmit timestamp the
//! *previous* reply's departure. The sample then completes the previous
//! exchange: its t1 and t4, its reply's header and t2, this t3 — four
//! instants of one exchange, as in basic mode, only one poll older. Any
//! other answer is a basic reply (its own exchange), or not ours. A server
//! that never answers interleaved to four requests in a row is asked in
//! basic mode from then on.

use super::exchange::{sample_from_exchange, SampleError, SampleParams};
use super::packet::NtpTimestamp;
use super::packet::{parse_reply, KissCode, Packet, ReplyError, HEADER_LEN};
use crate::core::budget::Part;
use crate::core::poll::{PollConfig, Poller};
use crate::core::sample::Sample;
use crate::core::stamps::{receive_instant, send_instant, RxStamps, SentStamps, StampFallback};
use crate::core::time::{rate_spread_ceil, Nanos, Rate, RefTime, Steady};

/// Why a reply was not turned into a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// No request of ours is answered: a duplicate, a late reply, a forgery.
    #[error("answers no request of ours (duplicate, late or forged)")]
    Unexpected,
    /// The packet failed validation.
    #[error(transparent)]
    Reply(#[from] ReplyError),
    /// The timestamps give no bound.
    #[error(transparent)]
    Sample(#[from] SampleError),
    /// NTS: not an authentic answer to the request in flight.
    #[cfg(feature = "nts")]
    #[error(transparent)]
    Nts(#[from] crate::core::nts::NtsError),
}

/// The request in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InFlight {
    nonce: u64,
    /// What the shell read around `send()`, once it reported the send.
    sent: Option<SentStamps>,
    /// Asked in interleaved mode: the receive-field nonce an interleaved
    /// answer echoes, and the exchange the request named.
    interleaved: Option<(u64, Exchange)>,
}

/// A finished exchange that a later interleaved reply can complete with its
/// reply's true departure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Exchange {
    /// When the request left (steady; a lower bound).
    t1: Steady,
    /// When the reply arrived (steady; an upper bound).
    t4: Steady,
    /// The reply: its header, and its receive timestamp t2.
    reply: Packet,
}

/// What a server's replies show of how it reports its root dispersion,
/// watched while its reference time stays the same: a hint for the
/// operator, never applied by itself (declaring a server that does not age
/// its dispersion would break the bound).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispersionWatch {
    /// The reference time being watched, and the first (transmit time,
    /// root dispersion) seen with it.
    first: Option<(NtpTimestamp, RefTime, u32)>,
    /// Seen to grow with the same reference time: the server ages it
    /// (chronyd does).
    pub grows: bool,
    /// Seen unchanged over at least [`FIXED_AFTER`] with the same reference
    /// time: as of its last update (ntpd-style).
    pub fixed: bool,
    /// At the latest reply: how much skewd's own ageing at Φ_s added to
    /// each side of its interval (what declaring the server would remove).
    pub ageing_added: Option<crate::core::time::Nanos>,
}

/// An unchanged root dispersion over this long (same reference time) means
/// the server does not age it: chronyd's grows by ≥ 1 ppm, 64 µs over 64 s,
/// beyond the field's 15 µs resolution.
pub const FIXED_AFTER: crate::core::time::Nanos = crate::core::time::Nanos(64_000_000_000);

impl DispersionWatch {
    fn observe(&mut self, p: &Packet, pivot: RefTime, server_dispersion_rate: Rate) {
        // This exchange's t2 (an interleaved reply's transmit timestamp is
        // the previous reply's): the header was written just after it.
        let t3 = p.receive.to_ref_floor(pivot);
        let since_ref = (t3 - p.reference.to_ref_floor(pivot)).0.max(0);
        self.ageing_added = Some(rate_spread_ceil(server_dispersion_rate, Nanos(since_ref)));
        match self.first {
            Some((reference, t0, d0)) if reference == p.reference => {
                if p.root_dispersion > d0 {
                    self.grows = true;
                } else if p.root_dispersion == d0 && d0 > 0 && (t3 - t0) >= FIXED_AFTER {
                    // (A dispersion of zero tells nothing: a server that is
                    // its own reference, chronyd's `local`, reports zero.)
                    self.fixed = true;
                }
            }
            _ => self.first = Some((p.reference, t3, p.root_dispersion)),
        }
    }

    /// `Some(true)`: the server ages its root dispersion itself (it may be
    /// declared so); `Some(false)`: it does not; `None`: not seen yet, or
    /// both (a server that changed its ways).
    pub fn ages_itself(&self) -> Option<bool> {
        match (self.grows, self.fixed) {
            (true, false) => Some(true),
            (false, true) => Some(false),
            _ => None,
        }
    }
}

/// Interleaved requests answered in basic mode in a row before a server
/// is taken not to support interleaved mode.
pub const INTERLEAVED_TRIES: u32 = 4;

/// One configured NTP server.
#[derive(Debug, Clone)]
pub struct NtpSource {
    poller: Poller,
    in_flight: Option<InFlight>,
    stopped_by: Option<KissCode>,
    /// The last reason a reply was refused.
    pub last_error: Option<Rejected>,
    /// Ask in interleaved mode (configured, and not given up on).
    interleaved: bool,
    /// Interleaved requests answered in basic mode in a row.
    basic_answers: u32,
    /// The last exchange, for the next interleaved request to name.
    last: Option<Exchange>,
    /// Follow each poll's exchange with a second request a moment later,
    /// so that its interleaved reply completes a fresh exchange.
    follow_ups: bool,
    /// The reply just accepted asks for a follow-up.
    want_follow_up: bool,
    /// How it reports its root dispersion (the operator's hint).
    pub dispersion: DispersionWatch,
}

/// How long after a reply its follow-up request goes out.
pub const FOLLOW_UP_AFTER: crate::core::time::Nanos = crate::core::time::Nanos(1_000_000);

impl NtpSource {
    /// A source that sends its first request at `start`.
    pub fn new(cfg: PollConfig, start: Steady) -> NtpSource {
        NtpSource {
            poller: Poller::new(cfg, start),
            in_flight: None,
            stopped_by: None,
            last_error: None,
            interleaved: false,
            basic_answers: 0,
            last: None,
            follow_ups: false,
            want_follow_up: false,
            dispersion: DispersionWatch::default(),
        }
    }

    /// Follow each poll's exchange with a second request
    /// ([`FOLLOW_UP_AFTER`] after its reply) while the server answers in
    /// interleaved mode: the second reply then completes an exchange a
    /// millisecond old instead of a poll old. Twice the requests: for the
    /// operator's own servers when narrowness is asked for.
    pub fn with_follow_ups(mut self, on: bool) -> NtpSource {
        self.follow_ups = on;
        self
    }

    /// Ask this server in interleaved mode when it answers so.
    pub fn with_interleaved(mut self, on: bool) -> NtpSource {
        self.interleaved = on;
        self
    }

    /// Whether interleaved requests are (still) sent.
    pub fn interleaved(&self) -> bool {
        self.interleaved
    }

    /// The schedule (reach, counters, deadline).
    pub fn poller(&self) -> &Poller {
        &self.poller
    }

    /// Mutable schedule.
    pub fn poller_mut(&mut self) -> &mut Poller {
        &mut self.poller
    }

    /// The kiss code that stopped this source, if any.
    pub fn stopped_by(&self) -> Option<KissCode> {
        self.stopped_by
    }

    /// The timer at `now`; `nonce` is a fresh random value (the request's
    /// transmit timestamp). The request's bytes when one is due.
    pub fn handle_timer(&mut self, now: Steady, nonce: u64) -> Option<[u8; HEADER_LEN]> {
        if !self.poller.on_timer(now) {
            if !self.poller.in_flight() {
                self.in_flight = None;
            }
            return None;
        }
        let mut request = Packet::request(nonce);
        let interleaved = match self.last {
            Some(last) if self.interleaved => {
                // A second nonce, unpredictable to anyone who has not seen
                // the first (it never leaves this host but in the request).
                let x = (nonce ^ 0xa076_1d64_78bd_642f)
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    .rotate_left(31)
                    | 1;
                request.origin = last.reply.receive;
                request.receive = NtpTimestamp(x);
                Some((x, last))
            }
            _ => None,
        };
        self.in_flight = Some(InFlight {
            nonce,
            sent: None,
            interleaved,
        });
        Some(request.serialize())
    }

    /// The shell sent the request just asked for, reading `stamps` around
    /// `send()` (t1 is `stamps.at`).
    pub fn handle_sent(&mut self, stamps: SentStamps) {
        if let Some(f) = &mut self.in_flight {
            f.sent = Some(stamps);
        }
    }

    /// The shell could not send it.
    pub fn send_failed(&mut self) {
        self.in_flight = None;
        self.poller.unsent();
    }

    /// Time out the request in flight, if its time is up by `now`, without
    /// starting a poll (a caller that cannot send now, e.g. an NTS source
    /// waiting for a key exchange).
    pub fn expire(&mut self, now: Steady) {
        self.poller.expire(now);
        if !self.poller.in_flight() {
            self.in_flight = None;
        }
    }

    /// The timeline was interrupted: the request in flight is void.
    pub fn cancel(&mut self) {
        self.in_flight = None;
        // An exchange from before the interruption must never be completed
        // after it: its instants are on the old timeline (a suspend froze
        // the steady clock while true time went on).
        self.last = None;
        self.poller.cancel();
    }

    /// A datagram for this source, with what the shell read around
    /// `recv()`; the core picks t4 from them. `pivot` resolves NTP eras.
    pub fn handle_reply(
        &mut self,
        bytes: &[u8],
        rx: &RxStamps,
        pivot: RefTime,
        params: &SampleParams,
    ) -> Result<Sample, Rejected> {
        // A reply after its request's timeout is late, whether or not a
        // timer ran at the timeout (one held while a key exchange waits).
        self.expire(rx.at);
        let r = self.try_reply(bytes, rx, pivot, params);
        match &r {
            Ok(_) => {
                self.poller.answered();
                self.last_error = None;
                if std::mem::take(&mut self.want_follow_up) {
                    self.poller.follow_up(rx.at.plus(FOLLOW_UP_AFTER));
                }
            }
            Err(
                Rejected::Unexpected
                | Rejected::Reply(ReplyError::OriginMismatch | ReplyError::Parse(_)),
            ) => {
                self.poller.counters.unexpected += 1;
            }
            Err(e) => {
                self.poller.refused();
                self.last_error = Some(*e);
            }
        }
        r
    }

    fn try_reply(
        &mut self,
        bytes: &[u8],
        rx: &RxStamps,
        pivot: RefTime,
        params: &SampleParams,
    ) -> Result<Sample, Rejected> {
        let Some(InFlight {
            nonce,
            sent: Some(sent),
            interleaved,
        }) = self.in_flight.filter(|_| self.poller.in_flight())
        else {
            return Err(Rejected::Unexpected);
        };
        // An interleaved answer echoes the receive-field nonce instead.
        let mut completes = None;
        let parsed = match (parse_reply(bytes, nonce), interleaved) {
            (Err(ReplyError::OriginMismatch), Some((x, named))) => {
                completes = Some(named);
                parse_reply(bytes, x)
            }
            (r, _) => r,
        };
        let p = match parsed {
            // Not an answer to our request: the request stays open.
            Err(e @ (ReplyError::OriginMismatch | ReplyError::Parse(_))) => return Err(e.into()),
            Err(e) => {
                self.in_flight = None;
                if let ReplyError::Kiss(code) = e {
                    match code {
                        KissCode::Rate => self.poller.slow_down(),
                        KissCode::Deny | KissCode::Restrict => {
                            self.stopped_by = Some(code);
                            self.poller.stop();
                        }
                        KissCode::Other(_) => {}
                    }
                }
                return Err(e.into());
            }
            Ok(p) => p,
        };
        self.in_flight = None;
        let (t4, fallback) = receive_instant(&sent, rx);
        let (t1, tx_fallback) = send_instant(&sent, rx);
        let refused = |f: Option<StampFallback>| {
            matches!(
                f,
                Some(StampFallback::ClockSet | StampFallback::Inconsistent)
            )
        };
        if refused(fallback) {
            self.poller.counters.kernel_stamp_fallbacks += 1;
        }
        if refused(tx_fallback) {
            self.poller.counters.kernel_tx_stamp_fallbacks += 1;
        }
        if rx.sent_kernel.is_some() && tx_fallback.is_none() {
            self.poller.counters.kernel_tx_stamps += 1;
        }
        self.dispersion
            .observe(&p, pivot, params.server_dispersion_rate);
        let this = Exchange { t1, t4, reply: p };
        let sample = match completes {
            Some(named) => {
                self.basic_answers = 0;
                self.poller.counters.interleaved += 1;
                // The named exchange, with its reply's true departure.
                let reply = Packet {
                    transmit: p.transmit,
                    ..named.reply
                };
                let s = sample_from_exchange(&reply, named.t1, named.t4, pivot, params)?;
                // The reply's header was written a moment before its true
                // departure: age a declared root dispersion over the hold.
                let hold = Nanos(
                    (reply.transmit.to_ref_floor(pivot) - reply.receive.to_ref_floor(pivot))
                        .0
                        .max(0),
                );
                let slack = rate_spread_ceil(INTERLEAVED_HOLD_RATE, hold);
                s.widen(Part::RootDispersionAgeing, slack, slack)
            }
            None => {
                if interleaved.is_some() {
                    self.basic_answers += 1;
                    if self.basic_answers >= INTERLEAVED_TRIES {
                        self.interleaved = false;
                    }
                }
                sample_from_exchange(&p, t1, t4, pivot, params)?
            }
        };
        self.last = Some(this);
        // A regular poll's reply from a server that answers interleaved:
        // ask again at once, so the next reply completes this exchange.
        self.want_follow_up = self.follow_ups
            && self.interleaved
            && self.poller.counters.interleaved > 0
            && !self.poller.sent_follow_up();
        Ok(sample)
    }
}

/// The rate at which a root dispersion written into an interleaved reply
/// is aged over the server's hold (its header is older than its true
/// departure by at most the hold).
const INTERLEAVED_HOLD_RATE: Rate = Rate(15_000_000);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::leap::Leap;
    use crate::core::ntp::packet::{NtpTimestamp, MODE_SERVER};
    use crate::core::time::{Nanos, NS_PER_S};

    fn cfg() -> PollConfig {
        PollConfig::with_poll(Nanos::from_secs(16))
    }

    fn rx() -> RxStamps {
        RxStamps::steady(Steady(100))
    }

    /// Ask for a request at `now` and report it sent then.
    fn send(s: &mut NtpSource, now: Steady, nonce: u64) {
        s.handle_timer(now, nonce).unwrap();
        s.handle_sent(SentStamps::steady(now));
    }

    fn reply_to(nonce: u64, t: RefTime) -> [u8; 48] {
        Packet {
            leap: Leap::None,
            version: 4,
            mode: MODE_SERVER,
            stratum: 2,
            poll: 4,
            precision: -20,
            root_delay: 10,
            root_dispersion: 10,
            ref_id: *b"abcd",
            reference: NtpTimestamp::from_ref(t),
            origin: NtpTimestamp(nonce),
            receive: NtpTimestamp::from_ref(t),
            transmit: NtpTimestamp::from_ref(t),
        }
        .serialize()
    }

    #[test]
    fn unsent_requests_are_not_counted_as_sent_and_take_no_reply() {
        let p = SampleParams::default();
        let t = RefTime(1_800_000_000 * NS_PER_S);
        let mut s = NtpSource::new(cfg(), Steady(0));
        s.handle_timer(Steady(0), 42).unwrap();
        s.send_failed();
        let c = s.poller().counters;
        assert_eq!((c.sent, c.unsent, c.timeout), (0, 1, 0));
        // nothing is in flight: a reply carrying that nonce is unexpected
        assert_eq!(
            s.handle_reply(&reply_to(42, t), &rx(), t, &p),
            Err(Rejected::Unexpected)
        );
        // the poll goes on; a send that works is counted as sent
        let next = s.poller().deadline().unwrap();
        send(&mut s, next, 43);
        let c = s.poller().counters;
        assert_eq!((c.sent, c.unsent), (1, 1));
        // that one fails too; reporting it twice counts it once
        s.send_failed();
        s.send_failed();
        let c = s.poller().counters;
        assert_eq!((c.sent, c.unsent), (0, 2));
    }

    #[test]
    fn replies_duplicates_spoofs_and_kisses() {
        let p = SampleParams::default();
        let t = RefTime(1_800_000_000 * NS_PER_S);
        let mut s = NtpSource::new(cfg(), Steady(0));
        send(&mut s, Steady(0), 42);
        // forged first (another nonce, here also a client packet): refused,
        // counted as unexpected, and the real reply is still accepted
        let mut forged = Packet::parse(&reply_to(41, t)).unwrap();
        forged.mode = 3;
        assert_eq!(
            s.handle_reply(&forged.serialize(), &rx(), t, &p),
            Err(Rejected::Reply(ReplyError::OriginMismatch))
        );
        assert_eq!(s.poller().counters.unexpected, 1);
        assert!(s.handle_reply(&reply_to(42, t), &rx(), t, &p).is_ok());
        // duplicate
        assert_eq!(
            s.handle_reply(&reply_to(42, t), &rx(), t, &p),
            Err(Rejected::Unexpected)
        );
        assert_eq!(s.poller().reach(), 1);
        // DENY stops the source
        let next = s.poller().deadline().unwrap();
        send(&mut s, next, 43);
        let mut kod = Packet::parse(&reply_to(43, t)).unwrap();
        kod.stratum = 0;
        kod.ref_id = *b"DENY";
        assert!(s.handle_reply(&kod.serialize(), &rx(), t, &p).is_err());
        assert_eq!(s.stopped_by(), Some(KissCode::Deny));
        assert_eq!(s.poller().deadline(), None);
        assert_eq!(s.handle_timer(Steady(i64::MAX), 44), None);
    }

    fn server(origin: u64, t2: RefTime, t3: RefTime) -> Packet {
        Packet {
            origin: NtpTimestamp(origin),
            receive: NtpTimestamp::from_ref(t2),
            transmit: NtpTimestamp::from_ref(t3),
            ..Packet::parse(&reply_to(0, t2)).unwrap()
        }
    }

    /// A reply arriving after its request's timeout is late, also when no
    /// timer ran in between.
    #[test]
    fn a_reply_after_the_timeout_is_refused_without_a_timer() {
        let p = SampleParams::default();
        let t = RefTime(1_800_000_000 * NS_PER_S);
        let mut s = NtpSource::new(cfg(), Steady(0));
        s.handle_timer(Steady(0), 42).unwrap();
        s.handle_sent(SentStamps::steady(Steady(0)));
        let late = RxStamps::steady(Steady(10 * NS_PER_S as i64));
        assert!(s.handle_reply(&reply_to(42, t), &late, t, &p).is_err());
        assert_eq!(s.poller().counters.timeout, 1);
        // In time, the same reply is a sample.
        let mut s = NtpSource::new(cfg(), Steady(0));
        s.handle_timer(Steady(0), 42).unwrap();
        s.handle_sent(SentStamps::steady(Steady(0)));
        assert!(s.handle_reply(&reply_to(42, t), &rx(), t, &p).is_ok());
    }

    #[test]
    fn interleaved_replies_complete_the_named_exchange() {
        let p = SampleParams::default();
        let t = RefTime(1_800_000_000 * NS_PER_S);
        let at = |us: i64| RxStamps::steady(Steady(us * 1_000));
        let mut s = NtpSource::new(cfg(), Steady(0))
            .with_interleaved(true)
            .with_follow_ups(true);
        // A basic exchange first: t1 = 0, t4 = 100 us.
        let first = Packet::parse(&s.handle_timer(Steady(0), 42).unwrap()).unwrap();
        assert_eq!((first.origin.0, first.receive.0), (0, 0));
        s.handle_sent(SentStamps::steady(Steady(0)));
        let t2 = t + Nanos::from_micros(40);
        let basic = server(42, t2, t2 + Nanos::from_micros(5));
        let b = s.handle_reply(&basic.serialize(), &at(100), t, &p).unwrap();
        assert_eq!(b.at, Steady(100_000));
        // The next request names that reply by its receive timestamp and
        // carries a second nonce in its receive field.
        let next = s.poller().deadline().unwrap();
        let req = Packet::parse(&s.handle_timer(next, 43).unwrap()).unwrap();
        assert_eq!(req.origin, basic.receive);
        assert_ne!(req.receive.0, 0);
        assert_eq!(req.transmit.0, 43);
        s.handle_sent(SentStamps::steady(next));
        // A reply echoing neither nonce is not ours.
        let later = t + Nanos::from_secs(16);
        let stray = server(7, later, later);
        assert_eq!(
            s.handle_reply(
                &stray.serialize(),
                &RxStamps::steady(next.plus(Nanos::from_micros(50))),
                t,
                &p
            ),
            Err(Rejected::Reply(ReplyError::OriginMismatch))
        );
        // The interleaved answer: this exchange's t2, the first reply's
        // true departure (15 us after t2, later than its basic 5 us).
        let xl = server(req.receive.0, later, t2 + Nanos::from_micros(15));
        let now = next.plus(Nanos::from_micros(100));
        let c = s
            .handle_reply(&xl.serialize(), &RxStamps::steady(now), t, &p)
            .unwrap();
        // It completes the first exchange: its instants, narrower than the
        // basic sample by the 10 us the server learnt after sending.
        assert_eq!(c.at, b.at);
        // (Only the hold's ageing, a nanosecond, widens it.)
        assert!(
            (0..=2).contains(&(c.bound.hi.0 - b.bound.hi.0)),
            "{c:?} vs {b:?}"
        );
        assert!(c.bound.lo.0 - b.bound.lo.0 >= 9_990, "{c:?} vs {b:?}");
        assert_eq!(s.poller().counters.interleaved, 1);
        // And a follow-up goes out a millisecond later, naming this one.
        assert_eq!(s.poller().deadline(), Some(now.plus(FOLLOW_UP_AFTER)));
        let req = Packet::parse(&s.handle_timer(now.plus(FOLLOW_UP_AFTER), 44).unwrap()).unwrap();
        assert_eq!(req.origin, xl.receive);
    }

    #[test]
    fn a_server_that_never_interleaves_is_asked_in_basic_mode() {
        let p = SampleParams::default();
        let t = RefTime(1_800_000_000 * NS_PER_S);
        let mut s = NtpSource::new(cfg(), Steady(0)).with_interleaved(true);
        let mut now = Steady(0);
        for i in 0..=INTERLEAVED_TRIES as u64 {
            let req = Packet::parse(&s.handle_timer(now, 100 + i).unwrap()).unwrap();
            assert_eq!(req.receive.0 != 0, i > 0, "request {i}");
            s.handle_sent(SentStamps::steady(now));
            let reply = server(100 + i, t, t);
            s.handle_reply(
                &reply.serialize(),
                &RxStamps::steady(now.plus(Nanos(100_000))),
                t,
                &p,
            )
            .unwrap();
            now = s.poller().deadline().unwrap();
        }
        assert!(!s.interleaved());
        let req = Packet::parse(&s.handle_timer(now, 200).unwrap()).unwrap();
        assert_eq!((req.origin.0, req.receive.0), (0, 0));
    }

    #[test]
    fn the_dispersion_hint_tells_chrony_style_from_ntpd_style() {
        let t = RefTime(1_800_000_000 * NS_PER_S);
        let reply = |at_s: i128, reference_s: i128, disp: u32| Packet {
            reference: NtpTimestamp::from_ref(t + Nanos::from_secs(reference_s)),
            receive: NtpTimestamp::from_ref(t + Nanos::from_secs(at_s)),
            transmit: NtpTimestamp::from_ref(t + Nanos::from_secs(at_s)),
            root_dispersion: disp,
            ..Packet::parse(&reply_to(1, t)).unwrap()
        };
        let phi = Rate(15_000_000);
        // chrony-style: the same reference time, a growing dispersion.
        let mut w = DispersionWatch::default();
        w.observe(&reply(10, 0, 100), t, phi);
        assert_eq!(w.ages_itself(), None);
        w.observe(&reply(26, 0, 101), t, phi);
        assert_eq!(w.ages_itself(), Some(true));
        // What skewd's own ageing added: 15 ppm of the 26 s since the
        // reference time, 390 µs.
        assert_eq!(w.ageing_added, Some(Nanos(390_000)));
        // ntpd-style: unchanged for 64 s (not 63), nonzero.
        let mut w = DispersionWatch::default();
        w.observe(&reply(10, 0, 100), t, phi);
        w.observe(&reply(73, 0, 100), t, phi);
        assert_eq!(w.ages_itself(), None);
        w.observe(&reply(74, 0, 100), t, phi);
        assert_eq!(w.ages_itself(), Some(false));
        // A new reference time starts over; zero tells nothing.
        let mut w = DispersionWatch::default();
        w.observe(&reply(10, 0, 0), t, phi);
        w.observe(&reply(100, 0, 0), t, phi);
        assert_eq!(w.ages_itself(), None);
        w.observe(&reply(110, 100, 50), t, phi);
        w.observe(&reply(200, 100, 50), t, phi);
        assert_eq!(w.ages_itself(), Some(false));
        // Declared: skewd adds no ageing of its own.
        w.observe(&reply(210, 100, 50), t, Rate(0));
        assert_eq!(w.ageing_added, Some(Nanos(0)));
    }
}
