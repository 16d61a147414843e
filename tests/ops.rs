//! Operations: live /metrics through promtool, the alert rules and their
//! unit tests, the dashboard's queries, the systemd unit, and sd_notify.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn synced_agent(tag: &str, ips: [&str; 3]) -> (Vec<FakeServer>, Agent, std::net::SocketAddr) {
    let mut servers = honest_fakes(&ips);
    servers.push(FakeServer::start(
        &ips[0].replace(".7", ".8"),
        FakeSpec {
            offset_ns: 80_000_000,
            ..FakeSpec::honest()
        },
    ));
    let addrs = addrs_of(&servers);
    let (g, http) = start_agent(tag, &addrs, &["--poll", "1s"]);
    assert!(wait_until(Duration::from_secs(15), || get_json(
        http, "/v1/now"
    )["status"]
        == "synchronized"));
    // The skew gauge appears at the next local-clock refresh (every 0.5 s).
    assert!(wait_until(Duration::from_secs(3), || get_json(
        http,
        "/v1/status"
    )["offset_ns"]
        .is_i64()));
    (servers, g, http)
}

/// Metric families exported by a live agent (names as Prometheus stores them).
fn exported(http: std::net::SocketAddr) -> (String, BTreeSet<String>) {
    let (code, text) = get(http, "/metrics").unwrap();
    assert_eq!(code, 200);
    let names = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    (text, names)
}

#[test]
fn live_metrics_pass_promtool_and_name_the_contract() {
    let (_servers, _agent, http) =
        synced_agent("metrics", ["127.0.0.71", "127.0.0.72", "127.0.0.73"]);
    let (text, names) = exported(http);
    for n in [
        "skewd_clock_error_bound_seconds",
        "skewd_clock_offset_seconds",
        "skewd_clock_frequency_ppm",
        "skewd_clock_status",
        "skewd_source_offset_seconds",
        "skewd_source_delay_seconds",
        "skewd_source_root_distance_seconds",
        "skewd_source_falseticker",
        "skewd_source_reachable",
        "skewd_clock_steps_total",
        "skewd_bound_violations_total",
        "skewd_ntp_requests_total",
        "skewd_build_info",
    ] {
        assert!(names.contains(n), "{n} missing from /metrics");
    }
    assert!(
        text.contains("skewd_clock_status{status=\"synchronized\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("skewd_source_falseticker{source=\"127.0.0.81:"),
        "liar labelled: {text}"
    );
    assert!(text.contains("result=\"ok\""));
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

#[test]
fn alert_rules_check_and_unit_tests_pass() {
    if !need("promtool") {
        return;
    }
    for args in [
        vec!["check", "rules", "dashboards/skewd-rules.yml"],
        vec!["test", "rules", "dashboards/skewd-rules.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(ROOT)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn dashboard_queries_name_only_exported_metrics_or_recording_rules() {
    let (_servers, _agent, http) = synced_agent("dash", ["127.0.0.74", "127.0.0.75", "127.0.0.76"]);
    let (_, mut known) = exported(http);
    let rules = std::fs::read_to_string(format!("{ROOT}/dashboards/skewd-rules.yml")).unwrap();
    for l in rules.lines() {
        if let Some(r) = l.trim().strip_prefix("- record: ") {
            known.insert(r.trim().to_owned());
        }
    }
    known.insert("up".into());
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/dashboards/skewd.json")).unwrap(),
    )
    .unwrap();
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 6, "{} panels", panels.len());
    let vars: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(vars.contains(&"instance"));
    let mut exprs: Vec<String> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    exprs.push(
        dash["templating"]["list"][1]["definition"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let promql_words = [
        "sum",
        "by",
        "rate",
        "increase",
        "max",
        "min",
        "label_values",
        "job",
        "instance",
        "source",
        "result",
        "status",
        "skewd",
    ];
    for e in &exprs {
        // Identifiers outside quotes, braces' label names and [ranges].
        let mut in_quote = false;
        let cleaned: String = e
            .chars()
            .map(|c| {
                if c == '"' {
                    in_quote = !in_quote;
                    ' '
                } else if in_quote {
                    ' '
                } else {
                    c
                }
            })
            .collect();
        for word in cleaned.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
            if word.is_empty()
                || word.chars().next().unwrap().is_ascii_digit()
                || promql_words.contains(&word)
            {
                continue;
            }
            if word.starts_with("skewd") || word == "up" {
                assert!(
                    known.contains(word),
                    "dashboard query {e:?} names {word}, which nothing exports"
                );
            }
        }
    }
    assert!(exprs.iter().any(|e| e.contains("$instance")));
}

#[test]
fn systemd_unit_verifies_and_is_sandboxed() {
    if !need("systemd-analyze") {
        return;
    }
    let unit = std::fs::read_to_string(format!("{ROOT}/systemd/skewd.service")).unwrap();
    for k in [
        "Type=notify",
        "WatchdogSec=",
        "DynamicUser=yes",
        "RuntimeDirectory=skewd",
        "RuntimeDirectoryPreserve=yes",
        "StateDirectory=skewd",
        "LimitNOFILE=",
        "MemoryMax=",
    ] {
        assert!(unit.contains(k), "{k} missing");
    }
    assert!(
        !unit.contains("ProtectClock=yes"),
        "ProtectClock blocks the read-only adjtimex"
    );
    let dir = temp_dir("unit");
    let path = dir.join("skewd.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/skewd", env!("CARGO_BIN_EXE_skewd")),
    )
    .unwrap();
    // The optional socket unit beside it (socket activation of the HTTP
    // port).
    let socket = dir.join("skewd.socket");
    std::fs::copy(format!("{ROOT}/systemd/skewd.socket"), &socket).unwrap();
    for unit in [&path, &socket] {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(unit)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !err.contains(&*dir.display().to_string()),
            "verify {}: {err}",
            unit.display()
        );
    }
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("exposure score");
    eprintln!("systemd exposure {score}");
    assert!(
        out.status.success() && score <= 2.0,
        "exposure {score}: {text}"
    );
}

#[test]
fn sd_notify_ready_watchdog_status_stopping() {
    let dir = temp_dir("notify");
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_skewd"))
        .args([
            "run",
            "--server",
            "127.0.0.1:9",
            "--listen",
            &listen,
            "--shm",
        ])
        .arg(dir.join("clock"))
        .arg("--state-dir")
        .arg(&dir)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "1000000")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut agent = Guard {
        child,
        name: "notify".into(),
    };
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_secs(5)
        && !(seen.contains("READY=1") && seen.contains("WATCHDOG=1"))
    {
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            seen.push('\n');
        }
    }
    assert!(seen.contains("READY=1"), "{seen}");
    assert!(seen.contains("WATCHDOG=1"), "{seen}");
    assert!(seen.contains("STATUS="), "{seen}");
    agent.signal(libc::SIGTERM);
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_secs(5) && !seen.contains("STOPPING=1") {
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    // A SIGTERM that arrives before the handler exists kills the agent
    // with the default action: say so instead of only "no STOPPING".
    let exited = agent.child.try_wait().ok().flatten();
    assert!(
        seen.contains("STOPPING=1"),
        "no STOPPING=1 (agent exit: {exited:?}): {seen}"
    );
    let status = agent.stop().expect("agent exits after SIGTERM");
    assert!(status.success(), "agent exit {status:?}");
}

