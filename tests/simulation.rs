//! The simulator's scenarios (fewer seeds than the example) as tests: the one
//! promise inside the assumptions, detection outside them.

use skewd::core::model::Status;
use skewd::sim::scenarios::{all, report, run_seeds, Report, FAULT_AT};

/// The scenario `name`, its open-ended parts `hours` long.
fn scenario(name: &str, hours: f64) -> skewd::sim::spec::Scenario {
    all(hours)
        .into_iter()
        .find(|s| s.name == name)
        .expect("scenario exists")
}

fn run(name: &str) -> Report {
    let sc = scenario(name, 3.0);
    let runs = run_seeds(&sc, 4, 2);
    let r = report(&sc, &runs);
    eprintln!("{}", serde_json::to_string(&r).unwrap());
    // Inside the assumptions or not, every interval read is explained.
    assert_eq!(
        r.budget_mismatches, 0,
        "{name}: the ε budget did not add up to the half-width read"
    );
    r
}

fn assert_sound(r: &Report) {
    assert!(r.within_assumptions);
    assert!(r.intervals > 5_000, "too few checks: {}", r.intervals);
    assert_eq!(
        r.violations, 0,
        "{} intervals missed true time",
        r.violations
    );
    assert_eq!(
        r.engine_violations, 0,
        "the self-audit fired inside the assumptions"
    );
    assert_eq!(r.shrunk_without_evidence, 0);
    assert!(r.budget_checks > 1_000, "too few budget checks");
}

#[test]
fn clean_is_sound_and_narrow() {
    let r = run("clean");
    assert_sound(&r);
    assert!(r.floor_ns > 0);
    assert!(
        r.median_epsilon_ns <= 3 * r.floor_ns,
        "median epsilon {} vs floor {}",
        r.median_epsilon_ns,
        r.floor_ns
    );
    assert_eq!(
        r.checks_by_status[Status::Synchronized as usize],
        r.intervals
    );
}

#[test]
fn public_pool_sources_polled_politely_stay_synchronized() {
    let r = run("public_pool");
    assert_sound(&r);
    // Synchronized from the first burst on, through polls 1024 s apart.
    assert!(
        r.checks_by_status[Status::Synchronized as usize] > r.intervals * 99 / 100,
        "{:?} of {}",
        r.checks_by_status,
        r.intervals
    );
}

#[test]
fn named_servers_going_silent_beside_a_pool_server_end_synchronized() {
    let sc = scenario("named_outage_beside_pool", 3.0);
    let (from, to) = skewd::sim::scenarios::NAMED_OUTAGE[0];
    const S: i64 = 1_000_000_000;
    for run in skewd::sim::scenarios::run_seeds(&sc, 2, 2) {
        assert_eq!(run.violations, 0);
        // Synchronized when the outage starts; free_running within 200 s,
        // and never synchronized again once the named servers' samples are
        // 8 of their polls old: the pool server's rounds alone are no
        // majority, and those old samples must not count (with a sample age
        // stretched to the pool's 8 × 256 s they did, every 256 s).
        let before = run.transitions.iter().rev().find(|(x, _)| *x < from);
        assert_eq!(before.map(|t| t.1), Some(Status::Synchronized));
        let during: Vec<(i64, Status)> = run
            .transitions
            .iter()
            .filter(|(x, _)| (from..to).contains(x))
            .map(|(x, st)| ((x - from) / S, *st))
            .collect();
        assert!(
            during
                .first()
                .is_some_and(|(x, st)| *st != Status::Synchronized && *x < 200),
            "{during:?}"
        );
        assert!(
            during
                .iter()
                .all(|(x, st)| *st != Status::Synchronized || *x < 8 * 16 + 20),
            "synchronized again past the named servers' 8 polls: {during:?}"
        );
    }
}

#[test]
fn without_any_reply_synchronized_ends_with_the_evidence() {
    let sc = scenario("network_down_beside_pool", 3.0);
    let (from, to) = skewd::sim::scenarios::NAMED_OUTAGE[0];
    for run in skewd::sim::scenarios::run_seeds(&sc, 2, 2) {
        assert_eq!(run.violations, 0);
        let left = run
            .transitions
            .iter()
            .find(|(x, st)| (from..to).contains(x) && *st != Status::Synchronized)
            .map(|(x, _)| (x - from) / 1_000_000_000);
        // The named servers' samples expire 8 polls (128 s) after their
        // last answer; 2f+1 = 3 valid sources are needed.
        assert!(
            left.is_some_and(|s| s <= 140),
            "left synchronized after {left:?} s"
        );
    }
}

