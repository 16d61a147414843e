//! Per-server poll state machine: when to send, what a reply means, and the
//! source's recent samples.
//!
//! Poll policy: a burst of `burst` requests `burst_interval` apart at start
//! (first sync in seconds), then one request every `poll`. While the source
//! does not answer, the interval doubles after each run of 4 timeouts, up to
//! `poll * 2^max_backoff`; any good reply resets it. Kiss-o'-Death RATE
//! doubles the interval the same way; DENY and RSTR stop the source for good
//! (RFC 5905 section 7.4). Timers are absolute deadlines.

use super::filter::Filter;
use super::packet::{parse_reply, KissCode, Packet, ReplyError, HEADER_LEN};
use super::sample::{
    receive_instant, sample_from_exchange, RxStamps, Sample, SampleError, SampleParams, SentStamps,
    StampFallback,
};
use super::time::{Nanos, RefTime, Steady};

/// Poll settings of one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollConfig {
    /// Steady-state poll interval.
    pub poll: Nanos,
    /// Requests in the initial burst.
    pub burst: u32,
    /// Spacing of burst requests.
    pub burst_interval: Nanos,
    /// A request unanswered after this long has timed out.
    pub timeout: Nanos,
    /// The interval grows to at most `poll << max_backoff`.
    pub max_backoff: u32,
}

impl PollConfig {
    /// Defaults for a given poll interval.
    pub fn with_poll(poll: Nanos) -> PollConfig {
        PollConfig {
            poll,
            burst: 4,
            burst_interval: Nanos::from_secs(1).min(poll),
            timeout: Nanos::from_secs(1).min(poll),
            max_backoff: 3,
        }
    }
}

/// Why a reply was not turned into a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// No request is outstanding: a duplicate or a late reply.
    #[error("no request outstanding (duplicate or late reply)")]
    Unexpected,
    /// The packet failed validation.
    #[error(transparent)]
    Reply(#[from] ReplyError),
    /// The timestamps give no bound.
    #[error(transparent)]
    Sample(#[from] SampleError),
}

/// What the source wants the shell to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendRequest {
    /// The 48 bytes to send.
    pub packet: [u8; HEADER_LEN],
}

/// Outcome counters, for metrics (`skewd_ntp_requests_total{result}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests sent.
    pub sent: u64,
    /// Good replies.
    pub ok: u64,
    /// Requests that timed out.
    pub timeout: u64,
    /// Replies refused by validation (incl. spoofed, kiss-o'-death).
    pub invalid: u64,
    /// Duplicate or late replies.
    pub unexpected: u64,
    /// Requests the shell could not send (no address yet, or the send
    /// failed): not counted as sent, and they count against reach.
    pub unsent: u64,
    /// Good replies whose bound lay more than an hour from the published
    /// model: a source far off (or lying about the era); still a sample,
    /// selection decides, but worth seeing.
    pub implausible: u64,
    /// Replies whose kernel receive stamp could not be used soundly
    /// (REALTIME set during the exchange, or inconsistent): the userspace
    /// stamp was used instead.
    pub kernel_stamp_fallbacks: u64,
}

/// A request in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Outstanding {
    nonce: u64,
    /// When the core asked for it (the timeout runs from here).
    asked_at: Steady,
    /// What the shell read around `send()`, once it reported the send.
    sent: Option<SentStamps>,
}

/// One configured server.
#[derive(Debug, Clone)]
pub struct Source {
    cfg: PollConfig,
    outstanding: Option<Outstanding>,
    next_send: Steady,
    burst_left: u32,
    misses: u32,
    backoff: u32,
    stopped: Option<KissCode>,
    reach: u8,
    /// Recent samples (the engine pushes them, on the internal timescale).
    pub filter: Filter,
    /// The last reason a reply was refused.
    pub last_error: Option<Rejected>,
    /// Outcome counters.
    pub counters: Counters,
}

impl Source {
    /// A source that sends its first request at `start`.
    pub fn new(cfg: PollConfig, start: Steady) -> Source {
        Source {
            cfg,
            outstanding: None,
            next_send: start,
            burst_left: cfg.burst,
            misses: 0,
            backoff: 0,
            stopped: None,
            reach: 0,
            filter: Filter::default(),
            last_error: None,
            counters: Counters::default(),
        }
    }

