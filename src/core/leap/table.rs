//! The host's leap-second list (tzdata's `leap-seconds.list`), checked
//! against what is known for sure: where skewd's leap-free timescale starts,
//! and which leaps it vouches for.

use crate::core::time::{Nanos, RefTime, NS_PER_S};

/// TAI − UTC at the leap-free timescale's origin, 2017-01-01 (s).
pub const TAI_UTC_ORIGIN_S: i64 = 37;
/// Unix seconds of 2017-01-01T00:00Z, the origin.
pub const ORIGIN_UNIX_S: i64 = 1_483_228_800;
/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_TO_UNIX_S: i64 = 2_208_988_800;

/// The host's list of leap seconds: TAI − UTC from each instant on. The
/// default knows only the origin (37 s from 2017-01-01).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeapTable {
    /// `(unix_s, tai_minus_utc_s)`, strictly increasing in time.
    entries: Vec<(i64, i64)>,
    /// When the list stops vouching that no further leap happened (Unix s).
    pub expires_unix_s: Option<i64>,
}

impl Default for LeapTable {
    fn default() -> LeapTable {
        LeapTable {
            entries: vec![(ORIGIN_UNIX_S, TAI_UTC_ORIGIN_S)],
            expires_unix_s: None,
        }
    }
}

impl LeapTable {
    /// Parse a `leap-seconds.list` (IERS / NIST / tzdata format) and check
    /// it against what is known for sure: entries on the first of a month
    /// at 00:00 UTC, strictly increasing, each changing TAI − UTC by exactly
    /// one second, and TAI − UTC = 37 s in force on 2017-01-01.
    pub fn parse(text: &str) -> Result<LeapTable, String> {
        let mut entries: Vec<(i64, i64)> = Vec::new();
        let mut expires = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            let at = |what: &str| format!("line {}: {what}", n + 1);
            if let Some(rest) = line.strip_prefix("#@") {
                let ntp: i64 = rest
                    .trim()
                    .parse()
                    .map_err(|_| at(&format!("bad expiry {rest:?}")))?;
                expires = Some(ntp - NTP_TO_UNIX_S);
                continue;
            }
            let data = line.split('#').next().unwrap_or("").trim();
            if data.is_empty() {
                continue;
            }
            let mut f = data.split_whitespace();
            let (Some(start), Some(offset), None) = (f.next(), f.next(), f.next()) else {
                return Err(at("expected `NTP-seconds TAI-UTC`"));
            };
            let (Ok(start), Ok(offset)) = (start.parse::<i64>(), offset.parse::<i64>()) else {
                return Err(at("not two integers"));
            };
            let unix = start
                .checked_sub(NTP_TO_UNIX_S)
                .ok_or_else(|| at("time out of range"))?;
            if unix.rem_euclid(86_400) != 0 || {
                let (_, _, d) = crate::core::time::civil_from_days(unix.div_euclid(86_400));
                d != 1
            } {
                return Err(at(
                    "a leap takes effect only at 00:00 UTC on the first of a month",
                ));
            }
            if let Some(&(prev_t, prev_o)) = entries.last() {
                if unix <= prev_t {
                    return Err(at("out of order"));
                }
                if (offset - prev_o).abs() != 1 {
                    return Err(at("TAI - UTC changes by one second per leap"));
                }
            } else if !(0..=100).contains(&offset) {
                return Err(at("first TAI - UTC out of range"));
            }
            entries.push((unix, offset));
        }
        let t = LeapTable {
            entries,
            expires_unix_s: expires,
        };
        match t.tai_utc_at(ORIGIN_UNIX_S) {
            Some(TAI_UTC_ORIGIN_S) => Ok(t),
            Some(other) => Err(format!(
                "says TAI - UTC = {other} s on 2017-01-01, where it is {TAI_UTC_ORIGIN_S} s: not a list to trust"
            )),
            None => Err("has no entry in force on 2017-01-01 (too old a list)".into()),
        }
    }

    /// TAI − UTC (s) in force at `unix_s`, if the table covers it.
    pub fn tai_utc_at(&self, unix_s: i64) -> Option<i64> {
        self.entries
            .iter()
            .take_while(|(t, _)| *t <= unix_s)
            .last()
            .map(|e| e.1)
    }

    /// Leap-free minus UTC at UTC instant `utc`: the leap seconds since the
    /// origin (0 without a table, or before its first entry: right until the
    /// next leap second, and none has been announced since 2017).
    pub fn leapfree_offset_at(&self, utc: RefTime) -> Nanos {
        let s = crate::core::time::clamp_i64(utc.0.div_euclid(NS_PER_S));
        self.tai_utc_at(s).map_or(Nanos(0), |o| {
            Nanos::from_secs((o - TAI_UTC_ORIGIN_S).into())
        })
    }

    /// A leap the table lists at UTC instant `at` (Unix ns, a month start):
    /// its size (+1 s insertion, -1 s deletion).
    pub fn leap_at(&self, at: RefTime) -> Option<Nanos> {
        let s = i64::try_from(at.0.div_euclid(NS_PER_S)).ok()?;
        if at.0.rem_euclid(NS_PER_S) != 0 {
            return None;
        }
        let i = self.entries.iter().position(|e| e.0 == s)?;
        let before = self.entries.get(i.checked_sub(1)?)?.1;
        Some(Nanos::from_secs((self.entries[i].1 - before).into()))
    }

    /// Whether the table vouches for UTC instant `at` (Unix ns): it lists
    /// every leap up to its expiry, so before that an unlisted leap did not
    /// happen. A table without an expiry vouches for nothing after its last
    /// entry.
    pub fn covers(&self, at: RefTime) -> bool {
        let s = crate::core::time::clamp_i64(at.0.div_euclid(NS_PER_S));
        match (self.expires_unix_s, self.entries.last()) {
            (Some(e), _) => s <= e,
            (None, Some(last)) => s <= last.0,
            (None, None) => false,
        }
    }

    /// Add a leap seen happening (kept in the state directory so that a
    /// restart with an expired list keeps the same timescale): `tai_utc_s`
    /// in force from `unix_s`. Ignored unless it follows the last entry by
    /// exactly one second at a month start.
    pub fn extend(&mut self, unix_s: i64, tai_utc_s: i64) -> bool {
        let ok = self.entries.last().is_some_and(|&(t, o)| {
            unix_s > t
                && (tai_utc_s - o).abs() == 1
                && unix_s.rem_euclid(86_400) == 0
                && crate::core::time::civil_from_days(unix_s.div_euclid(86_400)).2 == 1
        });
        if ok {
            self.entries.push((unix_s, tai_utc_s));
        }
        ok
    }

    /// The newest entry: `(unix_s, tai_minus_utc_s)`.
    pub fn last(&self) -> Option<(i64, i64)> {
        self.entries.last().copied()
    }

    /// Whether the list has expired at `unix_s` (a leap after its expiry
    /// would be missing from it).
    pub fn expired(&self, unix_s: i64) -> bool {
        self.expires_unix_s.is_some_and(|e| unix_s > e)
    }
}

