//! Named scenarios, run by `cargo run --release --features sim --example simulate -- --json`
//! and (fewer seeds) by `tests/simulation.rs`.

pub use super::report::{report, run_seeds, Report};
use super::spec::{
    Behaviour, DirectSpec, LeapSpec, LocalEvent, NetSpec, OscSpec, PathSpec, Scenario, ServerSpec,
    StampSpec, Strategy,
};
use crate::core::engine::EngineConfig;
use crate::core::leap::LeapTable;
use crate::core::time::Nanos;

const S: i64 = 1_000_000_000;
const H: i64 = 3600 * S;
/// The fault of every scenario that has one happens at this steady instant.
pub const FAULT_AT: i64 = H;

const ALL_DOWN: &[(i64, i64)] = &[(H, i64::MAX)];
/// Ten minutes either side of the leap at `H`.
/// The named servers' outage in `named_outage_beside_pool`.
pub const NAMED_OUTAGE: &[(i64, i64)] = &[(H, 2 * H)];
const DOWN_AROUND_LEAP: &[(i64, i64)] = &[(H - 600 * S, H + 600 * S)];

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
        direct: vec![],
        net: NetSpec::lan(),
        osc: osc(),
        events: vec![],
        duration_ns: (hours * H as f64) as i64,
        engine: EngineConfig::new(Nanos::from_secs(16), 0),
        stamps: StampSpec::userspace(),
        check_every_ns: S,
        fault_at_ns: None,
        leap: None,
        leap_table: LeapTable::default(),
    }
}

/// A 1 s poll over a loopback-like path (the integration tests' regime).
fn fast_loopback(s: &mut Scenario) {
    s.engine = EngineConfig::new(Nanos::from_secs(1), 0);
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
        public_pool: false,
        interleaved: false,
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

    // Four public-pool servers: polled every 64 s at first, settling to
    // 1024 s; the samples and the status must last between their polls.
    let pool = ServerSpec {
        public_pool: true,
        ..ServerSpec::honest(10_000)
    };
    v.push(base("public_pool", vec![pool; 4], hours));

    // Three named servers and one of the public pool; the named ones go
    // silent for an hour: the pool server's slow polls must not keep the
    // named ones' old samples in the majority (the status must fall to
    // free_running within their own 8 polls and a pool poll).
    let mut servers = vec![
        ServerSpec {
            down: NAMED_OUTAGE,
            ..ServerSpec::honest(10_000)
        };
        3
    ];
    servers.push(ServerSpec {
        public_pool: true,
        ..ServerSpec::honest(10_000)
    });
    v.push(base("named_outage_beside_pool", servers, long));

    // Two named servers and one of the pool, and the network goes down:
    // no reply, no round; the status must not outlive the named servers'
    // samples (free_run_after alone, 4 pool polls, would keep it 17 min).
    let mut servers = vec![
        ServerSpec {
            down: NAMED_OUTAGE,
            ..ServerSpec::honest(10_000)
        };
        2
    ];
    servers.push(ServerSpec {
        public_pool: true,
        down: NAMED_OUTAGE,
        ..ServerSpec::honest(10_000)
    });
    v.push(base("network_down_beside_pool", servers, long));

    // chronyd-like servers on a loopback-like path, declared self-ageing and
    // answering interleaved: the follow-up requests, kernel stamps on both
    // sides, lost, duplicated and reordered replies.
    let xleave = ServerSpec {
        ages_dispersion: true,
        declared_aged: true,
        interleaved: true,
        ..ServerSpec::honest(10_000)
    };
    let mut s = base("interleaved_declared", vec![xleave; 4], hours);
    fast_loopback(&mut s);
    s.stamps = StampSpec {
        kernel: true,
        watcher: true,
        recv_lag_mean_ns: 5_000,
    };
    s.net.loss = 0.05;
    s.net.duplicate = 0.02;
    s.net.reorder = 0.02;
    v.push(s);

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

    // Short suspends every ~2 min (1 ms to 3 s): many land while a request
    // is in flight, or between a reply and the next local reading.
    let mut s = base("suspend_storm", honest(4), long);
    s.events = vec![(H / 4, LocalEvent::SuspendStorm(120 * S, 3 * S))];
    v.push(s);

    // The same storm with servers that answer interleaved (completions of
    // exchanges from before a suspend must never be used), declared and
    // not (follow-ups or not).
    for (name, declared) in [
        ("suspend_storm_interleaved", false),
        ("suspend_storm_interleaved_declared", true),
    ] {
        let xl = ServerSpec {
            interleaved: true,
            ages_dispersion: declared,
            declared_aged: declared,
            ..ServerSpec::honest(10_000)
        };
        let mut s = base(name, vec![xl; 4], long);
        s.events = vec![(H / 4, LocalEvent::SuspendStorm(120 * S, 3 * S))];
        v.push(s);
    }

    let mut s = base("clocksource_switch", honest(4), long);
    s.events = vec![(H, LocalEvent::ClocksourceSwitch(40.0))];
    v.push(s);

    // A leap second inserted at 1 h, announced 30 min before; one server
    // applies it 30 s late, another announces a deletion nobody else does.
    let leap = LeapSpec {
        at_ns: H,
        announce_ns: H / 2,
        late: Some((3, 30 * S)),
        bogus_announcer: Some(4),
        happens: true,
    };
    let mut s = base("leap_second", honest(5), long);
    s.leap = Some(leap);
    // The same on a host whose leap-second list already counts one leap
    // after 2017: the leap-free timescale starts at UTC + 1 s.
    let mut t = s.clone();
    t.name = "leap_second_listed";
    t.leap_table = LeapTable::parse("3692217600 37\n3786825600 38\n").expect("valid list");
    v.push(s);
    v.push(t);
    // Announced 25.5 h before the month end (real servers announce days or
    // weeks ahead): a review found a day-end schedule shifting UTC by -1 s
    // at the wrong midnight.
    let mut s = base("leap_announced_early", honest(5), 28.0f64.max(hours));
    s.leap = Some(LeapSpec {
        at_ns: 27 * H,
        announce_ns: 51 * H / 2,
        ..leap
    });
    v.push(s);
    // A majority announces a leap that never happens: the bits clear at the
    // instant and nobody steps. The UTC view widens, then the leap is
    // cancelled (before, UTC stayed a second off until restart).
    let mut s = base("leap_never_happens", honest(5), long);
    s.leap = Some(LeapSpec {
        happens: false,
        late: None,
        ..leap
    });
    v.push(s);

    // Leap attacks a review found (f = 1 of N = 3, inside the assumptions):
    // a liar applying the leap with the first honest server, then reading
    // like a late one (110 s late, within the allowance); and a liar whose
    // silence, during an outage of an honest server, kept a real leap from
    // being scheduled.
    let late_leap = LeapSpec {
        late: Some((1, 110 * S)),
        bogus_announcer: None,
        ..leap
    };
    let mut servers = honest(2);
    servers.push(ServerSpec::liar(Behaviour::StepsAt {
        at: H + 20 * S,
        by: 1_000_000_000,
    }));
    let mut s = base("leap_liar_joins_a_late_server", servers, long);
    s.leap = Some(late_leap);
    v.push(s);
    let mut servers = honest(3);
    servers[1].down = DOWN_AROUND_LEAP;
    let mut s = base("leap_during_an_outage_liar_denies", servers, long);
    s.leap = Some(LeapSpec {
        late: None,
        bogus_announcer: Some(2),
        ..leap
    });
    v.push(s);

    // Kernel receive stamps with the system clock stepped every few seconds
    // by up to +-5 ms, with and without a watcher that sees every set: t4
    // must never be mapped before the reply's arrival.
    for (name, watcher) in [
        ("kernel_stamps_step_storm", true),
        ("kernel_stamps_step_storm_unwatched", false),
    ] {
        let mut s = base(name, honest(4), hours);
        fast_loopback(&mut s);
        s.stamps = StampSpec {
            kernel: true,
            watcher,
            recv_lag_mean_ns: 20_000,
        };
        s.events = vec![(0, LocalEvent::RealtimeStepStorm(2 * S, 5_000_000))];
        v.push(s);
    }

    byzantine(&mut v, hours);

    // The second source kind: two one-way sources (a PTP hardware clock
    // would be one) beside three NTP servers, one of them lying: N = 5,
    // f = 2. The direct sources' 2 us bounds carry the model.
    let mut servers = honest(2);
    servers.push(ServerSpec::liar(Behaviour::Constant(5_000_000)));
    let mut s = base("phc_direct", servers, hours);
    let phc = DirectSpec {
        half_width_ns: 2_000,
        read_ns: 1_000,
        offset_ns: 0,
    };
    s.direct = vec![
        DirectSpec {
            offset_ns: 1_500,
            ..phc
        },
        DirectSpec {
            offset_ns: -1_200,
            ..phc
        },
    ];
    v.push(s);

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
    // The same with servers answering interleaved (no follow-ups): each
    // reply also gives a fresh sample of its own exchange, so the pause is
    // caught by the next reply, not a poll later.
    let mut t = s.clone();
    t.name = "vm_pause_interleaved";
    t.servers = vec![
        ServerSpec {
            interleaved: true,
            ..ServerSpec::honest(10_000)
        };
        4
    ];
    v.push(s);
    v.push(t);

    v
}

