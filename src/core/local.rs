//! What the host's own clocks say between exchanges, and what it means: the
//! shell reads them (every 0.5 s in the agent) and the engine decides. A
//! suspend (BOOTTIME − MONOTONIC grew), a clocksource change, or a change
//! of the hypervisor's VMClock disruption marker is a timeline interruption:
//! every sample from before it is void. A reading that failed (`None`) is
//! unknown, never a change: a full descriptor table must not drop the model.

use super::stamps::ClockPair;
use super::time::{Nanos, Steady};

/// A BOOTTIME − MONOTONIC change beyond this (plus the read spans) is a
/// suspend: the host slept while MONOTONIC_RAW stood still.
pub const SUSPEND_THRESHOLD: Nanos = Nanos(1_000_000);

/// One reading of the host's clocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReading {
    /// CLOCK_MONOTONIC_RAW at the reading.
    pub at: Steady,
    /// BOOTTIME − MONOTONIC, and the span of the bracket it was read in.
    pub boot_offset: Option<(i64, i64)>,
    /// The current clocksource, if it could be read.
    pub clocksource: Option<String>,
    /// The VMClock disruption marker, if a page is watched and was read.
    pub vmclock_marker: Option<u64>,
    /// A REALTIME/steady pair (the skew operators alert on; step counting).
    pub realtime: Option<ClockPair>,
}

/// A timeline interruption the engine acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interruption {
    /// The host slept about this long.
    Suspend(Nanos),
    /// The kernel switched clocksource (another oscillator).
    Clocksource {
        /// Before.
        from: String,
        /// After.
        to: String,
    },
    /// The hypervisor reported a disruption (live migration, snapshot
    /// restore).
    VmClock,
}

/// How many interruptions of each kind were seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Interruptions {
    /// Suspends.
    pub suspends: u64,
    /// Clocksource changes.
    pub clocksource_changes: u64,
    /// VMClock disruptions.
    pub vmclock_disruptions: u64,
}

/// The last known local readings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalState {
    /// BOOTTIME − MONOTONIC and its span, as last read.
    pub boot_offset: Option<(i64, i64)>,
    /// The clocksource, as last read.
    pub clocksource: Option<String>,
    /// The VMClock marker, as last read.
    pub vmclock_marker: Option<u64>,
    /// Counts.
    pub counts: Interruptions,
    /// Full readings taken so far.
    readings: u64,
}

impl LocalState {
    /// Take a full reading; the interruption it shows, if any. A value
    /// that could not be read is unknown and changes nothing; a clocksource
    /// or marker that appears after readings without one is a change (it
    /// may have changed while it could not be read), except at the very
    /// first reading, when there is nothing yet to void.
    pub fn observe(&mut self, r: &LocalReading) -> Option<Interruption> {
        let first = self.readings == 0;
        self.readings += 1;
        let mut found = self.observe_boot(r.boot_offset);
        let cs = match (&self.clocksource, &r.clocksource) {
            (Some(old), Some(new)) if old != new => Some(old.clone()),
            (None, Some(_)) if !first => Some("unknown".to_owned()),
            _ => None,
        };
        if let (Some(from), Some(to)) = (cs, &r.clocksource) {
            self.counts.clocksource_changes += 1;
            found.get_or_insert(Interruption::Clocksource {
                from,
                to: to.clone(),
            });
        }
        if r.clocksource.is_some() {
            self.clocksource.clone_from(&r.clocksource);
        }
        let vm_changed = match (self.vmclock_marker, r.vmclock_marker) {
            (Some(old), Some(new)) => old != new,
            (None, Some(_)) => !first,
            _ => false,
        };
        if vm_changed {
            self.counts.vmclock_disruptions += 1;
            found.get_or_insert(Interruption::VmClock);
        }
        if r.vmclock_marker.is_some() {
            self.vmclock_marker = r.vmclock_marker;
        }
        found
    }

    /// Take a boot offset read alone (with a reply): a suspend since the
    /// last reading, if any.
    pub fn observe_boot(&mut self, boot_offset: Option<(i64, i64)>) -> Option<Interruption> {
        let mut found = None;
        if let (Some((old, old_span)), Some((new, span))) = (self.boot_offset, boot_offset) {
            if (new - old).abs() > SUSPEND_THRESHOLD.0 as i64 + span + old_span {
                self.counts.suspends += 1;
                found = Some(Interruption::Suspend(Nanos((new - old).into())));
            }
        }
        if boot_offset.is_some() {
            self.boot_offset = boot_offset;
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(boot: i64, cs: Option<&str>, vm: Option<u64>) -> LocalReading {
        LocalReading {
            at: Steady(0),
            boot_offset: Some((boot, 100)),
            clocksource: cs.map(str::to_owned),
            vmclock_marker: vm,
            realtime: None,
        }
    }

    #[test]
    fn interruptions_and_unknowns() {
        let mut s = LocalState::default();
        assert_eq!(s.observe(&reading(0, Some("tsc"), Some(1))), None);
        // a failed read is unknown, not a change
        assert_eq!(s.observe(&reading(500, None, None)), None);
        assert_eq!(
            s.observe(&reading(5_000_000, Some("tsc"), Some(1))),
            Some(Interruption::Suspend(Nanos(4_999_500)))
        );
        assert_eq!(
            s.observe(&reading(5_000_000, Some("hpet"), Some(1))),
            Some(Interruption::Clocksource {
                from: "tsc".into(),
                to: "hpet".into()
            })
        );
        assert_eq!(
            s.observe(&reading(5_000_000, Some("hpet"), Some(2))),
            Some(Interruption::VmClock)
        );
        assert_eq!(
            s.counts,
            Interruptions {
                suspends: 1,
                clocksource_changes: 1,
                vmclock_disruptions: 1
            }
        );
    }

    /// A value that could not be read at the first reading, and appears
    /// later, may hide a change: it interrupts (a failure at start must not
    /// make the first later value a silent baseline).
    #[test]
    fn a_value_appearing_late_is_a_change() {
        let mut s = LocalState::default();
        assert_eq!(s.observe(&reading(0, None, None)), None);
        assert_eq!(s.observe(&reading(0, None, None)), None);
        assert!(matches!(
            s.observe(&reading(0, Some("tsc"), None)),
            Some(Interruption::Clocksource { .. })
        ));
        assert_eq!(
            s.observe(&reading(0, Some("tsc"), Some(3))),
            Some(Interruption::VmClock)
        );
        assert_eq!(s.observe(&reading(0, Some("tsc"), Some(3))), None);
        // The very first reading is the baseline.
        let mut s = LocalState::default();
        assert_eq!(s.observe(&reading(0, Some("tsc"), Some(3))), None);
    }
}
