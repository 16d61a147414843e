//! The independent Python reader (`clients/python/skewd.py`, written from
//! `docs/segment.md` alone) against the Rust client, on a live agent's
//! segment and on crafted copies of it: the same interval bit for bit at
//! the same RAW instant (fast path, exact path, leap marks), true time
//! inside its `now`, and the same refusals.

mod common;
use common::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

// Offsets of docs/segment.md's layout (version 3).
const GENERATION: usize = 16;
const FLAGS: usize = 32;
const STATUS: usize = 36;
const ANCHOR: usize = 40;
const BOUND_LO: usize = 48;
const EVIDENCE_FROM: usize = 80;
const EVIDENCE_TO: usize = 88;
const SYNC_UNTIL: usize = 112;
const VOID_AFTER: usize = 120;
const UTC_OFFSET: usize = 128;
const LEAP_AT: usize = 136;
const LEAP_DELTA: usize = 144;
const OFFS_BOOT: usize = 152;
const CROSS_D: usize = 240;
const WRITTEN_AT: usize = 248;
const TIMENS_INO: usize = 264;
const VERSION: usize = 8;

const F_MODEL: u32 = 1;
const F_EVIDENCE: u32 = 2;
const F_LEAP: u32 = 4;
const F_FAST: u32 = 8;
const F_LEAP_PENDING: u32 = 64;

const S: i64 = 1_000_000_000;

/// The six fields both readers print.
const FIELDS: [&str; 6] = [
    "earliest_ns",
    "latest_ns",
    "earliest_leapfree_ns",
    "latest_leapfree_ns",
    "epsilon_ns",
    "status",
];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python/skewd.py")
}

/// The interpreter `python3` names (resolved once: a version manager's
/// shim costs ~0.1 s a start).
fn python3() -> &'static Path {
    static EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    EXE.get_or_init(|| {
        Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .ok()
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| PathBuf::from("python3"))
    })
}

/// `python3 skewd.py ARGS`: exit code and the JSON it printed.
fn py(args: &[&str]) -> (i32, Value) {
    let out = Command::new(python3())
        .arg(script())
        .args(args)
        .output()
        .expect("run python3");
    let text = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "python {args:?}: not JSON ({e}): {text:?}, stderr {:?}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

/// `skewd now --json ARGS`: exit code and the JSON it printed.
fn rust_now(args: &[&str]) -> (i32, Value) {
    let out = Command::new(skewd_bin())
        .args(["now", "--json"])
        .args(args)
        .output()
        .expect("run skewd now");
    let text = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "skewd now {args:?}: not JSON ({e}): {text:?}, stderr {:?}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

/// The host's CLOCK_MONOTONIC_RAW (ns).
fn raw_now() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own and nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_RAW, &mut ts) };
    assert_eq!(rc, 0);
    ts.tv_sec * S + ts.tv_nsec
}

fn get_i64(b: &[u8], off: usize) -> i64 {
    i64::from_ne_bytes(b[off..off + 8].try_into().unwrap())
}

fn set_i64(b: &mut [u8], off: usize, v: i64) {
    b[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

fn get_u32(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().unwrap())
}

fn set_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn get_u64(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().unwrap())
}