/// Up to f sources controlled by a Byzantine strategy that chooses every
/// field of every reply: inside the assumptions, so every interval must
/// hold true time.
fn byzantine(v: &mut Vec<Scenario>, hours: f64) {
    let one = |name, strategy| {
        let mut servers = honest(3);
        servers.push(ServerSpec::byzantine(strategy));
        base(name, servers, hours)
    };
    v.push(one("byzantine_random", Strategy::Random));
    v.push(one(
        "byzantine_era_walk_forward",
        Strategy::EraWalk { forward: true },
    ));
    v.push(one(
        "byzantine_era_walk_back",
        Strategy::EraWalk { forward: false },
    ));
    v.push(one("byzantine_half_era", Strategy::HalfEra));
    v.push(one("byzantine_stale", Strategy::Stale));
    // Two of five overlapping the honest intervals by half and by nine
    // tenths of their width, excluding truth.
    let mut servers = honest(3);
    servers.push(ServerSpec::byzantine(Strategy::Overlap { permille: 500 }));
    servers.push(ServerSpec::byzantine(Strategy::Overlap { permille: 900 }));
    v.push(base("byzantine_overlap", servers, hours));
    // Two of five with lying leap bits while the honest three announce a
    // real leap early; one of them applies it late.
    let mut servers = honest(3);
    servers.push(ServerSpec::byzantine(Strategy::LeapBits));
    servers.push(ServerSpec::byzantine(Strategy::LeapBits));
    let mut s = base("byzantine_leap", servers, hours.max(2.0));
    s.leap = Some(LeapSpec {
        at_ns: H,
        announce_ns: 40 * H,
        late: Some((2, 20 * S)),
        bogus_announcer: None,
        happens: true,
    });
    v.push(s);
    // Three of seven, each playing a different strategy on every reply, on
    // a lossy network with replays.
    let mut servers = honest(4);
    servers.extend([ServerSpec::byzantine(Strategy::Mixed); 3]);
    let mut s = base("byzantine_mixed", servers, hours);
    s.net.loss = 0.1;
    s.net.duplicate = 0.05;
    s.net.replay = 0.05;
    v.push(s);
}
