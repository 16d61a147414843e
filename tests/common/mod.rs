//! Helpers for tests that run the built agent against real or fake peers.
//! Every process started here is stopped by its guard's Drop, also when the
//! test fails.
#![allow(dead_code, reason = "each test binary uses a subset of the helpers")]
#![allow(missing_docs, reason = "test helpers")]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skewd::core::ntp::packet::{Leap, NtpTimestamp, Packet, MODE_SERVER};
use skewd::core::time::{RefTime, NS_PER_S};

/// A child process killed (SIGTERM, then SIGKILL) on drop.
pub struct Guard {
    pub child: Child,
    pub name: String,
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An agent, its HTTP address and its directory (removed after it stops).
pub struct Agent {
    pub guard: Guard,
    pub dir: TempDir,
}

impl std::ops::Deref for Agent {
    type Target = Guard;
    fn deref(&self) -> &Guard {
        &self.guard
    }
}

impl std::ops::DerefMut for Agent {
    fn deref_mut(&mut self) -> &mut Guard {
        &mut self.guard
    }
}

impl Guard {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the PID of a child we started and still own.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }
    /// SIGTERM and wait (up to 5 s) for the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.signal(libc::SIGTERM);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGCONT);
            self.stop();
        }
    }
}

/// The agent binary: this build's, or `SKEWD_BIN` (to replay a test against
/// another build, e.g. to show it fails on an older `main`).
pub fn skewd_bin() -> PathBuf {
    std::env::var_os("SKEWD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_skewd")))
}

pub fn temp_dir(tag: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("skewd-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_udp_port(ip: &str) -> u16 {
    UdpSocket::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start `skewd run` with `args`, listening on a free port; returns the guard
/// and the HTTP address.
pub fn start_agent(tag: &str, servers: &[SocketAddr], extra: &[&str]) -> (Agent, SocketAddr) {
    start_agent_env(tag, servers, extra, &[])
}

/// [`start_agent`] with extra environment (e.g. [`faked`]).
pub fn start_agent_env(
    tag: &str,
    servers: &[SocketAddr],
    extra: &[&str],
    env: &[(&str, std::ffi::OsString)],
) -> (Agent, SocketAddr) {
    start_agent_in(temp_dir(tag), tag, servers, extra, env)
}

/// [`start_agent_env`] in a directory the test prepared (segment, drift
/// file and log live there).
pub fn start_agent_in(
    dir: TempDir,
    tag: &str,
    servers: &[SocketAddr],
    extra: &[&str],
    env: &[(&str, std::ffi::OsString)],
) -> (Agent, SocketAddr) {
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cmd = Command::new(skewd_bin());
    cmd.arg("run")
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--shm")
        .arg(dir.join("clock"))
        .arg("--state-dir")
        .arg(&dir);
    for s in servers {
        cmd.arg("--server").arg(s.to_string());
    }
    cmd.args(extra)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(dir.join("log")).unwrap()));
    let child = cmd.spawn().expect("start skewd");
    let guard = Guard {
        child,
        name: format!("skewd-{tag}"),
    };
    wait_until(Duration::from_secs(10), || {
        get(listen, "/healthz").is_some()
    });
    (Agent { guard, dir }, listen)
}

pub fn request(addr: SocketAddr, method: &str, path: &str) -> Option<(u16, String)> {
    skewd::httpc::request(addr, method, path, Duration::from_secs(15))
        .ok()
        .map(|r| (r.code, r.body))
}

pub fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    request(addr, "GET", path)
}

pub fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (_, body) = get(addr, path).expect("agent answers");
    serde_json::from_str(&body).expect("JSON body")
}

