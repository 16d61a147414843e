//! Reading the host's leap-second list (`leap-seconds.list` from tzdata,
//! the IERS / NIST format). Parsing and the checks against the known origin
//! of the leap-free timescale are pure, in [`crate::core::leap::LeapTable`].

use crate::core::leap::LeapTable;
use std::path::Path;

/// tzdata's copy of the list.
pub const DEFAULT_PATH: &str = "/usr/share/zoneinfo/leap-seconds.list";

/// Read and check the list at `path`: its `#h` hash (SHA-1 of the data:
/// the `#$` and `#@` values and every entry, whitespace and comments
/// removed) must match, then its entries (see [`LeapTable::parse`]). A
/// list without a hash line is refused too: a truncated or edited copy
/// would otherwise pass for the real one.
pub fn load(path: &Path) -> Result<LeapTable, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    check_hash(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    LeapTable::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Check the `#h` line of a leap-second list.
pub fn check_hash(text: &str) -> Result<(), String> {
    let mut data = String::new();
    let mut stated = None;
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("#h") {
            stated = Some(
                h.split_whitespace()
                    .collect::<String>()
                    .to_ascii_lowercase(),
            );
        } else if let Some(v) = line.strip_prefix("#$").or_else(|| line.strip_prefix("#@")) {
            data.push_str(v);
        } else if !line.starts_with('#') {
            data.push_str(line.split('#').next().unwrap_or(""));
        }
    }
    data.retain(|c| !c.is_whitespace());
    let Some(stated) = stated else {
        return Err("no #h hash line".into());
    };
    let actual = sha1_smol::Sha1::from(data.as_bytes()).digest().to_string();
    if stated != actual {
        return Err(format!(
            "its #h hash {stated} does not match its data ({actual}): corrupt or edited"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "#\tcomment\n#$\t 3960835200\n#@\t3991593600\n2272060800\t10\t# 1 Jan 1972\n3692217600\t37\t# 1 Jan 2017\n";

    fn with_hash(text: &str) -> String {
        let mut data: String = String::new();
        for l in text.lines() {
            if let Some(v) = l.strip_prefix("#$").or_else(|| l.strip_prefix("#@")) {
                data.push_str(v);
            } else if !l.starts_with('#') {
                data.push_str(l.split('#').next().unwrap());
            }
        }
        data.retain(|c| !c.is_whitespace());
        let h = sha1_smol::Sha1::from(data.as_bytes()).digest().to_string();
        let words: Vec<&str> = (0..5).map(|i| &h[i * 8..i * 8 + 8]).collect();
        format!("{text}#h\t{}\n", words.join(" "))
    }

    #[test]
    fn the_hash_line_is_checked() {
        let good = with_hash(LIST);
        assert_eq!(check_hash(&good), Ok(()));
        // An edited entry, a missing hash line.
        let edited = good.replace("\t37\t", "\t38\t");
        assert!(check_hash(&edited).unwrap_err().contains("does not match"));
        assert!(check_hash(LIST).unwrap_err().contains("no #h"));
        // tzdata's copy on this host, when there is one.
        if let Ok(text) = std::fs::read_to_string(DEFAULT_PATH) {
            assert_eq!(check_hash(&text), Ok(()));
        }
    }
}