    /// The 8-bit reachability register (1 bit per poll, newest lowest).
    pub fn reach(&self) -> u8 {
        self.reach
    }

    /// The kiss code that stopped this source, if any.
    pub fn stopped(&self) -> Option<KissCode> {
        self.stopped
    }

    /// Forget the request in flight: its reply can no longer be trusted (the
    /// timeline was interrupted while it was out).
    pub fn cancel_outstanding(&mut self) {
        self.outstanding = None;
    }

    /// The shell could not send the request just asked for: it is not in
    /// flight, so no reply can be taken for it and it is not counted as
    /// sent; the poll goes on as after a timeout.
    pub fn send_failed(&mut self) {
        if self.outstanding.take().is_some() {
            self.counters.sent = self.counters.sent.saturating_sub(1);
            self.counters.unsent += 1;
            self.unreached();
        }
    }

    /// The current interval between requests.
    pub fn interval(&self) -> Nanos {
        if self.burst_left > 0 {
            self.cfg.burst_interval
        } else {
            Nanos(self.cfg.poll.0 << self.backoff.min(self.cfg.max_backoff))
        }
    }

    /// The next instant this source needs `handle_timer`.
    pub fn deadline(&self) -> Option<Steady> {
        if self.stopped.is_some() {
            return None;
        }
        Some(match self.outstanding {
            Some(o) => o.asked_at.plus(self.cfg.timeout).min(self.next_send),
            None => self.next_send,
        })
    }

    fn missed(&mut self) {
        self.counters.timeout += 1;
        self.unreached();
    }

    fn unreached(&mut self) {
        self.reach <<= 1;
        self.misses += 1;
        if self.misses.is_multiple_of(4) && self.burst_left == 0 {
            self.backoff = (self.backoff + 1).min(self.cfg.max_backoff);
        }
    }

    /// Handle the timer at `now`; `nonce` is a fresh random value the shell
    /// supplies (used as the request's transmit timestamp).
    pub fn handle_timer(&mut self, now: Steady, nonce: u64) -> Option<SendRequest> {
        if self.stopped.is_some() {
            return None;
        }
        if let Some(o) = self.outstanding {
            if now >= o.asked_at.plus(self.cfg.timeout) {
                self.outstanding = None;
                self.missed();
            }
        }
        if now < self.next_send {
            return None;
        }
        if self.outstanding.is_some() {
            // The previous request is still in flight: it counts as missed.
            self.missed();
        }
        self.burst_left = self.burst_left.saturating_sub(1);
        self.next_send = now.plus(self.interval());
        self.outstanding = Some(Outstanding {
            nonce,
            asked_at: now,
            sent: None,
        });
        self.counters.sent += 1;
        Some(SendRequest {
            packet: Packet::request(nonce).serialize(),
        })
    }

    /// The shell sent the request just asked for, with these stamps (t1 is
    /// `stamps.at`, read just before `send()`).
    pub fn handle_sent(&mut self, stamps: SentStamps) {
        if let Some(o) = &mut self.outstanding {
            o.sent = Some(stamps);
        }
    }

