//! One NTS server as a source: an [`NtpSource`] (the request/reply machine,
//! basic and interleaved, on its poll schedule) wrapped in NTS.
//!
//! - **Keys and cookies** come from a key exchange the shell performs when
//!   asked ([`Timer::key_exchange`]); each request spends one cookie (never
//!   reused: a cookie links requests to each other) and asks, with
//!   placeholders, for as many back as keep eight held.
//! - **Re-keying**: a poll that finds no cookie starts a key exchange and
//!   waits for it (up to [`KE_TIMEOUT`]); so does one after an NTS NAK that
//!   no authentic reply followed (RFC 8915 section 5.7: a NAK is itself
//!   unauthenticated, so it only counts once the request it answered got
//!   nothing better). Key exchanges without an authentic reply since back
//!   off from 2 s to 1024 s.
//! - **Only authentic replies count.** A datagram must carry the unique
//!   identifier of the request in flight and an authenticator that opens
//!   under the server-to-client key before the NTP machine sees a byte of
//!   it. Anything else changes no exchange state, no poll schedule and no
//!   reachability: the request stays open and times out as a lost one would.

use super::ef::{open_reply, seal_request, Key, OpenError, NONCE_LEN, UID_LEN};
use super::ke::{KeError, MAX_COOKIES};
use crate::core::ntp::exchange::SampleParams;
use crate::core::ntp::{NtpSource, Rejected};
use crate::core::poll::{PollConfig, Poller};
use crate::core::sample::Sample;
use crate::core::stamps::{RxStamps, SentStamps};
use crate::core::time::{Nanos, RefTime, Steady};
use std::collections::VecDeque;
use thiserror::Error;

/// A key exchange that has not reported by then is given up.
pub const KE_TIMEOUT: Nanos = Nanos(15_000_000_000);
/// The first wait before another key exchange without an authentic reply
/// in between; it doubles per attempt...
pub const KE_RETRY_MIN: Nanos = Nanos(2_000_000_000);
/// ...up to this.
pub const KE_RETRY_MAX: Nanos = Nanos(1_024_000_000_000);
/// The cookies of one request (the spent one and the placeholders) stay
/// within this many bytes, so requests are not fragmented (chronyd's limit).
pub const MAX_REQUEST_COOKIE_BYTES: usize = 8 * 108;

/// What a successful key exchange gave: the two keys the shell exported
/// from the TLS session, and the server's cookies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeOutcome {
    /// Client-to-server key (requests).
    pub c2s: Key,
    /// Server-to-client key (replies).
    pub s2c: Key,
    /// The cookies (at least one; at most eight are kept).
    pub cookies: Vec<Vec<u8>>,
}

/// Why a key exchange failed, as the shell saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum KeFailure {
    /// The NTS-KE server's name did not resolve, or it could not be reached.
    #[error("NTS-KE server unreachable")]
    Unreachable,
    /// TLS failed: handshake, certificate, TLS 1.3 or ALPN `ntske/1`.
    #[error("TLS failed (handshake, certificate or ALPN)")]
    Tls,
    /// The response was refused.
    #[error(transparent)]
    Response(#[from] KeError),
    /// No complete response in time.
    #[error("timed out")]
    TimedOut,
    /// The NTP server it named did not resolve, or another source uses it.
    #[error("the negotiated NTP server address is unusable")]
    NtpAddress,
}

/// Why an NTS source refused a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NtsError {
    /// No request with keys is in flight.
    #[error("no NTS request in flight")]
    NoRequest,
    /// Not an authentic answer to the request in flight.
    #[error(transparent)]
    Open(#[from] OpenError),
}

/// Counters and state for `/v1/status` and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NtsReport {
    /// Keys are held and its last poll's replies authenticate: the source
    /// answers (reach) and every one of its samples was authenticated.
    pub authenticated: bool,
    /// Cookies held.
    pub cookies: u8,
    /// Successful key exchanges.
    pub key_exchanges: u64,
    /// Failed key exchanges.
    pub key_exchange_failures: u64,
    /// Replies that carried our unique identifier but did not authenticate
    /// (altered or forged): never used.
    pub auth_failures: u64,
    /// NTS NAKs answering our requests.
    pub naks: u64,
    /// Authentic replies.
    pub authenticated_replies: u64,
    /// Why the last key exchange failed, if the last one did.
    pub last_key_exchange_failure: Option<KeFailure>,
}

/// Keys and cookies from one key exchange.
#[derive(Debug, Clone)]
struct Session {
    c2s: Key,
    s2c: Key,
    cookies: VecDeque<Vec<u8>>,
}

