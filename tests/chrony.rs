//! The agent against real `chronyd -x` servers on loopback (never touching
//! the clock): three honest local-stratum-1 servers and a relay lying by
//! 250 ms. Truth is the host's CLOCK_REALTIME read around each request.

mod common;
use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[test]
fn three_honest_chronyd_and_a_liar() {
    if !need("chronyd") {
        return;
    }
    let dir = temp_dir("chrony");
    let ips = ["127.0.0.51", "127.0.0.52", "127.0.0.53"];
    let mut guards = Vec::new();
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for ip in ips {
        let port = free_udp_port(ip);
        guards.push(chrony_server(&dir, ip, port));
        addrs.push(format!("{ip}:{port}").parse().unwrap());
    }
    let liar_ip = "127.0.0.54";
    let liar: SocketAddr = format!("{liar_ip}:{}", free_udp_port(liar_ip))
        .parse()
        .unwrap();
    guards.push(chrony_relay(&dir, liar_ip, liar.port(), addrs[0], 0.25));
    addrs.push(liar);
    for a in &addrs {
        assert!(
            wait_until(Duration::from_secs(20), || ntp_query(*a)
                .is_some_and(|s| s < 16)),
            "chronyd at {a} does not serve"
        );
    }

    let start = Instant::now();
    let (_agent, http) = start_agent("chrony", &addrs, &["--poll", "1s"]);
    // A second agent on the same servers, declaring them chrony-style.
    let (_declared, http_d) = start_agent(
        "chrony-declared",
        &addrs,
        &["--poll", "1s", "--servers-age-dispersion"],
    );
    assert!(
        wait_until(Duration::from_secs(10), || get_json(http, "/v1/now")
            ["status"]
            == "synchronized"),
        "not synchronized within 10 s of start"
    );
    eprintln!("synchronized after {:?}", start.elapsed());

    assert!(wait_until(Duration::from_secs(10), || get_json(
        http_d, "/v1/now"
    )["status"]
        == "synchronized"));
    let t = Instant::now();
    let mut eps = Vec::new();
    let mut eps_d = Vec::new();
    while t.elapsed() < Duration::from_secs(20) {
        let (b, v, a) = now_bracketed(http);
        assert!(
            holds(b, &v, a),
            "interval {v} misses the host clock [{b}, {a}]"
        );
        assert_eq!(v["status"], "synchronized", "{v}");
        eps.push(v["epsilon_ns"].as_i64().unwrap());
        let (b, v, a) = now_bracketed(http_d);
        assert!(
            holds(b, &v, a),
            "declared agent: interval {v} misses the host clock [{b}, {a}]"
        );
        eps_d.push(v["epsilon_ns"].as_i64().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    let md = median(&mut eps_d);
    eprintln!("declared servers: median epsilon {md} ns");
    let m = median(&mut eps);
    eprintln!(
        "{} intervals, median epsilon {m} ns, max {} ns",
        eps.len(),
        eps.last().unwrap()
    );
    assert!(eps.len() >= 500);
    assert!(m < 1_000_000, "median epsilon {m} ns");
    assert!(
        md < m,
        "declaring chrony servers must narrow the interval: {md} vs {m}"
    );

    let st = get_json(http, "/v1/status");
    let states = source_states(&st);
    assert_eq!(
        states,
        ["selected", "selected", "selected", "falseticker"],
        "{st}"
    );
    let liar_offset = st["sources"][3]["offset_ns"].as_i64().unwrap();
    assert!(
        (liar_offset - 250_000_000).abs() < 5_000_000,
        "liar offset {liar_offset}"
    );
    assert_eq!(st["bound_violations"], 0);
}
