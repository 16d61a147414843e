//! Shared memory: torn reads across processes, bad segments, and the CLI read
//! path against a running agent (alive, frozen by SIGSTOP, killed by -9).

mod common;
use common::*;
use skewd::client::{ClientError, Clock};
use skewd::core::leap::UtcMapping;
use skewd::core::model::{Ageing, Model, Status};
use skewd::core::publish::Publication;
use skewd::core::time::{Interval, Rate, RefTime, Steady};
use skewd::shm::layout::{SEGMENT_SIZE, VERSION};
use skewd::shm::{Decoded, Reader, ShmError, Writer};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A publication whose every field is derived from `c`, so a torn read
/// shows.
fn derived(c: i64) -> Publication {
    let model = Model {
        anchor: Steady(c),
        bound: Interval {
            lo: RefTime(3 * c as i128),
            hi: RefTime(3 * c as i128 + 1000),
        },
        ageing: Ageing {
            rate: Rate((c % 1000) as i128),
            phi: Rate((c % 1000 + 1) as i128),
            evidence: Some((Steady(c - 10), Steady(c - 5))),
            wander: Rate(20_000),
            phi_hw: Rate(200_000_000),
        },
        status: Status::Synchronized,
        sync_until: Steady(c + 5),
        void_after: Steady(c + 7),
        utc: UtcMapping::default(),
    };
    let mut p = Publication::bare(Steady(c), Some(model), Status::Synchronized, -c);
    p.clocksource = Some(format!("cs{}", c % 97));
    p.violations = c as u64 % 5;
    p.vmclock_marker = (c % 3 == 0).then_some(c as u64);
    p
}

fn consistent(d: &Decoded) -> bool {
    let Some(m) = &d.model else { return false };
    let c = m.anchor.0;
    let p = derived(c);
    d.model == p.model
        && d.env.offs_boot == -c
        && d.env.written_at == c
        && d.env.violations == p.violations
        && d.env.vmclock_marker == p.vmclock_marker.map(|v| (v, false))
        && d.clocksource == format!("cs{}", c % 97)
}

/// Child roles, re-executed from this test binary.
#[test]
fn role_child() {
    let Ok(role) = std::env::var("SKEWD_SHM_ROLE") else {
        return;
    };
    let path = std::env::var("SKEWD_SHM_PATH").unwrap();
    let until = Instant::now() + Duration::from_millis(2500);
    match role.as_str() {
        "writer" => {
            let mut w = Writer::create(Path::new(&path)).unwrap();
            let mut c = 1_000_000i64;
            while Instant::now() < until {
                w.publish(&derived(c));
                c += 1;
            }
            println!("\nWRITES {c}");
        }
        "reader" => {
            let r = Reader::open(Path::new(&path)).unwrap();
            // torn: a read that returned Ok but mixes two snapshots (the bug
            // this test hunts); busy: the bounded retries ran out while the
            // writer kept rewriting (a clear error, never a wrong value).
            let (mut ok, mut torn, mut busy, mut distinct, mut last) =
                (0u64, 0u64, 0u64, 0u64, 0i64);
            while Instant::now() < until {
                match r.decode() {
                    Ok(p) if p.model.is_none() => {}
                    Ok(p) if consistent(&p) => {
                        ok += 1;
                        let c = p.model.map_or(0, |m| m.anchor.0);
                        if c != last {
                            distinct += 1;
                            last = c;
                        }
                    }
                    Ok(_) => torn += 1,
                    Err(_) => busy += 1,
                }
            }
            println!("\nREADS ok={ok} torn={torn} busy={busy} distinct={distinct}");
        }
        _ => panic!("unknown role"),
    }
}