/// Each source's `state` from a `/v1/status` body.
pub fn source_states(status: &serde_json::Value) -> Vec<String> {
    status["sources"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s["state"].as_str().unwrap_or("?").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

pub fn realtime_ns() -> i128 {
    skewd::clock::realtime().0
}

/// `/v1/now` bracketed by two reads of the host clock: (before, reading, after).
pub fn now_bracketed(addr: SocketAddr) -> (i128, serde_json::Value, i128) {
    let before = realtime_ns();
    let v = get_json(addr, "/v1/now");
    let after = realtime_ns();
    (before, v, after)
}

/// Whether the interval holds some instant between the two host clock reads.
pub fn holds(before: i128, v: &serde_json::Value, after: i128) -> bool {
    match (v["earliest_ns"].as_i64(), v["latest_ns"].as_i64()) {
        (Some(e), Some(l)) => (e as i128) <= after && (l as i128) >= before,
        _ => true, // no interval claimed: nothing to violate
    }
}

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
        }
    }
}

/// An in-process NTP server on its own loopback address, serving the host's
/// CLOCK_REALTIME plus an offset. Stops on drop.
pub struct FakeServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    pub fn start(ip: &str, spec: FakeSpec) -> FakeServer {
        let sock = UdpSocket::bind((ip, 0)).expect("bind fake server");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let mut rng = 0x1234_5678_9abc_def0u64 ^ addr.port() as u64;
            let mut replies = 0i128;
            while !s2.load(Ordering::Relaxed) {
                let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                    continue;
                };
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
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether real peers are required (tests/run.sh sets it) or may be skipped.
pub fn require_peers() -> bool {
    std::env::var_os("SKEWD_REQUIRE_PEERS").is_some_and(|v| v == "1")
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Skip (or fail, under SKEWD_REQUIRE_PEERS=1) when `tool` is missing.
pub fn need(tool: &str) -> bool {
    if have(tool) {
        return true;
    }
    if require_peers() {
        panic!("{tool} is required (SKEWD_REQUIRE_PEERS=1) but not installed");
    }
    eprintln!("skipped: {tool} not installed");
    false
}

/// Start `chronyd -x` (never touches the clock) with `directives`.
pub fn chronyd(dir: &Path, name: &str, directives: &[String]) -> Guard {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    let ds = d.display();
    let mut args: Vec<String> = vec![
        "-x".into(),
        "-d".into(),
        "-u".into(),
        "root".into(),
        "-f".into(),
        "/dev/null".into(),
    ];
    args.extend(directives.iter().cloned());
    args.extend([
        "cmdport 0".to_string(),
        "bindcmdaddress /".to_string(),
        format!("pidfile {ds}/pid"),
        format!("driftfile {ds}/drift"),
        format!("dumpdir {ds}"),
        format!("ntsdumpdir {ds}"),
        format!("logdir {ds}"),
    ]);
    let child = Command::new("chronyd")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(d.join("log")).unwrap()))
        .spawn()
        .expect("start chronyd");
    Guard {
        child,
        name: format!("chronyd-{name}"),
    }
}

/// A `local stratum 1` chronyd serving the host clock on `ip:port`.
pub fn chrony_server(dir: &Path, ip: &str, port: u16) -> Guard {
    chronyd(
        dir,
        ip,
        &[
            format!("port {port}"),
            format!("bindaddress {ip}"),
            "allow 127.0.0.0/8".into(),
            "local stratum 1".into(),
        ],
    )
}

/// A `local stratum 1` chronyd on each of `ips` (free ports).
pub fn chrony_servers(dir: &Path, ips: &[&str]) -> (Vec<Guard>, Vec<SocketAddr>) {
    ips.iter()
        .map(|ip| {
            let port = free_udp_port(ip);
            let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
            (chrony_server(dir, ip, port), addr)
        })
        .unzip()
}

/// Wait (up to 20 s each) until every server gives a usable reply.
pub fn await_serving(addrs: &[SocketAddr]) {
    for a in addrs {
        assert!(
            wait_until(Duration::from_secs(20), || ntp_query(*a)
                .is_some_and(|s| s < 16)),
            "NTP server at {a} does not serve"
        );
    }
}

