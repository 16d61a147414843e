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
#[path = "support/series.rs"]
mod series;
use series::Series;
use std::time::{Duration, Instant};

fn main() {
    let Some((secs, warmup, poll)) =
        series::settings("nts_accuracy", &["chronyd", "openssl"], 120, 30)
    else {
        return;
    };
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
        series.push(Series::synchronized(name, &agent, http));
        agents.push((agent, http));
    }
    eprintln!("nts_accuracy: {secs} s ({warmup} s warm-up), poll {poll}, 4 chronyd NTS servers on loopback");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        let late = start.elapsed() > Duration::from_secs(warmup);
        for s in &mut series {
            s.read(late);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut out = serde_json::json!({ "secs": secs, "warmup_s": warmup, "poll": poll });
    let mut medians = std::collections::BTreeMap::new();
    for s in &mut series {
        let (m, p) = s.summary();
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
    let https: Vec<std::net::SocketAddr> = agents.iter().map(|(_, h)| *h).collect();
    series::finish(&out, &series, &https);
}
