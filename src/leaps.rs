//! Reading the host's leap-second list (`leap-seconds.list` from tzdata,
//! the IERS / NIST format). Parsing and the checks against the known origin
//! of the leap-free timescale are pure, in [`crate::core::leap::LeapTable`].

use crate::core::leap::LeapTable;
use std::path::Path;

/// tzdata's copy of the list.
pub const DEFAULT_PATH: &str = "/usr/share/zoneinfo/leap-seconds.list";

/// Read and check the list at `path`.
pub fn load(path: &Path) -> Result<LeapTable, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    LeapTable::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}
