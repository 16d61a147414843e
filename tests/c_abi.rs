//! The C ABI (`include/skewd.h`, `libskewd_c`) from C: an example compiled
//! with `cc` against the static and the shared library runs against a live
//! agent and checks every interval against CLOCK_REALTIME read around the
//! call (also from 4 threads sharing one handle); every return code it can
//! meet is provoked on a crafted copy of the live segment.
//!
//! The libraries come from `cargo build --release --workspace` (tests/run.sh
//! builds them first).

mod common;
use common::*;
use skewd::shm::layout::Segment;
use std::mem::offset_of;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The C example, built against the static library, or against the shared
/// one (found at run time through an rpath).
fn build(dir: &Path, shared: bool) -> Option<PathBuf> {
    let lib = Path::new(ROOT).join("target/release");
    let a = lib.join("libskewd_c.a");
    let so = lib.join("libskewd_c.so");
    if !(a.exists() && so.exists()) {
        assert!(
            !require_peers(),
            "{} missing: run `cargo build --release --workspace` first",
            a.display()
        );
        eprintln!("skipped: no libskewd_c in target/release");
        return None;
    }
    let out = dir.join(if shared { "example-so" } else { "example-a" });
    let mut cc = Command::new("cc");
    cc.args([
        "-O2",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-std=c11",
        "-D_POSIX_C_SOURCE=200809L",
    ])
    .arg("-I")
    .arg(Path::new(ROOT).join("include"))
    .arg(Path::new(ROOT).join("clients/c/examples/skewd_example.c"))
    .arg("-o")
    .arg(&out);
    if shared {
        // The flags the shipped pkg-config file gives, pointed at this tree.
        let pc = Command::new("pkg-config")
            .env("PKG_CONFIG_PATH", Path::new(ROOT).join("clients/c"))
            .arg(format!("--define-variable=libdir={}", lib.display()))
            .arg(format!(
                "--define-variable=includedir={}",
                Path::new(ROOT).join("include").display()
            ))
            .args(["--cflags", "--libs", "skewd"])
            .output()
            .expect("run pkg-config");
        assert!(pc.status.success(), "{pc:?}");
        let flags = String::from_utf8(pc.stdout).unwrap();
        assert!(flags.contains("-lskewd_c"), "{flags}");
        cc.args(flags.split_whitespace())
            .arg(format!("-Wl,-rpath,{}", lib.display()))
            .arg("-lpthread");
    } else {
        cc.arg(&a)
            .args(["-lpthread", "-ldl", "-lm", "-lrt", "-lutil"]);
    }
    let r = cc.output().expect("run cc");
    assert!(
        r.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    Some(out)
}

fn synced_agent(tag: &str, ips: &[&str]) -> (Vec<FakeServer>, Agent, std::net::SocketAddr) {
    let servers = honest_fakes(ips);
    let (agent, http) = start_agent(tag, &addrs_of(&servers), &["--poll", "1s"]);
    assert!(
        wait_until(Duration::from_secs(20), || get_json(http, "/v1/status")
            ["status"]
            == "synchronized"),
        "agent never synchronized"
    );
    (servers, agent, http)
}

#[test]
fn c_programs_read_the_interval_and_it_contains_the_host_clock() {
    if !(need("cc") && need("pkg-config")) {
        return;
    }
    let (_servers, agent, _) = synced_agent(
        "c-abi",
        &["127.0.0.131", "127.0.0.132", "127.0.0.133", "127.0.0.134"],
    );
    let seg = agent.dir.join("clock");
    for shared in [false, true] {
        let Some(bin) = build(&agent.dir, shared) else {
            return;
        };
        // cargo test puts target/debug (a debug libskewd_c.so) first on
        // LD_LIBRARY_PATH, before the rpath: run with the release one.
        let out = Command::new(&bin)
            .arg("now")
            .arg(&seg)
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "shared={shared}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["failures"], 0, "{v}");
        assert_eq!(v["status"], 1, "synchronized: {v}");
        assert_eq!(v["thread_reads"], 800_000);
        assert_eq!(v["thread_misses"], 0);
        assert!(v["earliest_ns"].as_i64() <= v["host_after_ns"].as_i64());
        assert!(v["latest_ns"].as_i64() >= v["host_before_ns"].as_i64());
    }
}

/// A copy of `seg` in `dir`, patched by `f` (a 0644 file in a directory
/// only its owner can write: trusted).
fn crafted(dir: &Path, name: &str, seg: &Path, f: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(seg).unwrap();
    f(&mut bytes);
    let p = dir.join(name);
    std::fs::write(&p, &bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    p
}

fn put_i64(b: &mut [u8], off: usize, v: i64) {
    b[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

fn get_i64(b: &[u8], off: usize) -> i64 {
    i64::from_ne_bytes(b[off..off + 8].try_into().unwrap())
}

#[test]
fn every_return_code_a_caller_can_meet() {
    if !need("cc") {
        return;
    }
    let (_servers, agent, _) = synced_agent(
        "c-codes",
        &["127.0.0.135", "127.0.0.136", "127.0.0.137", "127.0.0.138"],
    );
    let Some(bin) = build(&agent.dir, false) else {
        return;
    };
    let live = agent.dir.join("clock");
    let dir = agent.dir.join("crafted");
    std::fs::create_dir(&dir).unwrap();
    let call = |path: &Path, op: &str| -> (i32, String) {
        let out = Command::new(&bin)
            .args(["call"])
            .arg(path)
            .arg(op)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let (code, msg) = text.split_once(' ').unwrap_or((&text, ""));
        (code.parse().unwrap_or(i32::MIN), msg.to_owned())
    };
    let expect = |path: &Path, op: &str, want: i32| {
        let (code, msg) = call(path, op);
        assert_eq!(code, want, "{op} on {}: {msg}", path.display());
        if want <= 0 {
            assert!(
                !msg.is_empty() && msg != "unknown skewd error code",
                "{msg}"
            );
        }
    };
    let raw_now = skewd::clock::raw().0;
    let gen = offset_of!(Segment, generation);
    let flags = offset_of!(Segment, flags);

    // The live segment: all is well, and bad arguments are refused.
    expect(&live, "now", 0);
    expect(&live, "now-fast", 0);
    expect(&live, "after", 1);
    expect(&live, "badscale", -1);
    expect(&dir.join("absent"), "open", -3);
    // The default path, when no agent publishes there.
    if !Path::new(skewd::paths::DEFAULT_SHM).exists() {
        let out = Command::new(&bin)
            .args(["call", "-", "open"])
            .env("XDG_RUNTIME_DIR", dir.join("nowhere"))
            .env("HOME", dir.join("nowhere"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("-2 "), "{text}");
    }
    // Someone else could have written it.
    let p = crafted(&dir, "writable", &live, |_| {});
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o664)).unwrap();
    expect(&p, "open", -4);
    // Not this layout.
    expect(&crafted(&dir, "magic", &live, |b| b[0] ^= 1), "open", -5);
    expect(&crafted(&dir, "version", &live, |b| b[8] = 99), "open", -5);
    expect(
        &crafted(&dir, "short", &live, |b| b.truncate(100)),
        "open",
        -5,
    );
    // A writer killed mid-update.
    let p = crafted(&dir, "midwrite", &live, |b| {
        let g = get_i64(b, gen);
        put_i64(b, gen, g | 1);
    });
    expect(&p, "now", -6);
    // No model.
    let p = crafted(&dir, "nomodel", &live, |b| b[flags] &= !1);
    expect(&p, "now", -7);
    // A void model: status unknown, not to be acted on.
    let p = crafted(&dir, "void", &live, |b| {
        put_i64(
            b,
            offset_of!(Segment, sync_until_ns),
            raw_now - 2_000_000_000,
        );
        put_i64(
            b,
            offset_of!(Segment, void_after_ns),
            raw_now - 1_000_000_000,
        );
    });
    expect(&p, "now", 0);
    expect(&p, "after", -8);
    expect(&p, "wait", -14);
    // A suspend since the write: the strict read refuses, the fast one
    // cannot tell.
    let p = crafted(&dir, "suspended", &live, |b| {
        let o = offset_of!(Segment, offs_boot_ns);
        let v = get_i64(b, o);
        put_i64(b, o, v - 1_000_000_000);
    });
    expect(&p, "now", -9);
    expect(&p, "now-fast", 0);
    // A reader whose clock is before the agent's last write.
    let p = crafted(&dir, "future", &live, |b| {
        put_i64(
            b,
            offset_of!(Segment, written_at_ns),
            raw_now + 3_600_000_000_000,
        );
    });
    expect(&p, "now", -11);
    // Another time namespace than the writer's.
    let p = crafted(&dir, "timens", &live, |b| {
        let o = offset_of!(Segment, timens_ino);
        let v = get_i64(b, o);
        put_i64(b, o, v ^ 0x5a5a);
    });
    expect(&p, "now", -12);
    // Beyond 64-bit nanoseconds.
    let p = crafted(&dir, "huge", &live, |b| {
        put_i64(b, offset_of!(Segment, bound_lo_ns), i64::MAX - 10);
        put_i64(b, offset_of!(Segment, bound_hi_ns), i64::MAX - 5);
    });
    expect(&p, "now", -13);
    // Waits that cannot finish in time.
    expect(&live, "wait", -14);
    expect(&live, "commit", -14);
}
