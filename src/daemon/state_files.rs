//! The agent's state files: the drift file (a saved rate that only centres
//! the hardware bound), the host's leap-second list, and the leaps seen
//! happening (kept so that a restart with an expired list stays on the same
//! leap-free timescale). Every input is checked before it is used.

use crate::clock;
use crate::core::leap::LeapTable;
use crate::core::time::Rate;
use crate::paths::open_state;
use std::io::{Read, Write};
use std::path::Path;

/// A state file's text (never through a symlink, only from a private
/// directory: see [`open_state`]).
fn read_state(dir: &Path, name: &str) -> Option<String> {
    let mut s = String::new();
    open_state(dir, name, false)
        .ok()?
        .take(1 << 20)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

/// Replace a state file: a temporary beside it, fsync, rename (a crash
/// leaves the old file or the new one, never a torn one).
fn write_state(dir: &Path, name: &str, body: &[u8]) -> std::io::Result<()> {
    let tmp = format!("{name}.tmp");
    let r = (|| {
        let mut f = open_state(dir, &tmp, true)?;
        f.write_all(body)?;
        f.sync_all()?;
        std::fs::rename(dir.join(&tmp), dir.join(name))
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(dir.join(&tmp));
    }
    r
}

/// The host's leap-second table (tzdata's list). Where the leap-free
/// timescale starts is looked up in it at the UTC of the first model (the
/// sources' time, never this host's REALTIME); a list that contradicts the
/// known origin is refused.
pub fn leap_table(state_dir: &Path) -> LeapTable {
    let path = Path::new(crate::leaps::DEFAULT_PATH);
    let mut table = match crate::leaps::load(path) {
        Ok(t) => {
            let now_s = (clock::realtime().0 / crate::core::time::NS_PER_S) as i64;
            if t.expired(now_s) {
                tracing::info!(
                    "leap-second list {} has expired: a leap second after its expiry would be known only from the sources' announcement; update tzdata",
                    path.display()
                );
            }
            t
        }
        Err(e) => {
            tracing::warn!("not using the leap-second list: {e}; the leap-free timescale assumes no leap second since 2017 (none has been announced)");
            LeapTable::default()
        }
    };
    // Leaps this agent saw happen, beyond an expired list: a restart keeps
    // the same leap-free timescale.
    for (at, tai) in load_seen_leaps(state_dir) {
        if table.extend(at, tai) {
            tracing::info!("leap second seen at {at} (Unix s) kept from the state directory: TAI - UTC = {tai} s");
        }
    }
    table
}

const SEEN_LEAPS: &str = "leap-seconds-seen.json";

/// `(from_unix_s, tai_minus_utc_s)` of leaps seen happening.
fn load_seen_leaps(dir: &Path) -> Vec<(i64, i64)> {
    read_state(dir, SEEN_LEAPS)
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Record a leap seen happening: TAI − UTC = `tai_minus_utc_s` from `at_unix_s`.
pub fn save_seen_leap(dir: &Path, at_unix_s: i64, tai_minus_utc_s: i64) {
    let mut v = load_seen_leaps(dir);
    if !v.iter().any(|e| e.0 == at_unix_s) {
        v.push((at_unix_s, tai_minus_utc_s));
    }
    if let Err(e) = write_state(dir, SEEN_LEAPS, &serde_json::to_vec(&v).unwrap_or_default()) {
        tracing::warn!("could not record the leap second in {}: {e}", dir.display());
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct DriftFile {
    frequency_ppb: f64,
    clocksource: Option<String>,
    boot_id: Option<String>,
}

/// The saved rate, if the file is ours to trust: well-formed, for this
/// clocksource, and within the hardware bound `phi_hw` (checked before any
/// conversion: `-1e36` would saturate and wrap).
pub fn load_drift(dir: &Path, phi_hw: Rate, clocksource: &Option<String>) -> Option<Rate> {
    let path = dir.join("drift.json");
    let text = read_state(dir, "drift.json")?;
    let refuse = |why: &str| {
        tracing::warn!("ignoring the drift file {}: {why}", path.display());
        None
    };
    let d: DriftFile = match serde_json::from_str(&text) {
        Ok(d) => d,
        Err(e) => return refuse(&e.to_string()),
    };
    let bound_ppb = phi_hw.0 as f64 / 1e3;
    if !(d.frequency_ppb.is_finite() && d.frequency_ppb.abs() <= bound_ppb) {
        return refuse(&format!(
            "frequency {} ppb is outside the hardware bound of {bound_ppb} ppb",
            d.frequency_ppb
        ));
    }
    if &d.clocksource != clocksource {
        return None; // another clocksource: another oscillator
    }
    Some(Rate((d.frequency_ppb * 1e3).round() as i128))
}

/// Save the measured rate (temp file, fsync, rename: a crash leaves the
/// old file or the new one, never a torn one). A failure is a warning.
pub fn save_drift(dir: &Path, rate: Rate) {
    let d = DriftFile {
        frequency_ppb: rate.0 as f64 / 1e3,
        clocksource: clock::clocksource(),
        boot_id: clock::boot_id(),
    };
    let body = serde_json::to_vec_pretty(&d).unwrap_or_default();
    if let Err(e) = write_state(dir, "drift.json", &body) {
        tracing::warn!("could not save the drift file in {}: {e}", dir.display());
    }
}
