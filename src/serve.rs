//! The HTTP server's connection handling, sized so that no local user can
//! exhaust the agent: a total cap on connections (and a per-peer cap for
//! peers that are not on loopback, where every local client shares one
//! address), a timeout on reading a request's headers (which also closes
//! idle keep-alive connections), a small header buffer, and an accept loop
//! that survives running out of descriptors. Requests are served by the
//! axum router (`crate::http`).

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// What one server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; more are closed on accept.
    pub max_connections: usize,
    /// Connections from one non-loopback address.
    pub max_per_peer: usize,
    /// A request's headers must arrive within this (an idle keep-alive
    /// connection is closed after it too).
    pub header_timeout: Duration,
    /// Bytes buffered for one request's head (hyper's minimum is 8 KiB).
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            max_per_peer: 64,
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
        }
    }
}

/// Connection counts, for metrics.
#[derive(Debug, Default)]
pub struct Counts {
    /// Open now.
    pub open: std::sync::atomic::AtomicU64,
    /// Closed on accept (over a cap).
    pub refused: std::sync::atomic::AtomicU64,
    /// `accept` failures (out of descriptors, ...).
    pub accept_errors: std::sync::atomic::AtomicU64,
}

/// Serve `router` on `listener` until `stop` changes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    counts: Arc<Counts>,
    mut stop: watch::Receiver<bool>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let total = Arc::new(Semaphore::new(limits.max_connections));
    let peers: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning; the
                    // connections in hand close on their own timeouts.
                    if counts.accept_errors.fetch_add(1, Relaxed).is_multiple_of(1000) {
                        tracing::warn!("HTTP: cannot accept a connection: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        while tasks.try_join_next().is_some() {}
        let Ok(permit) = total.clone().try_acquire_owned() else {
            counts.refused.fetch_add(1, Relaxed);
            continue; // dropped: closed at once
        };
        let ip = peer.ip();
        let counted = !ip.is_loopback();
        if counted {
            let mut p = peers.lock().unwrap_or_else(|e| e.into_inner());
            let n = p.entry(ip).or_default();
            if *n >= limits.max_per_peer {
                counts.refused.fetch_add(1, Relaxed);
                continue;
            }
            *n += 1;
        }
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let peers = peers.clone();
        let counts = counts.clone();
        counts.open.fetch_add(1, Relaxed);
        tasks.spawn(async move {
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192))
                .keep_alive(true);
            let _ = b.serve_connection(TokioIo::new(stream), service).await;
            counts.open.fetch_sub(1, Relaxed);
            if counted {
                let mut p = peers.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(n) = p.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        p.remove(&ip);
                    }
                }
            }
            drop(permit);
        });
    }
    // Stop accepting; give requests in flight (waits are capped) a moment.
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
}