/// One consistent copy of the live segment (the generation even and the
/// same after the copy).
fn snapshot(seg: &Path) -> Vec<u8> {
    for _ in 0..1000 {
        let b = std::fs::read(seg).expect("read the segment");
        if b.len() < 320 || get_u64(&b, GENERATION) % 2 == 1 {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let again = std::fs::read(seg).expect("read the segment");
        if again.len() >= 320 && get_u64(&again, GENERATION) == get_u64(&b, GENERATION) {
            return b[..320].to_vec();
        }
    }
    panic!("no consistent copy of {}", seg.display());
}

/// A fresh directory for crafted copies, under the agent's own (trusted)
/// directory: mode 0755, owned by this test's user.
fn copies_dir(agent: &Agent, name: &str) -> PathBuf {
    let d = agent.dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

fn write_copy(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> PathBuf {
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    std::fs::write(&p, bytes).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

/// An agent on four honest fakes, synchronized, whose segment carries a
/// rate with evidence and the fast form (flags 0, 1, 3).
fn synced_agent(tag: &str, ips: &[&str]) -> (Vec<FakeServer>, Agent) {
    let servers = honest_fakes(ips);
    let (agent, http) = start_agent(tag, &addrs_of(&servers), &["--poll", "1s"]);
    let seg = agent.dir.join("clock");
    let ready = wait_until(Duration::from_secs(15), || {
        let synced = get(http, "/v1/now").is_some_and(|(_, b)| b.contains("\"synchronized\""));
        synced
            && std::fs::read(&seg).is_ok_and(|b| {
                b.len() >= 320
                    && get_u32(&b, FLAGS) & (F_MODEL | F_EVIDENCE | F_FAST)
                        == F_MODEL | F_EVIDENCE | F_FAST
            })
    });
    assert!(
        ready,
        "{tag}: no synchronized model with rate evidence and the fast form"
    );
    (servers, agent)
}

/// Compare both readers at RAW instant `x` on the segment `path`; returns
/// the path Python took ("fast"/"exact"), or panics on any difference.
fn compare_at(path: &Path, x: i64, what: &str) -> (String, Value) {
    let shm = path.to_str().unwrap();
    let xs = x.to_string();
    let (pc, p) = py(&["at", &xs, "--json", "--shm", shm]);
    let (rc, r) = rust_now(&["--shm", shm, "--at-raw-ns", &xs]);
    assert_eq!(pc, 0, "{what}: python refused at {x}: {p}");
    assert_eq!(rc, 0, "{what}: skewd refused at {x}: {r}");
    for f in FIELDS {
        assert_eq!(
            p[f], r[f],
            "{what}: {f} differs at RAW {x}\n python: {p}\n rust:   {r}"
        );
    }
    (p["path"].as_str().unwrap_or("?").to_owned(), p)
}

#[test]
fn python_matches_rust_at_raw_instants() {
    if !need("python3") {
        return;
    }
    let (_servers, agent) = synced_agent(
        "py-at",
        &["127.0.0.160", "127.0.0.161", "127.0.0.162", "127.0.0.163"],
    );
    let dir = copies_dir(&agent, "copies");
    let (mut fast, mut exact, mut n) = (0, 0, 0);
    let mut count = |path: &str| {
        n += 1;
        match path {
            "fast" => fast += 1,
            "exact" => exact += 1,
            other => panic!("python took path {other:?}"),
        }
    };

    // Two models a second apart, each frozen in a copy (the agent rewrites
    // its segment every 0.5 s; both readers must see the same model).
    for round in 0..2 {
        if round > 0 {
            std::thread::sleep(Duration::from_millis(1200));
        }
        let snap = snapshot(&agent.dir.join("clock"));
        let seg = write_copy(&dir, &format!("snap{round}"), &snap, 0o644);
        let anchor = get_i64(&snap, ANCHOR);
        let now = raw_now();
        let mut xs: Vec<i64> = vec![
            // the anchor region
            anchor,
            anchor + 1,
            anchor + 2,
            anchor + 999,
            anchor + 1_000_000,
            anchor + S / 4,
            anchor - 1,
            anchor - 2,
            // a second before the anchor (the exact path), and further
            anchor - S,
            anchor - S - 1,
            anchor - 60 * S,
            get_i64(&snap, EVIDENCE_FROM),
            get_i64(&snap, EVIDENCE_TO) - 1,
            (get_i64(&snap, EVIDENCE_FROM) + get_i64(&snap, EVIDENCE_TO)) / 2,
            // now, and the status timetable's edges
            now,
            now + 7,
            get_i64(&snap, SYNC_UNTIL),
            get_i64(&snap, SYNC_UNTIL) + 1,
            get_i64(&snap, VOID_AFTER),
            get_i64(&snap, VOID_AFTER) + 1,
            // an hour, ten days, a year ahead
            now + 3600 * S,
            now + 3600 * S + 123_456_789,
            now + 10 * 86_400 * S,
            now + 10 * 86_400 * S - 1,
            now + 365 * 86_400 * S,
        ];
        // The fast form's two branches meet at cross_d.
        let cross = get_i64(&snap, CROSS_D);
        if cross > 0 && cross < i64::MAX / 4 {
            xs.extend([anchor + cross - 1, anchor + cross, anchor + cross + 1]);
        }
        for &x in &xs {
            let (path, _) = compare_at(&seg, x, &format!("snapshot {round}"));
            count(&path);
        }
        // The same instants with the fast form withdrawn: the exact path
        // everywhere.
        let mut slow = snap.clone();
        set_u32(&mut slow, FLAGS, get_u32(&snap, FLAGS) & !F_FAST);
        let seg = write_copy(&dir, &format!("exact{round}"), &slow, 0o644);
        for &x in &xs {
            let (path, _) = compare_at(&seg, x, &format!("snapshot {round}, no fast form"));
            assert_eq!(path, "exact");
            count(&path);
        }
    }
    eprintln!("live model: {n} instants matched bit for bit ({fast} fast, {exact} exact)");
    assert!(n >= 50 && fast >= 15 && exact >= 15, "{n} {fast} {exact}");

    // Leap marks (flag bit 2, pending with bit 6 or resolved), near the
    // instant read, on both sides of the interval and inside it.
    let snap = snapshot(&agent.dir.join("clock"));
    let anchor = get_i64(&snap, ANCHOR);
    let lo0 = get_i64(&snap, BOUND_LO);
    let (mut leaps, mut reshaped) = (0, 0);
    for pending in [false, true] {
        for delta in [S, -S] {
            for (off, dx) in [(0, 0), (37 * S, S / 2), (0, 3 * S), (0, -S)] {
                for dl in [-2 * S, -1_000_000, -1_000, 0, 1_000, 1_000_000, 2 * S] {
                    let mut b = snap.clone();
                    let mut flags = get_u32(&snap, FLAGS) | F_LEAP;
                    if pending {
                        flags |= F_LEAP_PENDING;
                    }
                    set_u32(&mut b, FLAGS, flags);
                    set_i64(&mut b, UTC_OFFSET, off);
                    set_i64(&mut b, LEAP_AT, lo0 + dx + dl);
                    set_i64(&mut b, LEAP_DELTA, delta);
                    let seg = write_copy(&dir, "leap", &b, 0o644);
                    let what =
                        format!("leap pending={pending} delta={delta} off={off} at=lo+{dx}+{dl}");
                    let (path, p) = compare_at(&seg, anchor + dx, &what);
                    assert_eq!(path, "exact", "{what}: a leap mark forces the exact path");
                    leaps += 1;
                    let w = |a: &str, b: &str| p[b].as_i64().unwrap() - p[a].as_i64().unwrap();
                    if w("earliest_ns", "latest_ns")
                        != w("earliest_leapfree_ns", "latest_leapfree_ns")
                    {
                        reshaped += 1;
                    }
                }
            }
        }
    }
    eprintln!("leap marks: {leaps} instants matched bit for bit ({reshaped} with the UTC interval reshaped by the leap)");
    assert!(reshaped >= 10, "the leap marks changed no UTC interval");
}

#[test]
fn python_now_contains_true_time() {
    if !need("python3") {
        return;
    }
    let (_servers, agent) = synced_agent(
        "py-now",
        &["127.0.0.164", "127.0.0.165", "127.0.0.166", "127.0.0.167"],
    );
    let seg = agent.dir.join("clock");
    let shm = seg.to_str().unwrap();
    for i in 0..6 {
        let mut args = vec!["now", "--json", "--shm", shm];
        if i % 2 == 1 {
            args.push("--fast");
        }
        let before = realtime_ns();
        let (code, v) = py(&args);
        let after = realtime_ns();
        assert_eq!(code, 0, "{args:?}: {v}");
        assert_eq!(v["status"], "synchronized", "{v}");
        let e = v["earliest_ns"].as_i64().expect("earliest") as i128;
        let l = v["latest_ns"].as_i64().expect("latest") as i128;
        assert!(
            e <= after && l >= before,
            "true time outside [{e}, {l}]: host clock read {before}..{after}"
        );
        assert!(e <= l && v["epsilon_ns"].as_i64().unwrap() >= 0, "{v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The module's after/before.
    let probe = format!(
        "import sys; sys.dont_write_bytecode = True; sys.path.insert(0, {dir:?}); import skewd, time\n\
         c = skewd.Clock({shm:?})\n\
         t = time.clock_gettime_ns(time.CLOCK_REALTIME)\n\
         assert c.after(t - 10**9) and c.before(t + 10**9), c.now()\n\
         assert not c.after(t + 10**9) and not c.before(t - 10**9), c.now()\n\
         print('ok')",
        dir = script().parent().unwrap().to_str().unwrap(),
    );
    let out = Command::new(python3())
        .args(["-c", &probe])
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "after/before: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn python_and_rust_refuse_the_same_segments() {
    if !need("python3") {
        return;
    }
    let (_servers, agent) = synced_agent(
        "py-refuse",
        &["127.0.0.168", "127.0.0.169", "127.0.0.164", "127.0.0.165"],
    );
    let dir = copies_dir(&agent, "crafted");
    let snap = snapshot(&agent.dir.join("clock"));
    let now = raw_now();
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = snap.clone();
        f(&mut b);
        b
    };

    // A faithful copy is read by both: the directory chain is trusted.
    let ok = write_copy(&dir, "ok", &snap, 0o644);
    let (pc, p) = py(&["now", "--json", "--shm", ok.to_str().unwrap()]);
    let (rc, r) = rust_now(&["--shm", ok.to_str().unwrap()]);
    assert_eq!((pc, rc), (0, 0), "a faithful copy: python {p}, rust {r}");

    // (name, bytes, mode, the failure Python must name)
    let cases: Vec<(&str, Vec<u8>, u32, &str)> = vec![
        (
            "magic",
            with(&|b| b[..8].copy_from_slice(b"SKEWDCLX")),
            0o644,
            "bad magic",
        ),
        (
            "version2",
            with(&|b| set_u32(b, VERSION, 2)),
            0o644,
            "wrong version",
        ),
        (
            "version4",
            with(&|b| set_u32(b, VERSION, 4)),
            0o644,
            "wrong version",
        ),
        (
            "odd",
            with(&|b| {
                let g = get_u64(b, GENERATION) | 1;
                b[GENERATION..GENERATION + 8].copy_from_slice(&g.to_ne_bytes());
            }),
            0o644,
            "mid-write",
        ),
        (
            "suspend",
            with(&|b| set_i64(b, OFFS_BOOT, get_i64(&snap, OFFS_BOOT) + S)),
            0o644,
            "interrupted",
        ),
        (
            "timeline",
            with(&|b| set_i64(b, WRITTEN_AT, now + 3600 * S)),
            0o644,
            "foreign timeline",
        ),
        (
            "nomodel",
            with(&|b| set_u32(b, FLAGS, get_u32(&snap, FLAGS) & !F_MODEL)),
            0o644,
            "no model",
        ),
        (
            "timens",
            with(&|b| {
                let ino = get_u64(&snap, TIMENS_INO) ^ 0x5a5a;
                b[TIMENS_INO..TIMENS_INO + 8].copy_from_slice(&ino.to_ne_bytes());
            }),
            0o644,
            "another time namespace",
        ),
        ("truncated", snap[..100].to_vec(), 0o644, "truncated"),
        ("groupwritable", snap.clone(), 0o664, "not trusted"),
        ("otherwritable", snap.clone(), 0o646, "not trusted"),
    ];
    for (name, bytes, mode, kind) in &cases {
        let path = write_copy(&dir, name, bytes, *mode);
        let shm = path.to_str().unwrap();
        let (pc, p) = py(&["now", "--json", "--shm", shm]);
        assert_eq!(pc, 1, "{name}: python did not refuse: {p}");
        let err = p["error"].as_str().unwrap_or("");
        assert!(
            err.starts_with(kind),
            "{name}: python said {err:?}, want {kind:?}"
        );
        assert!(
            p["earliest_ns"].is_null() && p["latest_ns"].is_null(),
            "{name}: {p}"
        );
        let (rc, r) = rust_now(&["--shm", shm]);
        assert_ne!(rc, 0, "{name}: skewd now did not refuse: {r}");
        assert!(r["earliest_ns"].is_null(), "{name}: {r}");
        // without --json: the error on stderr, exit 1, no traceback
        let out = Command::new(python3())
            .arg(script())
            .args(["now", "--shm", shm])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(kind) && !stderr.contains("Traceback"),
            "{name}: {stderr}"
        );
        if *name == "nomodel" {
            assert_eq!(p["status"], r["status"], "{name}: the status reported");
        }
    }

    // A void model: past its void-after, both read `unknown`, and Python's
    // after/before refuse it.
    let void = write_copy(
        &dir,
        "void",
        &with(&|b| set_i64(b, VOID_AFTER, now - S)),
        0o644,
    );
    let shm = void.to_str().unwrap();
    let (pc, p) = py(&["now", "--json", "--shm", shm]);
    let (_, r) = rust_now(&["--shm", shm]);
    assert_eq!(p["status"], "unknown", "void: python {p} (exit {pc})");
    assert_eq!(r["status"], "unknown", "void: rust {r}");
    let probe = format!(
        "import sys; sys.dont_write_bytecode = True; sys.path.insert(0, {dir:?}); import skewd\n\
         c = skewd.Clock({shm:?})\n\
         try:\n    c.after(0)\nexcept skewd.NoModel as e:\n    print(e.status)",
        dir = script().parent().unwrap().to_str().unwrap(),
    );
    let out = Command::new(python3())
        .args(["-c", &probe])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "unknown",
        "after() on a void model: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A disrupted status is read by both (the copy never goes void: this
    // may run seconds after the snapshot on a loaded machine).
    let disrupted = with(&|b| {
        set_u32(b, STATUS, 3);
        set_i64(b, VOID_AFTER, i64::MAX);
    });
    let disrupted = write_copy(&dir, "disrupted", &disrupted, 0o644);
    let shm = disrupted.to_str().unwrap();
    let (_, p) = py(&["now", "--json", "--shm", shm]);
    let (_, r) = rust_now(&["--shm", shm]);
    assert_eq!(
        (&p["status"], &r["status"]),
        (&"disrupted".into(), &"disrupted".into())
    );
}

/// A segment from scratch: header, a model at `anchor`, no environment.
fn crafted(anchor: i64) -> Vec<u8> {
    let mut b = vec![0u8; 320];
    b[..8].copy_from_slice(b"SKEWDCLK");
    set_u32(&mut b, VERSION, 3);
    set_u32(&mut b, 12, 320);
    b[GENERATION..GENERATION + 8].copy_from_slice(&2u64.to_ne_bytes());
    set_u32(&mut b, FLAGS, F_MODEL);
    set_u32(&mut b, STATUS, 1);
    set_i64(&mut b, ANCHOR, anchor);
    set_i64(&mut b, BOUND_LO, 1_800_000_000 * S);
    set_i64(&mut b, BOUND_LO + 8, 1_800_000_000 * S + 40_000);
    set_i64(&mut b, SYNC_UNTIL, anchor + 3 * S);
    set_i64(&mut b, VOID_AFTER, i64::MAX);
    set_i64(&mut b, WRITTEN_AT, anchor);
    b
}

// Model fields not named above.
const RATE: usize = 64;
const PHI: usize = 72;
const WANDER: usize = 96;
const PHI_HW: usize = 104;
const FAST: usize = 208; // rate_lo_q, a1_q, a2_q, hw_q, cross_d

/// Both readers at `x` on `bytes`: the same six fields, or both refuse.
fn same_or_both_refuse(dir: &Path, bytes: &[u8], x: i64, what: &str) -> bool {
    let seg = write_copy(dir, "crafted", bytes, 0o644);
    let shm = seg.to_str().unwrap();
    let xs = x.to_string();
    let (pc, p) = py(&["at", &xs, "--json", "--shm", shm]);
    let (rc, r) = rust_now(&["--shm", shm, "--at-raw-ns", &xs]);
    if pc != 0 || rc != 0 {
        assert!(
            pc != 0 && rc != 0,
            "{what}: only one refused at {x}\n python: {p}\n rust:   {r}"
        );
        assert!(p["earliest_ns"].is_null() && r["earliest_ns"].is_null());
        return false;
    }
    for f in FIELDS {
        assert_eq!(
            p[f], r[f],
            "{what}: {f} differs at RAW {x}\n python: {p}\n rust:   {r}"
        );
    }
    true
}

/// A xorshift generator: reproducible pseudo-random fields.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A value up to one of `scale`'s magnitudes, negative half the time
    /// when `signed`.
    fn pick(&mut self, scale: &[i64], signed: bool) -> i64 {
        let k = scale[(self.next() % scale.len() as u64) as usize] as u64;
        let v = (self.next() % (k + 1)) as i64;
        if signed && self.next().is_multiple_of(2) {
            -v
        } else {
            v
        }
    }
}

/// Models no agent writes but a segment can hold: the arithmetic's edges
/// (a wander product leaving the 128-bit range, a width beyond i64) and
/// pseudo-random fields on every path, leap marks included.
#[test]
fn python_matches_rust_on_crafted_models() {
    if !need("python3") {
        return;
    }
    let dir = temp_dir("py-crafted");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let anchor = 1_000_000 * S;

    // The wander term: D · twice just inside, then just outside, the
    // signed 128-bit range (twice = d² with the evidence at the anchor).
    let d: i64 = 1 << 40;
    let mut spreads = vec![];
    for wander in [(1i64 << 47) - 1, 1 << 47] {
        let mut b = crafted(anchor);
        set_u32(&mut b, FLAGS, F_MODEL | F_EVIDENCE);
        set_i64(&mut b, PHI_HW, 1 << 62);
        set_i64(&mut b, WANDER, wander);
        set_i64(&mut b, EVIDENCE_FROM, anchor);
        set_i64(&mut b, EVIDENCE_TO, anchor);
        assert!(same_or_both_refuse(&dir, &b, anchor + d, "wander edge"));
        let (_, p) = py(&[
            "at",
            &(anchor + d).to_string(),
            "--json",
            "--shm",
            dir.join("crafted").to_str().unwrap(),
        ]);
        spreads.push(p["epsilon_ns"].as_i64().unwrap());
    }
    assert!(spreads[1] > 10 * spreads[0], "{spreads:?}");

    // A width beyond i64 (each bound fits): epsilon.
    let mut b = crafted(anchor);
    set_i64(&mut b, PHI_HW, 1 << 62);
    assert!(same_or_both_refuse(&dir, &b, anchor + d, "wide"));

    // Pseudo-random models (xorshift), a fixed seed.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut n, mut read) = (0, 0);
    for i in 0..60 {
        let scale: &[i64] = match i % 4 {
            0 => &[1_000, 1_000_000, S],
            1 => &[1_000_000_000_000, 1_000_000_000_000_000, S * S],
            2 => &[1 << 62, i64::MAX],
            _ => &[S, 1_000_000_000_000_000, 1 << 62],
        };
        let mut b = crafted(anchor);
        let flags = F_MODEL
            | [0, F_EVIDENCE][(rng.next() % 2) as usize]
            | [0, F_LEAP][(rng.next() % 2) as usize]
            | [0, F_FAST][(rng.next() % 2) as usize]
            | [0, F_LEAP_PENDING][(rng.next() % 2) as usize];
        set_u32(&mut b, FLAGS, flags);
        set_i64(&mut b, RATE, rng.pick(scale, true));
        set_i64(&mut b, PHI, rng.pick(scale, false));
        set_i64(&mut b, PHI_HW, rng.pick(scale, false));
        set_i64(&mut b, WANDER, rng.pick(scale, false));
        let from = anchor.saturating_add(rng.pick(scale, true));
        set_i64(&mut b, EVIDENCE_FROM, from);
        set_i64(
            &mut b,
            EVIDENCE_TO,
            from.saturating_add(rng.pick(scale, false)),
        );
        for k in 0..5 {
            let v = rng.pick(scale, k == 0 || k == 4);
            set_i64(&mut b, FAST + 8 * k, v);
        }
        let lo = get_i64(&b, BOUND_LO);
        set_i64(&mut b, LEAP_AT, lo + rng.pick(scale, true) % (10 * S));
        set_i64(
            &mut b,
            LEAP_DELTA,
            if rng.next().is_multiple_of(2) { S } else { -S },
        );
        set_i64(
            &mut b,
            UTC_OFFSET,
            if rng.next().is_multiple_of(2) {
                0
            } else {
                37 * S
            },
        );
        let x = anchor.saturating_add(rng.pick(scale, true));
        n += 1;
        if same_or_both_refuse(&dir, &b, x, &format!("crafted model {i} (flags {flags})")) {
            read += 1;
        }
    }
    eprintln!("crafted models: {n} compared, {read} read by both, the rest refused by both");
    assert!(
        read >= 20,
        "only {read} of {n} crafted models gave an interval"
    );
}
