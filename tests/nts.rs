//! NTS (RFC 8915) against real `chronyd -x` NTS servers on loopback, with a
//! certificate this test makes for their addresses (never touching the
//! clock; truth is the host's CLOCK_REALTIME read around each request).
//!
//! 1. Four NTS servers: the agent synchronizes over NTS, every source
//!    authenticated, every interval holds the host clock; ε over NTS next
//!    to plain NTP on the same servers, same run, same mode.
//! 2. One server's key exchange points at a proxy that rewrites the
//!    timestamps of its replies (a well-formed packet): authentication
//!    failures, counted, never a sample; the other three keep the agent
//!    synchronized and right.
//! 3. A proxy that shifts every server's replies by the same 200 ms: the
//!    NTS agent refuses them all and stays right (it cannot sync), while a
//!    plain-NTP agent behind the same proxies follows the shift — the
//!    known limit of unauthenticated NTP.
//!
//! Addresses 127.0.0.180–127.0.0.193 are this file's alone.

mod common;
use common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Whether [`shift_when_on`] shifts (only the all-servers test uses it).
static SHIFT_ON: AtomicBool = AtomicBool::new(false);

/// [`shift_timestamps`] once [`SHIFT_ON`] is set.
fn shift_when_on(b: &mut [u8]) {
    if SHIFT_ON.load(Ordering::Relaxed) {
        shift_timestamps(b);
    }
}

fn start(tag: &str, plain: &[SocketAddr], args: &[String]) -> (Agent, SocketAddr) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (agent, http) = start_agent(tag, plain, &args);
    if get(http, "/healthz").is_none() {
        let log = std::fs::read_to_string(agent.dir.join("log")).unwrap_or_default();
        panic!("agent {tag} does not answer; its log:\n{log}");
    }
    (agent, http)
}

fn synchronized(http: SocketAddr, within: Duration) -> bool {
    wait_until(within, || {
        get_json(http, "/v1/now")["status"] == "synchronized"
    })
}

/// How far outside `[before, after]` the interval `v` lies (0 when it holds
/// a point of it, or claims nothing).
fn miss_ns(before: i128, v: &serde_json::Value, after: i128) -> i128 {
    match (v["earliest_ns"].as_i64(), v["latest_ns"].as_i64()) {
        (Some(e), Some(l)) => (e as i128 - after).max(before - l as i128).max(0),
        _ => 0,
    }
}

