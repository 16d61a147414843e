//! systemd integration over one `$NOTIFY_SOCKET` datagram socket, opened
//! once (a socket per message fails exactly when descriptors run out, and
//! the watchdog would then kill a healthy agent): READY once serving, a
//! STATUS line every few seconds (the status and error bound, through the
//! one read function), WATCHDOG at half the watchdog interval — only while
//! the engine pump keeps publishing: a wedged pump stops the pings and
//! systemd restarts it.

use crate::clock;
use crate::core::time::Nanos;
use crate::state::Shared;
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::watch;

/// A notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Startup finished.
    Ready,
    /// Shutting down.
    Stopping,
    /// Still alive (the watchdog).
    Watchdog,
    /// A line for `systemctl status`.
    Status(String),
}

/// The socket and its address, opened at the first notification that
/// finds a descriptor free (a failure is not remembered: the next
/// notification tries again). Non-blocking: a systemd that does not read
/// must not stall the runtime thread that pings it.
fn socket() -> Option<&'static (UnixDatagram, std::os::unix::net::SocketAddr)> {
    static SOCKET: OnceLock<(UnixDatagram, std::os::unix::net::SocketAddr)> = OnceLock::new();
    if let Some(s) = SOCKET.get() {
        return Some(s);
    }
    let path = std::env::var_os("NOTIFY_SOCKET")?;
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name).ok()?
        }
        None => std::os::unix::net::SocketAddr::from_pathname(&path).ok()?,
    };
    let sock = UnixDatagram::unbound().ok()?;
    sock.set_nonblocking(true).ok()?;
    // Another thread may have won: theirs is kept, ours closed.
    let _ = SOCKET.set((sock, addr));
    SOCKET.get()
}

/// Send `states` (nothing without `$NOTIFY_SOCKET`).
pub fn send(states: &[State]) {
    let Some((sock, addr)) = socket() else {
        return;
    };
    let mut msg = String::new();
    for s in states {
        match s {
            State::Ready => msg.push_str("READY=1\n"),
            State::Stopping => msg.push_str("STOPPING=1\n"),
            State::Watchdog => msg.push_str("WATCHDOG=1\n"),
            State::Status(line) => {
                msg.push_str("STATUS=");
                msg.push_str(&line.replace('\n', " "));
                msg.push('\n');
            }
        }
    }
    let _ = sock.send_to_addr(msg.as_bytes(), addr);
}

/// The watchdog interval systemd expects pings within, if it is on for us.
pub fn watchdog() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// The status now, for sd_notify STATUS lines.
pub fn status_line(shared: &Shared) -> String {
    let (r, _) = shared.get().now();
    match r {
        Ok(t) => format!(
            "{} (error bound {:.3} ms)",
            t.status,
            t.epsilon_ns() as f64 / 1e6
        ),
        Err(crate::core::read::ReadError::NoModel(s)) => format!("{s} (no model yet)"),
        Err(e) => format!("disrupted ({e})"),
    }
}

/// The loop; returns when `stop` changes.
pub async fn notify_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    send(&[State::Ready]);
    let watchdog = watchdog();
    let period = watchdog.map_or(Duration::from_secs(5), |w| {
        (w / 2).max(Duration::from_millis(100))
    });
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let mut states = vec![State::Status(status_line(&shared))];
        if let Some(w) = watchdog {
            let published = shared.get().publication.at;
            if clock::raw().since(published) < Nanos(w.as_nanos() as i128) {
                states.push(State::Watchdog);
            }
        }
        send(&states);
    }
}