fn spawn_role(role: &str, path: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["role_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("SKEWD_SHM_ROLE", role)
        .env("SKEWD_SHM_PATH", path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The number right after `key` in a role's report.
fn number_after(text: &str, key: &str) -> u64 {
    text.split(key)
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {key:?} in {text:?}"))
}

#[test]
fn no_torn_reads_across_processes() {
    let dir = temp_dir("torn");
    let path = dir.join("clock");
    drop(Writer::create(&path).unwrap()); // so readers can open at once
    let writer = spawn_role("writer", &path);
    let readers: Vec<_> = (0..2).map(|_| spawn_role("reader", &path)).collect();
    let w = String::from_utf8(writer.wait_with_output().unwrap().stdout).unwrap();
    let writes = number_after(&w, "WRITES ") as i64;
    assert!(
        writes > 1_100_000,
        "writer published only {} times",
        writes - 1_000_000
    );
    for r in readers {
        let out = String::from_utf8(r.wait_with_output().unwrap().stdout).unwrap();
        let line = out
            .lines()
            .find(|l| l.contains("READS"))
            .expect("reader reported")
            .to_owned();
        eprintln!("{line}; writes {}", writes - 1_000_000);
        let field = |k: &str| number_after(&line, &format!("{k}="));
        assert_eq!(field("torn"), 0, "torn reads: {line}");
        assert!(field("ok") > 10_000 && field("distinct") > 20, "{line}");
    }
}

#[test]
fn bad_segments_give_clear_errors() {
    let dir = temp_dir("bad");
    let short = dir.join("short");
    std::fs::write(&short, [0u8; 100]).unwrap();
    assert!(matches!(
        Reader::open(&short),
        Err(ShmError::Truncated(100))
    ));
    let garbage = dir.join("garbage");
    std::fs::write(&garbage, [0xabu8; SEGMENT_SIZE]).unwrap();
    assert!(matches!(Reader::open(&garbage), Err(ShmError::BadMagic)));
    let missing = dir.join("missing");
    assert!(matches!(
        Clock::open(&missing),
        Err(ClientError::Shm(ShmError::Open { .. }))
    ));
    // A future layout version.
    let path = dir.join("next");
    drop(Writer::create(&path).unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..12].copy_from_slice(&(VERSION + 1).to_ne_bytes());
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        Reader::open(&path),
        Err(ShmError::Version { found, .. }) if found == VERSION + 1
    ));
    // A writer killed mid-update: a clear error, and the next daemon start resets it.
    let path = dir.join("mid");
    let mut w = Writer::create(&path).unwrap();
    w.publish(&derived(5_000));
    skewd::shm::writer::abandon_mid_write(w.seg());
    let r = Reader::open(&path).unwrap();
    assert!(matches!(r.decode(), Err(ShmError::MidWrite)));
    let c = Clock::open(&path).unwrap();
    assert!(matches!(c.now(), Err(ClientError::Shm(ShmError::MidWrite))));
    // While that writer lives, nobody else may take the segment ...
    assert!(matches!(
        Writer::create(&path),
        Err(skewd::shm::WriterError::Held { pid, .. }) if pid == u64::from(std::process::id())
    ));
    // ... once it is gone (killed: the kernel drops its lock), the next resets it.
    drop(w);
    drop(Writer::create(&path).unwrap());
    assert!(r.decode().is_ok(), "reset by the next writer");
    assert!(matches!(
        c.now(),
        Err(ClientError::NoModel(Status::Unknown))
    ));
    // The CLI says so, without a panic.
    let out = Command::new(env!("CARGO_BIN_EXE_skewd"))
        .args(["now", "--shm"])
        .arg(&garbage)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad magic"));
}

/// `skewd <cmd> --json --shm <shm>`: must succeed; its JSON output.
fn cli_json(cmd: &str, shm: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_skewd"))
        .args([cmd, "--json", "--shm"])
        .arg(shm)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn cli_now(shm: &Path) -> (i128, serde_json::Value, i128) {
    let before = realtime_ns();
    let v = cli_json("now", shm);
    (before, v, realtime_ns())
}

#[test]
fn cli_read_path_alive_frozen_and_killed() {
    let servers = honest_fakes(&["127.0.0.61", "127.0.0.62", "127.0.0.63"]);
    let addrs = addrs_of(&servers);
    let (agent, http) = start_agent("shm", &addrs, &["--poll", "1s"]);
    let shm = agent.dir.join("clock");
    assert!(wait_until(Duration::from_secs(15), || get_json(
        http, "/v1/now"
    )["status"]
        == "synchronized"));

    // Alive.
    for _ in 0..20 {
        let (b, v, a) = cli_now(&shm);
        assert!(holds(b, &v, a), "{v}");
        assert_eq!(v["status"], "synchronized");
    }
    // Commit-wait from the CLI.
    let c = cli_json("commit-wait", &shm);
    let after = realtime_ns();
    let (ts, waited, eps) = (
        c["timestamp_leapfree_ns"].as_i64().unwrap(),
        c["waited_ns"].as_i64().unwrap(),
        c["epsilon_ns"].as_i64().unwrap(),
    );
    assert!(after > ts as i128, "host clock {after} not past {ts}");
    assert!(waited >= eps, "waited {waited} < epsilon {eps}");
    assert!(waited < 5_000_000, "waited {waited} ns on loopback peers");

    // Frozen for 5 s: still sound, wider, and unknown after the grace.
    let (_, v0, _) = cli_now(&shm);
    agent.signal(libc::SIGSTOP);
    let t = Instant::now();
    let mut last_eps = v0["epsilon_ns"].as_i64().unwrap();
    let mut saw_unknown = false;
    while t.elapsed() < Duration::from_secs(5) {
        let (b, v, a) = cli_now(&shm);
        assert!(holds(b, &v, a), "frozen daemon: {v}");
        let e = v["epsilon_ns"].as_i64().unwrap();
        assert!(
            e >= last_eps,
            "epsilon shrank without evidence: {e} < {last_eps}"
        );
        last_eps = e;
        if v["status"] == "unknown" {
            saw_unknown = true;
            // grace 3 s after the last refresh (every 0.5 s); 1 s of slack
            // for a loaded machine that refreshed late before the stop
            assert!(t.elapsed() > Duration::from_secs(1), "unknown too early");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        saw_unknown,
        "a frozen daemon must show as unknown after its grace"
    );
    agent.signal(libc::SIGCONT);
    assert!(wait_until(Duration::from_secs(5), || cli_now(&shm).1
        ["status"]
        == "synchronized"));

    // Killed: the segment stays, the interval keeps holding and widening.
    agent.signal(libc::SIGKILL);
    let t = Instant::now();
    let (_, v0, _) = cli_now(&shm);
    while t.elapsed() < Duration::from_secs(4) {
        let (b, v, a) = cli_now(&shm);
        assert!(holds(b, &v, a), "killed daemon: {v}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let (_, v1, _) = cli_now(&shm);
    assert_eq!(v1["status"], "unknown", "{v1}");
    assert!(v1["epsilon_ns"].as_i64() > v0["epsilon_ns"].as_i64());
    drop(agent);
}

/// A reader that is not on the agent's steady timeline (here the agent runs
/// under libfaketime, which shifts its MONOTONIC/RAW/BOOTTIME by decades; a
/// reader in another time namespace is the real-world case) must get an
/// error, not an interval computed for some other instant. Before the
/// segment carried its write instant, `skewd now` here printed a
/// "synchronized" interval around 1970.
#[test]
fn a_reader_off_the_agents_timeline_gets_an_error() {
    if !need("faketime") {
        return;
    }
    let servers = honest_fakes(&["127.0.0.66", "127.0.0.67", "127.0.0.68"]);
    let addrs = addrs_of(&servers);
    let (agent, listen) = start_agent_env(
        "foreign",
        &addrs,
        &["--poll", "1s", "--no-kernel-timestamps"],
        &faked(&[("FAKETIME", "+0".as_ref())]),
    );
    let shm = agent.dir.join("clock");
    assert!(
        wait_until(Duration::from_secs(15), || get(listen, "/v1/now")
            .is_some_and(|(_, b)| b.contains("\"synchronized\""))),
        "the faked agent synchronizes on its own timeline"
    );
    // Its own HTTP answers are on its timeline and hold the host clock.
    let (b, v, a) = now_bracketed(listen);
    assert!(holds(b, &v, a), "{v}");
    // The library refuses.
    let clock = Clock::open(&shm).unwrap();
    match clock.now() {
        Err(ClientError::ForeignTimeline(behind)) => assert!(behind > 0),
        other => panic!("expected ForeignTimeline, got {other:?}"),
    }
    // So does the CLI, with a clear message and a failing exit.
    let out = Command::new(env!("CARGO_BIN_EXE_skewd"))
        .args(["now", "--shm"])
        .arg(&shm)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.contains("not the agent's timeline"), "{err}");
}

/// A reader that maps the VMClock page checks the disruption marker on
/// every read: after a migration or restore it refuses at once, before the
/// agent's next refresh (here the agent is frozen, so it never notices).
/// A reader without the page cannot know and still gets the interval.
#[test]
fn a_reader_sees_a_vm_disruption_before_the_agent_does() {
    let (_servers, _pages, page, agent, _http) = vmclock_agent(
        "vmclock-reader",
        &["127.0.0.84", "127.0.0.85", "127.0.0.86"],
    );
    let shm = agent.dir.join("clock");
    let clock = Clock::open(&shm).unwrap().with_vmclock(&page).unwrap();
    let blind = Clock::open(&shm).unwrap();
    assert!(clock.now().is_ok());
    agent.signal(libc::SIGSTOP);
    write_vmclock(&page, 2, 2);
    match clock.now() {
        Err(ClientError::VmDisrupted) => {}
        other => panic!("expected VmDisrupted, got {other:?}"),
    }
    assert!(blind.now().is_ok(), "no page, no way to know");
    // The CLI too, given the page.
    let out = Command::new(env!("CARGO_BIN_EXE_skewd"))
        .args(["now", "--shm"])
        .arg(&shm)
        .arg("--vmclock")
        .arg(&page)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("VM was disrupted"),
        "{err}"
    );
    agent.signal(libc::SIGCONT);
    assert!(
        wait_until(Duration::from_secs(15), || clock
            .now()
            .is_ok_and(|t| t.status == Status::Synchronized)),
        "the reader recovers once the agent rebuilt under the new marker"
    );
}
