//! The UDP shell: resolves each configured server, keeps one connected
//! socket per source, sends the core's requests (reading the steady clock
//! just before `send()`), and forwards every datagram with the steady instant
//! read just after `recv()`. Validation (nonce, duplicates, spoofing) is the
//! core's job; a connected socket already drops datagrams from other peers.

use crate::clock;
use crate::core::time::Steady;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A datagram from a source.
#[derive(Debug)]
pub struct Incoming {
    /// Source slot.
    pub slot: usize,
    /// Socket generation (replies from a replaced socket are dropped).
    pub generation: u64,
    /// The bytes (up to 128 are kept; NTP needs 48).
    pub bytes: [u8; 128],
    /// How many bytes arrived.
    pub len: usize,
    /// Steady instant read right after `recv()` returned.
    pub received_at: Steady,
}

/// One configured server and its socket.
#[derive(Debug)]
pub struct Slot {
    /// The configured `host:port`.
    pub name: String,
    /// The resolved address.
    pub address: Option<SocketAddr>,
    socket: Option<Arc<UdpSocket>>,
    task: Option<JoinHandle<()>>,
    /// Current socket generation.
    pub generation: u64,
    /// Steady instant read just before the last `send()`.
    pub sent_at: Option<Steady>,
    /// Steady instant of the last resolution attempt.
    pub resolved_at: Option<Steady>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Resolve `name` to one address (IPv4 preferred), with a 5 s cap.
pub async fn resolve(name: &str) -> std::io::Result<SocketAddr> {
    let fut = tokio::net::lookup_host(name.to_owned());
    let addrs: Vec<SocketAddr> = tokio::time::timeout(std::time::Duration::from_secs(5), fut)
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "name resolution timed out")
        })??
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))
}

impl Slot {
    /// An unresolved slot.
    pub fn new(name: String) -> Slot {
        Slot {
            name,
            address: None,
            socket: None,
            task: None,
            generation: 0,
            sent_at: None,
            resolved_at: None,
        }
    }

    /// (Re)resolve and (re)connect; on success start forwarding datagrams.
    pub async fn connect(
        &mut self,
        slot: usize,
        tx: mpsc::Sender<Incoming>,
    ) -> std::io::Result<()> {
        self.resolved_at = Some(clock::raw());
        let addr = resolve(&self.name).await?;
        if self.address == Some(addr) && self.socket.is_some() {
            return Ok(());
        }
        let bind: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let sock = UdpSocket::bind(bind).await?;
        sock.connect(addr).await?;
        let sock = Arc::new(sock);
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.generation += 1;
        let generation = self.generation;
        let rx_sock = sock.clone();
        self.task = Some(tokio::spawn(async move {
            let mut buf = [0u8; 128];
            loop {
                match rx_sock.recv(&mut buf).await {
                    Ok(len) => {
                        let received_at = clock::raw();
                        let msg = Incoming {
                            slot,
                            generation,
                            bytes: buf,
                            len,
                            received_at,
                        };
                        if tx.send(msg).await.is_err() {
                            return;
                        }
                    }
                    // ICMP port unreachable and friends: the request will
                    // time out in the core; avoid spinning.
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                }
            }
        }));
        self.socket = Some(sock);
        self.address = Some(addr);
        Ok(())
    }

    /// Send a request now. Returns false when the slot has no socket.
    pub fn send(&mut self, packet: &[u8]) -> bool {
        let Some(sock) = &self.socket else {
            return false;
        };
        let t1 = clock::raw();
        match sock.try_send(packet) {
            Ok(_) => {
                self.sent_at = Some(t1);
                true
            }
            Err(_) => false,
        }
    }
}
