//! The agent against in-process fake NTP servers on loopback: the promise,
//! falseticker naming, unreachable servers, hostile HTTP input, config.

mod common;
use common::*;
use std::time::{Duration, Instant};

fn synced(addr: std::net::SocketAddr) -> bool {
    get_json(addr, "/v1/now")["status"] == "synchronized"
}

#[test]
fn fake_servers_with_a_liar_loss_and_delay() {
    let servers = [
        FakeServer::start("127.0.0.31", FakeSpec::honest()),
        FakeServer::start(
            "127.0.0.32",
            FakeSpec {
                loss: 0.3,
                ..FakeSpec::honest()
            },
        ),
        FakeServer::start(
            "127.0.0.33",
            FakeSpec {
                delay_ns: 2_000_000,
                ..FakeSpec::honest()
            },
        ),
        FakeServer::start(
            "127.0.0.34",
            FakeSpec {
                offset_ns: 50_000_000,
                ..FakeSpec::honest()
            },
        ),
    ];
    let addrs = addrs_of(&servers);
    let (_agent, http) = start_agent("fake", &addrs, &["--poll", "1s"]);
    assert!(
        wait_until(Duration::from_secs(15), || synced(http)),
        "not synchronized in 15 s"
    );
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed() < Duration::from_secs(5) {
        let (b, v, a) = now_bracketed(http);
        assert!(
            holds(b, &v, a),
            "interval {v} misses the host clock [{b}, {a}]"
        );
        n += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(n > 100);
    let st = get_json(http, "/v1/status");
    let states = source_states(&st);
    assert_eq!(states[3], "falseticker", "{st}");
    assert_eq!([&states[0], &states[2]], ["selected", "selected"], "{st}");
    // The lossy one answers most polls; a run of misses can leave it out of
    // the reach register for a moment, never a falseticker or invalid.
    assert!(
        ["selected", "candidate", "unreachable"].contains(&states[1].as_str()),
        "{st}"
    );
    // ~6 polls by now at 30 % loss: it has answered (all lost: p = 0.3^6).
    assert!(st["sources"][1]["replies_ok"].as_u64() > Some(0), "{st}");
    assert_eq!(st["bound_violations"], 0);
}

#[test]
fn unreachable_servers_keep_it_serving() {
    // Ports where nothing listens (and a name that cannot resolve).
    let dead: Vec<std::net::SocketAddr> = ["127.0.0.41", "127.0.0.42", "127.0.0.43"]
        .iter()
        .map(|ip| format!("{ip}:{}", free_udp_port(ip)).parse().unwrap())
        .collect();
    let (mut agent, http) = start_agent(
        "dead",
        &dead,
        &["--poll", "1s", "--server", "no-such-host.invalid:123"],
    );
    std::thread::sleep(Duration::from_secs(3));
    let v = get_json(http, "/v1/now");
    assert_eq!(v["status"], "unknown");
    assert!(
        v["earliest_ns"].is_null() && v["latest_ns"].is_null(),
        "{v}"
    );
    let (code, body) = get(http, "/healthz").unwrap();
    assert_eq!(code, 503, "{body}");
    let st = get_json(http, "/v1/status");
    assert!(
        st["sources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "unreachable"),
        "{st}"
    );
    // No interval: no error bound in the metrics (not +Inf).
    let (_, metrics) = get(http, "/metrics").unwrap();
    assert!(
        !metrics.contains("skewd_clock_error_bound_seconds "),
        "{metrics}"
    );
    let (code, _) = request(http, "POST", "/v1/commit-wait?timeout_ms=200").unwrap();
    assert_eq!(
        code, 409,
        "commit-wait without a model must end with 409, not hang"
    );
    // A clean stop on SIGTERM.
    let status = agent.stop().expect("exits");
    assert!(status.success(), "{status:?}");
}

#[test]
fn hostile_http_input_gets_4xx() {
    let (mut agent, http) = start_agent("hostile", &[], &["--server", "127.0.0.1:9"]);
    let huge = format!("/v1/wait?until={}", "9".repeat(10_000));
    let cases: Vec<(&str, String)> = vec![
        ("GET", "/v1/wait".into()),
        ("GET", "/v1/wait?until=-5".into()),
        ("GET", "/v1/wait?until=abc".into()),
        ("GET", "/v1/wait?until=99999999999999999999999999".into()),
        ("GET", "/v1/wait?until=1&timeout_ms=-1".into()),
        ("GET", "/v1/wait?until=1&timeout_ms=999999999".into()),
        ("GET", "/v1/wait?until=1&bogus=2".into()),
        ("GET", "/v1/wait?until=%zz".into()),
        ("GET", huge),
        ("GET", "/nope".into()),
        ("GET", "/v1/now/extra".into()),
        ("POST", "/v1/now".into()),
        ("GET", "/v1/commit-wait".into()),
        ("POST", "/v1/commit-wait?until=5".into()),
        ("POST", "/v1/commit-wait?timeout_ms=x".into()),
        ("GET", format!("/v1/wait?{}", "a=1&".repeat(5000))),
    ];
    for (m, p) in &cases {
        let (code, body) = request(http, m, p).unwrap_or((0, String::new()));
        assert!(
            (400..500).contains(&code),
            "{m} {}: {code} {body}",
            &p[..p.len().min(60)]
        );
    }
    // Raw garbage on the socket does not hurt it either.
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(http).unwrap();
        let _ = s.write_all(b"\x00\xff GARBAGE \r\n\r\n");
    }
    let (code, _) = get(http, "/v1/now").unwrap();
    assert_eq!(code, 200, "still serving after hostile input");
    assert!(agent.stop().unwrap().success());
}

#[test]
fn check_config_reports_line_and_column() {
    let dir = temp_dir("cfg");
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "poll_interval_s = 16\n\n[assumptions]\nmax_frequency_error_pm = 200\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skewd"))
        .args(["check-config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 4") && err.contains("column 1"), "{err}");
    assert!(err.contains("max_frequency_error_pm"), "{err}");
    // Every example config in the repository parses.
    let mut n = 0;
    for e in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_skewd"))
                .arg("check-config")
                .arg(&p)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                p.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    assert!(n >= 1);
    // Bad CLI input: a clear error, non-zero exit, no panic.
    for args in [
        &["run", "--poll", "banana"][..],
        &["wait-until", "abc"],
        &["now", "--listen", "nope"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_skewd"))
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("panicked"),
            "{args:?}"
        );
    }
}

