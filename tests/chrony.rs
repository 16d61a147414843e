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
    let (mut guards, mut addrs) = chrony_servers(&dir, &["127.0.0.51", "127.0.0.52", "127.0.0.53"]);
    let liar_ip = "127.0.0.54";
    let liar: SocketAddr = format!("{liar_ip}:{}", free_udp_port(liar_ip))
        .parse()
        .unwrap();
    guards.push(chrony_relay(&dir, liar_ip, liar.port(), addrs[0], 0.25));
    addrs.push(liar);
    await_serving(&addrs);

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
    let mut budgets = 0;
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
        if eps.len() % 10 == 0 {
            // What ε is made of adds up to it, and the liar binds neither end.
            for addr in [http, http_d] {
                let st = get_json(addr, "/v1/status");
                let b = budget_adds_up(&st);
                for end in ["lower_end", "upper_end"] {
                    assert_ne!(b[end]["source"], liar.to_string(), "{b}");
                    assert!(b[end]["source"].is_string(), "{b}");
                }
                assert!(b["network_delay_ns"].as_f64().unwrap() > 0.0, "{b}");
                budgets += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(budgets >= 40, "{budgets} budgets checked");
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
    // Every request went out, the first included (a fresh tokio socket's
    // try_send could refuse it, racing the reactor).
    for s in st["sources"].as_array().unwrap() {
        assert_eq!(s["requests_unsent"], 0, "{s}");
    }
}

/// Real chronyd behind userspace proxies (the kernel has no netem): one path
/// loses 30 % each way and duplicates every reply that gets through, one
/// adds 3 ms to the return path only (a midpoint is off by 1.5 ms), one
/// jitters 0–2 ms each way. The agent synchronizes, every interval holds the
/// host clock, duplicates are counted and discarded, and the asymmetric
/// source's bound covers what its midpoint gets wrong.
#[test]
fn lossy_asymmetric_jittery_paths_to_real_chronyd() {
    if !need("chronyd") {
        return;
    }
    let dir = temp_dir("chrony-paths");
    let (_guards, upstream) = chrony_servers(&dir, &["127.0.0.55", "127.0.0.56", "127.0.0.57"]);
    await_serving(&upstream);
    let ms = Duration::from_millis;
    let lossy = PathFault {
        loss: 0.3,
        ..PathFault::default()
    };
    let proxies = [
        UdpProxy::start(
            "127.0.0.58",
            upstream[0],
            lossy,
            PathFault {
                duplicate: 1.0,
                ..lossy
            },
        ),
        UdpProxy::start(
            "127.0.0.59",
            upstream[1],
            PathFault::default(),
            PathFault {
                delay: ms(3),
                ..PathFault::default()
            },
        ),
        UdpProxy::start(
            "127.0.0.60",
            upstream[2],
            PathFault {
                jitter: ms(2),
                ..PathFault::default()
            },
            PathFault {
                jitter: ms(2),
                ..PathFault::default()
            },
        ),
    ];
    let addrs: Vec<SocketAddr> = proxies.iter().map(|p| p.addr).collect();
    let (_agent, http) = start_agent("chrony-paths", &addrs, &["--poll", "1s"]);
    assert!(
        wait_until(Duration::from_secs(20), || get_json(http, "/v1/now")
            ["status"]
            == "synchronized"),
        "not synchronized within 20 s"
    );
    let t = Instant::now();
    let mut eps = Vec::new();
    let mut synced = 0;
    while t.elapsed() < Duration::from_secs(15) {
        let (b, v, a) = now_bracketed(http);
        assert!(
            holds(b, &v, a),
            "interval {v} misses the host clock [{b}, {a}]"
        );
        if v["status"] == "synchronized" {
            synced += 1;
            eps.push(v["epsilon_ns"].as_i64().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!eps.is_empty(), "never synchronized while sampling");
    let status = get_json(http, "/v1/status");
    let src = |i: usize| &status["sources"][i];
    let dups = src(0)["replies_unexpected"].as_u64().unwrap();
    let asym_delay = src(1)["delay_ns"].as_i64().unwrap();
    let asym_offset = src(1)["offset_ns"].as_i64().unwrap();
    eprintln!(
        "paths: {synced} synchronized samples, median epsilon {} ns; lossy path: {dups} duplicate replies discarded; asymmetric path: delay {asym_delay} ns, midpoint offset {asym_offset} ns",
        median(&mut eps)
    );
    assert!(dups > 0, "duplicates were not seen: {status}");
    assert!(asym_delay >= 3_000_000, "{status}");
    // The midpoint of the asymmetric path is off by half the extra delay
    // (1.5 ms); its offset is reported against the model's centre, which the
    // hull pulls part of the way towards it (seen: 0.99 to 1.75 ms). The
    // source stays valid (its bound covers it), not a falseticker.
    assert!(asym_offset.abs() > 500_000, "{status}");
    assert_ne!(src(1)["state"], "falseticker", "{status}");
    assert_ne!(src(1)["state"], "invalid", "{status}");
}
