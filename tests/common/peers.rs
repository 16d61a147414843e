//! Real peers and tools: chronyd on loopback, libfaketime, and whether a
//! test may skip when one is missing.

use super::{free_udp_port, wait_until, Guard};
use skewd::core::ntp::packet::Packet;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

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
    chronyd_with(dir, name, &[], directives)
}

/// [`chronyd`] with extra command-line `flags` (e.g. `-4`).
pub fn chronyd_with(dir: &Path, name: &str, flags: &[&str], directives: &[String]) -> Guard {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    let ds = d.display();
    let mut args: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    args.extend([
        "-x".into(),
        "-d".into(),
        "-u".into(),
        "root".into(),
        "-f".into(),
        "/dev/null".into(),
    ]);
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

/// `promtool check metrics` accepts `text` (skipped, or failing under
/// SKEWD_REQUIRE_PEERS=1, without promtool).
pub fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    if !need("promtool") {
        return;
    }
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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

/// chronyd's own figure for its clock's error, from `chronyc tracking`:
/// |System time| + Root dispersion + Root delay / 2 (what ClockBound builds
/// on; statistical, not a bound). `sock` is the client's command socket.
pub fn chrony_bound_ns(sock: &Path) -> Option<i64> {
    let out = Command::new("chronyc")
        .args(["-h"])
        .arg(sock)
        .args(["-n", "tracking"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        eprintln!("chronyc: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let field = |name: &str| -> Option<f64> {
        let l = text.lines().find(|l| l.starts_with(name))?;
        l.split(':').nth(1)?.split_whitespace().next()?.parse().ok()
    };
    let Some(sys) = field("System time") else {
        eprintln!("chronyc tracking: {}", text.trim());
        return None;
    };
    let disp = field("Root dispersion")?;
    let delay = field("Root delay")?;
    Some(((sys.abs() + disp + delay / 2.0) * 1e9) as i64)
}

/// A `chronyd -x` client (never touches the clock) of `servers`, polling
/// every second, with its command socket in `dir/client`. Returns its guard,
/// the socket for [`chrony_bound_ns`], and a guard that removes
/// `/run/chrony` if it had to be made (chronyc binds its reply socket there).
pub fn chrony_client(dir: &Path, servers: &[SocketAddr]) -> (Guard, PathBuf, RunDir) {
    let d = dir.join("client");
    std::fs::create_dir_all(&d).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    let sock = d.join("chronyc.sock");
    let mut directives: Vec<String> = servers
        .iter()
        .map(|a| {
            format!(
                "server {} port {} minpoll 0 maxpoll 0 iburst",
                a.ip(),
                a.port()
            )
        })
        .collect();
    directives.push("port 0".into());
    directives.push(format!("bindcmdaddress {}", sock.display()));
    let client = Command::new("chronyd")
        .args(["-x", "-d", "-u", "root", "-f", "/dev/null"])
        .args(&directives)
        .arg(format!("pidfile {}/pid", d.display()))
        .arg(format!("driftfile {}/drift", d.display()))
        .arg(format!("dumpdir {}", d.display()))
        .arg(format!("ntsdumpdir {}", d.display()))
        .arg(format!("logdir {}", d.display()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("log")).unwrap())
        .spawn()
        .unwrap();
    let run_chrony = Path::new("/run/chrony");
    let made = !run_chrony.exists() && std::fs::create_dir(run_chrony).is_ok();
    (
        Guard {
            child: client,
            name: "chrony-client".into(),
        },
        sock,
        RunDir(made),
    )
}

/// Removes `/run/chrony` on drop when this process made it.
pub struct RunDir(bool);

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.0 {
            let _ = std::fs::remove_dir_all("/run/chrony");
        }
    }
}

/// A Prometheus server on a free loopback port with `config` (its
/// `prometheus.yml`, and anything it names, in `dir`); returns its guard
/// and address.
pub fn prometheus(dir: &Path, config: &str) -> (Guard, SocketAddr) {
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = super::free_port();
    let guard = Guard {
        child: Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("prometheus.log")).unwrap(),
            ))
            .spawn()
            .expect("start prometheus"),
        name: "prometheus".into(),
    };
    (guard, format!("127.0.0.1:{port}").parse().unwrap())
}
