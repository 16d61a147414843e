//! Leap-second attacks by one liar and unlucky timing, against the real
//! engine driven with real packet bytes (found by a review of the first
//! leap rules; each failed on 7b847f2). Each test states the attack; the
//! assertions are the one promise: every synchronized or free-running
//! interval contains true time, on both timescales.

use skewd::core::engine::{Action, Engine, EngineConfig};
use skewd::core::model::Status;
use skewd::core::ntp::packet::{Leap, Packet};
use skewd::core::stamps::{RxStamps, SentStamps};
use skewd::core::time::{end_of_month, Nanos, RefTime, Steady, NS_PER_S};

const S: i128 = NS_PER_S;

/// What a server says at true (continuous, leap-free = UTC before the leap)
/// time `t`: its UTC reading and leap bit, or silence.
type Say<'a> = dyn FnMut(usize, i128, &Engine) -> Option<(i128, Leap)> + 'a;

#[derive(Default, Debug)]
struct Outcome {
    /// Checks with a usable status whose interval missed true time.
    usable_misses: u64,
    /// ... of which while `synchronized`.
    synchronized_misses: u64,
    first_miss: Option<String>,
    /// Width of the last interval checked (ns) and its status.
    last: Option<(i128, Status)>,
}

/// Drive an engine for `n` sources with a perfect oscillator (true time =
/// `t0 + steady`), replies arriving 100 us after each request, a leap
/// inserted at true time `leap` (UTC = t - 1 s after it). Check every
/// published interval at each step.
fn drive(n: usize, poll_s: i128, t0: i128, leap: i128, until: i128, say: &mut Say) -> Outcome {
    drive_with(n, poll_s, t0, leap, until, None, say)
}

/// As [`drive`], with a timeline interruption (a clocksource change, a
/// VMClock disruption, a suspend of ~0 s) at true time `interrupt_at`.
fn drive_with(
    n: usize,
    poll_s: i128,
    t0: i128,
    leap: i128,
    until: i128,
    mut interrupt_at: Option<i128>,
    say: &mut Say,
) -> Outcome {
    let mut e = Engine::new(EngineConfig::new(Nanos::from_secs(poll_s), n), Steady(0));
    let mut nonce = 1u64;
    let mut now = Steady(0);
    let mut out = Outcome::default();
    while t0 + (now.0 as i128) < until {
        if interrupt_at.is_some_and(|x| t0 + now.0 as i128 >= x) {
            interrupt_at = None;
            // A clocksource change, as the shell would report it.
            for cs in ["tsc", "hpet"] {
                e.handle_local(&skewd::core::local::LocalReading {
                    at: now,
                    boot_offset: None,
                    clocksource: Some(cs.into()),
                    vmclock_marker: None,
                    realtime: None,
                });
            }
        }
        let actions = e.handle_timer(now, &mut || {
            nonce += 1;
            nonce
        });
        for a in actions {
            let Action::Send { source, packet } = a else {
                continue;
            };
            e.handle_sent(source, SentStamps::steady(now));
            let t = t0 + now.0 as i128 + 50_000;
            let Some((told, bit)) = say(source.0, t, &e) else {
                continue;
            };
            let q = Packet::parse(&packet).unwrap();
            let told = RefTime(told);
            let reply = Packet {
                leap: bit,
                ..Packet::server_reply(q.transmit, told)
            };
            let rx = RxStamps::steady(now.plus(Nanos(100_000)));
            let _ = e.handle_reply(source, &reply.serialize(), &rx);
        }
        let at = now.plus(Nanos(100_000));
        if let Some(m) = e.model() {
            let t = t0 + at.0 as i128;
            let t_utc = if t >= leap { t - S } else { t };
            let lf = m.interval_at(at);
            let utc = m.utc_at(at).interval;
            let ok = lf.interval.contains(RefTime(t)) && utc.contains(RefTime(t_utc));
            let st = e.status_at(at);
            out.last = Some((lf.interval.width().0, st));
            if !ok && matches!(st, Status::Synchronized | Status::FreeRunning) {
                out.usable_misses += 1;
                if st == Status::Synchronized {
                    out.synchronized_misses += 1;
                }
                out.first_miss.get_or_insert_with(|| {
                    format!(
                        "{st:?} at leap{:+} s: leap-free {:?} / utc {:?} vs truth {t} / {t_utc}",
                        (t - leap) / S,
                        lf.interval,
                        utc
                    )
                });
            }
        }
        now = e.poll_timeout().unwrap();
    }
    out
}

fn month_end() -> i128 {
    end_of_month(RefTime(1_800_000_000 * S)).0
}

