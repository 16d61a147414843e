//! Every configured source in one record, whatever its kind: the kind's own
//! state machine, its recent samples, and how the last selection saw it.
//! Adding a kind is a variant here and one module beside `ntp`.

use super::direct::DirectSource;
use super::filter::Filter;
use super::leap::Leap;
use super::model::Model;
use super::ntp::NtpSource;
use super::poll::{Counters, PollConfig, Poller};
use super::time::{Interval, Nanos, RefTime, Steady};

/// A configured source's index (its slot among the N).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceId(pub usize);

/// What kind of source a slot holds, and what is assumed of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceConfig {
    /// An NTP server.
    Ntp {
        /// The server ages its root dispersion itself before sending
        /// (chrony does; ntpd sends it as of its last update), so skewd does
        /// not age it again at Phi_s. A stated assumption: declared for an
        /// ntpd-style server, that server's error since its reference time
        /// escapes the bound (the simulator shows the violations).
        dispersion_aged_by_server: bool,
        /// A server of the public NTP pool: polled by its usage guidance
        /// ([`PollConfig::public_pool`]), whatever the configured interval.
        public_pool: bool,
    },
    /// A one-way source the shell reads when asked (see [`crate::core::direct`]).
    Direct,
    /// An NTS server (RFC 8915): NTP whose replies are authenticated with
    /// keys from a key exchange the shell runs when asked.
    #[cfg(feature = "nts")]
    Nts {
        /// As for [`SourceConfig::Ntp`].
        dispersion_aged_by_server: bool,
    },
}

impl SourceConfig {
    /// The operator declared that the server ages its root dispersion.
    pub fn dispersion_aged_by_server(&self) -> bool {
        match *self {
            SourceConfig::Ntp {
                dispersion_aged_by_server,
                ..
            } => dispersion_aged_by_server,
            #[cfg(feature = "nts")]
            SourceConfig::Nts {
                dispersion_aged_by_server,
            } => dispersion_aged_by_server,
            SourceConfig::Direct => false,
        }
    }
}

impl Default for SourceConfig {
    fn default() -> SourceConfig {
        SourceConfig::Ntp {
            dispersion_aged_by_server: false,
            public_pool: false,
        }
    }
}

/// A source kind's state machine.
#[derive(Debug, Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per configured source, at most 64: boxing would buy nothing"
)]
pub enum Kind {
    /// An NTP server.
    Ntp(NtpSource),
    /// A one-way source.
    Direct(DirectSource),
    /// An NTS server.
    #[cfg(feature = "nts")]
    Nts(crate::core::nts::NtsSource),
}

/// How a source stands, for `/v1/status` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    /// Its interval took part in the last selection and meets the anchor.
    Selected,
    /// It has a valid interval but no selection used it yet.
    Candidate,
    /// Its interval is disjoint from the published anchor.
    Falseticker,
    /// No valid sample recently.
    Unreachable,
    /// Its answers are refused (bad packets, kiss-o'-death).
    Invalid,
}

impl SourceState {
    /// Lower-case name for JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceState::Selected => "selected",
            SourceState::Candidate => "candidate",
            SourceState::Falseticker => "falseticker",
            SourceState::Unreachable => "unreachable",
            SourceState::Invalid => "invalid",
        }
    }
}

/// A source's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceReport {
    /// Which slot.
    pub id: SourceId,
    /// State.
    pub state: SourceState,
    /// Reachability register.
    pub reach: u8,
    /// Centre of its latest sample minus the model's centre at that instant.
    pub offset: Option<Nanos>,
    /// Half the width of its latest sample's interval (rounded up): the
    /// source's time lay within `offset ± half_width` of the model's centre.
    pub half_width: Option<Nanos>,
    /// Round-trip delay of its latest sample.
    pub delay: Option<Nanos>,
    /// Advertised root distance of its latest sample.
    pub root_distance: Option<Nanos>,
    /// Outcome counters.
    pub counters: Counters,
    /// Its current poll interval.
    pub poll: Nanos,
    /// NTP: whether the server is seen to age its root dispersion itself
    /// (`Some(true)`, chrony-style) or not (`Some(false)`, ntpd-style).
    pub dispersion_ages_itself: Option<bool>,
    /// NTP: what skewd's own ageing of that dispersion (Φ_s since the
    /// server's reference time) added to each side of its latest interval;
    /// zero when declared.
    pub dispersion_ageing_added: Option<Nanos>,
    /// NTP: the operator declared `dispersion_aged_by_server`.
    pub declared_aged: bool,
    /// NTS: authentication, cookies and key exchanges (`None`: not NTS).
    #[cfg(feature = "nts")]
    pub nts: Option<crate::core::nts::NtsReport>,
}

/// One configured source.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its slot.
    pub id: SourceId,
    /// What was configured.
    pub cfg: SourceConfig,
    /// Its state machine.
    pub kind: Kind,
    /// Recent samples (on the internal timescale).
    pub filter: Filter,
    /// Disjoint from the last published anchor.
    pub falseticker: bool,
    /// Had a valid interval in the last selection that published.
    pub used: bool,
    /// The leap indication of its newest sample.
    pub leap_bit: Leap,
}

