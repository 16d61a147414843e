//! Hostile neighbours: what an unprivileged local user, or an off-path
//! spoofer, can do to a running agent. Publishing to shared memory is what
//! applications depend on: nothing here may stop it, drop the model, get
//! the agent killed (by the watchdog or SIGBUS), or crash its readers; HTTP
//! must come back when the abuse stops. Each test failed on the `main`
//! before these fixes (replay with `SKEWD_BIN=<older build>`).

mod common;
use common::*;
use skewd::client::{Clock, Status};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Resident memory of `pid` (kB).
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Kernel memory held by TCP sockets on the host (bytes, from
/// /proc/net/sockstat).
fn tcp_mem_bytes() -> u64 {
    std::fs::read_to_string("/proc/net/sockstat")
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("TCP:"))?.to_owned();
            let mut w = l.split_whitespace();
            w.position(|x| x == "mem")?;
            w.next()?.parse::<u64>().ok()
        })
        .map_or(0, |pages| pages * 4096)
}

/// Raise this test process's own soft descriptor limit (it holds the
/// flood's connections).
fn raise_own_fd_limit(want: u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on our own process with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < want {
            r.rlim_cur = want.min(r.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// What a reader of the segment and the watchdog saw over a stretch.
#[derive(Debug, Default)]
struct Watch {
    reads: u64,
    /// Reads that were not `synchronized` (or failed).
    bad: Vec<String>,
    /// Longest gap between two watchdog pings.
    longest_ping_gap: Duration,
    pings: u64,
}

/// Read the segment every 20 ms and collect watchdog pings from `notify`
/// until `stop` is set. (An agent whose segment this build cannot read,
/// an older layout replayed with `SKEWD_BIN`, is read over HTTP instead.)
fn watch(
    shm: PathBuf,
    http: SocketAddr,
    notify: UnixDatagram,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Watch> {
    std::thread::spawn(move || {
        let mut w = Watch::default();
        let clock = Clock::open(&shm);
        if let Err(e) = &clock {
            eprintln!("segment unreadable ({e}): reading /v1/now instead");
        }
        notify
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut last_ping = Instant::now();
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::Relaxed) {
            while let Ok(n) = notify.recv(&mut buf) {
                if String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1") {
                    w.longest_ping_gap = w.longest_ping_gap.max(last_ping.elapsed());
                    last_ping = Instant::now();
                    w.pings += 1;
                }
            }
            w.reads += 1;
            match &clock {
                Ok(clock) => match clock.now() {
                    Ok(t) if t.status == Status::Synchronized => {}
                    Ok(t) => w.bad.push(format!("{:?}", t.status)),
                    Err(e) => w.bad.push(e.to_string()),
                },
                Err(_) => {
                    match skewd::httpc::request(http, "GET", "/v1/now", Duration::from_secs(1)) {
                        Ok(r) if r.body.contains("\"synchronized\"") => {}
                        Ok(r) => w.bad.push(r.body),
                        Err(e) => w.bad.push(e.to_string()),
                    }
                }
            }
        }
        w.longest_ping_gap = w.longest_ping_gap.max(last_ping.elapsed());
        w
    })
}

/// What must hold through every flood: the segment read synchronized on
/// every one of (many) reads, the watchdog pinged at its 1 s rhythm, and
/// `/healthz` answered at least 9 probes in 10.
fn undisturbed(what: &str, w: &Watch, probes: u64, answered: u64) {
    assert!(
        w.reads > 100 && w.bad.is_empty(),
        "{what}: {} reads, {:?}",
        w.reads,
        &w.bad[..w.bad.len().min(10)]
    );
    assert!(
        w.longest_ping_gap < Duration::from_secs(2),
        "{what}: watchdog gap {:?}",
        w.longest_ping_gap
    );
    assert!(
        answered * 10 >= probes * 9,
        "{what}: /healthz answered {answered} of {probes} during the flood"
    );
}

/// An agent on three honest fakes, polling every second, started with a
/// soft descriptor limit of 1 024 (systemd's default) and a 2 s watchdog
/// reporting to a socket of the test; synchronized.
struct Watched {
    _servers: Vec<FakeServer>,
    agent: Agent,
    http: SocketAddr,
    notify: UnixDatagram,
    shm: PathBuf,
}

fn watched_agent(tag: &str, ips: &[&str]) -> Watched {
    let servers = honest_fakes(ips);
    let dir = temp_dir(tag);
    let notify_path = dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let shm = dir.join("clock");
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (agent, http) = start_agent_cmd(
        dir,
        tag,
        listen,
        &addrs_of(&servers),
        &["--poll", "1s"],
        &mut |c| {
            c.env("NOTIFY_SOCKET", &notify_path)
                .env("WATCHDOG_USEC", "2000000");
            // SAFETY: the closure only calls setrlimit (async-signal-safe)
            // in the child before exec.
            unsafe {
                c.pre_exec(|| {
                    let mut r = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
                    r.rlim_cur = 1024.min(r.rlim_max);
                    libc::setrlimit(libc::RLIMIT_NOFILE, &r);
                    Ok(())
                });
            }
        },
    );
    assert!(
        wait_until(Duration::from_secs(15), || get(http, "/v1/now")
            .is_some_and(|(_, b)| b.contains("\"synchronized\""))),
        "{tag}: not synchronized"
    );
    Watched {
        _servers: servers,
        agent,
        http,
        notify,
        shm,
    }
}

/// Run `abuse` for `secs` while watching the segment and the watchdog;
/// returns what was seen, the agent's largest RSS (kB) and how many
/// `/healthz` probes got 200 during the abuse.
fn under(
    w: &Watched,
    secs: u64,
    abuse: impl FnOnce() -> Box<dyn std::any::Any>,
) -> (Watch, u64, u64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let seen = watch(
        w.shm.clone(),
        w.http,
        w.notify.try_clone().unwrap(),
        stop.clone(),
    );
    let held = abuse();
    let t = Instant::now();
    let (mut rss, mut probes, mut answered) = (0, 0, 0);
    while t.elapsed() < Duration::from_secs(secs) {
        rss = rss.max(rss_kb(w.agent.pid()));
        probes += 1;
        if skewd::httpc::request(w.http, "GET", "/healthz", Duration::from_secs(1))
            .is_ok_and(|r| r.code == 200)
        {
            answered += 1;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(held);
    stop.store(true, Ordering::Relaxed);
    (seen.join().unwrap(), rss, probes, answered)
}

/// The agent's metric `name` (first sample), from `/metrics`.
fn metric(http: SocketAddr, name: &str) -> Option<f64> {
    let (_, body) = get(http, "/metrics")?;
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// 1 100 idle connections, then 1 000 connections each sending 400 KB of
/// header that never ends: the segment stays fresh and synchronized, the
/// watchdog keeps pinging, memory stays bounded, `/healthz` answers during
/// the flood (idle connections are evicted for newcomers) and after it.
/// On the old `main` the idle flood exhausted the agent's descriptors (it
/// dropped its model when the clocksource file could not be opened, and
/// its watchdog pings stopped), and the header flood took 400 MB.
#[test]
fn connection_floods_leave_publishing_alone() {
    raise_own_fd_limit(8192);
    let w = watched_agent("flood", &["127.0.0.60", "127.0.0.61", "127.0.0.62"]);
    let base_rss = rss_kb(w.agent.pid());
    let http = w.http;
    let (idle, idle_rss, probes, answered) = under(&w, 8, || {
        let conns: Vec<TcpStream> = (0..1100)
            .filter_map(|_| TcpStream::connect_timeout(&http, Duration::from_secs(2)).ok())
            .collect();
        eprintln!("idle flood: {} connections open", conns.len());
        Box::new(conns)
    });
    eprintln!(
        "idle flood: {} reads, {} not synchronized, watchdog {} pings, longest gap {:?}, RSS {base_rss} -> {idle_rss} kB, /healthz {answered}/{probes}",
        idle.reads,
        idle.bad.len(),
        idle.pings,
        idle.longest_ping_gap
    );
    undisturbed("idle", &idle, probes, answered);

    let (slow, slow_rss, probes, answered) = under(&w, 8, || {
        let line = format!("X-Pad: {}\r\n", "a".repeat(1000));
        let conns: Vec<TcpStream> = (0..1000)
            .filter_map(|_| {
                let mut s = TcpStream::connect_timeout(&http, Duration::from_secs(2)).ok()?;
                s.set_nonblocking(true).ok()?;
                let _ = s.write_all(b"GET /v1/now HTTP/1.1\r\nHost: localhost\r\n");
                for _ in 0..400 {
                    if s.write_all(line.as_bytes()).is_err() {
                        break; // the agent stopped reading: its buffer is full
                    }
                }
                Some(s)
            })
            .collect();
        Box::new(conns)
    });
    eprintln!(
        "header flood: {} reads, {} not synchronized, longest watchdog gap {:?}, RSS {slow_rss} kB, /healthz {answered}/{probes}",
        slow.reads,
        slow.bad.len(),
        slow.longest_ping_gap
    );
    undisturbed("slow", &slow, probes, answered);
    assert!(
        slow_rss < 96 * 1024,
        "RSS {slow_rss} kB under the header flood"
    );

    // 300 clients pipeline `GET /metrics` and never read (each with a
    // 4 KiB receive buffer): the agent's socket buffers stay small, and a
    // response nobody takes for 10 s closes its connection. On the old
    // `main` 50 such clients pinned 216 MB of socket memory.
    let tcp_before = tcp_mem_bytes();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = watch(
        w.shm.clone(),
        w.http,
        w.notify.try_clone().unwrap(),
        stop.clone(),
    );
    let mut conns: Vec<TcpStream> = (0..300)
        .filter_map(|_| {
            let s = TcpStream::connect_timeout(&http, Duration::from_secs(2)).ok()?;
            let small: libc::c_int = 4096;
            // SAFETY: setsockopt on a socket we own, with a live c_int.
            unsafe {
                use std::os::fd::AsRawFd;
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    (&small as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
            s.set_nonblocking(true).ok()?;
            Some(s)
        })
        .collect();
    let req = "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(50);
    let t = Instant::now();
    let (mut tcp_peak, mut probes, mut answered) = (0, 0, 0);
    while t.elapsed() < Duration::from_secs(14) {
        for c in &mut conns {
            let _ = c.write(req.as_bytes());
        }
        tcp_peak = tcp_peak.max(tcp_mem_bytes());
        probes += 1;
        if skewd::httpc::request(http, "GET", "/healthz", Duration::from_secs(1))
            .is_ok_and(|r| r.code == 200)
        {
            answered += 1;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let open = metric(http, "skewd_http_connections").unwrap_or(f64::NAN);
    drop(conns);
    stop.store(true, Ordering::Relaxed);
    let reading = seen.join().unwrap();
    let grew = tcp_peak.saturating_sub(tcp_before);
    eprintln!(
        "slow readers: TCP memory +{} kB, {open} connections still open after 14 s, {} reads, {} not synchronized, watchdog gap {:?}, /healthz {answered}/{probes}",
        grew / 1024,
        reading.reads,
        reading.bad.len(),
        reading.longest_ping_gap
    );
    assert!(grew < 64 << 20, "socket memory grew by {} MB", grew >> 20);
    assert!(open < 100.0, "{open} stalled connections still open");
    undisturbed("slow readers", &reading, probes, answered);

    // After the floods: HTTP answers and the model never dropped.
    assert!(wait_until(Duration::from_secs(5), || get(http, "/healthz")
        .is_some_and(|r| r.0 == 200)));
    let evicted = metric(http, "skewd_http_connections_evicted_total").unwrap_or(0.0);
    assert!(evicted > 0.0, "no idle connection was evicted");
    let status = get_json(http, "/v1/status");
    assert_eq!(
        status["interruptions"]["clocksource_changes"], 0,
        "{status}"
    );
}

/// 1 000 forged datagrams a second from each server's address to the
/// agent's source ports (mode-3 packets, replies to no request, bad
/// versions, short datagrams): every source keeps accepting its server's
/// replies. On the old `main` each forged mode-3 packet cancelled the
/// request in flight, and the agent went `free_running`.
#[test]
fn forged_packets_leave_exchanges_untouched() {
    let spec = FakeSpec {
        forge_per_s: 1000,
        ..FakeSpec::honest()
    };
    let servers: Vec<FakeServer> = ["127.0.0.63", "127.0.0.64", "127.0.0.65"]
        .iter()
        .map(|ip| FakeServer::start(ip, spec))
        .collect();
    let (_agent, http) = start_agent("forged", &addrs_of(&servers), &["--poll", "1s"]);
    assert!(
        wait_until(Duration::from_secs(15), || get(http, "/v1/now")
            .is_some_and(|(_, b)| b.contains("\"synchronized\""))),
        "not synchronized under forged packets"
    );
    let before = get_json(http, "/v1/status");
    let t = Instant::now();
    let mut bad = vec![];
    while t.elapsed() < Duration::from_secs(10) {
        match get(http, "/v1/now") {
            Some((_, b)) if b.contains("\"synchronized\"") => {}
            other => bad.push(format!("{other:?}")),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = get_json(http, "/v1/status");
    for (b, a) in before["sources"]
        .as_array()
        .unwrap()
        .iter()
        .zip(after["sources"].as_array().unwrap())
    {
        let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
        let ok = n(a, "replies_ok") - n(b, "replies_ok");
        let sent = n(a, "requests_sent") - n(b, "requests_sent");
        eprintln!(
            "{}: {sent} sent, {ok} ok, {} timeouts, {} unexpected, {} invalid, reach {:o}",
            a["name"],
            n(a, "timeouts") - n(b, "timeouts"),
            n(a, "replies_unexpected"),
            n(a, "replies_invalid"),
            n(a, "reach")
        );
        assert!(
            sent >= 5 && ok + 1 >= sent,
            "{a}: replies lost to forgeries"
        );
        assert_eq!(n(a, "timeouts"), n(b, "timeouts"), "{a}");
        assert!(
            n(a, "replies_unexpected") + n(a, "replies_invalid") > 1000,
            "{a}: forgeries not seen"
        );
        assert_eq!(a["state"], "selected", "{a}");
    }
    assert!(bad.is_empty(), "{:?}", &bad[..bad.len().min(10)]);
}

/// A local user holds the agent's HTTP port first: the agent still
/// publishes to shared memory (what applications read), says why HTTP is
/// missing, and serves HTTP once the port is free. On the old `main` the
/// bind failure was fatal before the segment was created.
#[test]
fn publishes_with_its_http_port_taken() {
    let servers = honest_fakes(&["127.0.0.66", "127.0.0.67", "127.0.0.68"]);
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = squatter.local_addr().unwrap();
    let dir = temp_dir("squatted");
    let shm = dir.join("clock");
    let log = dir.join("log");
    let (mut agent, http) = start_agent_cmd(
        dir,
        "squatted",
        listen,
        &addrs_of(&servers),
        &["--poll", "1s"],
        &mut |_| {},
    );
    let synchronized = wait_until(Duration::from_secs(15), || {
        Clock::open(&shm).is_ok_and(|c| c.now().is_ok_and(|t| t.status == Status::Synchronized))
    });
    let running = agent.child.try_wait().ok().flatten().is_none();
    assert!(
        running,
        "the agent exited: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        synchronized,
        "no synchronized segment while the port is taken"
    );
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("cannot listen on"));
    drop(squatter);
    assert!(
        wait_until(Duration::from_secs(10), || get(http, "/healthz")
            .is_some_and(|r| r.0 == 200)),
        "HTTP did not come up once the port was free"
    );
    assert!(agent.stop().unwrap().success());
}

/// Socket activation: systemd (here the test) binds the port and passes
/// it as descriptor 3 with `LISTEN_FDS`/`LISTEN_PID`; the agent serves on
/// it and binds nothing itself.
#[test]
fn serves_on_a_socket_passed_by_systemd() {
    use std::os::fd::AsRawFd;
    let servers = honest_fakes(&["127.0.0.84", "127.0.0.85", "127.0.0.86"]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fd = listener.as_raw_fd();
    let dir = temp_dir("activated");
    // The agent is told to listen elsewhere: the passed socket wins.
    let elsewhere = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"")
        .arg(skewd_bin())
        .args(["run", "--poll", "1s", "--listen", &elsewhere])
        .arg("--shm")
        .arg(dir.join("clock"))
        .arg("--state-dir")
        .arg(&*dir);
    for s in addrs_of(&servers) {
        cmd.arg("--server").arg(s.to_string());
    }
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("log")).unwrap());
    // SAFETY: dup2 is async-signal-safe; it runs in the child before exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut agent = Guard {
        child: cmd.spawn().unwrap(),
        name: "activated".into(),
    };
    drop(listener); // the agent holds its copy
    assert!(
        wait_until(Duration::from_secs(15), || get(addr, "/healthz")
            .is_some_and(|r| r.0 == 200)),
        "not serving on the passed socket: {}",
        std::fs::read_to_string(dir.join("log")).unwrap_or_default()
    );
    assert!(
        std::net::TcpStream::connect(elsewhere.as_str()).is_err(),
        "bound its own port too"
    );
    assert!(agent.stop().unwrap().success());
}

/// `n` clients repeating long `/v1/wait` requests for 6 s while `/healthz`,
/// `/metrics` and `/v1/now` are probed: the probes that failed.
fn probe_under_waits(http: SocketAddr, n: usize) -> (usize, Vec<String>) {
    let far = realtime_ns() + 3600 * 1_000_000_000;
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        for _ in 0..n {
            let stop = stop.clone();
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let r = skewd::httpc::request(
                        http,
                        "GET",
                        &format!("/v1/wait?until={far}&timeout_ms=5000"),
                        Duration::from_secs(8),
                    );
                    // A client told 503 comes back a little later (a
                    // tight loop would measure CPU starvation, not slots).
                    if !r.is_ok_and(|r| r.code == 409) {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_secs(1));
        let (mut probes, mut bad) = (0, vec![]);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(6) {
            for path in ["/healthz", "/metrics", "/v1/now"] {
                probes += 1;
                // 5 s: this measures slots, not latency; 600 client threads
                // on two cores starve everyone of CPU now and then.
                match skewd::httpc::request(http, "GET", path, Duration::from_secs(5)) {
                    Ok(r) if r.code == 200 => {}
                    Ok(r) => bad.push(format!("{path}: {} {}", r.code, r.body)),
                    Err(e) => bad.push(format!("{path}: {e}")),
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::Relaxed);
        (probes, bad)
    })
}

/// 600 long `/v1/wait` requests at once: `/healthz` and `/metrics` still
/// answer, every time. On the old `main` waits took every slot and 74 of
/// 75 health probes got 503.
#[test]
fn waits_cannot_starve_health_and_metrics() {
    let servers = honest_fakes(&["127.0.0.69", "127.0.0.70", "127.0.0.71"]);
    let (_agent, http) = start_agent("waits", &addrs_of(&servers), &["--poll", "1s"]);
    assert!(wait_until(Duration::from_secs(15), || get(
        http, "/healthz"
    )
    .is_some_and(|r| r.0 == 200)));
    let (probes, bad) = probe_under_waits(http, 600);
    eprintln!("{probes} probes under 600 waits: {} failed", bad.len());
    assert!(bad.is_empty(), "{bad:?}");
}

/// The same under a hard descriptor limit of 512: the connection cap
/// shrinks to 256 and the waits' budget with it (to 64), so waits, which
/// are never evicted as idle, still cannot take every slot.
#[test]
fn waits_cannot_starve_health_under_a_low_descriptor_limit() {
    let servers = honest_fakes(&["127.0.0.96", "127.0.0.97", "127.0.0.98"]);
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (agent, http) = start_agent_cmd(
        temp_dir("waits-512"),
        "waits-512",
        listen,
        &addrs_of(&servers),
        &["--poll", "1s"],
        &mut |c| {
            // SAFETY: only setrlimit (async-signal-safe), in the child.
            unsafe {
                c.pre_exec(|| {
                    let r = libc::rlimit {
                        rlim_cur: 512,
                        rlim_max: 512,
                    };
                    libc::setrlimit(libc::RLIMIT_NOFILE, &r);
                    Ok(())
                });
            }
        },
    );
    assert!(wait_until(Duration::from_secs(15), || get(
        http, "/healthz"
    )
    .is_some_and(|r| r.0 == 200)));
    let log = std::fs::read_to_string(agent.dir.join("log")).unwrap();
    assert!(log.contains("HTTP takes at most 256 connections"), "{log}");
    let (probes, bad) = probe_under_waits(http, 300);
    eprintln!(
        "{probes} probes under 300 waits, 512 descriptors: {} failed",
        bad.len()
    );
    assert!(bad.is_empty(), "{bad:?}");
}

/// Someone with the agent's rights truncates the live segment: the agent
/// survives, restores it and says so; a reader that opens it then reads a
/// synchronized interval. On the old `main` the agent died of SIGBUS at
/// its next write.
#[test]
fn a_truncated_segment_is_restored_not_a_crash() {
    let servers = honest_fakes(&["127.0.0.72", "127.0.0.73", "127.0.0.74"]);
    let (mut agent, http) = start_agent("truncated", &addrs_of(&servers), &["--poll", "1s"]);
    let shm = agent.dir.join("clock");
    assert!(wait_until(Duration::from_secs(15), || get(
        http, "/healthz"
    )
    .is_some_and(|r| r.0 == 200)));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&shm)
        .unwrap()
        .set_len(0)
        .unwrap();
    assert!(wait_until(Duration::from_secs(3), || std::fs::metadata(
        &shm
    )
    .is_ok_and(|m| m.len() > 0)));
    std::thread::sleep(Duration::from_secs(1));
    assert!(agent.child.try_wait().unwrap().is_none(), "the agent died");
    assert!(wait_until(Duration::from_secs(5), || Clock::open(&shm)
        .is_ok_and(|c| c
            .now()
            .is_ok_and(|t| t.status == Status::Synchronized))));
    // Deleted: created again.
    std::fs::remove_file(&shm).unwrap();
    assert!(wait_until(Duration::from_secs(5), || Clock::open(&shm)
        .is_ok_and(|c| c
            .now()
            .is_ok_and(|t| t.status == Status::Synchronized))));
    let log = std::fs::read_to_string(agent.dir.join("log")).unwrap();
    assert!(log.contains("had been shrunk"), "{log}");
    assert!(log.contains("removed or replaced"), "{log}");
    // The segment and its lock file removed: the agent locks a new one, so
    // a second agent started then still finds the segment held.
    std::fs::remove_file(&shm).unwrap();
    std::fs::remove_file(agent.dir.join("clock.lock")).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let second_log = agent.dir.join("second.log");
    let mut second = Guard {
        child: Command::new(skewd_bin())
            .args(["run", "--server", "127.0.0.1:9", "--listen"])
            .arg(format!("127.0.0.1:{}", free_port()))
            .arg("--shm")
            .arg(&shm)
            .arg("--state-dir")
            .arg(&*agent.dir)
            .stderr(std::fs::File::create(&second_log).unwrap())
            .spawn()
            .unwrap(),
        name: "second".into(),
    };
    let exited = wait_until(Duration::from_secs(5), || {
        second.child.try_wait().ok().flatten().is_some()
    });
    let err = std::fs::read_to_string(&second_log).unwrap_or_default();
    assert!(exited, "a second agent runs on the same segment: {err}");
    let status = second.child.wait().unwrap();
    assert!(
        !status.success() && err.contains("held by another skewd"),
        "{err}"
    );
    assert!(agent.stop().unwrap().success());
}

/// A process holding a private mount namespace with two full 64 KiB
/// tmpfs mounts, `<dir>/shm` and `<dir>/state` (a 0700 directory made
/// before filling), seen from outside through `/proc/<pid>/root`.
fn full_tmpfs_holder(dir: &Path) -> Guard {
    let (shm, state) = (dir.join("shm"), dir.join("state"));
    std::fs::create_dir(&shm).unwrap();
    std::fs::create_dir(&state).unwrap();
    let script = format!(
        "set -e; for m in {shm} {state}; do mount -t tmpfs -o size=64k,mode=0700 skewd-test $m; done; \
         mkdir -m 0700 {state}/dir; \
         for m in {shm} {state}; do cat /dev/zero > $m/fill 2>/dev/null || true; done; \
         touch {shm}/ready; exec sleep 600",
        shm = shm.display(),
        state = state.display()
    );
    let holder = Guard {
        child: Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .spawn()
            .unwrap(),
        name: "tmpfs-holder".into(),
    };
    let ready = PathBuf::from(format!(
        "/proc/{}/root{}/ready",
        holder.pid(),
        shm.display()
    ));
    assert!(
        wait_until(Duration::from_secs(5), || ready.exists()),
        "no tmpfs"
    );
    holder
}

/// The segment's tmpfs is full: the agent starts, reports that it cannot
/// publish (`/healthz` 503 with the reason, `skewd_shm_publishing 0`), and
/// publishes once there is room. Its state directory is full too: saving
/// the drift file at stop fails with a warning and leaves no temporary
/// file. On the old `main` the agent died of SIGBUS at start (the sparse
/// segment was first touched through the mapping), and a failed save was
/// logged at debug level, leaving a 0-byte temporary file.
#[test]
fn a_full_tmpfs_is_an_error_not_a_crash() {
    if !need("unshare") || !need("nsenter") {
        return;
    }
    let servers = honest_fakes(&["127.0.0.75", "127.0.0.76", "127.0.0.77"]);
    let dir = temp_dir("fulltmpfs");
    let holder = full_tmpfs_holder(&dir);
    let inside =
        |p: &str| PathBuf::from(format!("/proc/{}/root{}/{p}", holder.pid(), dir.display()));
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--mount=/proc/{}/ns/mnt", holder.pid()))
        .arg("--")
        .arg(skewd_bin())
        .args(["run", "--poll", "1s", "--listen", &listen.to_string()])
        .arg("--shm")
        .arg(dir.join("shm/clock"))
        .arg("--state-dir")
        .arg(dir.join("state/dir"));
    for s in addrs_of(&servers) {
        cmd.arg("--server").arg(s.to_string());
    }
    let log = dir.join("log");
    cmd.env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut agent = Guard {
        child: cmd.spawn().unwrap(),
        name: "fulltmpfs".into(),
    };
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    let synchronized_but_not_publishing = wait_until(Duration::from_secs(15), || {
        request(listen, "GET", "/healthz").is_some_and(|(code, body)| {
            code == 503 && body.contains("synchronized") && body.contains("not published")
        })
    });
    let alive = agent.child.try_wait().unwrap().is_none();
    assert!(alive, "the agent died: {}", text());
    assert!(
        synchronized_but_not_publishing,
        "{:?} {}",
        request(listen, "GET", "/healthz"),
        text()
    );
    assert_eq!(metric(listen, "skewd_shm_publishing"), Some(0.0));
    // Make room for the segment.
    std::fs::remove_file(inside("shm/fill")).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || request(
            listen, "GET", "/healthz"
        )
        .is_some_and(|r| r.0 == 200)),
        "not publishing once there was room: {}",
        text()
    );
    assert_eq!(metric(listen, "skewd_shm_publishing"), Some(1.0));
    // A reader in the agent's mount namespace reads it.
    let out = Command::new("nsenter")
        .arg(format!("--mount=/proc/{}/ns/mnt", holder.pid()))
        .arg("--")
        .arg(skewd_bin())
        .args(["now", "--shm"])
        .arg(dir.join("shm/clock"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("synchronized"),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Rate evidence, so that the agent has a drift file to save at stop.
    assert!(
        wait_until(Duration::from_secs(20), || get_json(listen, "/v1/status")
            ["frequency_bound_ppm"]
            .as_f64()
            .is_some_and(|b| b < 200.0)),
        "no rate evidence"
    );
    assert!(agent.stop().unwrap().success());
    let t = text();
    assert!(
        t.contains("WARN") && t.contains("could not save the drift file"),
        "{t}"
    );
    let left: Vec<String> = std::fs::read_dir(inside("state/dir"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// In a shared sticky directory, another user plants symlinks where the
/// agent's segment and state files go, pointing at a root-only file: the
/// agent refuses them and the file is untouched. On the old `main` the
/// agent made it 0644 and overwrote it.
#[test]
fn symlinked_paths_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("symlinks");
    let secret = dir.join("secret");
    std::fs::write(&secret, b"root only\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let shared = dir.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let shm = shared.join("clock");
    std::os::unix::fs::symlink(&secret, &shm).unwrap();
    // Planted by another user (as root here: give them away).
    let plant = |p: &Path| {
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::lchown(p, Some(65534), Some(65534)).unwrap();
        }
    };
    plant(&shm);
    let state = dir.join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&secret, state.join("drift.json")).unwrap();
    plant(&state.join("drift.json"));
    // A state directory that is itself a link is refused too.
    let linked_state = shared.join("state");
    std::os::unix::fs::symlink(&state, &linked_state).unwrap();
    plant(&linked_state);
    let servers = honest_fakes(&["127.0.0.78", "127.0.0.79", "127.0.0.80"]);
    for (tag, state_dir) in [("symlinks-a", &state), ("symlinks-b", &linked_state)] {
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = dir.join(format!("{tag}.log"));
        let mut cmd = Command::new(skewd_bin());
        cmd.args(["run", "--poll", "1s", "--listen", &listen.to_string()])
            .arg("--shm")
            .arg(&shm)
            .arg("--state-dir")
            .arg(state_dir)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for s in addrs_of(&servers) {
            cmd.arg("--server").arg(s.to_string());
        }
        let mut agent = Guard {
            child: cmd.spawn().unwrap(),
            name: tag.into(),
        };
        // Long enough to synchronize and to try the segment again.
        let _ = wait_until(Duration::from_secs(8), || {
            request(listen, "GET", "/v1/now").is_some_and(|(_, b)| b.contains("\"synchronized\""))
        });
        std::thread::sleep(Duration::from_secs(6));
        agent.stop();
        let meta = std::fs::metadata(&secret).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "{tag}: mode changed"
        );
        assert_eq!(
            std::fs::read(&secret).unwrap(),
            b"root only\n",
            "{tag}: overwritten"
        );
        assert!(std::fs::symlink_metadata(&shm)
            .unwrap()
            .file_type()
            .is_symlink());
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("shared memory"), "{tag}: {text}");
    }
}

/// Small things a neighbour can do: SIGHUP (a closed terminal, `kill
/// -HUP`) is logged, not fatal; a page that rebinds a DNS name to
/// 127.0.0.1 gets 421, not the API; wrong methods, long targets and long
/// headers get JSON errors; `check-config` refuses more servers than the
/// agent would open sockets for.
#[test]
fn signals_host_checks_and_json_errors() {
    let (mut agent, http) = start_agent("hygiene", &[], &["--server", "127.0.0.1:9"]);
    agent.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "SIGHUP killed the agent"
    );
    assert!(get(http, "/healthz").is_some());

    let raw = |req: &str| -> (u16, String) {
        let mut s = TcpStream::connect(http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        let code = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        (code, body)
    };
    let json_error = |(code, body): (u16, String), want: u16| {
        assert_eq!(code, want, "{body}");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{want}: not JSON: {body:?}"));
        assert!(v["error"].is_string(), "{v}");
    };
    json_error(
        raw("GET /v1/now HTTP/1.1\r\nHost: evil.example:9469\r\nConnection: close\r\n\r\n"),
        421,
    );
    json_error(
        raw("DELETE /v1/now HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        405,
    );
    let long = format!(
        "GET /v1/now?{} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        "a".repeat(6000)
    );
    json_error(raw(&long), 414);
    let headers: String = (0..10)
        .map(|i| format!("X-{i}: {}\r\n", "b".repeat(1000)))
        .collect();
    json_error(
        raw(&format!(
            "GET /v1/now HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n"
        )),
        431,
    );
    // Addresses, loopback names and this host's name are fine.
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned();
    for host in [
        "localhost",
        "127.0.0.1",
        &http.to_string(),
        "[::1]:9469",
        "10.1.2.3:9469",
        &hostname,
        &format!("{}:9469", hostname.to_uppercase()),
    ] {
        let (code, _) = raw(&format!(
            "GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        ));
        assert!(code == 200 || code == 503, "{host}: {code}");
    }

    let dir = temp_dir("many-servers");
    let cfg = dir.join("skewd.toml");
    let servers: String = (0..5000)
        .map(|i| {
            format!(
                "[[server]]\naddress = \"10.0.{}.{}:123\"\n",
                i / 250,
                i % 250
            )
        })
        .collect();
    std::fs::write(&cfg, servers).unwrap();
    let out = Command::new(skewd_bin())
        .arg("check-config")
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "5 000 servers accepted");
    assert!(err.contains("at most"), "{}", &err[..err.len().min(500)]);
    assert!(agent.stop().unwrap().success());
}

/// As root, act as `nobody` (the tests below need two users).
fn as_nobody() -> bool {
    if unsafe { libc::geteuid() } != 0 || !need("setpriv") {
        eprintln!("SKIPPED: needs root and setpriv to act as another user");
        return false;
    }
    true
}

/// A user makes the segment's directory before the agent (`/tmp/skewd`,
/// say, when the operator chose a path in a shared directory) and runs an
/// agent of their own there against servers an hour ahead. The root agent
/// refuses the directory and says so; a reader refuses the planted segment
/// instead of reading a `synchronized` interval an hour off. On the old
/// `main` the reader printed it.
#[test]
fn a_segment_another_user_planted_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    if !as_nobody() {
        return;
    }
    let honest = honest_fakes(&["127.0.0.87", "127.0.0.88", "127.0.0.89"]);
    let ahead: Vec<FakeServer> = ["127.0.0.90", "127.0.0.91", "127.0.0.92"]
        .iter()
        .map(|ip| {
            FakeServer::start(
                ip,
                FakeSpec {
                    offset_ns: 3600 * 1_000_000_000,
                    ..FakeSpec::honest()
                },
            )
        })
        .collect();
    let base = temp_dir("planted");
    let shared = base.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let theirs = shared.join("skewd");
    let their_state = base.join("their-state");
    for d in [&theirs, &their_state] {
        std::fs::create_dir(d).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(d, Some(65534), Some(65534)).unwrap();
    }
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o755)).unwrap();
    let shm = theirs.join("clock");
    // Their agent first.
    let their_http = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(skewd_bin())
        .args(["run", "--poll", "1s", "--listen", &their_http])
        .arg("--shm")
        .arg(&shm)
        .arg("--state-dir")
        .arg(&their_state)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(base.join("their.log")).unwrap());
    for s in addrs_of(&ahead) {
        cmd.arg("--server").arg(s.to_string());
    }
    let _theirs = Guard {
        child: cmd.spawn().unwrap(),
        name: "nobody-agent".into(),
    };
    let their_http: SocketAddr = their_http.parse().unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || get(their_http, "/healthz")
            .is_some_and(|r| r.0 == 200)),
        "their agent: {}",
        std::fs::read_to_string(base.join("their.log")).unwrap_or_default()
    );
    // Ours, told to publish at the same path.
    let ours_dir = temp_dir("planted-ours");
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (mut ours, http) = start_agent_cmd(
        ours_dir,
        "planted-ours",
        listen,
        &addrs_of(&honest),
        &["--poll", "1s", "--shm", shm.to_str().unwrap()],
        &mut |_| {},
    );
    assert!(
        wait_until(Duration::from_secs(15), || get(http, "/healthz")
            .is_some_and(|(code, body)| code == 503
                && body.contains("not published")
                && body.contains("uid 65534"))),
        "{:?}",
        get(http, "/healthz")
    );
    // Readers refuse the planted segment, whoever's agent is right.
    match Clock::open(&shm) {
        Err(e) => assert!(e.to_string().contains("not trusting"), "{e}"),
        Ok(c) => panic!("read a planted segment: {:?}", c.now()),
    }
    let out = Command::new(skewd_bin())
        .args(["now", "--shm"])
        .arg(&shm)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "skewd now read it: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Their segment right inside the shared sticky directory (no directory
    // of theirs on the way): refused too (the Python reader's review).
    let bare = shared.join("clock");
    std::fs::copy(&shm, &bare).unwrap();
    std::os::unix::fs::chown(&bare, Some(65534), Some(65534)).unwrap();
    match Clock::open(&bare) {
        Err(e) => assert!(e.to_string().contains("right inside"), "{e}"),
        Ok(c) => panic!("read a planted segment: {:?}", c.now()),
    }
    assert!(ours.stop().unwrap().success());
}

/// systemd's `DynamicUser=` makes the state directory a root-owned symlink
/// (`/var/lib/skewd` -> `private/skewd`): the agent must follow that one
/// and save its drift file there.
#[test]
fn a_state_dir_behind_a_root_owned_link_is_used() {
    use std::os::unix::fs::PermissionsExt;
    let servers = honest_fakes(&["127.0.0.93", "127.0.0.94", "127.0.0.95"]);
    let base = temp_dir("dynamicuser");
    let private = base.join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let real = private.join("skewd");
    std::fs::create_dir(&real).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
    let link = base.join("skewd");
    std::os::unix::fs::symlink("private/skewd", &link).unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (mut agent, http) = start_agent_cmd(
        temp_dir("dynamicuser-agent"),
        "dynamicuser",
        listen,
        &addrs_of(&servers),
        &["--poll", "1s", "--state-dir", link.to_str().unwrap()],
        &mut |_| {},
    );
    assert!(
        wait_until(Duration::from_secs(25), || get_json(http, "/v1/status")
            ["frequency_bound_ppm"]
            .as_f64()
            .is_some_and(|b| b < 200.0)),
        "no rate evidence"
    );
    assert!(agent.stop().unwrap().success());
    assert!(
        real.join("drift.json").exists(),
        "{}",
        std::fs::read_to_string(agent.dir.join("log")).unwrap_or_default()
    );
}
