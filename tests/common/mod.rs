//! Helpers for tests that run the built agent against real or fake peers.
//! Every process started here is stopped by its guard's Drop, also when the
//! test fails.
#![allow(dead_code, reason = "each test binary uses a subset of the helpers")]
#![allow(missing_docs, reason = "test helpers")]

mod fake;
mod nts;
mod peers;
mod proxy;
#[allow(
    unused_imports,
    reason = "each test binary uses a subset of the helpers"
)]
pub use fake::*;
#[allow(
    unused_imports,
    reason = "each test binary uses a subset of the helpers"
)]
pub use nts::*;
#[allow(
    unused_imports,
    reason = "each test binary uses a subset of the helpers"
)]
pub use peers::*;
#[allow(
    unused_imports,
    reason = "each test binary uses a subset of the helpers"
)]
pub use proxy::*;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    start_agent_cmd(dir, tag, listen, servers, extra, &mut |c| {
        c.envs(env.iter().map(|(k, v)| (k, v)));
    })
}

/// [`start_agent_in`] on `listen`, with `tweak` applied to the command
/// before it starts (environment, limits); waits at most 10 s for HTTP.
pub fn start_agent_cmd(
    dir: TempDir,
    tag: &str,
    listen: SocketAddr,
    servers: &[SocketAddr],
    extra: &[&str],
    tweak: &mut dyn FnMut(&mut Command),
) -> (Agent, SocketAddr) {
    let mut cmd = Command::new(skewd_bin());
    cmd.arg("run").arg("--listen").arg(listen.to_string());
    // The agent's directory, unless the test names others in `extra`.
    if !extra.contains(&"--shm") {
        cmd.arg("--shm").arg(dir.join("clock"));
    }
    if !extra.contains(&"--state-dir") {
        cmd.arg("--state-dir").arg(&dir);
    }
    for s in servers {
        cmd.arg("--server").arg(s.to_string());
    }
    tweak(&mut cmd);
    cmd.args(extra)
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

/// `/v1/status`'s `epsilon_budget`, after checking its parts add up to
/// `epsilon_ns` (the reader's fixed-point form and rounding: a few ns).
pub fn budget_adds_up(status: &serde_json::Value) -> serde_json::Value {
    let b = &status["epsilon_budget"];
    let eps = status["epsilon_ns"].as_i64().expect("an interval") as f64;
    let parts = b.as_object().expect("a budget with an interval");
    let sum: f64 = parts
        .iter()
        .filter(|(k, _)| k.ends_with("_ns"))
        .map(|(_, v)| v.as_f64().unwrap())
        .sum();
    assert!(parts.len() >= 12, "{b}");
    assert!(
        (sum - eps).abs() <= 6.0,
        "parts add to {sum}, epsilon {eps}: {b}"
    );
    b.clone()
}