impl Record {
    /// A source of `cfg`'s kind, first polled at `start`.
    pub fn new(id: SourceId, cfg: SourceConfig, poll: PollConfig, start: Steady) -> Record {
        Record {
            id,
            cfg,
            kind: match cfg {
                SourceConfig::Ntp {
                    public_pool: true, ..
                } => Kind::Ntp(
                    NtpSource::new(PollConfig::public_pool(poll.poll), start)
                        .with_interleaved(true),
                ),
                SourceConfig::Ntp {
                    dispersion_aged_by_server,
                    ..
                } => Kind::Ntp(
                    NtpSource::new(poll, start)
                        .with_interleaved(true)
                        .with_follow_ups(dispersion_aged_by_server),
                ),
                SourceConfig::Direct => Kind::Direct(DirectSource::new(poll, start)),
                #[cfg(feature = "nts")]
                SourceConfig::Nts {
                    dispersion_aged_by_server,
                } => Kind::Nts(crate::core::nts::NtsSource::new(poll, start).with_ntp(|n| {
                    n.with_interleaved(true)
                        .with_follow_ups(dispersion_aged_by_server)
                })),
            },
            filter: Filter::default(),
            falseticker: false,
            used: false,
            leap_bit: Leap::None,
        }
    }

    /// Its poll schedule.
    pub fn poller(&self) -> &Poller {
        match &self.kind {
            Kind::Ntp(s) => s.poller(),
            Kind::Direct(s) => s.poller(),
            #[cfg(feature = "nts")]
            Kind::Nts(s) => s.poller(),
        }
    }

    /// Its poll schedule, to change.
    pub fn poller_mut(&mut self) -> &mut Poller {
        match &mut self.kind {
            Kind::Ntp(s) => s.poller_mut(),
            Kind::Direct(s) => s.poller_mut(),
            #[cfg(feature = "nts")]
            Kind::Nts(s) => s.poller_mut(),
        }
    }

    /// When it next needs the timer (`None`: never again).
    pub fn deadline(&self) -> Option<Steady> {
        match &self.kind {
            #[cfg(feature = "nts")]
            Kind::Nts(s) => s.deadline(),
            _ => self.poller().deadline(),
        }
    }

    /// The NTP machine of an NTP or NTS source.
    pub fn ntp(&self) -> Option<&NtpSource> {
        match &self.kind {
            Kind::Ntp(s) => Some(s),
            Kind::Direct(_) => None,
            #[cfg(feature = "nts")]
            Kind::Nts(s) => Some(s.ntp()),
        }
    }

    /// The timeline was interrupted at `now`: forget what came before.
    pub fn interrupt(&mut self, now: Steady) {
        self.filter.drop_before(now);
        match &mut self.kind {
            Kind::Ntp(s) => s.cancel(),
            Kind::Direct(s) => s.poller_mut().cancel(),
            #[cfg(feature = "nts")]
            Kind::Nts(s) => s.cancel(),
        }
    }

    /// Its figures, against `model`.
    pub fn report(&self, model: Option<&Model>) -> SourceReport {
        let p = self.poller();
        let latest = self.filter.latest();
        let offset = latest.and_then(|l| {
            let m = model?.interval_at(l.at).interval;
            Some(centre(l.bound) - centre(m))
        });
        let refused = self.ntp().is_some_and(|s| {
            s.stopped_by().is_some() || (s.last_error.is_some() && p.reach() == 0)
        });
        let state = if refused {
            SourceState::Invalid
        } else if latest.is_none() || p.reach() == 0 {
            SourceState::Unreachable
        } else if self.falseticker {
            SourceState::Falseticker
        } else if self.used {
            SourceState::Selected
        } else {
            SourceState::Candidate
        };
        SourceReport {
            id: self.id,
            state,
            reach: p.reach(),
            offset,
            half_width: latest.map(|l| Nanos((l.bound.hi.0 - l.bound.lo.0 + 1).div_euclid(2))),
            delay: latest.and_then(|l| l.delay),
            root_distance: latest.and_then(|l| l.root_distance),
            counters: p.counters,
            poll: p.interval(),
            dispersion_ages_itself: self.ntp().and_then(|s| s.dispersion.ages_itself()),
            dispersion_ageing_added: self.ntp().and_then(|s| s.dispersion.ageing_added),
            declared_aged: self.cfg.dispersion_aged_by_server(),
            #[cfg(feature = "nts")]
            nts: match &self.kind {
                Kind::Nts(s) => Some(s.report()),
                _ => None,
            },
        }
    }
}

/// The midpoint of an interval, rounded down.
pub fn centre(iv: Interval) -> RefTime {
    RefTime(iv.lo.0 + (iv.hi.0 - iv.lo.0).div_euclid(2))
}
