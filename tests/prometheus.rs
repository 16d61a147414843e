//! End to end with a real Prometheus server: three agents on loopback sync
//! to real chronyd servers; one runs under libfaketime with its system clock
//! 200 ms ahead. The skew alert must fire for exactly that instance, and
//! nothing else: not for the healthy ones, and not the fleet-skew alert (one
//! host far off is one cause, paged once; promtool's cases cover the fleet
//! alert's own).
//! The shipped rules are loaded with their `for:` durations shortened to 5 s
//! (the only change), so the test takes seconds rather than minutes.

mod common;
use common::*;
use std::net::SocketAddr;
use std::time::Duration;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn agent(tag: &str, servers: &[SocketAddr], fake_offset: Option<&str>) -> (Agent, SocketAddr) {
    match fake_offset {
        None => start_agent(tag, servers, &["--poll", "1s"]),
        // Kernel receive stamps are not faked: use userspace stamps only.
        Some(off) => start_agent_env(
            tag,
            servers,
            &["--poll", "1s", "--no-kernel-timestamps"],
            &faked(&[
                ("FAKETIME", off.as_ref()),
                ("FAKETIME_DONT_FAKE_MONOTONIC", "1".as_ref()),
            ]),
        ),
    }
}

#[test]
fn skew_and_fleet_skew_alerts_fire_for_the_faked_host_only() {
    if !(need("chronyd") && need("prometheus") && need("faketime")) {
        return;
    }
    let dir = temp_dir("prom");
    let (guards, servers) = chrony_servers(&dir, &["127.0.0.91", "127.0.0.92", "127.0.0.93"]);
    await_serving(&servers);
    let (a, a_addr) = agent("prom-a", &servers, None);
    let (b, b_addr) = agent("prom-b", &servers, None);
    let (c, c_addr) = agent("prom-c", &servers, Some("+0.2"));
    for addr in [a_addr, b_addr, c_addr] {
        assert!(
            wait_until(Duration::from_secs(15), || get_json(addr, "/v1/status")
                ["offset_ns"]
                .is_i64()),
            "agent {addr} never reported its skew"
        );
    }
    let skew_c = get_json(c_addr, "/v1/status")["offset_ns"]
        .as_i64()
        .unwrap();
    assert!(
        (skew_c - 200_000_000).abs() < 10_000_000,
        "faked agent's skew {skew_c}"
    );

    // The shipped rules, `for:` shortened.
    let rules = std::fs::read_to_string(format!("{ROOT}/dashboards/skewd-rules.yml")).unwrap();
    let short: String = rules
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("for: ") {
                format!("{}for: 5s", &l[..l.len() - l.trim_start().len()])
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("rules.yml"), short).unwrap();
    let (prom, prom_addr) = prometheus(
        &dir,
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - rules.yml\nscrape_configs:\n  - job_name: skewd\n    static_configs:\n      - targets: ['{a_addr}', '{b_addr}', '{c_addr}']\n"
        ),
    );

    let firing = || -> Vec<(String, String)> {
        let Some((200, body)) = get(prom_addr, "/api/v1/alerts") else {
            return vec![];
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]["alerts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|x| x["state"] == "firing")
                    .map(|x| {
                        (
                            x["labels"]["alertname"].as_str().unwrap_or("").to_owned(),
                            x["labels"]["instance"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let c_inst = c_addr.to_string();
    let ok = wait_until(Duration::from_secs(60), || {
        let f = firing();
        f.contains(&("SkewdClockSkewHigh".into(), c_inst.clone()))
    });
    let f = firing();
    assert!(ok, "alerts firing: {f:?}");
    // Let a few more evaluations pass, then nothing may fire for a or b.
    std::thread::sleep(Duration::from_secs(6));
    let f = firing();
    eprintln!("firing: {f:?}");
    for (name, inst) in &f {
        assert!(
            inst != &a_addr.to_string() && inst != &b_addr.to_string(),
            "{name} fired for a healthy instance {inst}: {f:?}"
        );
    }
    let skew: Vec<_> = f.iter().filter(|x| x.0 == "SkewdClockSkewHigh").collect();
    assert_eq!(skew.len(), 1, "{f:?}");
    assert!(
        !f.iter().any(|x| x.0 == "SkewdFleetSkew"),
        "one host far off paged twice: {f:?}"
    );
    drop((prom, a, b, c, guards));
}
