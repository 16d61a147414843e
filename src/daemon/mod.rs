//! The agent, shaped like mini-redis's server: [`run`] wires the engine
//! pump, the HTTP server and sd_notify until a shutdown future fires.
//! Options, directories, state files, sources, the pump and systemd
//! notification each live in their own module. Only `main.rs` uses this.

pub mod assets;
pub mod dirs;
pub mod listen;
pub mod notify;
pub mod nts;
pub mod options;
pub mod pump;
pub mod sources;
pub mod state_files;

pub use dirs::settle_dirs;
pub use options::{RunOptions, VmClockPage};

use crate::shm::Writer;
use crate::state::Shared;
use std::future::Future;
use std::time::Duration;

/// Run the agent publishing to `shm` (created and locked by the caller, so
/// a second agent fails before anything starts) and serving HTTP on
/// `listener` (systemd's) or on `opts.listen` (bound here, retried while
/// taken: publishing never waits for HTTP), until `shutdown` completes;
/// then stop everything cleanly (STOPPING=1, the segment marked without a
/// model, the drift file saved).
pub async fn run(
    opts: RunOptions,
    shm: Option<Writer>,
    listener: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut limits = crate::serve::Limits::default();
    limits.max_connections = listen::raise_fd_limit(limits.max_connections);
    // A metrics listener takes an eighth of the connection slots.
    let metrics_limits = opts.metrics_listen.map(|_| {
        let mut m = limits;
        m.max_connections = (limits.max_connections / 8).max(8);
        limits.max_connections -= m.max_connections;
        m
    });
    let shared = Shared::new();
    tracing::info!(
        "skewd {} ({} sources: {})",
        env!("CARGO_PKG_VERSION"),
        opts.servers.len(),
        opts.servers.join(", ")
    );
    let pool = opts
        .servers
        .iter()
        .filter(|s| crate::config::is_public_pool(s))
        .count();
    if pool > 0 {
        tracing::info!(
            "{pool} public-pool server(s): polled by the NTP pool's guidance, every 64 s at most and settling towards 256 s while they answer (name your own servers for faster polls and a narrower interval)"
        );
    }
    let tolerance = crate::config::tolerance(opts.servers.len());
    match tolerance.split_once("\nwarning: ") {
        Some((what, warning)) => tracing::warn!("{what}; {warning}"),
        None => tracing::info!("{tolerance}"),
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let pump = spawn_pump(opts.clone(), shared.clone(), shm, stop_rx.clone())?;
    let notify = tokio::spawn(notify::notify_loop(shared.clone(), stop_rx.clone()));
    // Waits take at most a quarter of the connection slots.
    let router = crate::http::router(
        shared.clone(),
        opts.http_hosts.clone(),
        limits.max_connections / 4,
    );
    let listen_addr = opts.listen;
    let mut http_stop = stop_rx.clone();
    let http_counts = shared.http.clone();
    let server = tokio::spawn(async move {
        let listener = match listener {
            Some(l) => Some(l),
            None => listen::bind_retrying(listen_addr, &mut http_stop).await,
        };
        if let Some(l) = listener {
            tracing::info!(
                "serving http://{}",
                l.local_addr().map_or(listen_addr, |a| a)
            );
            crate::serve::serve(l, router, limits, http_counts, http_stop).await;
        }
    });
    let metrics_server = opts
        .metrics_listen
        .zip(metrics_limits)
        .map(|(addr, limits)| {
            let router = crate::http::metrics_router(shared.clone());
            let counts = shared.http.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                if let Some(l) = listen::bind_retrying(addr, &mut stop).await {
                    tracing::info!(
                        "serving metrics and health checks only on http://{}",
                        l.local_addr().map_or(addr, |a| a)
                    );
                    crate::serve::serve(l, router, limits, counts, stop).await;
                }
            })
        });
    shutdown.await;
    tracing::info!("stopping");
    notify::send(&[notify::State::Stopping]);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), pump).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    if let Some(m) = metrics_server {
        let _ = tokio::time::timeout(Duration::from_secs(5), m).await;
    }
    notify.abort();
    Ok(())
}

/// The engine pump on a thread and runtime of its own, with its sockets:
/// however busy the HTTP server is (a flood of clients on the shared
/// runtime), publishing to shared memory waits only for the CPU. Resolves
/// when the pump has stopped (or died).
fn spawn_pump(
    opts: RunOptions,
    shared: std::sync::Arc<Shared>,
    shm: Option<Writer>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<()>> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("skewd-pump".into())
        .spawn(move || {
            rt.block_on(async move {
                let (tx, rx) = tokio::sync::mpsc::channel(256);
                let (pump, resolved_rx) = pump::Pump::new(&opts, shared, tx, shm);
                pump.run(rx, resolved_rx, stop).await;
            });
            let _ = done_tx.send(());
        })?;
    Ok(done_rx)
}

/// SIGTERM or SIGINT. Install it first thing in the runtime: READY goes out
/// from a spawned task, and a SIGTERM that lands before the handler exists
/// would kill the process without STOPPING=1 or the drift file saved.
/// SIGHUP (a closed terminal, `kill -HUP`) is logged and ignored:
/// there is nothing to reload in place; config changes need a restart.
pub fn signals() -> impl Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut hup = signal(SignalKind::hangup()).ok();
    tokio::spawn(async move {
        while let Some(h) = hup.as_mut() {
            if h.recv().await.is_none() {
                break;
            }
            tracing::info!(
                "SIGHUP: nothing to reload in place (restart skewd to apply config changes)"
            );
        }
    });
    async move {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            _ = recv(&mut term) => {}
            _ = recv(&mut int) => {}
        }
    }
}
