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
#[path = "support/series.rs"]
mod series;
use series::{pct, Series};
use std::time::{Duration, Instant};

fn main() {
    let Some((secs, warmup, poll)) = series::settings("accuracy", &["chronyd", "chronyc"], 180, 60)
    else {
        return;
    };
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
        series.push(Series::synchronized(name, &agent, http));
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
            s.read(late);
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
        let (m, p) = s.summary();
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
    let https: Vec<std::net::SocketAddr> = agents.iter().map(|(_, h)| *h).collect();
    series::finish(&out, &series, &https);
}
