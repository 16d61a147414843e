//! Named scenarios and the per-scenario report printed by
//! `cargo run --release --example simulate -- --json`.

use super::world::{
    run, Behaviour, LeapSpec, LocalEvent, NetSpec, OscSpec, PathSpec, RunStats, Scenario,
    ServerSpec,
};
use crate::core::engine::EngineConfig;
use crate::core::model::Status;
use crate::core::time::Nanos;
use serde::Serialize;

const S: i64 = 1_000_000_000;
const H: i64 = 3600 * S;
/// The fault of every scenario that has one happens at this steady instant.
pub const FAULT_AT: i64 = H;

const ALL_DOWN: &[(i64, i64)] = &[(H, i64::MAX)];

fn osc() -> OscSpec {
    OscSpec {
        initial_ppm: 100.0,
        wander_fraction: 0.3,
        slope_change_s: 60.0,
    }
}

fn base(name: &'static str, servers: Vec<ServerSpec>, hours: f64) -> Scenario {
    Scenario {
        name,
        within_assumptions: true,
        servers,
        net: NetSpec::lan(),
        osc: osc(),
        events: vec![],
        duration_ns: (hours * H as f64) as i64,
        engine: EngineConfig::with_poll(Nanos::from_secs(16)),
        check_every_ns: S,
        fault_at_ns: None,
        leap: None,
        leapfree_offset_ns: 0,
    }
}

/// A 1 s poll over a loopback-like path (the integration tests' regime).
fn fast_loopback(s: &mut Scenario) {
    s.engine = EngineConfig::with_poll(Nanos::from_secs(1));
    s.net.out = PathSpec {
        base_ns: 5_000,
        jitter_mean_ns: 5_000,
    };
    s.net.back = s.net.out;
}

fn honest(n: usize) -> Vec<ServerSpec> {
    vec![ServerSpec::honest(10_000); n]
}

