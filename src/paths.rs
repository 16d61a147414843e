//! Where the agent keeps its segment and state, and where readers look for
//! it: shared by the agent and the client (so `Clock::open_default` finds the
//! segment exactly as the CLI and the agent's per-user fallback place it).

use std::path::{Path, PathBuf};

/// Default shared-memory segment (the agent as root or under systemd).
pub const DEFAULT_SHM: &str = "/run/skewd/clock";
/// Default state directory (drift file, leaps seen).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/skewd";

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// `dir` in a shared directory such as /tmp, created 0700 if missing, and
/// accepted only if it is a real directory of ours that nobody else can
/// write: in a shared /tmp another user could otherwise plant a segment with
/// a narrow, wrong interval for our readers.
pub fn private_dir(dir: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    let m = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !m.file_type().is_dir() || m.uid() != uid() || m.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is not a directory that only uid {} can write: not using it",
            dir.display(),
            uid()
        ));
    }
    Ok(dir.to_path_buf())
}

/// The per-user runtime directory for a user who cannot write /run:
/// `$XDG_RUNTIME_DIR/skewd`, else `$TMPDIR/skewd-$UID/skewd` (only while
/// `skewd-$UID` is private to us, see [`private_dir`]).
pub fn user_runtime_dir() -> Result<PathBuf, String> {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(x) => Ok(PathBuf::from(x).join("skewd")),
        None => private_dir(&std::env::temp_dir().join(format!("skewd-{}", uid())))
            .map(|d| d.join("skewd")),
    }
}

/// Where a reader finds the agent's segment: the default if it exists, else
/// the per-user fallback the agent uses when it cannot write /run. Never
/// creates anything; `Err` names the default and why the fallback was not
/// used when neither exists.
pub fn find_segment() -> Result<PathBuf, String> {
    let default = PathBuf::from(DEFAULT_SHM);
    if default.exists() {
        return Ok(default);
    }
    let fallback = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(x) => Some(PathBuf::from(x).join("skewd/clock")),
        None => {
            let d = std::env::temp_dir().join(format!("skewd-{}", uid()));
            // Only a directory that is ours and private: never create it here.
            match std::fs::symlink_metadata(&d) {
                Ok(_) => private_dir(&d).ok().map(|d| d.join("skewd/clock")),
                Err(_) => None,
            }
        }
    };
    match fallback {
        Some(p) if p.exists() => Ok(p),
        _ => Err(format!(
            "no segment at {DEFAULT_SHM} (is the agent running?)"
        )),
    }
}

/// Open `dir/name` for the agent's own state: `dir` must be a real
/// directory of ours that nobody else can write, and `name` is never
/// followed through a symlink. In a shared directory another user could
/// otherwise point the agent (root) at a file of their choosing.
#[cfg(feature = "daemon")]
pub fn open_state(dir: &Path, name: &str, write: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let m = std::fs::symlink_metadata(dir)?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if !m.file_type().is_dir() || m.uid() != me || m.mode() & 0o022 != 0 {
        return Err(std::io::Error::other(format!(
            "{} is not a directory that only uid {me} can write",
            dir.display()
        )));
    }
    let mut o = std::fs::OpenOptions::new();
    o.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    if write {
        o.write(true).create(true).truncate(true).mode(0o644);
    } else {
        o.read(true);
    }
    o.open(dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn private_dir_refuses_what_others_could_have_planted() {
        let base = std::env::temp_dir().join(format!("skewd-private-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        // created fresh: ours, 0700
        let fresh = base.join("fresh");
        assert_eq!(private_dir(&fresh).unwrap(), fresh);
        assert_eq!(std::fs::metadata(&fresh).unwrap().mode() & 0o777, 0o700);
        // anyone may write it: refused
        let open = base.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(private_dir(&open).is_err());
        // a symlink to a directory of ours: refused (it could be re-pointed)
        let link = base.join("link");
        std::os::unix::fs::symlink(&fresh, &link).unwrap();
        assert!(private_dir(&link).is_err());
        // a plain file: refused
        let file = base.join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(private_dir(&file).is_err());
        // another user's directory (only checkable as root)
        if uid() == 0 {
            let theirs = base.join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
            assert!(private_dir(&theirs).is_err());
        }
        std::fs::remove_dir_all(&base).unwrap();
    }
}