/// Every command reads the config (`--config`, else the default file):
/// `skewd status` finds an agent on the config's port, `skewd now` reads
/// the config's segment, and `check-config` says what the servers tolerate
/// (and warns about three).
#[test]
fn commands_follow_the_config_file() {
    let servers = honest_fakes(&["127.0.0.99", "127.0.0.100", "127.0.0.101", "127.0.0.102"]);
    let dir = temp_dir("cfgcli");
    let port = free_port();
    let cfg = dir.join("skewd.toml");
    let mut text = format!(
        "listen = \"127.0.0.1:{port}\"\nshm_path = \"{}\"\nstate_dir = \"{}\"\npoll_interval_s = 1\n",
        dir.join("clock").display(),
        dir.display()
    );
    for s in addrs_of(&servers) {
        text.push_str(&format!("[[server]]\naddress = \"{s}\"\n"));
    }
    std::fs::write(&cfg, &text).unwrap();
    let _agent = Guard {
        child: Command::new(env!("CARGO_BIN_EXE_skewd"))
            .arg("--config")
            .arg(&cfg)
            .arg("run")
            .stderr(std::fs::File::create(dir.join("log")).unwrap())
            .spawn()
            .unwrap(),
        name: "cfgcli".into(),
    };
    let skewd = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_skewd"))
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap()
    };
    assert!(
        wait_until(Duration::from_secs(15), || {
            let out = skewd(&["now", "--json"]);
            String::from_utf8_lossy(&out.stdout).contains("\"synchronized\"")
        }),
        "{}",
        std::fs::read_to_string(dir.join("log")).unwrap_or_default()
    );
    // Human output: RFC 3339 times, the bound in a readable unit.
    let out = skewd(&["now"]);
    let said = String::from_utf8_lossy(&out.stdout);
    let year = said.split_whitespace().nth(1).unwrap_or("");
    assert!(
        year.len() >= 30 && year.ends_with('Z') && year.contains('T'),
        "{said}"
    );
    assert!(said.contains("µs") || said.contains("ms"), "{said}");
    let out = skewd(&["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["sources"].as_array().unwrap().len(), 4);
    let out = skewd(&["check-config"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("survives 1 unreachable"),
        "{said}"
    );
    // Three servers: a warning.
    let three = dir.join("three.toml");
    let servers3: String = (1..=3)
        .map(|i| format!("[[server]]\naddress = \"10.0.0.{i}:123\"\n"))
        .collect();
    std::fs::write(&three, servers3).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skewd"))
        .arg("check-config")
        .arg(&three)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("warning: with 3 servers one server down"),
        "{said}"
    );
}