    /// Handle a datagram that arrived for this source, with what the shell
    /// read around `recv()`; the core picks t4 from them.
    pub fn handle_reply(
        &mut self,
        bytes: &[u8],
        rx: &RxStamps,
        pivot: RefTime,
        params: &SampleParams,
    ) -> Result<Sample, Rejected> {
        let r = self.try_reply(bytes, rx, pivot, params);
        match &r {
            Ok(_) => self.counters.ok += 1,
            Err(Rejected::Unexpected) => self.counters.unexpected += 1,
            Err(e) => {
                self.counters.invalid += 1;
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
        let Some(Outstanding {
            nonce,
            sent: Some(sent),
            ..
        }) = self.outstanding
        else {
            return Err(Rejected::Unexpected);
        };
        let p = match parse_reply(bytes, nonce) {
            // A spoofed or stale reply leaves the request outstanding, so the
            // genuine one can still be taken.
            Err(e @ (ReplyError::OriginMismatch | ReplyError::Parse(_))) => return Err(e.into()),
            Err(e) => {
                self.outstanding = None;
                if let ReplyError::Kiss(code) = e {
                    match code {
                        KissCode::Rate => {
                            self.backoff = (self.backoff + 1).min(self.cfg.max_backoff);
                            self.burst_left = 0;
                        }
                        KissCode::Deny | KissCode::Restrict => self.stopped = Some(code),
                        KissCode::Other(_) => {}
                    }
                }
                return Err(e.into());
            }
            Ok(p) => p,
        };
        self.outstanding = None;
        let (t4, fallback) = receive_instant(&sent, rx);
        if matches!(
            fallback,
            Some(StampFallback::ClockSet | StampFallback::Inconsistent)
        ) {
            self.counters.kernel_stamp_fallbacks += 1;
        }
        let s = sample_from_exchange(&p, sent.at, t4, pivot, params)?;
        self.reach = (self.reach << 1) | 1;
        self.misses = 0;
        self.backoff = 0;
        self.last_error = None;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::packet::{Leap, NtpTimestamp, MODE_SERVER};
    use crate::core::time::NS_PER_S;

    fn cfg() -> PollConfig {
        PollConfig::with_poll(Nanos::from_secs(16))
    }

    fn rx() -> RxStamps {
        RxStamps::steady(Steady(100))
    }

    /// Ask for a request at `now` and report it sent then.
    fn send(s: &mut Source, now: Steady, nonce: u64) {
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
    fn burst_then_poll_then_backoff() {
        let mut s = Source::new(cfg(), Steady(0));
        let mut now = Steady(0);
        let mut sends = vec![];
        for _ in 0..40 {
            if s.handle_timer(now, 1).is_some() {
                sends.push(now.0 / NS_PER_S as i64);
            }
            now = s.deadline().unwrap();
        }
        // burst at 0,1,2,3 s, then the 16 s poll, doubling after runs of timeouts
        assert_eq!(&sends[..5], &[0, 1, 2, 3, 19]);
        let gaps: Vec<i64> = sends.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.contains(&32), "{gaps:?}");
        assert!(gaps.iter().all(|&g| g <= 128), "{gaps:?}");
        assert_eq!(s.reach(), 0);
    }

    #[test]
    fn unsent_requests_are_not_counted_as_sent_and_take_no_reply() {
        let p = SampleParams::default();
        let t = RefTime(1_800_000_000 * NS_PER_S);
        let mut s = Source::new(cfg(), Steady(0));
        s.handle_timer(Steady(0), 42).unwrap();
        s.send_failed();
        assert_eq!((s.counters.sent, s.counters.unsent), (0, 1));
        assert_eq!(s.counters.timeout, 0);
        // nothing is in flight: a reply carrying that nonce is unexpected
        assert_eq!(
            s.handle_reply(&reply_to(42, t), &rx(), t, &p),
            Err(Rejected::Unexpected)
        );
        // the poll goes on; a send that works is counted as sent
        let next = s.deadline().unwrap();
        send(&mut s, next, 43);
        assert_eq!((s.counters.sent, s.counters.unsent), (1, 1));
        // that one fails too; reporting it twice counts it once
        s.send_failed();
        s.send_failed();
        assert_eq!((s.counters.sent, s.counters.unsent), (0, 2));
    }

    #[test]
    fn replies_duplicates_spoofs_and_kisses() {
        let p = SampleParams::default();
        let t = RefTime(1_800_000_000 * NS_PER_S);
        let mut s = Source::new(cfg(), Steady(0));
        send(&mut s, Steady(0), 42);
        // spoofed first: refused, the real reply still accepted
        assert_eq!(
            s.handle_reply(&reply_to(41, t), &rx(), t, &p),
            Err(Rejected::Reply(ReplyError::OriginMismatch))
        );
        assert!(s.handle_reply(&reply_to(42, t), &rx(), t, &p).is_ok());
        // duplicate
        assert_eq!(
            s.handle_reply(&reply_to(42, t), &rx(), t, &p),
            Err(Rejected::Unexpected)
        );
        assert_eq!(s.reach(), 1);
        // DENY stops the source
        let next = s.deadline().unwrap();
        send(&mut s, next, 43);
        let mut kod = Packet::parse(&reply_to(43, t)).unwrap();
        kod.stratum = 0;
        kod.ref_id = *b"DENY";
        assert!(s.handle_reply(&kod.serialize(), &rx(), t, &p).is_err());
        assert_eq!(s.stopped(), Some(KissCode::Deny));
        assert_eq!(s.deadline(), None);
        assert_eq!(s.handle_timer(Steady(i64::MAX), 44), None);
    }
}
