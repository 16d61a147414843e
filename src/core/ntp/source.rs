//! One NTP server as a source: its request/reply state machine on top of
//! the shared poll schedule. Kiss-o'-Death RATE slows the schedule; DENY and
//! RSTR stop the source for good (RFC 5905 section 7.4). A datagram that does
//! not echo the nonce of the request in flight answers nothing of ours and
//! changes nothing.

use super::exchange::{sample_from_exchange, SampleError, SampleParams};
use super::packet::{parse_reply, KissCode, Packet, ReplyError, HEADER_LEN};
use crate::core::poll::{PollConfig, Poller};
use crate::core::sample::Sample;
use crate::core::stamps::{receive_instant, send_instant, RxStamps, SentStamps, StampFallback};
use crate::core::time::{RefTime, Steady};

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
}

/// The request in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InFlight {
    nonce: u64,
    /// What the shell read around `send()`, once it reported the send.
    sent: Option<SentStamps>,
}

/// One configured NTP server.
#[derive(Debug, Clone)]
pub struct NtpSource {
    poller: Poller,
    in_flight: Option<InFlight>,
    stopped_by: Option<KissCode>,
    /// The last reason a reply was refused.
    pub last_error: Option<Rejected>,
}

impl NtpSource {
    /// A source that sends its first request at `start`.
    pub fn new(cfg: PollConfig, start: Steady) -> NtpSource {
        NtpSource {
            poller: Poller::new(cfg, start),
            in_flight: None,
            stopped_by: None,
            last_error: None,
        }
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
        self.in_flight = Some(InFlight { nonce, sent: None });
        Some(Packet::request(nonce).serialize())
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

    /// The timeline was interrupted: the request in flight is void.
    pub fn cancel(&mut self) {
        self.in_flight = None;
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
        let r = self.try_reply(bytes, rx, pivot, params);
        match &r {
            Ok(_) => {
                self.poller.answered();
                self.last_error = None;
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
        }) = self.in_flight.filter(|_| self.poller.in_flight())
        else {
            return Err(Rejected::Unexpected);
        };
        let p = match parse_reply(bytes, nonce) {
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
        Ok(sample_from_exchange(&p, t1, t4, pivot, params)?)
    }
}

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
}
