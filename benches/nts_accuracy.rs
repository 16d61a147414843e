//! What authentication costs in width: ε over NTS next to plain NTP on the
//! same `chronyd -x` servers, in the same run and the same mode (not a CI
//! test: it takes minutes).
//!
//! `cargo bench --bench nts_accuracy` (env: `SKEWD_ACCURACY_SECS`, default
//! 120; `SKEWD_ACCURACY_WARMUP`, default 30; `SKEWD_ACCURACY_POLL`, default
//! 1s).
//!
//! Four chronyd NTS servers on loopback (a certificate made here for their
//! addresses), each serving NTS-KE and NTP. Four agents poll them at once:
//! NTS and plain NTP, each in the default mode (Φ_s ageing) and with the
//! servers declared `dispersion_aged_by_server`; all use interleaved mode
//! (chronyd answers NTS requests interleaved too). Every 10 ms each agent
//! is read from shared memory between two host clock reads and checked.
//! After the warm-up, prints the medians and 90th percentiles of the
//! half-widths and the NTS/plain ratios (JSON, last line).

#[path = "../tests/common/mod.rs"]
mod common;
use common::*;
use skewd::client::Clock;
use std::time::{Duration, Instant};

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(v: &mut [i64], p: usize) -> i64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[(v.len() - 1) * p / 100]
}

struct Series {
    name: &'static str,
    clock: Clock,
    eps: Vec<i64>,
    reads: u64,
    misses: u64,
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    for tool in ["chronyd", "openssl"] {
        if !have(tool) {
            eprintln!("nts_accuracy: {tool} is not installed (tests/run.sh installs chrony)");
            return;
        }
    }
    let secs = env_secs("SKEWD_ACCURACY_SECS", 120);
    let warmup = env_secs("SKEWD_ACCURACY_WARMUP", 30);
    let poll = std::env::var("SKEWD_ACCURACY_POLL").unwrap_or_else(|_| "1s".into());
    let dir = temp_dir("nts-accuracy-peers");
    let ips = ["127.0.0.194", "127.0.0.195", "127.0.0.196", "127.0.0.197"];
    let (ca, key, cert) = certificates(&dir, &ips);
    let servers = nts_servers(&dir, &ips, &key, &cert);
    let refs: Vec<&NtsServer> = servers.iter().collect();
    let plain: Vec<std::net::SocketAddr> = servers.iter().map(|s| s.ntp).collect();
    let nts = nts_args(&refs, &ca);
    let nts: Vec<&str> = nts.iter().map(String::as_str).collect();
    let mut agents = vec![];
    let mut series = vec![];
    for (name, authenticated, declared) in [
        ("nts_default", true, false),
        ("plain_default", false, false),
        ("nts_declared", true, true),
        ("plain_declared", false, true),
    ] {
        let mut args = vec!["--poll", poll.as_str()];
        if declared {
            args.push("--servers-age-dispersion");
        }
        if authenticated {
            args.extend(&nts);
        }
        let upstream: &[std::net::SocketAddr] = if authenticated { &[] } else { &plain };
        let (agent, http) = start_agent(&format!("nts-accuracy-{name}"), upstream, &args);
        assert!(
            wait_until(Duration::from_secs(30), || get_json(http, "/v1/now")
                ["status"]
                == "synchronized"),
            "skewd ({name}) never synchronized"
        );
        series.push(Series {
            name,
            clock: Clock::open(&agent.dir.join("clock")).unwrap(),
            eps: vec![],
            reads: 0,
            misses: 0,
        });
        agents.push((agent, http));
    }
    eprintln!("nts_accuracy: {secs} s ({warmup} s warm-up), poll {poll}, 4 chronyd NTS servers on loopback");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        let late = start.elapsed() > Duration::from_secs(warmup);
        for s in &mut series {
            let b = realtime_ns();
            let t = s.clock.now();
            let a = realtime_ns();
            let Ok(t) = t else { continue };
            s.reads += 1;
            if (t.utc.earliest.0 as i128) > a || (t.utc.latest.0 as i128) < b {
                s.misses += 1;
                eprintln!("MISS ({}): {t:?} vs [{b}, {a}]", s.name);
            }
            if late {
                s.eps.push(t.epsilon_ns());
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut out = serde_json::json!({ "secs": secs, "warmup_s": warmup, "poll": poll });
    let mut medians = std::collections::BTreeMap::new();
    for s in &mut series {
        let (m, p) = (pct(&mut s.eps, 50), pct(&mut s.eps, 90));
        eprintln!(
            "skewd {:<15}: median ε {m} ns, p90 {p} ns; {} reads, {} misses",
            s.name, s.reads, s.misses
        );
        out[format!("{}_median_ns", s.name)] = m.into();
        out[format!("{}_p90_ns", s.name)] = p.into();
        out[format!("{}_misses", s.name)] = s.misses.into();
        medians.insert(s.name, m);
    }
    for mode in ["default", "declared"] {
        let r = medians[format!("nts_{mode}").as_str()] as f64
            / medians[format!("plain_{mode}").as_str()] as f64;
        eprintln!("{mode}: NTS / plain median ε = {r:.3}");
        out[format!("{mode}_nts_vs_plain")] = serde_json::json!((r * 1000.0).round() / 1000.0);
    }
    for (_, http) in &agents {
        let st = get_json(*http, "/v1/status");
        assert_eq!(st["bound_violations"], 0, "{st}");
    }
    println!("{out}");
    let missed: u64 = series.iter().map(|s| s.misses).sum();
    assert_eq!(missed, 0, "an interval missed the host clock");
}