/// A short, valid list (the tail of tzdata's) for tests.
#[cfg(test)]
pub(crate) const TEST_LIST: &str = "\
#\tIn the following text, the symbol '#' introduces a comment.
#$\t 3913697179
#@\t3991593600
3550089600\t35\t# 1 Jul 2012
3644697600\t36\t# 1 Jul 2015
3692217600\t37\t# 1 Jan 2017
";

#[cfg(test)]
mod tests {
    use super::*;
    const LIST: &str = TEST_LIST;

    #[test]
    fn table_lookup_and_origin() {
        let t = LeapTable::parse(LIST).unwrap();
        assert_eq!(t.tai_utc_at(1_795_000_000), Some(37));
        assert_eq!(t.expires_unix_s, Some(1_782_604_800)); // 2026-06-28
        assert!(t.expired(1_795_000_000));
        let ns = |s: i128| RefTime(s * NS_PER_S);
        assert_eq!(t.leapfree_offset_at(ns(1_795_000_000)), Nanos(0));
        // mid-2016: one leap before the origin
        assert_eq!(t.leapfree_offset_at(ns(1_470_000_000)), Nanos(-NS_PER_S));
        // no table: zero
        assert_eq!(
            LeapTable::default().leapfree_offset_at(ns(1_795_000_000)),
            Nanos(0)
        );
    }

    #[test]
    fn refuses_malformed_or_contradicting_lists() {
        for bad in [
            "3692217600\n",
            "3692217600 37 38\n",
            "x 37\n",
            "3692217600 37\n3644697600 36\n",
            "#@ soon\n3692217600 37\n",
            "3692217600 -5\n",
            "# only comments\n",
            // pre-2017 list: nothing known about the origin
            "3644697600 36\n",
            // contradicts the origin (a hostile list: +963 s)
            "3692217600 1000\n",
            "3644697600 36\n3692217600 38\n",
            // not at the start of a month
            "3644697600 36\n3692217700 37\n",
        ] {
            assert!(LeapTable::parse(bad).is_err(), "{bad:?}");
        }
        // a future leap after the origin is accepted
        let t = LeapTable::parse("3692217600 37\n3976214400 38\n").unwrap(); // 2026-01-01
        assert_eq!(t.tai_utc_at(1_795_000_000), Some(38));
    }

    #[test]
    fn the_hosts_list_parses_if_present() {
        if let Ok(text) = std::fs::read_to_string("/usr/share/zoneinfo/leap-seconds.list") {
            let t = LeapTable::parse(&text).unwrap();
            assert!(t.tai_utc_at(1_795_000_000) >= Some(37));
        }
    }

    #[test]
    fn a_table_extends_with_a_leap_seen_happening() {
        let mut t = LeapTable::parse(LIST).unwrap();
        assert!(!t.extend(1_798_761_600 + 5, 38), "not a month start");
        assert!(!t.extend(1_798_761_600, 39), "not one second");
        assert!(t.extend(1_798_761_600, 38)); // 2027-01-01
        assert_eq!(t.tai_utc_at(1_800_000_000), Some(38));
    }
}
