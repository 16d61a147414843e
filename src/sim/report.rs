//! The per-scenario report printed by
//! `cargo run --release --features sim --example simulate -- --json`, and running seeds.

use super::spec::{RunStats, Scenario};
use super::world::run;
use crate::core::model::Status;
use serde::Serialize;

/// One line of the simulation report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: &'static str,
    /// Whether it stays inside the assumptions.
    pub within_assumptions: bool,
    /// Seeds run.
    pub seeds: u64,
    /// Intervals checked against true time.
    pub intervals: u64,
    /// Intervals that missed true time.
    pub violations: u64,
    /// Of those, how many while the status read synchronized.
    pub violations_synchronized: u64,
    /// Of those, how many while the status read synchronized or
    /// free-running (the statuses readers act on).
    pub violations_usable: u64,
    /// Of those, how many after the fault was first detected.
    pub violations_synchronized_after_detection: u64,
    /// Median half-width at synchronized checks.
    pub median_epsilon_ns: i64,
    /// 99th percentile half-width at synchronized checks.
    pub p99_epsilon_ns: i64,
    /// Median half-width of the unaged fault-tolerant hull of each source's
    /// freshest sample, at the same checks.
    pub floor_ns: i64,
    /// Checks per status: unknown, synchronized, free_running, disrupted.
    pub checks_by_status: [u64; 4],
    /// Checks where the interval narrowed without new evidence (must be 0).
    pub shrunk_without_evidence: u64,
    /// Bound violations the engine's self-audit counted.
    pub engine_violations: u64,
    /// REALTIME steps injected / detected.
    pub steps_injected: u64,
    /// REALTIME steps the engine detected.
    pub steps_detected: u64,
    /// Replies whose kernel stamp the core refused (a set in between).
    pub kernel_stamp_fallbacks: u64,
    /// Interleaved replies.
    pub interleaved_replies: u64,
    /// Reads the strict reader refused (the host slept since the write).
    pub refused_suspended: u64,
    /// Of those, how many a fast reader would have got wrong.
    pub fast_only_violations: u64,
    /// Segment reads that failed other than for want of a model.
    pub read_errors: u64,
    /// Checks of the ε budget's sum against the half-width read.
    pub budget_checks: u64,
    /// Of those, how many did not add up (or had a negative part).
    pub budget_mismatches: u64,
    /// Outside the assumptions: whether every seed detected the fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detected: Option<bool>,
    /// Outside the assumptions: the slowest detection (ns after the fault).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worst_detection_delay_ns: Option<i64>,
    /// Status transitions of the first seed: (seconds, status).
    pub transitions_seed0: Vec<(f64, &'static str)>,
}

fn pct(v: &mut [i64], p: f64) -> i64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i]
}

/// Combine the runs of one scenario.
pub fn report(sc: &Scenario, runs: &[RunStats]) -> Report {
    let mut eps: Vec<i64> = runs
        .iter()
        .flat_map(|r| r.eps_sync.iter().copied())
        .collect();
    let mut floor: Vec<i64> = runs.iter().flat_map(|r| r.floor.iter().copied()).collect();
    let mut by_status = [0u64; 4];
    for r in runs {
        for (a, b) in by_status.iter_mut().zip(r.by_status) {
            *a += b;
        }
    }
    let outside = !sc.within_assumptions;
    Report {
        scenario: sc.name,
        within_assumptions: sc.within_assumptions,
        seeds: runs.len() as u64,
        intervals: runs.iter().map(|r| r.intervals).sum(),
        violations: runs.iter().map(|r| r.violations).sum(),
        violations_synchronized: runs.iter().map(|r| r.violations_synchronized).sum(),
        violations_usable: runs.iter().map(|r| r.violations_usable).sum(),
        violations_synchronized_after_detection: runs
            .iter()
            .map(|r| r.violations_synchronized_after_detection)
            .sum(),
        median_epsilon_ns: pct(&mut eps, 0.5),
        p99_epsilon_ns: pct(&mut eps, 0.99),
        floor_ns: pct(&mut floor, 0.5),
        checks_by_status: by_status,
        shrunk_without_evidence: runs.iter().map(|r| r.shrunk_without_evidence).sum(),
        engine_violations: runs.iter().map(|r| r.engine_violations).sum(),
        steps_injected: runs.iter().map(|r| r.steps_injected).sum(),
        steps_detected: runs.iter().map(|r| r.steps_detected).sum(),
        kernel_stamp_fallbacks: runs.iter().map(|r| r.kernel_stamp_fallbacks).sum(),
        interleaved_replies: runs.iter().map(|r| r.interleaved_replies).sum(),
        refused_suspended: runs.iter().map(|r| r.refused_suspended).sum(),
        fast_only_violations: runs.iter().map(|r| r.fast_only_violations).sum(),
        read_errors: runs.iter().map(|r| r.read_errors).sum(),
        budget_checks: runs.iter().map(|r| r.budget_checks).sum(),
        budget_mismatches: runs.iter().map(|r| r.budget_mismatches).sum(),
        detected: outside.then(|| runs.iter().all(|r| r.detection_delay_ns.is_some())),
        worst_detection_delay_ns: if outside {
            runs.iter().filter_map(|r| r.detection_delay_ns).max()
        } else {
            None
        },
        transitions_seed0: runs
            .first()
            .map(|r| {
                r.transitions
                    .iter()
                    .map(|(x, s)| (*x as f64 / 1e9, Status::as_str(*s)))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Run `seeds` seeds of `sc` on up to `threads` threads.
pub fn run_seeds(sc: &Scenario, seeds: u64, threads: usize) -> Vec<RunStats> {
    let threads = threads.max(1) as u64;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (0..seeds)
                        .filter(|s| s % threads == t)
                        .map(|s| run(sc, 0x5eed_0000 + s))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}
