//! Where the agent writes: the configured directories, or per-user
//! fallbacks (said so in the log) for a user who cannot write /run or
//! /var/lib.

use super::options::RunOptions;
use crate::paths::{private_dir, user_runtime_dir};
use std::path::{Path, PathBuf};

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Whether `dir` can be created and written by this process.
fn writable_dir(dir: &Path) -> bool {
    if std::fs::create_dir_all(dir).is_err() {
        return false;
    }
    let probe = dir.join(format!(".skewd-probe-{}", std::process::id()));
    let ok = std::fs::write(&probe, b"").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// Per-user state directory candidates, best first.
fn user_state_dirs() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(x) = std::env::var_os("XDG_STATE_HOME") {
        v.push(PathBuf::from(x).join("skewd"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        v.push(PathBuf::from(h).join(".local/state/skewd"));
    }
    match private_dir(&std::env::temp_dir().join(format!("skewd-{}-state", uid()))) {
        Ok(d) => v.push(d),
        Err(e) => tracing::warn!("{e}"),
    }
    v
}

/// Pick usable directories, falling back to per-user ones (and saying so)
/// when the defaults are not writable.
pub fn settle_dirs(opts: &mut RunOptions) {
    // A path the operator gave is kept: if it cannot be created, the
    // writer says why when it tries.
    let shm_dir = opts.shm_path.as_deref().and_then(Path::parent);
    if !opts.explicit_dirs && !shm_dir.is_some_and(writable_dir) {
        let from = shm_dir.map_or("?".into(), |d| d.display().to_string());
        opts.shm_path = match user_runtime_dir() {
            Ok(d) => {
                tracing::warn!(
                    "cannot write {from} (not root?): using {} for the shared-memory segment instead",
                    d.display()
                );
                Some(d.join("clock"))
            }
            Err(e) => {
                tracing::warn!(
                    "cannot write {from}, and {e}: the shared-memory segment is disabled"
                );
                None
            }
        };
    }
    if !writable_dir(&opts.state_dir) {
        if opts.explicit_dirs {
            tracing::warn!(
                "cannot write {}: the drift file is disabled",
                opts.state_dir.display()
            );
        } else if let Some(d) = user_state_dirs().into_iter().find(|d| writable_dir(d)) {
            tracing::warn!(
                "cannot write {} (not root?): using {} for the drift file instead",
                opts.state_dir.display(),
                d.display()
            );
            opts.state_dir = d;
        } else {
            tracing::warn!("no writable state directory: the drift file is disabled");
        }
    }
}