/// The agent's own system clock (REALTIME) is stepped under libfaketime:
/// the step is counted and reported as skew, the status does not change,
/// and every interval still holds the real host clock.
#[test]
fn a_stepped_system_clock_is_counted_and_changes_nothing_else() {
    if !need("faketime") {
        return;
    }
    let servers = honest_fakes(&["127.0.0.36", "127.0.0.37", "127.0.0.38"]);
    let addrs = addrs_of(&servers);
    let stamps = temp_dir("step-stamp");
    let stamp = stamps.join("faketime");
    std::fs::write(&stamp, "+0 x1\n").unwrap();
    let (_agent, listen) = start_agent_env(
        "step",
        &addrs,
        &["--poll", "1s", "--no-kernel-timestamps"],
        &faked(&[
            ("FAKETIME_TIMESTAMP_FILE", stamp.as_os_str()),
            ("FAKETIME_NO_CACHE", "1".as_ref()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".as_ref()),
        ]),
    );
    assert!(wait_until(Duration::from_secs(15), || get(
        listen, "/v1/now"
    )
    .is_some_and(|(_, b)| b.contains("\"synchronized\""))));
    assert!(wait_until(Duration::from_secs(3), || get_json(
        listen,
        "/v1/status"
    )["offset_ns"]
        .is_i64()));
    let before = get_json(listen, "/v1/status");
    assert_eq!(before["clock_steps"], 0);
    assert!(
        before["offset_ns"].as_i64().unwrap().abs() < 5_000_000,
        "{before}"
    );
    // Step the agent's system clock forward by 2 s.
    std::fs::write(&stamp, "+2 x1\n").unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || get_json(listen, "/v1/status")
            ["clock_steps"]
            == 1),
        "step not counted"
    );
    assert!(wait_until(Duration::from_secs(3), || {
        let off = get_json(listen, "/v1/status")["offset_ns"]
            .as_i64()
            .unwrap_or(0);
        (off - 2_000_000_000).abs() < 5_000_000
    }));
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        let (b, v, a) = now_bracketed(listen);
        assert!(
            holds(b, &v, a),
            "interval {v} misses the host clock after a REALTIME step"
        );
        assert_eq!(v["status"], "synchronized", "a step changes no status");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, _) = get(listen, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(get(listen, "/metrics")
        .unwrap()
        .1
        .contains("skewd_clock_steps_total 1"));
}

