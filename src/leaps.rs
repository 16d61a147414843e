//! The host's leap-second list (`leap-seconds.list` from tzdata, the IERS /
//! NIST format): where skewd's leap-free timescale starts.
//!
//! The leap-free timescale is UTC plus the leap seconds since 2017-01-01
//! (TAI − 37 s). Reading TAI − UTC from the list at start makes every host
//! and every restart agree on it, also one that was down across a leap; a
//! leap announced by the sources while skewd runs moves it as well.

use std::path::Path;

/// tzdata's copy of the list.
pub const DEFAULT_PATH: &str = "/usr/share/zoneinfo/leap-seconds.list";
/// TAI − UTC from 2017-01-01, the origin of the leap-free timescale.
pub const TAI_UTC_ORIGIN_S: i64 = 37;
/// Unix time of the NTP era-0 epoch (1900-01-01), negated.
const NTP_TO_UNIX_S: i64 = 2_208_988_800;

/// What the list says at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeapList {
    /// TAI − UTC in force at that instant (s).
    pub tai_utc_s: i64,
    /// When the list stops vouching that no further leap has happened
    /// (Unix s), if it says.
    pub expires_unix_s: Option<i64>,
}

impl LeapList {
    /// Parse the list and look up `now_unix_s`.
    pub fn parse(text: &str, now_unix_s: i64) -> Result<LeapList, String> {
        let mut tai_utc = None;
        let mut expires = None;
        let mut last_start = i64::MIN;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("#@") {
                let ntp: i64 = rest
                    .trim()
                    .parse()
                    .map_err(|_| format!("line {}: bad expiry {rest:?}", n + 1))?;
                expires = Some(ntp - NTP_TO_UNIX_S);
                continue;
            }
            let data = line.split('#').next().unwrap_or("").trim();
            if data.is_empty() {
                continue;
            }
            let mut f = data.split_whitespace();
            let (Some(start), Some(offset), None) = (f.next(), f.next(), f.next()) else {
                return Err(format!("line {}: expected `NTP-seconds TAI-UTC`", n + 1));
            };
            let (Ok(start), Ok(offset)) = (start.parse::<i64>(), offset.parse::<i64>()) else {
                return Err(format!("line {}: not two integers", n + 1));
            };
            if start <= last_start || !(0..=1000).contains(&offset) {
                return Err(format!("line {}: out of order or out of range", n + 1));
            }
            last_start = start;
            if start - NTP_TO_UNIX_S <= now_unix_s {
                tai_utc = Some(offset);
            }
        }
        Ok(LeapList {
            tai_utc_s: tai_utc.ok_or("no entry in force")?,
            expires_unix_s: expires,
        })
    }

    /// Read the list at `path`.
    pub fn load(path: &Path, now_unix_s: i64) -> Result<LeapList, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        LeapList::parse(&text, now_unix_s).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Leap-free minus UTC (s): the leap seconds since the origin.
    pub fn leapfree_offset_s(&self) -> i64 {
        self.tai_utc_s - TAI_UTC_ORIGIN_S
    }

    /// Whether the list has expired at `now_unix_s` (a leap after its
    /// expiry would be missing from it).
    pub fn expired(&self, now_unix_s: i64) -> bool {
        self.expires_unix_s.is_some_and(|e| now_unix_s > e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
#\tIn the following text, the symbol '#' introduces a comment.
#$\t 3913697179
#@\t3991593600
2272060800\t10\t# 1 Jan 1972
2287785600\t11\t# 1 Jul 1972
3644697600\t36\t# 1 Jul 2015
3692217600\t37\t# 1 Jan 2017
#h\t49db2447 571e5e1b 2f002a53 9c8da8e4 39b8e49e
";

    #[test]
    fn looks_up_the_offset_in_force() {
        let now = 1_795_000_000; // 2026-11
        let l = LeapList::parse(SAMPLE, now).unwrap();
        assert_eq!(l.tai_utc_s, 37);
        assert_eq!(l.leapfree_offset_s(), 0);
        assert_eq!(l.expires_unix_s, Some(1_782_604_800)); // 2026-06-28
        assert!(l.expired(now));
        // mid-2016: 36 s in force, one leap before the origin
        let l = LeapList::parse(SAMPLE, 1_470_000_000).unwrap();
        assert_eq!(l.leapfree_offset_s(), -1);
        assert!(!l.expired(1_470_000_000));
    }

    #[test]
    fn refuses_malformed_lists() {
        for bad in [
            "3692217600\n",
            "3692217600 37 38\n",
            "x 37\n",
            "3692217600 37\n3644697600 36\n",
            "#@ soon\n3692217600 37\n",
            "3692217600 -5\n",
            "# only comments\n",
        ] {
            assert!(LeapList::parse(bad, 1_795_000_000).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_hosts_list_parses_if_present() {
        if let Ok(text) = std::fs::read_to_string(DEFAULT_PATH) {
            let l = LeapList::parse(&text, 1_795_000_000).unwrap();
            assert!(l.tai_utc_s >= 37);
        }
    }
}
