//! A userspace UDP proxy that injects loss, delay, jitter and duplication
//! (the kernel here has no netem).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Faults on one direction of a [`UdpProxy`] path.
#[derive(Clone, Copy, Debug, Default)]
pub struct PathFault {
    /// Probability of dropping a datagram.
    pub loss: f64,
    /// Fixed extra delay.
    pub delay: Duration,
    /// Extra delay drawn uniformly from [0, jitter].
    pub jitter: Duration,
    /// Probability of delivering a datagram twice.
    pub duplicate: f64,
    /// Rewrite each datagram (an on-path attacker).
    pub rewrite: Option<fn(&mut [u8])>,
}

/// A userspace UDP proxy in front of one server (the kernel here has no
/// netem): loss, delay, jitter and duplication per direction. Stopped and
/// joined on drop.
pub struct UdpProxy {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl UdpProxy {
    pub fn start(ip: &str, upstream: SocketAddr, out: PathFault, back: PathFault) -> UdpProxy {
        UdpProxy::start_at(
            SocketAddr::new(ip.parse().expect("an IP address"), 0),
            upstream,
            out,
            back,
        )
    }

    /// [`UdpProxy::start`] listening on `front` (a port 0: any free one).
    pub fn start_at(
        front: SocketAddr,
        upstream: SocketAddr,
        out: PathFault,
        back: PathFault,
    ) -> UdpProxy {
        let front = UdpSocket::bind(front).expect("proxy front socket");
        let up =
            UdpSocket::bind((front.local_addr().unwrap().ip(), 0)).expect("proxy upstream socket");
        up.connect(upstream).unwrap();
        for s in [&front, &up] {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        }
        let addr = front.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Arc::default();
        // Deliver `bytes` after the path's delay (once, twice or never).
        fn deliver(fault: PathFault, mut bytes: Vec<u8>, send: impl Fn(&[u8]) + Send + 'static) {
            if rand::random::<f64>() < fault.loss {
                return;
            }
            if let Some(rewrite) = fault.rewrite {
                rewrite(&mut bytes);
            }
            let copies = if rand::random::<f64>() < fault.duplicate {
                2
            } else {
                1
            };
            let wait = fault.delay + fault.jitter.mul_f64(rand::random::<f64>());
            std::thread::spawn(move || {
                std::thread::sleep(wait);
                for _ in 0..copies {
                    send(&bytes);
                }
            });
        }
        let mut threads = Vec::new();
        {
            let (front, up, stop, client) = (
                front.try_clone().unwrap(),
                up.try_clone().unwrap(),
                stop.clone(),
                client.clone(),
            );
            threads.push(std::thread::spawn(move || {
                let mut b = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = front.recv_from(&mut b) {
                        *client.lock().unwrap() = Some(from);
                        let up = up.try_clone().unwrap();
                        deliver(out, b[..n].to_vec(), move |d| {
                            let _ = up.send(d);
                        });
                    }
                }
            }));
        }
        {
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                let mut b = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = up.recv(&mut b) {
                        let Some(to) = *client.lock().unwrap() else {
                            continue;
                        };
                        let front = front.try_clone().unwrap();
                        deliver(back, b[..n].to_vec(), move |d| {
                            let _ = front.send_to(d, to);
                        });
                    }
                }
            }));
        }
        UdpProxy {
            addr,
            stop,
            threads,
        }
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