/// Every named scenario; `hours` is the length of the ones without a fixed
/// timetable (those with a fault at 1 h run at least 2 h).
pub fn all(hours: f64) -> Vec<Scenario> {
    let long = hours.max(2.0);
    let mut v = Vec::new();

    v.push(base("clean", honest(4), hours));

    let mut s = base("lossy", honest(4), hours);
    s.net.loss = 0.3;
    s.net.duplicate = 0.05;
    s.net.reorder = 0.05;
    s.net.replay = 0.05;
    v.push(s);

    let mut s = base("asymmetric", honest(4), hours);
    s.net.out = PathSpec {
        base_ns: 2_000_000,
        jitter_mean_ns: 100_000,
    };
    s.net.back = PathSpec {
        base_ns: 20_000,
        jitter_mean_ns: 10_000,
    };
    v.push(s);

    let mut servers = honest(3);
    servers.push(ServerSpec::liar(Behaviour::Constant(5_000_000)));
    servers.push(ServerSpec::liar(Behaviour::Overlapping));
    v.push(base("falsetickers", servers, hours));

    let mut servers = honest(3);
    servers.push(ServerSpec::liar(Behaviour::Drifting(50_000)));
    servers.push(ServerSpec::liar(Behaviour::Random(10_000_000)));
    v.push(base("liars", servers, hours));

    let mut servers = honest(3);
    servers.push(ServerSpec::liar(Behaviour::Constant(3_000_000)));
    servers.push(ServerSpec::liar(Behaviour::Constant(3_000_000)));
    v.push(base("colluding_minority", servers, hours));

    let ntpd = ServerSpec {
        behaviour: Behaviour::Honest { ntpd_style: true },
        root_delay_ns: 2_000_000,
        root_dispersion_ns: 1_000_000,
        precision: -20,
        stratum: 2,
        down: &[],
        ages_dispersion: false,
        declared_aged: false,
    };
    v.push(base("ntpd_style", vec![ntpd; 4], hours));

    // Every server at the edge of its (unaged) root distance, in the same
    // direction: only Phi_s ageing keeps the bound.
    let worst = ServerSpec {
        behaviour: Behaviour::NtpdWorstCase,
        ..ntpd
    };
    v.push(base("ntpd_worst_case", vec![worst; 4], hours));

    // The same servers, chrony-style: they age their root dispersion before
    // sending, and the config declares it (dispersion_aged_by_server).
    let chrony = ServerSpec {
        ages_dispersion: true,
        declared_aged: true,
        ..ntpd
    };
    v.push(base("chrony_declared", vec![chrony; 4], hours));

    // A 1 s poll over a loopback-like path (the integration tests' regime).
    let mut s = base("fast_poll", honest(4), hours);
    fast_loopback(&mut s);
    v.push(s);

    let mut s = base("drift_wander", honest(4), hours);
    s.osc.wander_fraction = 0.95;
    s.osc.slope_change_s = 20.0;
    v.push(s);

    let mut down = honest(4);
    for d in &mut down {
        d.down = ALL_DOWN;
    }
    let mut s = base("outage", down, 3.0);
    s.engine.timetable.holdover = Nanos::from_secs(3600);
    v.push(s);

    // 2 of 4 answering, one of those lying: never synchronized, still sound.
    let mut servers = honest(3);
    servers[0].down = ALL_DOWN;
    servers[1].down = ALL_DOWN;
    servers.push(ServerSpec::liar(Behaviour::Constant(5_000_000)));
    v.push(base("partial_outage", servers, long));

    let mut s = base("realtime_step", honest(4), long);
    s.events = vec![
        (H / 2, LocalEvent::RealtimeStep(500_000_000)),
        (H, LocalEvent::RealtimeStep(-2_000_000_000)),
        (H + H / 2, LocalEvent::RealtimeStep(20_000_000)),
    ];
    v.push(s);

    let mut s = base("suspend", honest(4), long);
    s.events = vec![(H, LocalEvent::Suspend(600 * S))];
    v.push(s);

    let mut s = base("clocksource_switch", honest(4), long);
    s.events = vec![(H, LocalEvent::ClocksourceSwitch(40.0))];
    v.push(s);

    // A leap second inserted at 1 h, announced 30 min before; one server
    // applies it 30 s late, another announces a deletion nobody else does.
    let mut s = base("leap_second", honest(5), long);
    s.leap = Some(LeapSpec {
        at_ns: H,
        announce_ns: H / 2,
        late: Some((3, 30 * S)),
        bogus_announcer: Some(4),
    });
    // The same on a host whose leap-second list already counts one leap
    // after 2017: the leap-free timescale starts at UTC + 1 s.
    let mut t = s.clone();
    t.name = "leap_second_listed";
    t.leapfree_offset_ns = crate::core::time::NS_PER_S;
    v.push(s);
    v.push(t);

    // Outside the assumptions: must be detected.
    let mut s = base("frequency_step", honest(4), long);
    s.within_assumptions = false;
    s.events = vec![(FAULT_AT, LocalEvent::FrequencyStep(30.0))];
    s.fault_at_ns = Some(FAULT_AT);
    v.push(s);

    // The oscillator leaves +-phi_hw for good (a broken or mis-emulated
    // clock: 500 ppm fast), at a 16 s and at a 1 s poll.
    // At the fast poll the servers' root dispersion is wide (as chronyd's
    // after Phi_s ageing), so the audit does not trip every round.
    for (name, poll) in [("rate_beyond_hw", 16), ("rate_beyond_hw_fast_poll", 1)] {
        let servers = if poll == 1 {
            vec![ServerSpec::honest(400_000); 4]
        } else {
            honest(4)
        };
        let mut s = base(name, servers, long);
        s.within_assumptions = false;
        s.events = vec![(FAULT_AT, LocalEvent::FrequencyStep(500.0))];
        s.fault_at_ns = Some(FAULT_AT);
        if poll == 1 {
            fast_loopback(&mut s);
        }
        v.push(s);
    }

    let mut servers = vec![
        ServerSpec::liar(Behaviour::StepsAt {
            at: FAULT_AT,
            by: 20_000_000,
        });
        3
    ];
    for s in &mut servers {
        s.root_dispersion_ns = 10_000;
    }
    servers.push(ServerSpec::honest(10_000));
    let mut s = base("majority_liars", servers, long);
    s.within_assumptions = false;
    s.fault_at_ns = Some(FAULT_AT);
    v.push(s);

    let mut s = base("vm_pause", honest(4), long);
    s.within_assumptions = false;
    s.events = vec![(FAULT_AT, LocalEvent::VmPause(30 * S))];
    s.fault_at_ns = Some(FAULT_AT);
    v.push(s);

    v
}

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