#[test]
fn drift_file_is_saved_at_shutdown_and_used_at_start() {
    let servers = honest_fakes(&["127.0.0.45", "127.0.0.46", "127.0.0.47"]);
    let addrs = addrs_of(&servers);
    let (mut agent, http) = start_agent("drift", &addrs, &["--poll", "1s"]);
    assert!(wait_until(Duration::from_secs(15), || get_json(
        http,
        "/v1/status"
    )["frequency_ppm"]
        .is_f64()));
    // Rate evidence needs two anchors a few seconds apart.
    assert!(
        wait_until(Duration::from_secs(20), || get_json(http, "/v1/status")
            ["frequency_bound_ppm"]
            .as_f64()
            .is_some_and(|b| b < 200.0)),
        "no rate evidence: {}",
        get_json(http, "/v1/status")
    );
    let st = get_json(http, "/v1/status");
    assert_eq!(st["bound_violations"], 0, "{st}");
    assert!(agent.stop().unwrap().success());
    let drift = agent.dir.join("drift.json");
    let text = std::fs::read_to_string(&drift).expect("drift file written at shutdown");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        v["frequency_ppb"].as_f64().unwrap().abs() < 200_000.0,
        "{v}"
    );
    // A restart with the same state dir reads it (and says so).
    let log = agent.dir.join("log2");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_skewd"));
    cmd.args(["run", "--poll", "1s", "--listen", &listen, "--state-dir"])
        .arg(&*agent.dir)
        .arg("--shm")
        .arg(agent.dir.join("clock"))
        .stderr(std::fs::File::create(&log).unwrap());
    for a in &addrs {
        cmd.arg("--server").arg(a.to_string());
    }
    let mut again = Guard {
        child: cmd.spawn().unwrap(),
        name: "drift2".into(),
    };
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("drift file")
    }));
    assert!(again.stop().unwrap().success());
}