#[test]
fn interleaved_completions_never_cross_a_suspend() {
    for name in [
        "suspend_storm_interleaved",
        "suspend_storm_interleaved_declared",
    ] {
        let r = run(name);
        assert_sound(&r);
        assert!(
            r.interleaved_replies > 100,
            "{name}: {} interleaved",
            r.interleaved_replies
        );
    }
}

#[test]
fn interleaved_replies_complete_exchanges_soundly() {
    let r = run("interleaved_declared");
    assert_sound(&r);
    assert!(
        r.checks_by_status[Status::Synchronized as usize] > r.intervals * 99 / 100,
        "{:?}",
        r.checks_by_status
    );
    assert!(
        r.interleaved_replies > 1_000,
        "{} interleaved replies",
        r.interleaved_replies
    );
}

#[test]
fn lossy_asymmetric_wander_and_ntpd_style_are_sound() {
    for name in [
        "lossy",
        "asymmetric",
        "drift_wander",
        "ntpd_style",
        "fast_poll",
    ] {
        assert_sound(&run(name));
    }
}

#[test]
fn f_liars_never_break_the_interval() {
    for name in ["falsetickers", "liars", "colluding_minority"] {
        let r = run(name);
        assert_sound(&r);
        assert!(r.checks_by_status[Status::Synchronized as usize] > r.intervals / 2);
    }
}

#[test]
fn disjoint_liars_are_named() {
    use skewd::core::source::SourceState;
    use skewd::sim::world::World;
    let sc = scenario("falsetickers", 0.5);
    let mut w = World::new(&sc, 7);
    w.run_until(1_800_000_000_000);
    let states: Vec<SourceState> = w
        .engine()
        .source_reports()
        .iter()
        .map(|r| r.state)
        .collect();
    assert_eq!(&states[..3], &[SourceState::Selected; 3], "{states:?}");
    assert_eq!(
        states[3],
        SourceState::Falseticker,
        "the 5 ms liar: {states:?}"
    );
}

#[test]
fn outage_follows_the_timetable() {
    let r = run("outage");
    assert_sound(&r);
    let order: Vec<&str> = r.transitions_seed0.iter().map(|t| t.1).collect();
    assert_eq!(order, ["synchronized", "free_running", "unknown"]);
    let (t_free, t_unknown) = (r.transitions_seed0[1].0, r.transitions_seed0[2].0);
    let outage = FAULT_AT as f64 / 1e9;
    // free_running within free_run_after (4 polls = 64 s) of the last
    // majority anchor, unknown at void-after (holdover 1 h or 1 s half-width).
    assert!(
        t_free > outage && t_free <= outage + 64.0 + 17.0,
        "{t_free}"
    );
    assert!(
        t_unknown > t_free && t_unknown <= outage + 3600.0 + 1.0,
        "{t_unknown}"
    );
}

#[test]
fn two_of_four_with_a_liar_is_not_synchronized() {
    let r = run("partial_outage");
    assert_sound(&r);
    let last = r.transitions_seed0.last().unwrap();
    assert_eq!(last.1, "free_running");
}

#[test]
fn local_clock_events_inside_the_assumptions() {
    let r = run("realtime_step");
    assert_sound(&r);
    assert_eq!(r.steps_detected, r.steps_injected);
    assert_eq!(
        r.checks_by_status[Status::Synchronized as usize],
        r.intervals,
        "a step changes no status"
    );
    for name in ["suspend", "clocksource_switch"] {
        let r = run(name);
        assert_sound(&r);
        assert!(
            r.checks_by_status[Status::Disrupted as usize] > 0,
            "{name}: interruption not reported"
        );
    }
}

#[test]
fn faults_outside_the_assumptions_are_detected() {
    for name in [
        "frequency_step",
        "majority_liars",
        "vm_pause",
        "vm_pause_interleaved",
    ] {
        let r = run(name);
        assert!(!r.within_assumptions);
        assert_eq!(r.detected, Some(true), "{name}");
        let delay = r.worst_detection_delay_ns.unwrap();
        // documented: within 3 polls (48 s) of the fault
        assert!(delay <= 48_000_000_000, "{name}: detected after {delay} ns");
    }
}

