//! The UDP shell: one connected socket per source, sends the core's
//! requests (reading a REALTIME/steady pair and the steady clock just before
//! `send()`), and forwards every datagram with the stamps read just after
//! `recv()` — the kernel's receive stamp too, when enabled. It decides
//! nothing: which stamp is t4, and whether a datagram answers a request, is
//! the core's job. A connected socket already drops datagrams from other
//! peers. No `unsafe` here: socket options and control messages go through
//! `nix`.

use crate::clock;
use crate::core::stamps::{ClockPair, SentStamps};
use crate::core::time::{RefTime, Steady};
use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, TimestampingFlag,
};
use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use tokio::io::Interest;
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
    /// The bytes (NTP needs 48; an NTS reply with eight cookies about a
    /// thousand).
    pub bytes: Vec<u8>,
    /// How many bytes arrived.
    pub len: usize,
    /// Steady instant read right after `recv()` returned.
    pub received_at: Steady,
    /// The kernel's receive stamp (REALTIME), when enabled and given.
    pub kernel_stamp: Option<RefTime>,
    /// A REALTIME/steady pair read right after `received_at`.
    pub after: ClockPair,
    /// The newest kernel transmit stamp (REALTIME) on this socket's error
    /// queue, with the identifier of the datagram it stamps, when enabled.
    pub sent_kernel: Option<(u32, RefTime)>,
}

/// The identifier the next datagram on a socket will carry in its transmit
/// stamp (`SOF_TIMESTAMPING_OPT_ID` counts sends from 0), or
/// [`TX_ID_UNKNOWN`] after a failed send (which may or may not have used
/// one) until the next stamp says.
const TX_ID_UNKNOWN: u32 = u32::MAX;

/// The longest datagram read whole (longer ones are cut and refused by
/// the core): an NTS reply with eight cookies fits several times.
const MAX_DATAGRAM: usize = 4096;

/// One configured server and its socket.
#[derive(Debug)]
pub struct Slot {
    /// The configured `host:port`.
    pub name: String,
    /// The resolved address.
    pub address: Option<SocketAddr>,
    socket: Option<Arc<UdpSocket>>,
    /// The same socket (a dup'ed descriptor) for sending: a send goes out at
    /// once, without waiting for tokio to have seen the socket writable (a
    /// fresh tokio socket's `try_send` says WouldBlock until then, which
    /// lost every source's first request).
    send_socket: Option<std::net::UdpSocket>,
    task: Option<JoinHandle<()>>,
    /// Transmit stamps are on (SO_TIMESTAMPING with identifiers).
    tx_stamps: bool,
    /// The identifier of the next datagram sent (shared with the receive
    /// task, which corrects it from the stamps it sees).
    tx_next: Arc<std::sync::atomic::AtomicU32>,
    /// Current socket generation.
    pub generation: u64,
    /// Ask the kernel for receive timestamps (SO_TIMESTAMPNS).
    pub kernel_timestamps: bool,
    /// Steady instant of the last resolution attempt.
    pub resolved_at: Option<Steady>,
    /// A resolution is in flight.
    pub resolving: bool,
    /// Resolution failures in a row (the first is logged as a warning).
    pub failures: u32,
    /// Every address the name resolved to is already used by these other
    /// slots: this one stays unresolved (a server in two slots would spend
    /// two of the f tolerated faults).
    pub duplicate_of: Option<String>,
    /// An NTS source: `name` is its key-exchange server; `address` is the
    /// NTP server the key exchange named.
    pub nts: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Resolve `name` to its addresses (IPv4 first), with a 5 s cap.
pub async fn resolve(name: &str) -> std::io::Result<Vec<SocketAddr>> {
    let fut = tokio::net::lookup_host(name.to_owned());
    let mut addrs: Vec<SocketAddr> = tokio::time::timeout(std::time::Duration::from_secs(5), fut)
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "name resolution timed out")
        })??
        .collect();
    addrs.sort_by_key(|a| !a.is_ipv4());
    if addrs.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no address",
        ));
    }
    Ok(addrs)
}