/// The last request sent: its unique identifier and what answered it.
#[derive(Debug, Clone, Copy)]
struct Sent {
    uid: [u8; UID_LEN],
    /// An authentic reply came (at most one is used).
    ok: bool,
    /// An NTS NAK came.
    nak: bool,
}

/// What the timer asks of the shell.
#[derive(Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Timer {
    /// Run a key exchange: its id (report it back with it) and the request
    /// records to send over TLS.
    pub key_exchange: Option<(u64, Vec<u8>)>,
    /// Send this NTP request.
    pub send: Option<Vec<u8>>,
}

/// One configured NTS server.
#[derive(Debug, Clone)]
pub struct NtsSource {
    ntp: NtpSource,
    session: Option<Session>,
    sent: Option<Sent>,
    /// The key exchange in flight: its id and start.
    ke_in_flight: Option<(u64, Steady)>,
    ke_next_id: u64,
    /// Key exchanges since the last authentic reply.
    ke_attempts: u32,
    /// No key exchange before this.
    ke_not_before: Option<Steady>,
    report: NtsReport,
}

/// `n` random bytes from `rand`.
fn random<const N: usize>(rand: &mut dyn FnMut() -> u64) -> [u8; N] {
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(8) {
        let r = rand().to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
    out
}

impl NtsSource {
    /// A source polled by `cfg` from `start`: its first poll starts a key
    /// exchange.
    pub fn new(cfg: PollConfig, start: Steady) -> NtsSource {
        NtsSource {
            ntp: NtpSource::new(cfg, start),
            session: None,
            sent: None,
            ke_in_flight: None,
            ke_next_id: 1,
            ke_attempts: 0,
            ke_not_before: None,
            report: NtsReport::default(),
        }
    }

    /// The NTP machine beneath, configured (interleaved, follow-ups).
    pub fn with_ntp(mut self, f: impl FnOnce(NtpSource) -> NtpSource) -> NtsSource {
        self.ntp = f(self.ntp);
        self
    }

    /// The NTP machine beneath.
    pub fn ntp(&self) -> &NtpSource {
        &self.ntp
    }

    /// The schedule.
    pub fn poller(&self) -> &Poller {
        self.ntp.poller()
    }

    /// The schedule, to change.
    pub fn poller_mut(&mut self) -> &mut Poller {
        self.ntp.poller_mut()
    }

    fn cookies(&self) -> usize {
        self.session.as_ref().map_or(0, |s| s.cookies.len())
    }

    /// Its figures.
    pub fn report(&self) -> NtsReport {
        NtsReport {
            authenticated: self.session.is_some() && self.poller().reach() != 0,
            cookies: self.cookies() as u8,
            ..self.report
        }
    }

    /// When it needs the timer: its poll, except while a key exchange it
    /// waits for is in flight (then when that is given up).
    pub fn deadline(&self) -> Option<Steady> {
        let poll = self.ntp.poller().deadline()?;
        Some(match self.ke_in_flight {
            Some((_, started)) => started.plus(KE_TIMEOUT),
            None => poll,
        })
    }

    fn backoff(&self) -> Nanos {
        let shift = self.ke_attempts.saturating_sub(1).min(16);
        Nanos((KE_RETRY_MIN.0 << shift).min(KE_RETRY_MAX.0))
    }

    fn ke_done(&mut self, now: Steady) {
        self.ke_in_flight = None;
        self.ke_not_before = Some(now.plus(self.backoff()));
    }

    /// The timer at `now` (at or after [`NtsSource::deadline`]); `rand`
    /// gives fresh random values (nonces, unique identifiers).
    pub fn handle_timer(&mut self, now: Steady, rand: &mut dyn FnMut() -> u64) -> Timer {
        let mut out = Timer::default();
        // A request whose time is up is missed, also while a key exchange
        // holds the poll (a reply held past it must not become a sample).
        let due = self.ntp.poller().deadline().is_some_and(|d| d <= now);
        self.ntp.expire(now);
        if let Some((_, started)) = self.ke_in_flight {
            if now < started.plus(KE_TIMEOUT) {
                return out;
            }
            self.report.key_exchange_failures += 1;
            self.report.last_key_exchange_failure = Some(KeFailure::TimedOut);
            self.ke_done(now);
        }
        // (A timeout is due too: with no cookie left, the key exchange
        // starts then rather than a poll later.)
        if !due {
            return out;
        }
        // A NAK that no authentic reply followed: the cookies are refused.
        if self.sent.is_some_and(|s| s.nak && !s.ok) {
            if let Some(s) = &mut self.session {
                s.cookies.clear();
            }
            self.sent = None;
        }
        if self.cookies() == 0 {
            if self.ke_not_before.is_none_or(|t| now >= t) {
                let id = self.ke_next_id;
                self.ke_next_id += 1;
                self.ke_attempts = self.ke_attempts.saturating_add(1);
                self.ke_in_flight = Some((id, now));
                out.key_exchange = Some((id, super::ke::request()));
                // The poll waits for the key exchange.
                return out;
            }
            // No keys and no key exchange yet: the poll is a miss.
            if self.ntp.handle_timer(now, rand()).is_some() {
                self.ntp.send_failed();
            }
            return out;
        }
        let Some(header) = self.ntp.handle_timer(now, rand()) else {
            return out; // a timeout, nothing to send
        };
        let Some(session) = &mut self.session else {
            return out;
        };
        let Some(cookie) = session.cookies.pop_front() else {
            return out;
        };
        let held = session.cookies.len();
        let wanted = (MAX_COOKIES - held).min(MAX_REQUEST_COOKIE_BYTES / (cookie.len() + 4));
        let uid: [u8; UID_LEN] = random(rand);
        let nonce: [u8; NONCE_LEN] = random(rand);
        out.send = Some(seal_request(
            &header,
            &uid,
            &cookie,
            wanted.saturating_sub(1),
            &session.c2s,
            &nonce,
        ));
        self.sent = Some(Sent {
            uid,
            ok: false,
            nak: false,
        });
        out
    }

    /// The shell ran key exchange `id`, which gave `result`. A result for
    /// any other exchange than the one in flight is ignored.
    pub fn handle_key_exchange(
        &mut self,
        id: u64,
        now: Steady,
        result: Result<KeOutcome, KeFailure>,
    ) {
        if self.ke_in_flight.map(|(i, _)| i) != Some(id) {
            return;
        }
        self.ke_done(now);
        match result {
            Ok(o) if !o.cookies.is_empty() => {
                self.report.key_exchanges += 1;
                self.report.last_key_exchange_failure = None;
                self.sent = None;
                self.session = Some(Session {
                    c2s: o.c2s,
                    s2c: o.s2c,
                    cookies: o.cookies.into_iter().take(MAX_COOKIES).collect(),
                });
            }
            Ok(_) => {
                self.report.key_exchange_failures += 1;
                self.report.last_key_exchange_failure =
                    Some(KeFailure::Response(KeError::NoCookies));
            }
            Err(f) => {
                self.report.key_exchange_failures += 1;
                self.report.last_key_exchange_failure = Some(f);
            }
        }
    }

    /// The shell sent the request, reading `stamps` around `send()`.
    pub fn handle_sent(&mut self, stamps: SentStamps) {
        self.ntp.handle_sent(stamps);
    }

    /// The shell could not send it (its cookie is spent all the same).
    pub fn send_failed(&mut self) {
        self.sent = None;
        self.ntp.send_failed();
    }

    /// The timeline was interrupted: the request in flight is void.
    pub fn cancel(&mut self) {
        self.sent = None;
        self.ntp.cancel();
    }

    /// A datagram from the server: authenticated first, then (and only
    /// then) handed to the NTP machine.
    pub fn handle_reply(
        &mut self,
        bytes: &[u8],
        rx: &RxStamps,
        pivot: RefTime,
        params: &SampleParams,
    ) -> Result<Sample, Rejected> {
        let unexpected = |s: &mut NtsSource, e: NtsError| {
            s.ntp.poller_mut().counters.unexpected += 1;
            Err(Rejected::Nts(e))
        };
        // Late by the request's timeout: no longer expected (the NTP machine
        // applies the same rule; here it must hold before the reply is
        // opened).
        self.ntp.expire(rx.at);
        let (Some(sent), Some(session)) = (&mut self.sent, &mut self.session) else {
            return unexpected(self, NtsError::NoRequest);
        };
        if sent.ok || !self.ntp.poller().in_flight() {
            return unexpected(self, NtsError::NoRequest);
        }
        match open_reply(bytes, &sent.uid, &session.s2c) {
            Ok(opened) => {
                sent.ok = true;
                for c in opened.cookies {
                    if session.cookies.len() < MAX_COOKIES {
                        session.cookies.push_back(c);
                    }
                }
                self.report.authenticated_replies += 1;
                self.ke_attempts = 0;
                self.ke_not_before = None;
                self.ntp.handle_reply(bytes, rx, pivot, params)
            }
            Err(e @ (OpenError::NotOurs | OpenError::Malformed)) => {
                unexpected(self, NtsError::Open(e))
            }
            Err(OpenError::Nak) => {
                sent.nak = true;
                self.report.naks += 1;
                Err(Rejected::Nts(NtsError::Open(OpenError::Nak)))
            }
            Err(e) => {
                self.report.auth_failures += 1;
                Err(Rejected::Nts(NtsError::Open(e)))
            }
        }
    }
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
