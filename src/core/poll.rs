//! When a source is asked for a measurement: the poll schedule shared by
//! every source kind, with its reachability register and outcome counters.
//!
//! Policy: a burst of `burst` requests `burst_interval` apart at start
//! (first sync in seconds), then one every `poll`. While the source does not
//! answer, the interval doubles after each run of 4 misses, up to
//! `poll * 2^max_backoff`; any good answer resets it. Timers are absolute
//! deadlines.

use super::time::{Nanos, Steady};

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

/// Outcome counters, for metrics (`skewd_ntp_requests_total{result}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests sent.
    pub sent: u64,
    /// Good answers.
    pub ok: u64,
    /// Requests that timed out.
    pub timeout: u64,
    /// Answers refused by validation (kiss-o'-death, malformed, no bound).
    pub invalid: u64,
    /// Datagrams that answered no request of ours (duplicates, late
    /// replies, forgeries): they change nothing.
    pub unexpected: u64,
    /// Requests the shell could not send (no address yet, or the send
    /// failed): not counted as sent, and they count against reach.
    pub unsent: u64,
    /// Good answers whose bound lay more than an hour from the published
    /// model: a source far off (or lying about the era); still a sample,
    /// selection decides, but worth seeing.
    pub implausible: u64,
    /// Answers whose kernel receive stamp could not be used soundly
    /// (REALTIME set during the exchange, or inconsistent): the userspace
    /// stamp was used instead.
    pub kernel_stamp_fallbacks: u64,
}

/// One source's schedule.
#[derive(Debug, Clone)]
pub struct Poller {
    cfg: PollConfig,
    /// When the request in flight was asked for (its timeout runs from here).
    outstanding: Option<Steady>,
    next_send: Steady,
    burst_left: u32,
    misses: u32,
    backoff: u32,
    stopped: bool,
    reach: u8,
    /// Outcome counters.
    pub counters: Counters,
}

impl Poller {
    /// A schedule whose first request is due at `start`.
    pub fn new(cfg: PollConfig, start: Steady) -> Poller {
        Poller {
            cfg,
            outstanding: None,
            next_send: start,
            burst_left: cfg.burst,
            misses: 0,
            backoff: 0,
            stopped: false,
            reach: 0,
            counters: Counters::default(),
        }
    }

    /// The 8-bit reachability register (1 bit per poll, newest lowest).
    pub fn reach(&self) -> u8 {
        self.reach
    }

    /// Whether a request is in flight.
    pub fn in_flight(&self) -> bool {
        self.outstanding.is_some()
    }

    /// The current interval between requests.
    pub fn interval(&self) -> Nanos {
        if self.burst_left > 0 {
            self.cfg.burst_interval
        } else {
            Nanos(self.cfg.poll.0 << self.backoff.min(self.cfg.max_backoff))
        }
    }

    /// The next instant this source needs the timer (`None`: stopped).
    pub fn deadline(&self) -> Option<Steady> {
        if self.stopped {
            return None;
        }
        Some(match self.outstanding {
            Some(asked) => asked.plus(self.cfg.timeout).min(self.next_send),
            None => self.next_send,
        })
    }

    /// The timer at `now`: time out what is overdue; `true` when a new
    /// request is due now (it is then in flight and counted as sent).
    pub fn on_timer(&mut self, now: Steady) -> bool {
        if self.stopped {
            return false;
        }
        if let Some(asked) = self.outstanding {
            if now >= asked.plus(self.cfg.timeout) {
                self.outstanding = None;
                self.counters.timeout += 1;
                self.unreached();
            }
        }
        if now < self.next_send {
            return false;
        }
        if self.outstanding.take().is_some() {
            // The previous request is still in flight: it counts as missed.
            self.counters.timeout += 1;
            self.unreached();
        }
        self.burst_left = self.burst_left.saturating_sub(1);
        self.next_send = now.plus(self.interval());
        self.outstanding = Some(now);
        self.counters.sent += 1;
        true
    }

    /// The request just asked for could not be sent: not in flight, not
    /// counted as sent, and it counts against reach like a timeout.
    pub fn unsent(&mut self) {
        if self.outstanding.take().is_some() {
            self.counters.sent = self.counters.sent.saturating_sub(1);
            self.counters.unsent += 1;
            self.unreached();
        }
    }

    /// A good answer ended the request.
    pub fn answered(&mut self) {
        self.outstanding = None;
        self.counters.ok += 1;
        self.reach = (self.reach << 1) | 1;
        self.misses = 0;
        self.backoff = 0;
    }

    /// An answer to our request that gives no sample (refused): the request
    /// is over and counts against reach.
    pub fn refused(&mut self) {
        if self.outstanding.take().is_some() {
            self.counters.invalid += 1;
            self.unreached();
        }
    }

    /// Poll less often (the server asked for it): one more backoff step,
    /// no burst.
    pub fn slow_down(&mut self) {
        self.backoff = (self.backoff + 1).min(self.cfg.max_backoff);
        self.burst_left = 0;
    }

    /// Never poll again.
    pub fn stop(&mut self) {
        self.stopped = true;
        self.outstanding = None;
    }

    /// Whether stopped for good.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Forget the request in flight (the timeline was interrupted while it
    /// was out: its answer can no longer be trusted).
    pub fn cancel(&mut self) {
        self.outstanding = None;
    }

    fn unreached(&mut self) {
        self.reach <<= 1;
        self.misses += 1;
        if self.misses.is_multiple_of(4) && self.burst_left == 0 {
            self.backoff = (self.backoff + 1).min(self.cfg.max_backoff);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::NS_PER_S;

    #[test]
    fn burst_then_poll_then_backoff() {
        let mut p = Poller::new(PollConfig::with_poll(Nanos::from_secs(16)), Steady(0));
        let mut now = Steady(0);
        let mut sends = vec![];
        for _ in 0..40 {
            if p.on_timer(now) {
                sends.push(now.0 / NS_PER_S as i64);
            }
            now = p.deadline().unwrap();
        }
        // burst at 0,1,2,3 s, then the 16 s poll, doubling after runs of timeouts
        assert_eq!(&sends[..5], &[0, 1, 2, 3, 19]);
        let gaps: Vec<i64> = sends.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.contains(&32), "{gaps:?}");
        assert!(gaps.iter().all(|&g| g <= 128), "{gaps:?}");
        assert_eq!(p.reach(), 0);
    }

    #[test]
    fn refused_answers_count_against_reach() {
        let mut p = Poller::new(PollConfig::with_poll(Nanos::from_secs(16)), Steady(0));
        assert!(p.on_timer(Steady(0)));
        p.answered();
        assert_eq!(p.reach(), 1);
        let next = p.deadline().unwrap();
        assert!(p.on_timer(next));
        p.refused();
        assert_eq!((p.reach(), p.counters.invalid), (2, 1));
        // a second refusal of the same request changes nothing
        p.refused();
        assert_eq!(p.counters.invalid, 1);
    }
}
