//! Runs every named scenario over many seeds and prints one JSON object per
//! scenario per line.
//!
//! `cargo run --release --features sim --example simulate -- --json [--seeds N] [--hours H] [--only NAME]`

use skewd::sim::scenarios::{all, report, run_seeds};

fn main() {
    let mut seeds = 24u64;
    let mut hours = 12.0f64;
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => {}
            "--seeds" => seeds = args.next().and_then(|v| v.parse().ok()).unwrap_or(seeds),
            "--hours" => hours = args.next().and_then(|v| v.parse().ok()).unwrap_or(hours),
            "--only" => only = args.next(),
            other => {
                eprintln!("unknown argument {other:?}; usage: simulate [--json] [--seeds N] [--hours H] [--only NAME]");
                std::process::exit(2);
            }
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut failed = false;
    for sc in all(hours) {
        if only.as_deref().is_some_and(|o| o != sc.name) {
            continue;
        }
        let runs = run_seeds(&sc, seeds, threads);
        let r = report(&sc, &runs);
        if (r.within_assumptions && r.violations > 0) || r.detected == Some(false) {
            failed = true;
        }
        println!("{}", serde_json::to_string(&r).expect("report serializes"));
    }
    if failed {
        std::process::exit(1);
    }
}
