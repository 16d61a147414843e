//! The UDP shell: resolves each configured server, keeps one connected
//! socket per source, sends the core's requests (reading the steady clock
//! just before `send()`), and forwards every datagram with the steady instant
//! read just after `recv()`. Validation (nonce, duplicates, spoofing) is the
//! core's job; a connected socket already drops datagrams from other peers.

use crate::clock;
use crate::core::sample::ClockPair;
use crate::core::time::{RefTime, Steady};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
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
    /// The bytes (up to 128 are kept; NTP needs 48).
    pub bytes: [u8; 128],
    /// How many bytes arrived.
    pub len: usize,
    /// Steady instant read right after `recv()` returned.
    pub received_at: Steady,
    /// The kernel's receive stamp (REALTIME), when enabled and given.
    pub kernel_stamp: Option<RefTime>,
    /// A REALTIME/steady pair read right after `received_at`.
    pub after: ClockPair,
}

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
    /// Current socket generation.
    pub generation: u64,
    /// Steady instant read just before the last `send()`.
    pub sent_at: Option<Steady>,
    /// A REALTIME/steady pair read just before that.
    pub sent_pair: Option<ClockPair>,
    /// Ask the kernel for receive timestamps (SO_TIMESTAMPNS).
    pub kernel_timestamps: bool,
    /// Steady instant of the last resolution attempt.
    pub resolved_at: Option<Steady>,
    /// A resolution is in flight.
    pub resolving: bool,
    /// Resolution failures in a row (the first is logged as a warning).
    pub failures: u32,
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
    pub fn new(name: String, kernel_timestamps: bool) -> Slot {
        Slot {
            name,
            sent_pair: None,
            kernel_timestamps,
            address: None,
            socket: None,
            send_socket: None,
            task: None,
            generation: 0,
            sent_at: None,
            resolved_at: None,
            resolving: false,
            failures: 0,
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
        let sock = UdpSocket::from_std(std_sock)?;
        let stamps = self.kernel_timestamps && enable_rx_timestamps(&sock).is_ok();
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
                let got = if stamps {
                    let fd = rx_sock.as_raw_fd();
                    rx_sock
                        .async_io(Interest::READABLE, || recv_with_stamp(fd, &mut buf))
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
                            bytes: buf,
                            len,
                            received_at,
                            kernel_stamp,
                            after: ClockPair {
                                steady: p.steady,
                                realtime: p.realtime,
                                span: p.span,
                            },
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
        self.address = Some(addr);
        Ok(())
    }

    /// Send a request now. Returns false when the slot has no socket.
    pub fn send(&mut self, packet: &[u8]) -> bool {
        let Some(sock) = &self.send_socket else {
            return false;
        };
        let p = clock::paired_realtime();
        let t1 = clock::raw();
        match sock.send(packet) {
            Ok(_) => {
                self.sent_at = Some(t1);
                self.sent_pair = Some(ClockPair {
                    steady: p.steady,
                    realtime: p.realtime,
                    span: p.span,
                });
                true
            }
            Err(_) => false,
        }
    }
}

/// Ask the kernel to stamp received datagrams with REALTIME (SO_TIMESTAMPNS).
fn enable_rx_timestamps(sock: &UdpSocket) -> std::io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket fd, a pointer to a live c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// One non-blocking `recvmsg`, returning the datagram length and the
/// kernel's SCM_TIMESTAMPNS stamp if present.
fn recv_with_stamp(fd: RawFd, buf: &mut [u8]) -> std::io::Result<(usize, Option<RefTime>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 16]; // 128 bytes, 8-aligned: room for a timespec cmsg
                                  // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: fd is a valid socket; msg points at live buffers of the sizes given.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: msg was filled by recvmsg; CMSG_* walk only within msg_controllen.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !c.is_null() {
        // SAFETY: c is a valid cmsghdr inside the control buffer.
        let h = unsafe { &*c };
        if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_TIMESTAMPNS {
            // SAFETY: the kernel wrote a timespec as this cmsg's data; it may
            // be unaligned, so read it unaligned.
            let ts: libc::timespec = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(c).cast()) };
            stamp = Some(RefTime(
                ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128,
            ));
        }
        // SAFETY: as above.
        c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
    }
    Ok((n as usize, stamp))
}