/// An oscillator that leaves +-phi_hw for good is detected, and the status
/// stays off `synchronized` while it lasts: before the fresh-bound rate
/// check survived faults, each fault was followed two polls later by a
/// "synchronized" model that missed again (8 605 such checks at the 1 s
/// poll over 8 seeds x 3 h; now a handful, in the first seconds after the
/// fault, before two spans of evidence exist).
#[test]
fn an_oscillator_beyond_its_stated_range_stays_disrupted() {
    for name in ["rate_beyond_hw", "rate_beyond_hw_fast_poll"] {
        let r = run(name);
        assert_eq!(r.detected, Some(true), "{name}");
        assert!(
            r.violations_synchronized_after_detection * 1000 <= r.intervals,
            "{name}: {} synchronized misses after detection",
            r.violations_synchronized_after_detection
        );
        let last = r.transitions_seed0.last().unwrap();
        assert_eq!(last.1, "disrupted", "{name}: {:?}", r.transitions_seed0);
    }
}

/// A single jump of truth against the steady clock (a VM paused with its
/// clocks stopped) makes every span across it look like a huge rate; it
/// must not hold the status as a broken oscillator would. Recovery within a
/// few polls (a first version of the rate check held it ~17 min).
#[test]
fn a_vm_pause_is_not_mistaken_for_a_broken_oscillator() {
    let r = run("vm_pause");
    let disrupted_per_seed = r.checks_by_status[Status::Disrupted as usize] / r.seeds;
    assert!(
        disrupted_per_seed < 200,
        "disrupted for ~{disrupted_per_seed} s per seed after a 30 s pause"
    );
    assert_eq!(r.transitions_seed0.last().unwrap().1, "synchronized");
}

#[test]
fn leap_second_is_applied_by_the_quorum_only() {
    use skewd::core::time::{Nanos, NS_PER_S};
    use skewd::sim::world::World;
    let r = run("leap_second");
    assert_sound(&r);
    assert_eq!(
        r.checks_by_status[Status::Synchronized as usize],
        r.intervals
    );
    // Walk one world through the leap and look at the engine's leap state.
    let sc = scenario("leap_second", 1.5);
    let mut w = World::new(&sc, 3);
    w.run_until(FAULT_AT - 60 * NS_PER_S as i64);
    let m = w.engine().leap_state().mapping();
    assert!(
        w.engine().leap_state().pending(),
        "the insertion announced by 4 of 5 is pending"
    );
    assert_eq!(
        m.leap.map(|l| l.delta),
        Some(Nanos(NS_PER_S)),
        "an insertion, not the lone deletion"
    );
    w.run_until(FAULT_AT + 240 * NS_PER_S as i64);
    assert!(
        !w.engine().leap_state().pending(),
        "final once f + 1 applied it and the lateness allowance passed"
    );
    let m = w.engine().leap_state().mapping();
    let model = *w.engine().model().unwrap();
    let internal = model.interval_at(model.anchor).interval;
    let utc = model.utc_at(model.anchor).interval;
    assert_eq!(
        internal.lo - utc.lo,
        Nanos(NS_PER_S),
        "UTC is one second behind the leap-free count: {m:?}"
    );
}

/// A host whose leap-second list already counts a leap after 2017 starts
/// the leap-free timescale at UTC + 1 s (so hosts and restarts agree on
/// commit-wait timestamps): every leap-free interval holds UTC + 1 s before
/// the new leap and UTC + 2 s after it, and every UTC view holds UTC.
#[test]
fn leap_free_timescale_starts_where_the_list_says() {
    use skewd::core::time::{Nanos, NS_PER_S};
    use skewd::sim::world::World;
    let r = run("leap_second_listed");
    assert_sound(&r);
    let sc = scenario("leap_second_listed", 1.5);
    let mut w = World::new(&sc, 5);
    w.run_until(FAULT_AT - 60 * NS_PER_S as i64);
    let gap = |w: &World| {
        let m = *w.engine().model().unwrap();
        m.interval_at(m.anchor).interval.lo - m.utc_at(m.anchor).interval.lo
    };
    assert_eq!(gap(&w), Nanos(NS_PER_S));
    w.run_until(FAULT_AT + 120 * NS_PER_S as i64);
    assert_eq!(gap(&w), Nanos(2 * NS_PER_S));
}