/// N = 3, f = 1. Source 0 is honest and applies the leap on time; source 1
/// is honest and applies it 90 s late (within LATE_ALLOWANCE = 120 s, which
/// the model allows). Source 2 lies: right after the instant it reads like
/// source 0 (applied), so f + 1 = 2 sources are "seen to have applied it"
/// and the leap completes; from then on every source is read as applied,
/// so the late honest source's replies land 1 s ahead of true time. The liar
/// now reads like the late source: 2 of 3 agree on truth + 1 s.
#[test]
fn liar_completes_leap_then_joins_late_honest_server() {
    let leap = month_end();
    let t0 = leap - 300 * S;
    let mut say = |src: usize, t: i128, _: &Engine| {
        let applied = |late: i128| {
            if t >= leap + late {
                (t - S, Leap::None)
            } else {
                (t, Leap::Insert)
            }
        };
        Some(match src {
            0 => applied(0),
            1 => applied(90 * S),
            // the liar: "applied" for its first 10 s after the instant, then
            // "not applied" (as the late honest server) with the bit set
            _ if t >= leap && t < leap + 10 * S => (t - S, Leap::None),
            _ => (t, Leap::Insert),
        })
    };
    let o = drive(3, 1, t0, leap, leap + 400 * S, &mut say);
    // The same at the default 16 s poll, the late server 110 s late.
    let mut say16 = |src: usize, t: i128, _: &Engine| {
        let applied = |late: i128| {
            if t >= leap + late {
                (t - S, Leap::None)
            } else {
                (t, Leap::Insert)
            }
        };
        Some(match src {
            0 => applied(0),
            1 => applied(110 * S),
            _ if t >= leap && t < leap + 20 * S => (t - S, Leap::None),
            _ => (t, Leap::Insert),
        })
    };
    let o16 = drive(3, 16, leap - 3000 * S, leap, leap + 600 * S, &mut say16);
    eprintln!("poll 1 s: {o:?}\npoll 16 s: {o16:?}");
    assert_eq!(
        o16.synchronized_misses, 0,
        "{o16:?}: a synchronized interval 1 s off"
    );
    assert_eq!(
        o.synchronized_misses, 0,
        "{o:?}: a synchronized interval 1 s off"
    );
    assert_eq!(o.usable_misses, 0, "{o:?}");
}

/// N = 3, f = 1, one honest server down around the leap (an outage: the
/// model promises free_running intervals stay sound with k = f + 1). The
/// liar's leap bit alone keeps a real leap from ever being scheduled
/// (quorum max(k - f, f + 1) = 2 of the 2 answering): when the honest
/// server applies it, the leap-free scale jumps back 1 s for good.
#[test]
fn liar_bit_suppresses_a_real_leap_during_an_outage() {
    let leap = month_end();
    let t0 = leap - 300 * S;
    let mut say = |src: usize, t: i128, _: &Engine| match src {
        0 => Some(if t >= leap {
            (t - S, Leap::None)
        } else {
            (t, Leap::Insert)
        }),
        1 => None, // down
        // honest time (applies the leap), never announces it
        _ => Some((if t >= leap { t - S } else { t }, Leap::None)),
    };
    let o = drive(3, 1, t0, leap, leap + 400 * S, &mut say);
    assert_eq!(o.usable_misses, 0, "{o:?}: usable interval off true time");
}

/// Controls for the harness: the same worlds with the liar honest pass.
#[test]
fn controls_pass() {
    let leap = month_end();
    let t0 = leap - 300 * S;
    let mut say = |src: usize, t: i128, _: &Engine| {
        let late = if src == 1 { 90 * S } else { 0 };
        Some(if t >= leap + late {
            (t - S, Leap::None)
        } else {
            (t, Leap::Insert)
        })
    };
    let o = drive(3, 1, t0, leap, leap + 400 * S, &mut say);
    assert_eq!(o.usable_misses, 0, "{o:?}");
    let mut say = |src: usize, t: i128, _: &Engine| {
        (src != 1).then_some(if t >= leap {
            (t - S, Leap::None)
        } else {
            (t, Leap::Insert)
        })
    };
    let o = drive(3, 1, t0, leap, leap + 400 * S, &mut say);
    assert_eq!(o.usable_misses, 0, "{o:?}");
}

/// Liveness: a timeline interruption (a clocksource change, a VMClock
/// disruption) just before the instant drops the model while no source is
/// resolved. Without a model every source is the 1 s hull of both readings,
/// so nothing can resolve against the next model; it used to stay 1 s wide
/// ("synchronized" at +-0.5 s) for good. Now the leap is decided at its
/// deadline by the announcement (every source announced it).
#[test]
fn interruption_at_the_leap_leaves_a_one_second_model_for_good() {
    let leap = month_end();
    let t0 = leap - 300 * S;
    let mut say = |_: usize, t: i128, _: &Engine| {
        Some(if t >= leap {
            (t - S, Leap::None)
        } else {
            (t, Leap::Insert)
        })
    };
    let o = drive_with(
        3,
        16,
        t0,
        leap,
        leap + 3 * 3600 * S,
        Some(leap - S / 2),
        &mut say,
    );
    assert_eq!(o.usable_misses, 0, "{o:?}");
    let (width, status) = o.last.unwrap();
    assert!(
        width < 100_000_000,
        "3 h after the leap: {status:?}, width {:.3} s",
        width as f64 / 1e9
    );
}