/// A chronyd relay of `upstream` on `ip:port` serving its time shifted by
/// `offset_s` seconds (a falseticker when the offset exceeds its bound).
pub fn chrony_relay(dir: &Path, ip: &str, port: u16, upstream: SocketAddr, offset_s: f64) -> Guard {
    chronyd(
        dir,
        ip,
        &[
            format!(
                "server {} port {} iburst minpoll -4 maxpoll -4 offset {offset_s}",
                upstream.ip(),
                upstream.port()
            ),
            format!("port {port}"),
            format!("bindaddress {ip}"),
            "allow 127.0.0.0/8".into(),
        ],
    )
}

/// Query an NTP server once; Some(stratum) when it answers with a usable reply.
pub fn ntp_query(addr: SocketAddr) -> Option<u8> {
    let s = UdpSocket::bind("127.0.0.1:0").ok()?;
    s.set_read_timeout(Some(Duration::from_millis(300))).ok()?;
    s.send_to(&Packet::request(42).serialize(), addr).ok()?;
    let mut b = [0u8; 128];
    let (n, _) = s.recv_from(&mut b).ok()?;
    let p = skewd::core::ntp::packet::parse_reply(&b[..n], 42).ok()?;
    Some(p.stratum)
}

pub fn median(v: &mut [i64]) -> i64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Environment that runs a process under libfaketime with `vars` (e.g.
/// `FAKETIME`, `FAKETIME_DONT_FAKE_MONOTONIC`). Pair it with
/// `--no-kernel-timestamps`: kernel receive stamps are not faked.
pub fn faked(vars: &[(&'static str, &std::ffi::OsStr)]) -> Vec<(&'static str, std::ffi::OsString)> {
    let mut env = vec![(
        "LD_PRELOAD",
        libfaketime().expect("libfaketime library").into_os_string(),
    )];
    env.extend(vars.iter().map(|(k, v)| (*k, v.to_os_string())));
    env
}

/// The libfaketime preload library, if installed.
pub fn libfaketime() -> Option<PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu/faketime",
        "/usr/lib/aarch64-linux-gnu/faketime",
        "/usr/lib/faketime",
    ]
    .iter()
    .map(|d| PathBuf::from(d).join("libfaketimeMT.so.1"))
    .find(|p| p.exists())
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
        let front = UdpSocket::bind((ip, 0)).expect("proxy front socket");
        let up = UdpSocket::bind((ip, 0)).expect("proxy upstream socket");
        up.connect(upstream).unwrap();
        for s in [&front, &up] {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        }
        let addr = front.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Arc::default();
        // Deliver `bytes` after the path's delay (once, twice or never).
        fn deliver(fault: PathFault, bytes: Vec<u8>, send: impl Fn(&[u8]) + Send + 'static) {
            if rand::random::<f64>() < fault.loss {
                return;
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

/// Write a VMClock page (see `skewd::shm::vmclock::write_page`).
#[cfg(feature = "testing")]
pub fn write_vmclock(path: &Path, seq: u32, marker: u64) {
    skewd::shm::vmclock::write_page(path, seq, marker).expect("write the VMClock page");
}

/// An agent on honest fakes at `ips`, watching a VMClock page (marker 1)
/// written by the test, synchronized. The page sits in the returned dir.
#[cfg(feature = "testing")]
pub fn vmclock_agent(
    tag: &str,
    ips: &[&str],
) -> (Vec<FakeServer>, TempDir, PathBuf, Agent, SocketAddr) {
    let servers = honest_fakes(ips);
    let pages = temp_dir(&format!("{tag}-page"));
    let page = pages.join("vmclock0");
    write_vmclock(&page, 0, 1);
    let (agent, http) = start_agent(
        tag,
        &addrs_of(&servers),
        &["--poll", "1s", "--vmclock", page.to_str().unwrap()],
    );
    assert!(
        wait_until(Duration::from_secs(15), || get(http, "/v1/now")
            .is_some_and(|(_, b)| b.contains("\"synchronized\""))),
        "{tag}: not synchronized"
    );
    (servers, pages, page, agent, http)
}