/// The address as compared for duplicates: an IPv4-mapped IPv6 address is
/// the IPv4 one.
pub fn canonical(a: SocketAddr) -> SocketAddr {
    let ip = match a.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    SocketAddr::new(ip, a.port())
}

impl Slot {
    /// An unresolved slot.
    pub fn new(name: String, kernel_timestamps: bool) -> Slot {
        Slot {
            name,
            kernel_timestamps,
            address: None,
            socket: None,
            send_socket: None,
            task: None,
            tx_stamps: false,
            tx_next: Arc::default(),
            generation: 0,
            resolved_at: None,
            resolving: false,
            failures: 0,
            duplicate_of: None,
            nts: false,
        }
    }

    /// Connect to `addr` (a fresh resolution of this slot's name) unless
    /// already connected there; start forwarding its datagrams. Never blocks:
    /// resolution happens elsewhere, binding and connecting a UDP socket do
    /// not wait for the network.
    pub fn attach(
        &mut self,
        addr: SocketAddr,
        slot: usize,
        tx: mpsc::Sender<Incoming>,
    ) -> std::io::Result<()> {
        if self.address == Some(addr) && self.socket.is_some() {
            return Ok(());
        }
        let bind: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let std_sock = std::net::UdpSocket::bind(bind)?;
        std_sock.connect(addr)?;
        std_sock.set_nonblocking(true)?;
        let send_sock = std_sock.try_clone()?;
        let stamps = self.kernel_timestamps
            && setsockopt(&std_sock, sockopt::ReceiveTimestampns, &true).is_ok();
        // Transmit stamps on the error queue, the stamp alone (no copy of
        // the request): t1 as the request left the stack.
        let tx_stamps = stamps
            && setsockopt(
                &std_sock,
                sockopt::Timestamping,
                &(TimestampingFlag::SOF_TIMESTAMPING_TX_SOFTWARE
                    | TimestampingFlag::SOF_TIMESTAMPING_SOFTWARE
                    | TimestampingFlag::SOF_TIMESTAMPING_OPT_TSONLY
                    | TimestampingFlag::SOF_TIMESTAMPING_OPT_ID),
            )
            .is_ok();
        let tx_next = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let rx_next = tx_next.clone();
        let sock = Arc::new(UdpSocket::from_std(std_sock)?);
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.generation += 1;
        let generation = self.generation;
        let rx_sock = sock.clone();
        self.task = Some(tokio::spawn(async move {
            let mut buf = [0u8; MAX_DATAGRAM];
            let mut sent_kernel = None;
            loop {
                let got = if stamps {
                    rx_sock
                        .async_io(Interest::READABLE, || {
                            // The error queue first: it is what woke us as
                            // often as a reply, and the reply needs the
                            // stamp of its request.
                            if tx_stamps {
                                if let Some((id, t)) = drain_tx_stamps(&rx_sock) {
                                    sent_kernel = Some((id, t));
                                    // The next send is after this one (a
                                    // failed send may have used an id, or
                                    // not: the stamps say).
                                    use std::sync::atomic::Ordering::Relaxed;
                                    let next = id.wrapping_add(1);
                                    if rx_next.load(Relaxed) == TX_ID_UNKNOWN {
                                        rx_next.store(next, Relaxed);
                                    } else {
                                        rx_next.fetch_max(next, Relaxed);
                                    }
                                }
                            }
                            recv_with_stamp(&rx_sock, &mut buf)
                        })
                        .await
                } else {
                    rx_sock.recv(&mut buf).await.map(|n| (n, None))
                };
                match got {
                    Ok((len, kernel_stamp)) => {
                        let received_at = clock::raw();
                        let p = clock::paired_realtime();
                        let msg = Incoming {
                            slot,
                            generation,
                            bytes: buf[..len].to_vec(),
                            len,
                            received_at,
                            kernel_stamp,
                            after: ClockPair {
                                steady: p.steady,
                                realtime: p.realtime,
                                span: p.span,
                            },
                            sent_kernel,
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
        self.send_socket = Some(send_sock);
        self.tx_stamps = tx_stamps;
        self.tx_next = tx_next;
        self.address = Some(addr);
        self.duplicate_of = None;
        Ok(())
    }

    /// Forget the address and socket (its address went to another slot).
    pub fn detach(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.socket = None;
        self.send_socket = None;
        self.address = None;
        self.generation += 1;
    }

    /// Send a request now, reading a REALTIME/steady pair (for the kernel
    /// stamp's mapping) and then the steady instant t1 just before
    /// `send()`. `clock_sets` is the clock-set watcher's count, read before
    /// the pair. `None` when the slot has no socket or the send failed.
    pub fn send(&mut self, packet: &[u8], clock_sets: Option<u64>) -> Option<SentStamps> {
        let sock = self.send_socket.as_ref()?;
        let pair = self.kernel_timestamps.then(|| {
            let p = clock::paired_realtime();
            ClockPair {
                steady: p.steady,
                realtime: p.realtime,
                span: p.span,
            }
        });
        use std::sync::atomic::Ordering::Relaxed;
        let tx_id = if self.tx_stamps {
            match self.tx_next.fetch_add(1, Relaxed) {
                TX_ID_UNKNOWN => {
                    self.tx_next.store(TX_ID_UNKNOWN, Relaxed);
                    None
                }
                id => Some(id),
            }
        } else {
            None
        };
        let t1 = clock::raw();
        if sock.send(packet).is_err() {
            if self.tx_stamps {
                self.tx_next.store(TX_ID_UNKNOWN, Relaxed);
            }
            return None;
        }
        Some(SentStamps {
            at: t1,
            pair,
            clock_sets,
            tx_id,
        })
    }
}

fn ns_of(ts: &nix::sys::time::TimeSpec) -> RefTime {
    RefTime(ts.tv_sec() as i128 * 1_000_000_000 + ts.tv_nsec() as i128)
}

/// Read the socket's error queue empty; the software transmit stamp of the
/// newest entry and the identifier of the datagram it stamps, if any.
fn drain_tx_stamps(sock: &UdpSocket) -> Option<(u32, RefTime)> {
    let mut last = None;
    // Empty, however long it grew (bounded by the socket's receive buffer).
    for _ in 0..4096 {
        let mut buf = [0u8; 64];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = vec![0u8; 256];
        let Ok(msg) = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
        ) else {
            break;
        };
        let (mut stamp, mut id) = (None, None);
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                match c {
                    ControlMessageOwned::ScmTimestampsns(ts)
                        if ts.system.tv_sec() != 0 || ts.system.tv_nsec() != 0 =>
                    {
                        stamp = Some(ns_of(&ts.system));
                    }
                    ControlMessageOwned::Ipv4RecvErr(e, _)
                    | ControlMessageOwned::Ipv6RecvErr(e, _)
                        if e.ee_origin == libc::SO_EE_ORIGIN_TIMESTAMPING =>
                    {
                        id = Some(e.ee_data);
                    }
                    _ => {}
                }
            }
        }
        // A stamp without its identifier is nobody's.
        if let (Some(id), Some(t)) = (id, stamp) {
            last = Some((id, t));
        }
    }
    last
}

/// One non-blocking `recvmsg`, returning the datagram length and the
/// kernel's SCM_TIMESTAMPNS stamp if present.
fn recv_with_stamp(sock: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, Option<RefTime>)> {
    let mut iov = [IoSliceMut::new(buf)];
    // Room for SCM_TIMESTAMPING too, which SO_TIMESTAMPING's reporting flag
    // may add beside SCM_TIMESTAMPNS.
    let mut space = nix::cmsg_space!(nix::sys::time::TimeSpec, [nix::sys::time::TimeSpec; 3]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(std::io::Error::from)?;
    let mut stamp = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmTimestampns(ts) = c {
                stamp = Some(ns_of(&ts));
            }
        }
    }
    Ok((msg.bytes, stamp))
}
