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

/// Resolve `path` (a directory) and check that only `owner`, root, and,
/// where it says so below, `me` could have put or changed anything along
/// it; returns the path with every symlink resolved.
///
/// - every symlink met on the way (as given) is owned by root or `owner`
///   (systemd's `DynamicUser=` makes `/var/lib/skewd` a root-owned link);
/// - every directory from `/` down is owned by root or `owner` and nobody
///   else can write it, except a root-owned sticky one such as `/tmp`,
///   where others cannot remove or rename what is not theirs;
/// - a directory of `owner` (not root) right inside such a shared sticky
///   directory is trusted only when `owner` is `me`: anyone could have
///   made it there, so a reader must not take another user's word.
///
/// Without this, a user who creates `/tmp/skewd` first (or any directory
/// the operator names) can swap the agent's segment for one of their own
/// and give every reader a `synchronized` interval of their choosing.
pub fn trusted_dir(path: &Path, owner: u32, me: u32) -> Result<PathBuf, String> {
    use std::os::unix::fs::MetadataExt;
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("current directory: {e}"))?
            .join(path)
    };
    let mut prefix = PathBuf::new();
    for c in abs.components() {
        prefix.push(c);
        let m =
            std::fs::symlink_metadata(&prefix).map_err(|e| format!("{}: {e}", prefix.display()))?;
        if m.file_type().is_symlink() && m.uid() != 0 && m.uid() != owner {
            return Err(format!(
                "{} is a symlink owned by uid {}: not following it",
                prefix.display(),
                m.uid()
            ));
        }
    }
    let real = std::fs::canonicalize(&abs).map_err(|e| format!("{}: {e}", abs.display()))?;
    let mut dir = PathBuf::new();
    let mut parent_shared = false;
    for c in real.components() {
        dir.push(c);
        let m = std::fs::metadata(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let uid = m.uid();
        if !m.is_dir() {
            return Err(format!("{} is not a directory", dir.display()));
        }
        if uid != 0 && uid != owner {
            return Err(format!(
                "{} belongs to uid {uid}, who could replace what is below it",
                dir.display()
            ));
        }
        if uid != 0 && parent_shared && owner != me {
            return Err(format!(
                "{} belongs to uid {uid} and sits in a directory anyone can write: anyone could have made it",
                dir.display()
            ));
        }
        let sticky = m.mode() & libc::S_ISVTX != 0;
        let shared = m.mode() & 0o022 != 0;
        if shared && !(sticky && uid == 0) {
            return Err(format!(
                "{} can be written by others (mode {:o})",
                dir.display(),
                m.mode() & 0o7777
            ));
        }
        parent_shared = shared;
    }
    Ok(real)
}

/// The effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
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

/// Open `dir/name` for the agent's own state: `dir`, its symlinks resolved,
/// must pass [`trusted_dir`] and be ours, and `name` is never followed
/// through a symlink. In a shared directory another user could otherwise
/// point the agent (root) at a file of their choosing.
#[cfg(feature = "daemon")]
pub fn open_state(dir: &Path, name: &str, write: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let me = euid();
    let real = trusted_dir(dir, me, me).map_err(std::io::Error::other)?;
    let m = std::fs::metadata(&real)?;
    if m.uid() != me {
        return Err(std::io::Error::other(format!(
            "{} belongs to uid {}, not to this agent (uid {me})",
            real.display(),
            m.uid()
        )));
    }
    let mut o = std::fs::OpenOptions::new();
    o.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    if write {
        o.write(true).create(true).truncate(true).mode(0o644);
    } else {
        o.read(true);
    }
    o.open(real.join(name))
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

    /// Who could have changed a path: owners, modes, sticky shared
    /// directories, symlinks.
    #[test]
    fn trusted_dir_refuses_what_another_user_could_have_changed() {
        let me = euid();
        let base = std::env::temp_dir().join(format!("skewd-trust-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let real = std::fs::canonicalize(&base).unwrap();
        assert_eq!(trusted_dir(&base, me, me).unwrap(), real);
        // writable by the group: refused
        let group = base.join("group");
        std::fs::create_dir(&group).unwrap();
        std::fs::set_permissions(&group, std::fs::Permissions::from_mode(0o775)).unwrap();
        assert!(trusted_dir(&group, me, me).is_err());
        // a symlink of ours is followed and resolved
        let link = base.join("link");
        std::os::unix::fs::symlink(&base, &link).unwrap();
        assert_eq!(trusted_dir(&link, me, me).unwrap(), real);
        if me == 0 {
            let nobody = 65534;
            // a symlink planted by another user: refused
            let theirs = base.join("their-link");
            std::os::unix::fs::symlink(&base, &theirs).unwrap();
            std::os::unix::fs::lchown(&theirs, Some(nobody), None).unwrap();
            assert!(trusted_dir(&theirs, me, me).is_err());
            // a directory of another user: refused for us
            let other = base.join("other");
            std::fs::create_dir(&other).unwrap();
            std::os::unix::fs::chown(&other, Some(nobody), None).unwrap();
            assert!(trusted_dir(&other, me, me).is_err());
            // in a shared sticky directory, their directory is theirs
            // only to them: a reader (root) must not trust it
            let sticky = base.join("sticky");
            std::fs::create_dir(&sticky).unwrap();
            std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o1777)).unwrap();
            assert!(trusted_dir(&sticky, me, me).is_ok());
            let made = sticky.join("skewd");
            std::fs::create_dir(&made).unwrap();
            std::os::unix::fs::chown(&made, Some(nobody), None).unwrap();
            assert!(trusted_dir(&made, nobody, me).is_err());
            assert!(trusted_dir(&made, nobody, nobody).is_ok());
            // a shared directory that is not root's: refused even if sticky
            std::os::unix::fs::chown(&sticky, Some(nobody), None).unwrap();
            assert!(trusted_dir(&sticky, me, me).is_err());
        }
        std::fs::remove_dir_all(&base).unwrap();
    }
}
