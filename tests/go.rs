//! The Go binding (`clients/go`, cgo over `include/skewd.h`) against a live
//! agent: `go vet`, then `go test` with the agent's segment in `SKEWD_SHM`,
//! linked three ways: this tree's shared library through an rpath (the
//! default), its static library (`-tags skewd_static`), and the shipped
//! pkg-config file pointed at this tree (`-tags skewd_pkgconfig`). The Go
//! tests check every interval against the host's CLOCK_REALTIME read around
//! the call (also 8 goroutines × 20 000 reads sharing one Clock, strict and
//! fast), waits, commit-wait, refusals and a closed Clock.
//!
//! The libraries come from `cargo build --release --workspace` (tests/run.sh
//! builds them first). Nothing is downloaded (GOPROXY=off; stdlib and cgo
//! only) and nothing is written outside the agent's temporary directory.
//! With SKEWD_GO_BENCH=1 it also prints `BenchmarkNow` for each link.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// `go ARGS` in clients/go with the Go environment confined to `dir`.
fn go(dir: &Path, seg: &Path, args: &[&str], extra: &[(&str, String)]) -> (bool, String) {
    let mut cmd = Command::new("go");
    cmd.args(args)
        .current_dir(Path::new(ROOT).join("clients/go"))
        .env("SKEWD_SHM", seg)
        .env("GOCACHE", dir.join("cache"))
        .env("GOPATH", dir.join("path"))
        .env("GOTMPDIR", dir.join("tmp"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("GOENV", "off")
        .env("GOFLAGS", "-count=1")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GO111MODULE", "on")
        .env("CGO_ENABLED", "1")
        // cargo test points LD_LIBRARY_PATH at target/debug/deps, where a
        // debug libskewd_c.so may sit: it would win over the rpath.
        .env_remove("LD_LIBRARY_PATH");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run go");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn go_binding_reads_the_interval_and_it_contains_the_host_clock() {
    if !need("go") {
        return;
    }
    let lib = Path::new(ROOT).join("target/release");
    let (so, a) = (lib.join("libskewd_c.so"), lib.join("libskewd_c.a"));
    if !(so.exists() && a.exists()) {
        assert!(
            !require_peers(),
            "{} missing: run `cargo build --release --workspace` first",
            so.display()
        );
        eprintln!("skipped: no libskewd_c in target/release");
        return;
    }
    let servers = honest_fakes(&["127.0.0.170", "127.0.0.171", "127.0.0.172", "127.0.0.173"]);
    let (agent, http) = start_agent("go", &addrs_of(&servers), &["--poll", "1s"]);
    assert!(
        wait_until(Duration::from_secs(20), || get_json(http, "/v1/status")
            ["status"]
            == "synchronized"),
        "agent never synchronized"
    );
    let seg = agent.dir.join("clock");
    let godir = agent.dir.join("go");
    for d in ["cache", "path", "tmp", "config", "pkgconfig"] {
        std::fs::create_dir_all(godir.join(d)).unwrap();
    }

    let t = Instant::now();
    let (ok, text) = go(&godir, &seg, &["vet", "./..."], &[]);
    assert!(ok, "go vet:\n{text}");
    let (ok, text) = go(
        &godir,
        &seg,
        &["vet", "-tags", "skewd_static", "./..."],
        &[],
    );
    assert!(ok, "go vet -tags skewd_static:\n{text}");
    eprintln!("go vet: {:.1} s", t.elapsed().as_secs_f64());

    // The shipped pkg-config file, its directories pointed at this tree;
    // the rpath comes from the environment, as an installed library's
    // would not need one.
    let pc = std::fs::read_to_string(Path::new(ROOT).join("clients/c/skewd.pc")).unwrap();
    let pc: String = pc
        .lines()
        .map(|l| {
            if l.starts_with("libdir=") {
                format!("libdir={}\n", lib.display())
            } else if l.starts_with("includedir=") {
                format!("includedir={}/include\n", ROOT)
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(godir.join("pkgconfig/skewd.pc"), pc).unwrap();
    let pkgconfig = vec![
        (
            "PKG_CONFIG_PATH",
            godir.join("pkgconfig").display().to_string(),
        ),
        ("CGO_LDFLAGS", format!("-Wl,-rpath,{}", lib.display())),
    ];

    let mut variants: Vec<(&str, Vec<(&str, String)>)> =
        vec![("shared (rpath)", vec![]), ("skewd_static", vec![])];
    if need("pkg-config") {
        variants.push(("skewd_pkgconfig", pkgconfig));
    }
    for (tag, env) in &variants {
        let mut args = vec!["test", "-v", "-timeout", "300s"];
        if tag.starts_with("skewd_") {
            args.extend(["-tags", tag]);
        }
        args.push("./...");
        let t = Instant::now();
        let (ok, text) = go(&godir, &seg, &args, env);
        let took = t.elapsed();
        assert!(ok, "go {} failed:\n{text}", args.join(" "));
        assert!(
            !text.contains("--- SKIP") && !text.contains("--- FAIL"),
            "{tag}: a Go test skipped or failed:\n{text}"
        );
        for name in [
            "TestNowContainsTheHostClock",
            "TestAfterBefore",
            "TestWaitUntil",
            "TestCommitWait",
            "TestWaitsThatCannotFinish",
            "TestConcurrentReads",
            "TestNowAllocatesNothing",
            "TestClosedClock",
            "TestOpenRefusals",
            "TestLinkedLibrary",
            "TestOpenTheDefaultPath",
        ] {
            assert!(
                text.contains(&format!("--- PASS: {name} ")),
                "{tag}: {name} did not pass:\n{text}"
            );
        }
        let want = if *tag == "skewd_static" {
            "libskewd_c: linked statically".to_owned()
        } else {
            format!("libskewd_c: {}", so.canonicalize().unwrap().display())
        };
        assert!(text.contains(&want), "{tag}: not {want}:\n{text}");
        let reads: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(" reads, ") && l.contains("goroutines"))
            .collect();
        assert_eq!(reads.len(), 2, "{tag}: strict and fast:\n{text}");
        for l in &reads {
            assert!(l.contains(" 160000 reads, 0 misses, 0 errors"), "{l}");
        }
        if std::env::var_os("SKEWD_GO_BENCH").is_some() {
            let mut args = vec![
                "test",
                "-run",
                "^$",
                "-bench",
                ".",
                "-benchtime",
                "1000000x",
            ];
            if tag.starts_with("skewd_") {
                args.extend(["-tags", tag]);
            }
            args.push("./...");
            let (ok, text) = go(&godir, &seg, &args, env);
            assert!(ok, "go {}:\n{text}", args.join(" "));
            eprintln!("go bench, {tag}:\n{text}");
        }
        eprintln!(
            "go test, {tag}: {:.1} s (build and run); {}",
            took.as_secs_f64(),
            reads
                .iter()
                .map(|l| l.split_once(": ").map_or(*l, |(_, r)| r))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
}
