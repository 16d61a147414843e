//! Leap seconds. skewd's internal timescale is *leap-free*: UTC plus the leap
//! seconds since 2017-01-01 (TAI − 37 s), so intervals, rates and
//! commit-wait never see a second repeat, and every host (and every restart)
//! agrees on it. This module maps each source's UTC onto it and publishes
//! how the internal timescale maps back to UTC.
//!
//! - **Origin.** The offset (internal − UTC) comes from the host's leap
//!   table ([`LeapTable`], from tzdata's `leap-seconds.list`), looked up at
//!   the UTC of the first published model — the sources' agreed time, never
//!   the system clock (an RTC reset to 2000 would otherwise move the scale
//!   by 5 s for the agent's whole life). A table that contradicts the known
//!   origin (TAI − UTC = 37 s on 2017-01-01, steps of one second at month
//!   starts) is refused when parsed.
//! - **Announcement.** Honest sources agree on the leap bit, so when a real
//!   leap is announced at most f of the k valid, non-falseticker sources
//!   stay silent. A leap is therefore *pending* once some of them announce
//!   it and at most f do not (with all N answering, f liars cannot schedule
//!   one; during an outage a lone honest announcer still can), or when the
//!   host's leap table lists one at the end of this month. Pending is always
//!   sound — it only widens the UTC view — so doubt schedules. It happens at
//!   the end of the current UTC *month* (RFC 5905: the bit announces the
//!   last minute of the month; real servers set it days or weeks ahead). A
//!   bit that vanishes cancels nothing: during an outage of honest servers,
//!   f liars could withdraw it.
//! - **Until resolved, both.** From the leap instant on, a source that has
//!   not been seen to apply it is ambiguous: its interval is the hull of
//!   "applied" and "not applied". It is resolved as applied once only that
//!   reading meets the model, and as not applied while only the other does.
//!   The UTC view of the model is likewise the hull of both readings from
//!   the leap instant until the leap is complete — never a shift that
//!   assumes it happened.
//! - **Complete or cancel, f-tolerantly.** Up to f sources may lie about
//!   anything, leap handling included, and honest ones agree on whether the
//!   leap happened (some apply it late, within [`LATE_ALLOWANCE`] — a
//!   stated assumption). Once f + 1 sources are seen to have applied it, at
//!   least one honest one has: the UTC view shifts. Sources not yet seen to
//!   apply it stay ambiguous (a late honest server must not be read a
//!   second off) until the allowance has passed; then every source is read
//!   as having applied it. Once f + 1 are seen more than [`LATE_ALLOWANCE`]
//!   past the instant without having applied it, at least one honest one
//!   never will: the leap is cancelled and the UTC view stops widening.
//!   When no model can tell (the timeline was interrupted at the leap), the
//!   host's table decides if it covers the instant, else the announcement:
//!   f + 1 sources announcing it up to the instant means it happened.

pub mod state;
pub mod table;

pub use state::{
    LeapEvent, LeapMark, LeapPhase, LeapState, UtcMapping, DECIDE_AFTER, LATE_ALLOWANCE,
};
pub use table::{LeapTable, ORIGIN_UNIX_S, TAI_UTC_ORIGIN_S};

/// A source's leap indication (the NTP leap indicator's meanings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leap {
    /// No leap second pending.
    None,
    /// The last minute of the month has 61 seconds.
    Insert,
    /// The last minute of the month has 59 seconds.
    Delete,
    /// Clock not synchronized (alarm).
    Alarm,
}