#[test]
fn load_beyond_the_concurrency_limit_is_shed_not_queued() {
    // No model: every wait runs to its timeout, so the requests pile up.
    let (_agent, http) = start_agent("load", &[], &["--server", "127.0.0.1:9"]);
    let n = skewd::http::MAX_WAITS + 64;
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(move || {
                    request(http, "GET", "/v1/wait?until=1&timeout_ms=1500")
                        .unwrap_or((0, String::new()))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let codes: Vec<u16> = answers.iter().map(|a| a.0).collect();
    let odd: Vec<&(u16, String)> = answers
        .iter()
        .filter(|a| ![0, 409, 503].contains(&a.0))
        .collect();
    let shed = codes.iter().filter(|c| **c == 503).count();
    let timed_out = codes.iter().filter(|c| **c == 409).count();
    eprintln!("{n} requests: {timed_out} did not succeed (409), {shed} shed (503)");
    // Code 0: the client could not connect in 2 s (the kernel's accept
    // queue, with hundreds of connections at once on 2 cores); not an answer.
    let unanswered = codes.iter().filter(|c| **c == 0).count();
    assert!(shed > 0, "nothing was shed: {codes:?}");
    assert_eq!(
        shed + timed_out + unanswered,
        n,
        "only 409 and 503 expected; also got {odd:?}"
    );
    assert!(unanswered <= n / 20, "{unanswered} connections failed");
    assert_eq!(
        get(http, "/healthz").map(|r| r.0),
        Some(503),
        "still serving"
    );
}

#[test]
fn garbage_from_a_source_is_refused_and_counted() {
    let mut servers = honest_fakes(&["127.0.0.48", "127.0.0.49", "127.0.0.50"]);
    servers.push(FakeServer::start(
        "127.0.0.44",
        FakeSpec {
            garbage: true,
            ..FakeSpec::honest()
        },
    ));
    let addrs = addrs_of(&servers);
    let (_agent, http) = start_agent("garbage", &addrs, &["--poll", "1s"]);
    assert!(wait_until(Duration::from_secs(15), || get_json(
        http, "/v1/now"
    )["status"]
        == "synchronized"));
    // Junk that does not carry our request's nonce answers nothing
    // (`replies_unexpected`); a third of the replies carry it in a
    // mode-3 packet, which is invalid: wait for one.
    assert!(
        wait_until(Duration::from_secs(15), || get_json(http, "/v1/status")
            ["sources"][3]["state"]
            == "invalid"),
        "{}",
        get_json(http, "/v1/status")
    );
    let st = get_json(http, "/v1/status");
    let src = &st["sources"][3];
    assert!(src["replies_invalid"].as_u64().unwrap() > 0, "{st}");
    assert_eq!(src["replies_ok"], 0);
    let (b, v, a) = now_bracketed(http);
    assert!(holds(b, &v, a));
    assert_eq!(v["status"], "synchronized");
}

/// The hypervisor's VMClock disruption marker changes (live migration,
/// snapshot restore): the agent drops its model within a refresh, says
/// `disrupted`, counts it, keeps every interval holding the host clock, and
/// resynchronizes from fresh exchanges.
#[cfg(feature = "testing")]
#[test]
fn a_vmclock_disruption_drops_the_model() {
    let (_servers, _pages, page, _agent, http) =
        vmclock_agent("vmclock", &["127.0.0.77", "127.0.0.78", "127.0.0.79"]);
    let st = get_json(http, "/v1/status");
    assert_eq!(st["vmclock"]["disruption_marker"], 1, "{st}");
    assert_eq!(st["vmclock"]["disruptions"], 0, "{st}");

    write_vmclock(&page, 2, 2);
    let t = Instant::now();
    let mut saw_disrupted = false;
    while t.elapsed() < Duration::from_secs(3) && !saw_disrupted {
        let (b, v, a) = now_bracketed(http);
        assert!(holds(b, &v, a), "{v}");
        saw_disrupted = v["status"] == "disrupted";
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        saw_disrupted,
        "no disruption within 3 s of the marker change"
    );
    let st = get_json(http, "/v1/status");
    assert_eq!(st["vmclock"]["disruptions"], 1, "{st}");
    let (_, metrics) = get(http, "/metrics").unwrap();
    assert!(
        metrics.contains("skewd_vmclock_disruptions_total 1"),
        "{metrics}"
    );
    assert!(
        wait_until(Duration::from_secs(15), || synced(http)),
        "not resynchronized after the disruption"
    );
}

/// `/` is a status page (HTML), `/livez` says the engine publishes, and a
/// wait that cannot succeed ends with 409 and says why.
#[test]
fn status_page_liveness_and_failed_waits() {
    let servers = honest_fakes(&["127.0.0.103", "127.0.0.104", "127.0.0.105", "127.0.0.106"]);
    let (_agent, http) = start_agent("page", &addrs_of(&servers), &["--poll", "1s"]);
    assert!(wait_until(Duration::from_secs(15), || get(http, "/readyz")
        .is_some_and(|r| r.0 == 200)));
    let (code, body) = get(http, "/").unwrap();
    assert_eq!(code, 200);
    assert!(
        body.starts_with("<!doctype html>") && body.contains("synchronized"),
        "{body}"
    );
    let (code, body) = get(http, "/livez").unwrap();
    assert_eq!(code, 200, "{body}");
    let far = realtime_ns() + 3_600_000_000_000;
    let (code, body) = get(http, &format!("/v1/wait?until={far}&timeout_ms=100")).unwrap();
    assert_eq!(code, 409, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["reached"], false);
    assert_eq!(v["status"], "synchronized");
    assert!(v["epsilon_ns"].is_i64(), "{v}");
    // Transitions reach the log once each.
    let log = std::fs::read_to_string(_agent.dir.join("log")).unwrap();
    assert_eq!(log.matches("-> synchronized").count(), 1, "{log}");
    assert!(
        !log.contains(" WARN "),
        "a clean start warns about nothing: {log}"
    );
    assert!(log.contains("-> selected"), "{log}");
}

#[test]
fn a_metrics_listener_serves_metrics_and_health_only() {
    let servers = honest_fakes(&["127.0.0.121", "127.0.0.122", "127.0.0.123", "127.0.0.124"]);
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let m = metrics.to_string();
    let (_agent, http) = start_agent(
        "metrics-listener",
        &addrs_of(&servers),
        &["--poll", "1s", "--metrics-listen", &m],
    );
    assert!(wait_until(Duration::from_secs(15), || get(
        metrics, "/readyz"
    )
    .is_some_and(|r| r.0 == 200)));
    let (code, body) = get(metrics, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        body.contains("skewd_clock_status{status=\"synchronized\"} 1"),
        "{body}"
    );
    for path in ["/livez", "/healthz"] {
        assert_eq!(get(metrics, path).unwrap().0, 200, "{path}");
    }
    // The interval API, its long polls and the page are not there...
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/v1/now"),
        ("GET", "/v1/status"),
        ("GET", "/v1/wait?until=0"),
        ("POST", "/v1/commit-wait"),
    ] {
        let (code, body) = request(metrics, method, path).unwrap();
        assert_eq!(code, 404, "{method} {path}: {body}");
        assert!(!body.contains("/v1/"), "the 404 names the API: {body}");
    }
    // ...but stay on the API listener, which serves metrics too.
    assert_eq!(get(http, "/v1/now").unwrap().0, 200);
    assert_eq!(get(http, "/metrics").unwrap().0, 200);
}

#[test]
fn wait_sync_returns_once_synchronized_and_says_why_not_on_timeout() {
    let dir = temp_dir("wait-sync");
    let shm = dir.0.join("clock");
    let shm_arg = shm.to_str().unwrap().to_owned();
    let wait = |extra: &[&str]| {
        std::process::Command::new(skewd_bin())
            .arg("wait-sync")
            .args(["--shm", &shm_arg, "--interval", "100ms"])
            .args(extra)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    // No agent yet: it waits, then gives up with exit 1 and why.
    let t = Instant::now();
    let out = wait(&["--timeout", "1s"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(t.elapsed() >= Duration::from_millis(900));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not synchronized within 1s"), "{err}");

    // Started before the agent, it sees the segment appear and returns.
    let waiter = std::process::Command::new(skewd_bin())
        .arg("wait-sync")
        .args(["--shm", &shm_arg, "--interval", "100ms", "--timeout", "30s"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut waiter = Guard {
        child: waiter,
        name: "wait-sync".into(),
    };
    std::thread::sleep(Duration::from_millis(500));
    let servers = honest_fakes(&["127.0.0.125", "127.0.0.126", "127.0.0.127", "127.0.0.128"]);
    let (_agent, _) = start_agent_in(
        dir,
        "wait-sync",
        &addrs_of(&servers),
        &["--poll", "1s"],
        &[],
    );
    let status = loop {
        if let Some(s) = waiter.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(40),
            "wait-sync never returned"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(waiter.child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success(), "{out}");
    assert!(
        out.contains("waiting (") && out.contains("synchronized: error bound"),
        "{out}"
    );

    // Synchronized but wider than asked: a timeout that says so.
    let out = wait(&["--timeout", "1s", "--max-error", "1ns", "--quiet"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "--quiet");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("status synchronized") && err.contains("want synchronized and at most 1 ns"),
        "{err}"
    );
    let out = wait(&["--timeout", "5s"]);
    assert!(out.status.success(), "{out:?}");
}