/// A leap announced a day and more before the month end (real servers
/// announce days or weeks ahead), and a leap a majority announces that
/// never happens: every UTC and leap-free interval holds (a review found
/// the day-end schedule shifting UTC by -1 s for a day, and the bogus leap
/// leaving UTC a second off until restart).
#[test]
fn early_and_bogus_leap_announcements_keep_utc_right() {
    use skewd::core::time::NS_PER_S;
    use skewd::sim::world::World;
    for name in [
        "leap_announced_early",
        "leap_never_happens",
        "leap_liar_joins_a_late_server",
        "leap_during_an_outage_liar_denies",
    ] {
        let r = run(name);
        assert_sound(&r);
        assert_eq!(r.violations_usable, 0, "{name}");
    }
    // The bogus one is cancelled: the UTC view is exact again afterwards.
    let sc = scenario("leap_never_happens", 3.0);
    let mut w = World::new(&sc, 11);
    w.run_until(FAULT_AT - 60 * NS_PER_S as i64);
    assert!(w.engine().leap_state().pending());
    w.run_until(FAULT_AT + 600 * NS_PER_S as i64);
    assert!(!w.engine().leap_state().pending());
    assert_eq!(w.engine().leap_state().cancelled(), 1);
    let m = *w.engine().model().unwrap();
    assert_eq!(
        m.utc_at(m.anchor).interval,
        m.interval_at(m.anchor).interval
    );
}

/// Up to f sources under a Byzantine strategy that picks every field of
/// every reply (eras, reference times, root distances, leap bits, stale
/// and duplicate answers, silence): never a wrong interval.
#[test]
fn byzantine_sources_never_break_the_interval() {
    for name in [
        "byzantine_random",
        "byzantine_era_walk_forward",
        "byzantine_era_walk_back",
        "byzantine_half_era",
        "byzantine_stale",
        "byzantine_overlap",
        "byzantine_leap",
        "byzantine_mixed",
    ] {
        let r = run(name);
        assert_sound(&r);
        assert!(
            r.checks_by_status[Status::Synchronized as usize] > r.intervals * 9 / 10,
            "{name}: {:?}",
            r.checks_by_status
        );
    }
}

/// The system clock stepped every few seconds while kernel receive stamps
/// are in use, with and without a watcher of clock sets: the core never
/// maps a stamp across a step to before the reply's arrival.
#[test]
fn kernel_stamps_survive_a_storm_of_clock_steps() {
    for name in [
        "kernel_stamps_step_storm",
        "kernel_stamps_step_storm_unwatched",
    ] {
        let r = run(name);
        assert_sound(&r);
        assert!(r.steps_injected > 1000, "{name}: {}", r.steps_injected);
    }
    let watched = run("kernel_stamps_step_storm");
    assert!(
        watched.kernel_stamp_fallbacks > 0,
        "the watcher saw no set during an exchange"
    );
}

/// The second source kind, through the seam: two one-way sources that hand
/// the engine a bound directly (as a PTP hardware clock would) beside three
/// NTP servers, one lying. Every interval holds, the model rides on their
/// 2 us bounds, and they are reported like any source.
#[test]
fn one_way_sources_join_through_the_seam() {
    use skewd::core::source::SourceState;
    use skewd::sim::world::World;
    let r = run("phc_direct");
    assert_sound(&r);
    assert!(
        r.median_epsilon_ns < 30_000,
        "epsilon {} ns: the direct sources' 2 us bounds should carry the model",
        r.median_epsilon_ns
    );
    let sc = scenario("phc_direct", 0.5);
    let mut w = World::new(&sc, 9);
    w.run_until(1_000_000_000_000);
    let states: Vec<SourceState> = w
        .engine()
        .source_reports()
        .iter()
        .map(|r| r.state)
        .collect();
    assert_eq!(states[2], SourceState::Falseticker, "{states:?}");
    assert_eq!(&states[3..], &[SourceState::Selected; 2], "{states:?}");
}

/// Why Phi_s ageing is the default: declaring ntpd-style servers (which send
/// their root dispersion unaged) as ageing it themselves breaks the promise.
#[test]
fn declaring_ntpd_servers_as_self_ageing_breaks_the_bound() {
    let mut sc = scenario("ntpd_worst_case", 3.0);
    for s in &mut sc.servers {
        s.declared_aged = true; // wrong: they do not age it
    }
    let r = report(&sc, &run_seeds(&sc, 4, 2));
    eprintln!("{}", serde_json::to_string(&r).unwrap());
    assert!(
        r.violations > 0,
        "expected the wrong declaration to show violations"
    );
    let honest = run("chrony_declared");
    assert_sound(&honest);
    let ntpd = run("ntpd_style");
    assert!(honest.median_epsilon_ns < ntpd.median_epsilon_ns);
}
