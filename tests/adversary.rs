//! The review's attacks on the one promise, replayed against the real agent:
//! a server walking the NTP era, a second agent on a held segment, a hostile
//! drift file, an RTC reset under the leap-free origin, duplicate servers.
//! Each of these broke `main` before the fixes of issue 8.

mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn synced(http: std::net::SocketAddr) -> bool {
    get(http, "/v1/now").is_some_and(|(_, b)| b.contains("\"synchronized\""))
}

/// Every `/v1/now` for `secs` holds the host clock and is synchronized.
fn holds_for(http: std::net::SocketAddr, secs: u64) -> usize {
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed() < Duration::from_secs(secs) {
        let (b, v, a) = now_bracketed(http);
        assert!(
            holds(b, &v, a),
            "interval {v} misses the host clock [{b}, {a}]"
        );
        assert_eq!(v["status"], "synchronized", "{v}");
        n += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    n
}

/// One of four servers answers (2^31 - 10^8) s ahead, then twice that: on
/// `main` this walked the era pivot forward and, after two disrupted polls,
/// the agent reported a synchronized interval in the year 2163. Now eras are
/// resolved against the published model: the walker is a falseticker, its
/// replies are counted as implausible, and nothing else moves.
#[test]
fn one_server_walking_the_ntp_era_moves_nothing() {
    let mut servers = honest_fakes(&["127.0.0.121", "127.0.0.122", "127.0.0.123"]);
    servers.push(FakeServer::start(
        "127.0.0.124",
        FakeSpec {
            era_walk: true,
            ..FakeSpec::honest()
        },
    ));
    let addrs = addrs_of(&servers);
    let (agent, http) = start_agent("era-walk", &addrs, &["--poll", "1s"]);
    assert!(
        wait_until(Duration::from_secs(15), || synced(http)),
        "not synchronized in 15 s"
    );
    let n = holds_for(http, 8);
    assert!(n > 100, "{n} reads");
    let st = get_json(http, "/v1/status");
    assert_eq!(source_states(&st)[3], "falseticker", "{st}");
    assert!(
        st["sources"][3]["replies_implausible"].as_u64() > Some(2),
        "{st}"
    );
    assert_eq!(st["bound_violations"], 0, "{st}");
    // Shared memory agrees with the host clock too.
    let clock = skewd::client::Clock::open(&agent.dir.join("clock")).unwrap();
    let before = realtime_ns();
    let t = clock.now().unwrap();
    let after = realtime_ns();
    assert!((t.utc.earliest.0 as i128) <= after && (t.utc.latest.0 as i128) >= before);
}

/// A second `skewd run` on a segment another agent holds must not start:
/// two writers can leave an even generation while both are mid-write, and a
/// reader would accept a mix of two models. It exits non-zero naming the
/// holder; the first agent keeps publishing.
#[test]
fn a_second_agent_on_a_held_segment_refuses_to_start() {
    let servers = honest_fakes(&["127.0.0.125", "127.0.0.126", "127.0.0.127"]);
    let addrs = addrs_of(&servers);
    let (agent, http) = start_agent("held-1", &addrs, &["--poll", "1s"]);
    let shm = agent.dir.join("clock");
    assert!(wait_until(Duration::from_secs(15), || synced(http)));
    let other = temp_dir("held-2");
    let mut cmd = Command::new(skewd_bin());
    cmd.args(["run", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--shm")
        .arg(&shm)
        .arg("--state-dir")
        .arg(&*other);
    for a in &addrs {
        cmd.arg("--server").arg(a.to_string());
    }
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut second = Guard {
        child,
        name: "skewd-held-2".into(),
    };
    let t = Instant::now();
    let status = loop {
        if let Ok(Some(s)) = second.child.try_wait() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the second agent is still running"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    use std::io::Read;
    second
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success());
    assert!(
        err.contains("held by another skewd") && err.contains(&format!("pid {}", agent.pid())),
        "{err}"
    );
    // The holder is untouched.
    let clock = skewd::client::Clock::open(&shm).unwrap();
    assert_eq!(
        clock.now().unwrap().status,
        skewd::client::Status::Synchronized
    );
    assert!(synced(http));
}

/// A drift file claiming -1e36 ppb: it saturated to i128::MIN, `abs()`
/// wrapped in release (and panicked in debug), the range check passed, and
/// for seconds after every model drop `latest` was 250 ms before true time.
/// Now it is refused with a warning, and every interval holds.
#[test]
fn a_hostile_drift_file_is_ignored() {
    let servers = honest_fakes(&["127.0.0.128", "127.0.0.129", "127.0.0.130"]);
    let addrs = addrs_of(&servers);
    let dir = temp_dir("drift-hostile");
    let cs = skewd::clock::clocksource();
    std::fs::write(
        dir.join("drift.json"),
        serde_json::json!({"frequency_ppb": -1e36, "clocksource": cs}).to_string(),
    )
    .unwrap();
    let (agent, http) = start_agent_in(dir, "drift-hostile", &addrs, &["--poll", "1s"], &[]);
    assert!(
        wait_until(Duration::from_secs(15), || synced(http)),
        "not synchronized: {}",
        std::fs::read_to_string(agent.dir.join("log")).unwrap_or_default()
    );
    holds_for(http, 3);
    let log = std::fs::read_to_string(agent.dir.join("log")).unwrap();
    assert!(log.contains("ignoring the drift file"), "{log}");
}

/// With the agent's REALTIME reading 2000-01-01 (an RTC reset) the leap-free
/// timescale was UTC - 5 s for the agent's whole life, and every commit-wait
/// timestamp 5 s behind. The origin now comes from the sources' UTC.
#[test]
fn the_leapfree_origin_comes_from_the_sources_not_the_system_clock() {
    if !need("faketime") {
        return;
    }
    let servers = honest_fakes(&["127.0.0.131", "127.0.0.132", "127.0.0.133"]);
    let addrs = addrs_of(&servers);
    let (_agent, http) = start_agent_env(
        "rtc-reset",
        &addrs,
        &["--poll", "1s", "--no-kernel-timestamps"],
        &faked(&[
            ("FAKETIME", "@2000-01-01 00:00:00".as_ref()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".as_ref()),
        ]),
    );
    assert!(wait_until(Duration::from_secs(15), || synced(http)));
    let v = get_json(http, "/v1/now");
    assert_eq!(
        v["earliest_leapfree_ns"].as_i64().unwrap() - v["earliest_ns"].as_i64().unwrap(),
        0,
        "no leap second since 2017: leap-free = UTC ({v})"
    );
    let (code, body) = request(http, "POST", "/v1/commit-wait?timeout_ms=2000").unwrap();
    assert_eq!(code, 200, "{body}");
    let c: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ts = c["timestamp_leapfree_ns"].as_i64().unwrap() as i128;
    let now = realtime_ns();
    assert!(
        now > ts && now - ts < 100_000_000,
        "commit timestamp {ts} vs host {now}"
    );
}

/// One server in two slots spends two of the f faults. `check-config` and
/// `run` refuse a server named twice; two names resolving to one address
/// never share it (the second slot stays unresolved and says so).
#[test]
fn one_server_never_fills_two_slots() {
    let dir = temp_dir("dup-config");
    let cfg = dir.join("dup.toml");
    std::fs::write(
        &cfg,
        "[[server]]\naddress = \"127.0.0.1:123\"\n[[server]]\naddress = \"127.0.0.1:123\"\n",
    )
    .unwrap();
    let out = Command::new(skewd_bin())
        .arg("check-config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("same server"));
    let out = Command::new(skewd_bin())
        .args([
            "run",
            "--server",
            "127.0.0.1:123",
            "--server",
            "127.0.0.1:123",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("same server"));

    // localhost resolves to 127.0.0.1 here: the same server as the literal
    // in the first slot. The name comes last, so the literal holds it.
    // N = 4, f = 1: the three distinct servers still make a majority.
    let servers = honest_fakes(&["127.0.0.1", "127.0.0.134", "127.0.0.135"]);
    let addrs = addrs_of(&servers);
    let name = format!("localhost:{}", addrs[0].port());
    let (agent, http) = start_agent("dup-run", &addrs, &["--poll", "1s", "--server", &name]);
    assert!(wait_until(Duration::from_secs(15), || synced(http)));
    // The name resolves in the background; the snapshot shows it at the
    // next refresh.
    let named = |st: &serde_json::Value| {
        st["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name.as_str())
            .cloned()
            .unwrap()
    };
    wait_until(Duration::from_secs(5), || {
        !named(&get_json(http, "/v1/status"))["duplicate_of"].is_null()
    });
    let st = get_json(http, "/v1/status");
    let named = named(&st);
    assert!(named["address"].is_null(), "{st}");
    assert_eq!(named["duplicate_of"], addrs[0].to_string(), "{st}");
    let log = std::fs::read_to_string(agent.dir.join("log")).unwrap();
    assert!(log.contains("already used by"), "{log}");
}

/// The segment is world-readable, and `flock` works through a read-only
/// descriptor: a local user holding it used to keep every agent from
/// starting. The writer's lock is now on a separate 0600 file that readers
/// cannot open.
#[test]
fn a_reader_cannot_lock_the_agent_out() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 || !have("setpriv") {
        eprintln!("SKIPPED: needs root and setpriv to act as another user");
        return;
    }
    let servers = honest_fakes(&["127.0.0.137", "127.0.0.138", "127.0.0.139"]);
    let addrs = addrs_of(&servers);
    let (agent, http) = start_agent("lockout", &addrs, &["--poll", "1s"]);
    assert!(wait_until(Duration::from_secs(15), || synced(http)));
    let Agent { guard, dir } = agent;
    drop(guard); // stopped: the segment stays
    let shm = dir.join("clock");
    let script = format!(
        "import fcntl,os,sys,time\n\
         fd=os.open('{seg}', os.O_RDONLY)\n\
         fcntl.flock(fd, fcntl.LOCK_EX|fcntl.LOCK_NB)\n\
         try:\n    os.open('{seg}.lock', os.O_RDONLY)\n    print('opened the lock file', flush=True)\n\
         except PermissionError:\n    print('locked; lock file refused', flush=True)\n\
         time.sleep(20)\n",
        seg = shm.display()
    );
    let child = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
        ])
        .arg(&script)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut holder = Guard {
        child,
        name: "nobody-flock".into(),
    };
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(holder.child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked; lock file refused");
    let (_agent, http) = start_agent_in(dir, "lockout", &addrs, &["--poll", "1s"], &[]);
    assert!(
        wait_until(Duration::from_secs(15), || synced(http)),
        "the agent did not start while a reader held the segment"
    );
    holder.stop();
}

/// An agent that cannot read /proc/self/ns/time (here /proc is an empty
/// tmpfs in its mount namespace) used to write "unknown" into the segment,
/// and readers then skipped the time-namespace check: a reader in a
/// namespace 1 s ahead printed a synchronized interval a second early.
/// Now a reader that knows its namespace refuses an agent that does not.
#[test]
fn an_agent_that_cannot_name_its_time_namespace_is_not_trusted_across_one() {
    let probe = Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -t tmpfs none /proc",
        ])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: cannot mount over /proc in a private mount namespace here");
        return;
    }
    let servers = honest_fakes(&["127.0.0.140", "127.0.0.141", "127.0.0.142"]);
    let addrs = addrs_of(&servers);
    let dir = temp_dir("timens-unknown");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut run = format!(
        "mount -t tmpfs none /proc && exec {} run --listen {listen} --shm {}/clock --state-dir {} --poll 1s",
        skewd_bin().display(),
        dir.display(),
        dir.display()
    );
    for a in &addrs {
        run.push_str(&format!(" --server {a}"));
    }
    let child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(&run)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .unwrap();
    let _agent = Guard {
        child,
        name: "skewd-no-proc".into(),
    };
    let http: std::net::SocketAddr = listen.parse().unwrap();
    assert!(wait_until(Duration::from_secs(15), || synced(http)));
    let now = |pre: &[&str]| {
        let mut c = Command::new(pre.first().copied().unwrap_or("env"));
        c.args(pre.iter().skip(1))
            .arg(skewd_bin())
            .args(["now", "--json", "--shm"]);
        c.arg(dir.join("clock")).output().unwrap()
    };
    for pre in [
        &["env"][..],
        &["unshare", "--time", "--monotonic", "1", "--boottime", "1"][..],
    ] {
        let out = now(pre);
        // `now --json` says why in its JSON; the human form on stderr.
        let err = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success() && err.contains("another time namespace"),
            "{pre:?}: {} / {err}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
