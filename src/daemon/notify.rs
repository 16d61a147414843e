//! systemd integration: READY once serving, a STATUS line every few seconds
//! (the status and error bound, through the one read function), WATCHDOG at
//! half the watchdog interval — only while the engine pump keeps
//! publishing: a wedged pump stops the pings and systemd restarts it.

use crate::clock;
use crate::core::time::Nanos;
use crate::state::Shared;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

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
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let watchdog = sd_notify::watchdog_enabled();
    let period = watchdog.map_or(Duration::from_secs(5), |w| {
        (w / 2).max(Duration::from_millis(100))
    });
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let line = status_line(&shared);
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&line)]);
        if let Some(w) = watchdog {
            let published = shared.get().publication.at;
            if clock::raw().since(published) < Nanos(w.as_nanos() as i128) {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        }
    }
}
