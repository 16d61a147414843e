//! How narrow skewd's hard bound is, next to chronyd's own estimate, on the
//! same servers in the same run (not a CI test: it takes minutes).
//!
//! `cargo bench --bench accuracy` (env: `SKEWD_ACCURACY_SECS`, default 180;
//! `SKEWD_ACCURACY_WARMUP`, default 60; `SKEWD_ACCURACY_POLL`, default 1s).
//!
//! Three `chronyd -x` servers on loopback (local stratum 1); polling them:
//! skewd in its default mode (Φ_s ageing of root dispersion), skewd with the
//! servers declared `dispersion_aged_by_server` (chronyd ages it itself),
//! and a `chronyd -x` client. Every 10 ms each skewd is read from shared
//! memory between two host clock reads (the servers serve the host clock,
//! so the host clock is true time here) and checked; every 2 s chronyd's
//! figure |System time| + Root dispersion + Root delay / 2 is recorded.
//! After the warm-up, prints the medians and 90th percentiles of the
//! half-widths, the ratios to chronyd's, and the misses (JSON, last line).

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
    for tool in ["chronyd", "chronyc"] {
        if !have(tool) {
            eprintln!("accuracy: {tool} is not installed (tests/run.sh installs chrony)");
            return;
        }
    }
    let secs = env_secs("SKEWD_ACCURACY_SECS", 180);
    let warmup = env_secs("SKEWD_ACCURACY_WARMUP", 60);
    let poll = std::env::var("SKEWD_ACCURACY_POLL").unwrap_or_else(|_| "1s".into());
    let dir = temp_dir("accuracy");
    let (mut guards, servers) =
        chrony_servers(&dir, &["127.0.0.241", "127.0.0.242", "127.0.0.243"]);
    await_serving(&servers);
    let (client, sock, _run_dir) = chrony_client(&dir, &servers);
    guards.push(client);

    let mut agents = vec![];
    let mut series = vec![];
    for (name, declared) in [("default", false), ("declared", true)] {
        let cfg = dir.join(format!("skewd-{name}.toml"));
        let mut toml = String::new();
        for a in &servers {
            toml.push_str(&format!(
                "[[server]]\naddress = \"{a}\"\ndispersion_aged_by_server = {declared}\n"
            ));
        }
        std::fs::write(&cfg, toml).unwrap();
        let cfg_arg = cfg.display().to_string();
        let (agent, http) = start_agent(
            &format!("accuracy-{name}"),
            &[],
            &["--poll", &poll, "--config", &cfg_arg],
        );
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
    eprintln!(
        "accuracy: {secs} s ({warmup} s warm-up), poll {poll}, 3 chronyd servers on loopback"
    );

    let start = Instant::now();
    let mut chrony = vec![];
    let mut last_chrony = Instant::now();
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
        if late && last_chrony.elapsed() > Duration::from_secs(2) {
            last_chrony = Instant::now();
            if let Some(c) = chrony_bound_ns(&sock) {
                chrony.push(c);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let c50 = pct(&mut chrony, 50);
    let c90 = pct(&mut chrony, 90);
    let mut out = serde_json::json!({
        "secs": secs, "warmup_s": warmup, "poll": poll,
        "chrony_median_ns": c50, "chrony_p90_ns": c90, "chrony_samples": chrony.len(),
    });
    eprintln!(
        "chronyd's figure (|offset| + disp + delay/2): median {c50} ns, p90 {c90} ns ({} samples)",
        chrony.len()
    );
    for s in &mut series {
        let (m, p) = (pct(&mut s.eps, 50), pct(&mut s.eps, 90));
        let ratio = if c50 > 0 {
            m as f64 / c50 as f64
        } else {
            f64::NAN
        };
        eprintln!(
            "skewd {:<8}: median ε {m} ns, p90 {p} ns, {:.2}× chronyd's median; {} reads, {} misses",
            s.name, ratio, s.reads, s.misses
        );
        out[format!("{}_median_ns", s.name)] = m.into();
        out[format!("{}_p90_ns", s.name)] = p.into();
        out[format!("{}_vs_chrony", s.name)] = serde_json::json!((ratio * 1000.0).round() / 1000.0);
        out[format!("{}_reads", s.name)] = s.reads.into();
        out[format!("{}_misses", s.name)] = s.misses.into();
    }
    for (_, http) in &agents {
        let st = get_json(*http, "/v1/status");
        assert_eq!(st["bound_violations"], 0, "{st}");
    }
    println!("{out}");
    let missed: u64 = series.iter().map(|s| s.misses).sum();
    assert_eq!(missed, 0, "an interval missed the host clock");
}
