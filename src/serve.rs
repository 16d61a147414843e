//! The HTTP server's connection handling, sized so that no local user can
//! exhaust the agent: a total cap on connections (and a per-peer cap for
//! peers that are not on loopback, where every local client shares one
//! address), a timeout on reading a request's headers (which also closes
//! idle keep-alive connections), a small header buffer, and an accept loop
//! that survives running out of descriptors.
//!
//! At the cap, a new connection evicts the connection that has been idle
//! (no request being served) the longest, instead of being refused: a user
//! holding every slot with idle or half-sent requests loses the oldest one
//! to each newcomer, so honest clients are still served during the flood.
//! Requests are served by the axum router (`crate::http`).

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};

/// What one server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; at the cap the longest-idle one is closed
    /// for a newcomer (or the newcomer, when every one is busy).
    pub max_connections: usize,
    /// Connections from one non-loopback address.
    pub max_per_peer: usize,
    /// A request's headers must arrive within this (an idle keep-alive
    /// connection is closed after it too).
    pub header_timeout: Duration,
    /// Bytes buffered for one request's head (hyper's minimum is 8 KiB).
    pub max_header_bytes: usize,
    /// A response the client does not take (its window stays shut) for
    /// this long closes the connection.
    pub write_timeout: Duration,
}

/// The kernel's send and receive buffers of each connection (it doubles
/// the value asked for).
const SOCKET_BUFFER: usize = 16 * 1024;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            max_per_peer: 64,
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// Connection counts, for metrics.
#[derive(Debug, Default)]
pub struct Counts {
    /// Open now.
    pub open: AtomicU64,
    /// Closed on accept (over the per-peer cap, or at the total cap with
    /// every connection busy).
    pub refused: AtomicU64,
    /// Idle connections closed to make room for a newcomer.
    pub evicted: AtomicU64,
    /// `accept` failures (out of descriptors, ...).
    pub accept_errors: AtomicU64,
}

/// One open connection, as the accept loop sees it.
#[derive(Debug)]
struct Conn {
    /// A request is being served.
    busy: Arc<AtomicBool>,
    /// Since when it has been idle (accepted, or its last response).
    idle_since: Arc<Mutex<Instant>>,
    /// Close it.
    kill: Arc<Notify>,
}

/// The open connections, by id.
#[derive(Debug, Default)]
struct Table {
    next: u64,
    conns: HashMap<u64, Conn>,
}

impl Table {
    /// Close the connection idle the longest; whether there was one.
    fn evict_oldest_idle(&mut self) -> bool {
        let oldest = self
            .conns
            .iter()
            .filter(|(_, c)| !c.busy.load(Relaxed))
            .min_by_key(|(_, c)| *c.idle_since.lock().unwrap_or_else(|e| e.into_inner()))
            .map(|(id, _)| *id);
        match oldest.and_then(|id| self.conns.remove(&id)) {
            Some(c) => {
                c.kill.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A slot for a new connection: free, or made free by evicting the
/// longest-idle connection (which lets go of its permit as it closes).
async fn admit(
    total: &Arc<Semaphore>,
    table: &Mutex<Table>,
    counts: &Counts,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(p) = total.clone().try_acquire_owned() {
        return Some(p);
    }
    let evicted = table
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .evict_oldest_idle();
    if !evicted {
        return None;
    }
    counts.evicted.fetch_add(1, Relaxed);
    tokio::time::timeout(Duration::from_millis(200), total.clone().acquire_owned())
        .await
        .ok()
        .and_then(Result::ok)
}

/// Serve `router` on `listener` until `stop` changes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    counts: Arc<Counts>,
    mut stop: watch::Receiver<bool>,
) {
    let total = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let peers: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let table: Arc<Mutex<Table>> = Arc::default();
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
        let ip = peer.ip();
        let counted = !ip.is_loopback();
        if counted {
            let p = peers.lock().unwrap_or_else(|e| e.into_inner());
            if p.get(&ip).copied().unwrap_or(0) >= limits.max_per_peer {
                counts.refused.fetch_add(1, Relaxed);
                continue; // dropped: closed at once
            }
        }
        let Some(permit) = admit(&total, &table, &counts).await else {
            counts.refused.fetch_add(1, Relaxed);
            continue;
        };
        if counted {
            *peers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(ip)
                .or_default() += 1;
        }
        let _ = stream.set_nodelay(true);
        // Small kernel buffers: a client that pipelines requests and never
        // reads would otherwise pin megabytes of socket memory per
        // connection (autotuning), charged to the agent's cgroup.
        let _ = nix::sys::socket::setsockopt(
            &stream,
            nix::sys::socket::sockopt::SndBuf,
            &SOCKET_BUFFER,
        );
        let _ = nix::sys::socket::setsockopt(
            &stream,
            nix::sys::socket::sockopt::RcvBuf,
            &SOCKET_BUFFER,
        );
        let busy = Arc::new(AtomicBool::new(false));
        let idle_since = Arc::new(Mutex::new(Instant::now()));
        let kill = Arc::new(Notify::new());
        let id = {
            let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
            t.next += 1;
            let id = t.next;
            t.conns.insert(
                id,
                Conn {
                    busy: busy.clone(),
                    idle_since: idle_since.clone(),
                    kill: kill.clone(),
                },
            );
            id
        };
        let service = tracked(router.clone(), busy.clone(), idle_since);
        let (peers, table, counts) = (peers.clone(), table.clone(), counts.clone());
        counts.open.fetch_add(1, Relaxed);
        tasks.spawn(async move {
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192))
                .keep_alive(true);
            let io = Stalled::new(stream, limits.write_timeout);
            let conn = b.serve_connection(TokioIo::new(io), service);
            tokio::pin!(conn);
            loop {
                tokio::select! {
                    _ = &mut conn => break,
                    // A request that started after the evictor looked is
                    // served: the newcomer is refused instead.
                    _ = kill.notified() => if !busy.load(Relaxed) { break },
                }
            }
            table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .conns
                .remove(&id);
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

/// The router as a hyper service that marks its connection busy while a
/// request is served, and idle from when its response is ready.
fn tracked(
    router: Router,
    busy: Arc<AtomicBool>,
    idle_since: Arc<Mutex<Instant>>,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl std::future::Future<
        Output = Result<axum::response::Response, std::convert::Infallible>,
    > + Send,
> + Clone {
    use tower::ServiceExt;
    hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let (router, busy, idle_since) = (router.clone(), busy.clone(), idle_since.clone());
        busy.store(true, Relaxed);
        async move {
            let res = router.oneshot(req.map(axum::body::Body::new)).await;
            *idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            busy.store(false, Relaxed);
            res
        }
    })
}

/// A connection whose writes fail once one has waited `timeout` for the
/// client to take data: a reader that never reads cannot hold a
/// connection, its buffers and a response forever.
struct Stalled<T> {
    inner: T,
    timeout: Duration,
    since: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<T> Stalled<T> {
    fn new(inner: T, timeout: Duration) -> Stalled<T> {
        Stalled {
            inner,
            timeout,
            since: None,
        }
    }

    /// After a write-side poll: clear the clock on progress, start it on
    /// `Pending`, fail when it has run out.
    fn watch<R>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        r: std::task::Poll<std::io::Result<R>>,
    ) -> std::task::Poll<std::io::Result<R>> {
        use std::future::Future;
        use std::task::Poll;
        if r.is_ready() {
            self.since = None;
            return r;
        }
        let timeout = self.timeout;
        let t = self
            .since
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match t.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client took no data for the write timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Stalled<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Stalled<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, r)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, r)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, r)
    }
}
