//! The HTTP listener: handed over by systemd (socket activation), or bound
//! here — and if the address is taken (a local user can bind a loopback
//! port first), retried in the background while the agent goes on
//! publishing to shared memory, which never depends on HTTP.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

/// The listener systemd passed (`LISTEN_FDS`, for this process), if any.
pub fn from_systemd() -> Option<TcpListener> {
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    let fds: u32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    if pid != std::process::id() || fds < 1 {
        return None;
    }
    // SAFETY: systemd passes the listening sockets as descriptors 3.. to
    // the process named in LISTEN_PID (checked above); we take ownership of
    // the first, once, and nothing else in this process uses descriptor 3.
    let std_listener = unsafe { <std::net::TcpListener as std::os::fd::FromRawFd>::from_raw_fd(3) };
    std_listener.set_nonblocking(true).ok()?;
    TcpListener::from_std(std_listener).ok()
}

/// Bind `addr`, retrying every few seconds until it works or `stop` fires
/// (warning once, then every minute).
pub async fn bind_retrying(
    addr: SocketAddr,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<TcpListener> {
    let mut tries = 0u32;
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => {
                if tries > 0 {
                    tracing::info!("HTTP: now listening on {addr}");
                }
                return Some(l);
            }
            Err(e) => {
                if tries.is_multiple_of(12) {
                    tracing::warn!(
                        "HTTP: cannot listen on {addr}: {e}; shared memory is published all the same, retrying every 5 s"
                    );
                }
                tries += 1;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.changed() => return None,
        }
    }
}

/// Descriptors kept for everything but HTTP connections: the clocks, the
/// segment and its lock, the NTP sockets (two per server, 64 servers at
/// most), state files, the notify socket, the runtime's own.
pub const RESERVED_FDS: u64 = 256;

/// Raise the soft limit on open descriptors to the hard limit, and return
/// how many HTTP connections fit beside [`RESERVED_FDS`] (at most
/// `wanted`): the HTTP server must never starve the pump of descriptors,
/// whatever limit the agent was started under.
pub fn raise_fd_limit(wanted: usize) -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((mut soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return wanted;
    };
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => soft = hard,
            Err(e) => {
                tracing::warn!("cannot raise the descriptor limit from {soft} to {hard}: {e}")
            }
        }
    }
    let room = soft.saturating_sub(RESERVED_FDS).max(16);
    let n = wanted.min(usize::try_from(room).unwrap_or(usize::MAX));
    if n < wanted {
        tracing::warn!(
            "descriptor limit {soft}: HTTP takes at most {n} connections (raise LimitNOFILE= for {wanted})"
        );
    }
    n
}
