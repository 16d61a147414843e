//! Figures as people read them: RFC 3339 times and durations in the unit
//! that reads best. The CLI and the status page share these.

/// Unix nanoseconds as an RFC 3339 UTC time with nanoseconds (the raw
/// figure when out of chrono's range).
pub fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
    .map_or_else(
        || format!("{ns} ns"),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
    )
}

/// A duration in ns, in the unit that reads best.
pub fn ns(ns: i64) -> String {
    match ns.unsigned_abs() {
        0..=9_999 => format!("{ns} ns"),
        10_000..=999_999 => format!("{:.1} µs", ns as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.3} ms", ns as f64 / 1e6),
        _ => format!("{:.3} s", ns as f64 / 1e9),
    }
}

/// A signed duration with its sign always shown (`+12.0 µs`).
pub fn signed_ns(n: i64) -> String {
    if n >= 0 {
        format!("+{}", ns(n))
    } else {
        ns(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(ns(999), "999 ns");
        assert_eq!(ns(12_345), "12.3 µs");
        assert_eq!(ns(-12_345_678), "-12.346 ms");
        assert_eq!(ns(3_000_000_000_000), "3000.000 s");
        assert_eq!(ns(1_000_000), "1.000 ms");
        assert_eq!(ns(999_000_000), "999.000 ms");
        assert_eq!(signed_ns(0), "+0 ns");
        assert_eq!(rfc3339(1_000_000_000), "1970-01-01T00:00:01.000000000Z");
        assert_eq!(rfc3339(i64::MIN), "1677-09-21T00:12:43.145224192Z");
    }
}
