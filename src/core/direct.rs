//! A one-way source kind: the shell reads it when asked and hands the core a
//! hard bound directly — a PTP hardware clock read against the steady
//! clock, another skewd on the host, a GPS receiver's PPS. Nothing to parse:
//! the shell (or the simulator) is trusted to turn its reading into a sound
//! interval, and the rest of the engine treats it like any other sample.
//!
//! It proves the seam between source kinds: selection, estimation and leap
//! handling take [`Sample`]s and never know which kind made them.

use super::budget::{Part, Parts};
use super::leap::Leap;
use super::poll::{PollConfig, Poller};
use super::sample::Sample;
use super::time::{Interval, Nanos, Steady};

/// What the shell read from a one-way source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectReading {
    /// The steady instant the bound is for.
    pub at: Steady,
    /// Reference time (UTC) at `at` lies in this interval.
    pub utc: Interval,
    /// The source's leap indication.
    pub leap: Leap,
}

/// Why a reading gives no sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DirectError {
    /// No reading was asked for (late, or a duplicate).
    #[error("no reading outstanding")]
    Unexpected,
    /// The reading is for an instant the source was not read at.
    #[error("reading for an instant outside the request")]
    OutOfRange,
}

/// One one-way source.
#[derive(Debug, Clone)]
pub struct DirectSource {
    poller: Poller,
    asked_at: Option<Steady>,
}

impl DirectSource {
    /// A source first read at `start`.
    pub fn new(cfg: PollConfig, start: Steady) -> DirectSource {
        DirectSource {
            poller: Poller::new(cfg, start),
            asked_at: None,
        }
    }

    /// The schedule.
    pub fn poller(&self) -> &Poller {
        &self.poller
    }

    /// Mutable schedule (timeouts, cancellation).
    pub fn poller_mut(&mut self) -> &mut Poller {
        &mut self.poller
    }

    /// The timer at `now`: `true` when the shell should read the source.
    pub fn handle_timer(&mut self, now: Steady) -> bool {
        let due = self.poller.on_timer(now);
        if due {
            self.asked_at = Some(now);
        }
        due
    }

    /// The shell's reading.
    pub fn handle_reading(&mut self, r: &DirectReading) -> Result<Sample, DirectError> {
        let Some(asked) = self.asked_at.filter(|_| self.poller.in_flight()) else {
            self.poller.counters.unexpected += 1;
            return Err(DirectError::Unexpected);
        };
        if r.at < asked {
            self.poller.refused();
            return Err(DirectError::OutOfRange);
        }
        self.poller.answered();
        // The source's own bound, centred on its midpoint, is all it tells.
        let half = Nanos(r.utc.width().0 / 2);
        Ok(Sample {
            at: r.at,
            bound: r.utc,
            leap: r.leap,
            delay: None,
            root_distance: None,
            centre: r.utc.lo + half,
            lo_parts: Parts::default().with(Part::RootDistance, half),
            hi_parts: Parts::default().with(Part::RootDistance, r.utc.width() - half),
        })
    }
}
