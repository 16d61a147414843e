//! In-process fake NTP servers on their own loopback addresses.

use super::realtime_ns;
use skewd::core::ntp::packet::{Leap, NtpTimestamp, Packet, MODE_SERVER};
use skewd::core::time::{RefTime, NS_PER_S};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How a fake NTP server behaves.
#[derive(Clone, Copy, Debug)]
pub struct FakeSpec {
    /// Added to the host clock (ns).
    pub offset_ns: i64,
    /// Probability of dropping a request.
    pub loss: f64,
    /// Delay before replying (ns).
    pub delay_ns: u64,
    /// Advertised root dispersion (NTP short format).
    pub root_dispersion: u32,
    /// Answer with random bytes of random length instead of NTP.
    pub garbage: bool,
    /// Walk the NTP era: the first reply is (2^31 - 10^8) s ahead of the
    /// host clock, every later one twice that (the review's attack).
    pub era_walk: bool,
    /// Forged datagrams per second sent from this server's address to the
    /// last client it heard from (an off-path spoofer who read the
    /// client's port in /proc/net/udp): mode-3 packets, replies to no
    /// request of the client's, bad versions, short datagrams.
    pub forge_per_s: u32,
}

impl FakeSpec {
    pub fn honest() -> FakeSpec {
        FakeSpec {
            offset_ns: 0,
            loss: 0.0,
            delay_ns: 0,
            root_dispersion: 0,
            garbage: false,
            era_walk: false,
            forge_per_s: 0,
        }
    }
}

/// An in-process NTP server on its own loopback address, serving the host's
/// CLOCK_REALTIME plus an offset. Stops on drop.
pub struct FakeServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    forger: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    pub fn start(ip: &str, spec: FakeSpec) -> FakeServer {
        let sock = UdpSocket::bind((ip, 0)).expect("bind fake server");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let last_peer: Arc<std::sync::Mutex<Option<SocketAddr>>> = Arc::default();
        let forger = (spec.forge_per_s > 0).then(|| {
            let sock = sock.try_clone().unwrap();
            let (stop, peer) = (stop.clone(), last_peer.clone());
            std::thread::spawn(move || forge(&sock, &stop, &peer, spec.forge_per_s))
        });
        let heard = last_peer.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let mut rng = 0x1234_5678_9abc_def0u64 ^ addr.port() as u64;
            let mut replies = 0i128;
            while !s2.load(Ordering::Relaxed) {
                let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                *heard.lock().unwrap() = Some(peer);
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                if (rng % 10_000) as f64 / 10_000.0 < spec.loss {
                    continue;
                }
                if spec.garbage {
                    let len = (rng % 100) as usize;
                    let junk: Vec<u8> = (0..len)
                        .map(|i| (rng >> (i % 56)) as u8 ^ i as u8)
                        .collect();
                    let _ = sock.send_to(&junk, peer);
                    // and sometimes a well-formed reply with our nonce but a lying mode
                    if rng.is_multiple_of(3) && n >= 48 {
                        let mut b = [0u8; 48];
                        b[0] = 0x23; // mode 3: a client packet, not a reply
                        b[24..32].copy_from_slice(&buf[40..48]);
                        let _ = sock.send_to(&b, peer);
                    }
                    continue;
                }
                let Ok(q) = Packet::parse(&buf[..n]) else {
                    continue;
                };
                replies += 1;
                let era = if spec.era_walk {
                    replies.min(2) * ((1i128 << 31) - 100_000_000) * NS_PER_S
                } else {
                    0
                };
                let t2 = realtime_ns() + spec.offset_ns as i128 + era;
                if spec.delay_ns > 0 {
                    std::thread::sleep(Duration::from_nanos(spec.delay_ns));
                }
                let t3 = realtime_ns() + spec.offset_ns as i128 + era;
                let reply = Packet {
                    leap: Leap::None,
                    version: 4,
                    mode: MODE_SERVER,
                    stratum: 1,
                    poll: 0,
                    precision: -24,
                    root_delay: 0,
                    root_dispersion: spec.root_dispersion,
                    ref_id: *b"FAKE",
                    reference: NtpTimestamp::from_ref(RefTime(t3 - NS_PER_S / 10)),
                    origin: q.transmit,
                    receive: NtpTimestamp::from_ref(RefTime(t2)),
                    transmit: NtpTimestamp::from_ref(RefTime(t3)),
                };
                let _ = sock.send_to(&reply.serialize(), peer);
            }
        });
        FakeServer {
            addr,
            stop,
            thread: Some(thread),
            forger,
        }
    }
}

/// Send `per_s` forged datagrams a second to the last peer heard from.
fn forge(
    sock: &UdpSocket,
    stop: &AtomicBool,
    peer: &std::sync::Mutex<Option<SocketAddr>>,
    per_s: u32,
) {
    let gap = Duration::from_secs(1) / per_s;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let to = *peer.lock().unwrap();
        if let Some(to) = to {
            i += 1;
            let now = NtpTimestamp::from_ref(RefTime(realtime_ns()));
            let mut p = Packet::server_reply(
                NtpTimestamp(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                RefTime(realtime_ns()),
            );
            let bytes = match i % 4 {
                0 => {
                    // A client request (mode 3) carrying the current time.
                    p.mode = 3;
                    p.transmit = now;
                    p.serialize().to_vec()
                }
                1 => p.serialize().to_vec(), // a reply to no request of ours
                2 => {
                    p.version = 1;
                    p.serialize().to_vec()
                }
                _ => p.serialize()[..20].to_vec(),
            };
            let _ = sock.send_to(&bytes, to);
        }
        std::thread::sleep(gap);
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in [self.thread.take(), self.forger.take()]
            .into_iter()
            .flatten()
        {
            let _ = t.join();
        }
    }
}

/// Honest fake servers, one on each address.
pub fn honest_fakes(ips: &[&str]) -> Vec<FakeServer> {
    ips.iter()
        .map(|ip| FakeServer::start(ip, FakeSpec::honest()))
        .collect()
}

/// The servers' addresses.
pub fn addrs_of(servers: &[FakeServer]) -> Vec<SocketAddr> {
    servers.iter().map(|s| s.addr).collect()
}