#[test]
fn four_nts_servers_synchronize_authenticated_and_cost_little_width() {
    if !need("chronyd") || !need("openssl") {
        return;
    }
    let dir = temp_dir("nts-four-peers");
    let ips = ["127.0.0.180", "127.0.0.181", "127.0.0.182", "127.0.0.183"];
    let (ca, key, cert) = certificates(&dir, &ips);
    let servers = nts_servers(&dir, &ips, &key, &cert);
    let refs: Vec<&NtsServer> = servers.iter().collect();
    let plain: Vec<SocketAddr> = servers.iter().map(|s| s.ntp).collect();
    let poll = ["--poll".to_owned(), "1s".to_owned()];
    let declared = [&poll[..], &["--servers-age-dispersion".to_owned()]].concat();
    let nts_flags = nts_args(&refs, &ca);
    // The same servers, the same run: NTS and plain NTP, each in the
    // default mode and with the servers declared (chrony-style ageing).
    let (_a, nts) = start("nts", &[], &[&nts_flags[..], &poll].concat());
    let (_b, ntp) = start("nts-plain", &plain, &poll);
    let (_c, nts_d) = start("nts-declared", &[], &[&nts_flags[..], &declared].concat());
    let (_d, ntp_d) = start("nts-plain-declared", &plain, &declared);
    for (name, http) in [
        ("NTS", nts),
        ("plain", ntp),
        ("NTS declared", nts_d),
        ("plain declared", ntp_d),
    ] {
        assert!(
            synchronized(http, Duration::from_secs(15)),
            "{name}: not synchronized"
        );
    }
    let agents = [nts, ntp, nts_d, ntp_d];
    let mut eps: [Vec<i64>; 4] = Default::default();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(15) {
        for (i, http) in agents.iter().enumerate() {
            let (b, v, a) = now_bracketed(*http);
            assert!(
                holds(b, &v, a),
                "agent {i}: {v} misses the host clock [{b}, {a}]"
            );
            assert_eq!(v["status"], "synchronized", "agent {i}: {v}");
            eps[i].push(v["epsilon_ns"].as_i64().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let m: Vec<i64> = eps.iter_mut().map(|e| median(e)).collect();
    eprintln!(
        "median half-width over {} reads each: NTS {} ns, plain {} ns ({:.3}x); declared: NTS {} ns, plain {} ns ({:.3}x)",
        eps[0].len(),
        m[0],
        m[1],
        m[0] as f64 / m[1] as f64,
        m[2],
        m[3],
        m[2] as f64 / m[3] as f64
    );
    // Authentication costs the default mode nothing worth the name
    // (ε is dominated by the servers' dispersion ageing): within 1.2x.
    assert!(m[0] * 5 <= m[1] * 6, "NTS {} ns vs plain {} ns", m[0], m[1]);
    for http in [nts, nts_d] {
        let st = get_json(http, "/v1/status");
        assert_eq!(source_states(&st), ["selected"; 4], "{st}");
        for s in st["sources"].as_array().unwrap() {
            assert_eq!(s["authenticated"], true, "{s}");
            let n = &s["nts"];
            assert!(n["key_exchanges"].as_u64().unwrap() >= 1, "{s}");
            assert_eq!(n["authentication_failures"], 0, "{s}");
            assert_eq!(n["key_exchange_failures"], 0, "{s}");
            // Cookies are replenished: eight held, whatever was spent.
            assert!(n["cookies"].as_u64().unwrap() >= 6, "{s}");
            assert!(s["replies_ok"].as_u64().unwrap() >= 10, "{s}");
            // chronyd answers NTS requests in interleaved mode too.
            assert!(s["interleaved_replies"].as_u64().unwrap() > 0, "{s}");
            // The NTP server came from the key exchange.
            let addr: SocketAddr = s["address"].as_str().unwrap().parse().unwrap();
            assert!(plain.contains(&addr), "{s}");
        }
        assert_eq!(st["bound_violations"], 0);
        let metrics = get(http, "/metrics").unwrap().1;
        assert!(
            metrics.contains(&format!(
                "skewd_source_authenticated{{source=\"{}\"}} 1",
                servers[0].ke
            )),
            "{metrics}"
        );
        // The status page marks every source authenticated.
        let page = get(http, "/").unwrap().1;
        assert_eq!(page.matches("data-nts=\"authenticated\"").count(), 4);
    }
    // The plain agent's sources are not authenticated.
    let st = get_json(ntp, "/v1/status");
    for s in st["sources"].as_array().unwrap() {
        assert_eq!(s["authenticated"], false, "{s}");
        assert!(s["nts"].is_null(), "{s}");
    }
    let page = get(ntp, "/").unwrap().1;
    assert_eq!(page.matches("data-nts=\"plain\"").count(), 4);
}

#[test]
fn a_server_whose_replies_are_rewritten_fails_authentication_and_gives_no_sample() {
    if !need("chronyd") || !need("openssl") {
        return;
    }
    let dir = temp_dir("nts-tamper-peers");
    let ips = ["127.0.0.184", "127.0.0.185", "127.0.0.186", "127.0.0.187"];
    let proxy_ip = "127.0.0.188";
    let (ca, key, cert) = certificates(&dir, &ips);
    let mut servers = nts_servers(&dir, &ips[..3], &key, &cert);
    // The fourth: its key exchange sends clients to the proxy, on the same
    // port number as its own NTP port.
    let port = free_udp_port(proxy_ip);
    servers.push(nts_server(&dir, ips[3], port, Some(proxy_ip), &key, &cert));
    let front: SocketAddr = format!("{proxy_ip}:{port}").parse().unwrap();
    let _proxy = UdpProxy::start_at(
        front,
        servers[3].ntp,
        PathFault::default(),
        PathFault {
            rewrite: Some(shift_timestamps),
            ..PathFault::default()
        },
    );
    await_serving(&[servers[3].ntp]);
    let refs: Vec<&NtsServer> = servers.iter().collect();
    let (_agent, http) = start(
        "nts-tamper",
        &[],
        &[
            &nts_args(&refs, &ca)[..],
            &["--poll".to_owned(), "1s".to_owned()],
        ]
        .concat(),
    );
    assert!(
        synchronized(http, Duration::from_secs(15)),
        "not synchronized"
    );
    // At least 12 s, and until the tampered source has spent its first
    // eight cookies on replies that never authenticated and re-keyed (its
    // polls back off while it fails: up to 40 s).
    let t = Instant::now();
    let mut reads = 0;
    let spent = |st: &serde_json::Value| {
        let n = &st["sources"][3]["nts"];
        n["authentication_failures"].as_u64().unwrap_or(0) >= 8
            && n["key_exchanges"].as_u64().unwrap_or(0) >= 2
    };
    let mut st = get_json(http, "/v1/status");
    while t.elapsed() < Duration::from_secs(12)
        || (!spent(&st) && t.elapsed() < Duration::from_secs(40))
    {
        let (b, v, a) = now_bracketed(http);
        assert!(holds(b, &v, a), "{v} misses the host clock [{b}, {a}]");
        assert_eq!(v["status"], "synchronized", "{v}");
        reads += 1;
        if reads % 25 == 0 {
            st = get_json(http, "/v1/status");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = get_json(http, "/v1/status");
    eprintln!("tampered source after {reads} reads: {}", st["sources"][3]);
    let bad = &st["sources"][3];
    assert_eq!(bad["address"], front.to_string(), "{bad}");
    let failures = bad["nts"]["authentication_failures"].as_u64().unwrap();
    assert!(failures >= 8, "{bad}");
    assert_eq!(
        bad["replies_ok"], 0,
        "a rewritten reply became a sample: {bad}"
    );
    assert_eq!(bad["authenticated"], false, "{bad}");
    assert_eq!(bad["state"], "unreachable", "{bad}");
    let page = get(http, "/").unwrap().1;
    assert_eq!(page.matches("data-nts=\"unauthenticated\"").count(), 1);
    // Its cookies were spent on replies that never authenticated: it
    // re-keyed when they ran out.
    assert!(bad["nts"]["key_exchanges"].as_u64().unwrap() >= 2, "{bad}");
    for s in &st["sources"].as_array().unwrap()[..3] {
        assert_eq!(s["state"], "selected", "{s}");
        assert_eq!(s["authenticated"], true, "{s}");
        assert_eq!(s["nts"]["authentication_failures"], 0, "{s}");
    }
    assert_eq!(st["bound_violations"], 0);
    let metrics = get(http, "/metrics").unwrap().1;
    let line = format!(
        "skewd_nts_authentication_failures_total{{source=\"{}\"}} ",
        servers[3].ke
    );
    let counted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{line}: {metrics}"));
    assert!(counted >= failures, "{counted} < {failures}");
    for m in [
        "skewd_nts_cookies{",
        "skewd_nts_key_exchanges_total{",
        "skewd_nts_naks_total{",
        "skewd_source_authenticated{",
    ] {
        assert!(metrics.contains(m), "{m}: {metrics}");
    }
    promtool_check_metrics(&metrics);
}

#[test]
fn shifting_every_reply_moves_plain_ntp_but_not_nts() {
    if !need("chronyd") || !need("openssl") {
        return;
    }
    let dir = temp_dir("nts-shift-peers");
    let ips = ["127.0.0.189", "127.0.0.190", "127.0.0.191", "127.0.0.192"];
    let proxy_ip = "127.0.0.193";
    let (ca, key, cert) = certificates(&dir, &ips);
    // Every server's key exchange and every plain client go through the
    // proxy address, which shifts all replies alike once switched on.
    let mut servers = Vec::new();
    let mut proxies = Vec::new();
    let mut fronts = Vec::new();
    for ip in ips {
        let port = free_udp_port(proxy_ip);
        let s = nts_server(&dir, ip, port, Some(proxy_ip), &key, &cert);
        let front: SocketAddr = format!("{proxy_ip}:{port}").parse().unwrap();
        proxies.push(UdpProxy::start_at(
            front,
            s.ntp,
            PathFault::default(),
            PathFault {
                rewrite: Some(shift_when_on),
                ..PathFault::default()
            },
        ));
        fronts.push(front);
        servers.push(s);
    }
    await_serving(&fronts);
    let refs: Vec<&NtsServer> = servers.iter().collect();
    let poll = ["--poll".to_owned(), "1s".to_owned()];
    let (_n, nts) = start(
        "nts-shift",
        &[],
        &[&nts_args(&refs, &ca)[..], &poll].concat(),
    );
    let (_p, ntp) = start("nts-shift-plain", &fronts, &poll);
    assert!(
        synchronized(nts, Duration::from_secs(15)),
        "NTS: not synchronized"
    );
    assert!(
        synchronized(ntp, Duration::from_secs(15)),
        "plain: not synchronized"
    );
    let ok_before: Vec<u64> = get_json(nts, "/v1/status")["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["replies_ok"].as_u64().unwrap())
        .collect();
    // The attack: every reply 200 ms ahead, consistently.
    SHIFT_ON.store(true, Ordering::Relaxed);
    let t = Instant::now();
    let mut plain_moved = 0;
    let mut nts_statuses = std::collections::BTreeSet::new();
    while t.elapsed() < Duration::from_secs(15) {
        let (b, v, a) = now_bracketed(nts);
        assert!(holds(b, &v, a), "NTS: {v} misses the host clock [{b}, {a}]");
        nts_statuses.insert(v["status"].as_str().unwrap_or("?").to_owned());
        let (b, v, a) = now_bracketed(ntp);
        let miss = miss_ns(b, &v, a);
        if v["status"] == "synchronized" && miss > 150_000_000 {
            plain_moved += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = get_json(nts, "/v1/status");
    eprintln!(
        "under a 200 ms shift of every reply: plain NTP synchronized on the shifted time in {plain_moved} reads; NTS statuses seen {nts_statuses:?}, sources {:?}",
        st["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["state"].clone(), s["nts"]["authentication_failures"].clone()))
            .collect::<Vec<_>>()
    );
    // Plain NTP cannot tell a consistent shift of every source from the
    // truth: it ends up synchronized, confidently 200 ms off.
    assert!(
        plain_moved > 0,
        "the plain agent was expected to follow the shift"
    );
    let (b, v, a) = now_bracketed(ntp);
    assert!(
        miss_ns(b, &v, a) > 150_000_000,
        "plain agent at the end: {v}"
    );
    // NTS: every shifted reply fails authentication and none is used; the
    // agent stops being synchronized instead of following.
    for (s, before) in st["sources"].as_array().unwrap().iter().zip(&ok_before) {
        assert!(
            s["nts"]["authentication_failures"].as_u64().unwrap() >= 3,
            "{s}"
        );
        assert!(s["replies_ok"].as_u64().unwrap() <= before + 2, "{s}");
    }
    let v = get_json(nts, "/v1/now");
    assert_ne!(v["status"], "synchronized", "{v}");
}

/// `check-config` (and `run`) refuse an NTS source without a usable CA:
/// an unreadable, empty or invalid `nts_ca_file`, or no file and an empty
/// system store; a good CA file passes and is named.
#[test]
fn check_config_refuses_nts_without_a_usable_ca() {
    if !need("openssl") {
        return;
    }
    let dir = temp_dir("nts-check-config");
    let (ca, _, _) = certificates(&dir, &["127.0.0.180"]);
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let junk = dir.join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let check = |ca_line: &str, env: &[(&str, &std::path::Path)]| {
        let cfg = dir.join("skewd.toml");
        let servers: String = ["127.0.0.180", "127.0.0.181", "127.0.0.182", "127.0.0.183"]
            .iter()
            .map(|a| format!("[[server]]\naddress = \"{a}\"\nnts = true\n"))
            .collect();
        std::fs::write(&cfg, format!("{ca_line}\n{servers}")).unwrap();
        let out = std::process::Command::new(skewd_bin())
            .arg("check-config")
            .arg(&cfg)
            .envs(env.iter().map(|(k, v)| (k, v.as_os_str())))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, text) = check(&format!("nts_ca_file = \"{}\"", ca.display()), &[]);
    assert!(ok, "{text}");
    assert!(
        text.contains("4 NTS server(s)") && text.contains("ca.pem"),
        "{text}"
    );
    for (file, why) in [
        (dir.join("missing.pem"), "cannot read it"),
        (empty.clone(), "no PEM certificate"),
        (junk, "certificate 1"),
    ] {
        let (ok, text) = check(&format!("nts_ca_file = \"{}\"", file.display()), &[]);
        assert!(!ok, "{file:?} was accepted: {text}");
        assert!(text.contains(why) && text.contains("NTS"), "{text}");
    }
    // No CA file, and a system store that is empty (rustls-native-certs
    // honours SSL_CERT_FILE and SSL_CERT_DIR).
    let no_certs = dir.join("no-certs");
    std::fs::create_dir_all(&no_certs).unwrap();
    let (ok, text) = check(
        "",
        &[("SSL_CERT_FILE", &empty), ("SSL_CERT_DIR", &no_certs)],
    );
    assert!(!ok, "{text}");
    assert!(text.contains("system certificate store is empty"), "{text}");
    // `run` refuses it too, before starting anything.
    let out = std::process::Command::new(skewd_bin())
        .args(["run", "--nts-server", "127.0.0.180", "--nts-ca-file"])
        .arg(dir.join("missing.pem"))
        .arg("--shm")
        .arg(dir.join("clock"))
        .arg("--state-dir")
        .arg(&*dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read it"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
