//! NTS peers: a test CA and certificate (openssl), `chronyd -x` as an NTS
//! server on loopback, and a rewrite of replies for a [`super::UdpProxy`].

use super::{await_serving, chronyd_with, free_udp_port, wait_until, Guard};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A test CA and a server certificate for `ips`, made with openssl in
/// `dir`: (CA certificate, server key, server certificate).
pub fn certificates(dir: &Path, ips: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"],
        &["-subj", "/CN=skewd test NTS CA"],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &["-keyout", "server.key", "-out", "server.csr"],
        &["-subj", "/CN=skewd test NTS server"],
    ]
    .concat());
    let san: Vec<String> = ips.iter().map(|ip| format!("IP:{ip}")).collect();
    std::fs::write(
        dir.join("ext.cnf"),
        format!(
            "subjectAltName={}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
            san.join(",")
        ),
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.key"),
        dir.join("server.pem"),
    )
}

pub fn free_tcp_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An NTS server: chronyd serving the host clock over NTP on `ntp` and
/// NTS-KE on `ke`; its key exchange names `ntp_via` as the NTP server when
/// given (a proxy in front of it).
pub struct NtsServer {
    _guard: Guard,
    pub ntp: SocketAddr,
    pub ke: SocketAddr,
}

pub fn nts_server(
    dir: &Path,
    ip: &str,
    ntp_port: u16,
    ntp_via: Option<&str>,
    key: &Path,
    cert: &Path,
) -> NtsServer {
    let ke_port = free_tcp_port(ip);
    let mut directives = vec![
        format!("port {ntp_port}"),
        format!("bindaddress {ip}"),
        "allow 127.0.0.0/8".into(),
        "local stratum 1".into(),
        format!("ntsserverkey {}", key.display()),
        format!("ntsservercert {}", cert.display()),
        format!("ntsport {ke_port}"),
    ];
    if let Some(via) = ntp_via {
        directives.push(format!("ntsntpserver {via}"));
    }
    // -4: else every server also binds NTS-KE on [::], and they clash.
    let guard = chronyd_with(dir, ip, &["-4"], &directives);
    let s = NtsServer {
        _guard: guard,
        ntp: format!("{ip}:{ntp_port}").parse().unwrap(),
        ke: format!("{ip}:{ke_port}").parse().unwrap(),
    };
    assert!(
        wait_until(Duration::from_secs(20), || std::net::TcpStream::connect(
            s.ke
        )
        .is_ok()),
        "NTS-KE at {} does not listen",
        s.ke
    );
    s
}

/// NTS servers on `ips` (free ports), each NTP reached directly.
pub fn nts_servers(dir: &Path, ips: &[&str], key: &Path, cert: &Path) -> Vec<NtsServer> {
    let v: Vec<NtsServer> = ips
        .iter()
        .map(|ip| nts_server(dir, ip, free_udp_port(ip), None, key, cert))
        .collect();
    await_serving(&v.iter().map(|s| s.ntp).collect::<Vec<_>>());
    v
}

/// 200 ms in NTP timestamp units (2^-32 s).
pub const SHIFT: u64 = (1u64 << 32) / 5;

/// Move the reply's reference, receive and transmit timestamps 200 ms
/// later: a well-formed, consistent reply of a server 200 ms ahead.
pub fn shift_timestamps(b: &mut [u8]) {
    if b.len() < 48 {
        return;
    }
    for at in [16, 32, 40] {
        let v = u64::from_be_bytes(b[at..at + 8].try_into().unwrap());
        b[at..at + 8].copy_from_slice(&v.wrapping_add(SHIFT).to_be_bytes());
    }
}

/// The NTS agent's arguments for `servers`, trusting `ca`.
pub fn nts_args(servers: &[&NtsServer], ca: &Path) -> Vec<String> {
    let mut a = Vec::new();
    for s in servers {
        a.push("--nts-server".to_owned());
        a.push(s.ke.to_string());
    }
    a.push("--nts-ca-file".to_owned());
    a.push(ca.display().to_string());
    a
}
