//! Renders a snapshot as Prometheus text (prometheus-client's
//! `prometheus_text` encoder, which promtool accepts as is).
//!
//! A fresh registry is built for every scrape from the snapshot, so the
//! series of a removed source disappear with it and nothing is cached.

use crate::core::model::Status;
use crate::core::time::Steady;
use crate::state::{Snapshot, SourceView};
use prometheus_client::encoding::prometheus_text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type G = Gauge<f64, AtomicU64>;
type Labels = Vec<(&'static str, String)>;

fn gauge(reg: &mut Registry, name: &str, help: &str, v: f64) {
    let g = G::default();
    g.set(v);
    reg.register(name, help, g);
}

fn family(reg: &mut Registry, name: &str, help: &str, rows: Vec<(Labels, f64)>) {
    let f = Family::<Labels, G>::default();
    for (l, v) in rows {
        f.get_or_create(&l).set(v);
    }
    reg.register(name, help, f);
}

fn counter_family(reg: &mut Registry, name: &str, help: &str, rows: Vec<(Labels, u64)>) {
    let f = Family::<Labels, Counter>::default();
    for (l, v) in rows {
        f.get_or_create(&l).inc_by(v);
    }
    reg.register(name, help, f);
}

fn counter(reg: &mut Registry, name: &str, help: &str, v: u64) {
    let c: Counter = Counter::default();
    c.inc_by(v);
    reg.register(name, help, c);
}

/// Prometheus text for `snap` read at steady instant `now` (with the HTTP
/// server's connection counts, when it runs).
pub fn render(snap: &Snapshot, now: Steady, http: Option<&crate::serve::Counts>) -> String {
    let mut reg = Registry::default();
    let p = &snap.publication;
    let read = snap.at(now);
    let status = match &read {
        Ok(t) => t.status,
        Err(crate::core::read::ReadError::NoModel(s)) => *s,
        Err(_) => Status::Disrupted,
    };

    // Absent without an interval (not +Inf: an alert on a wide bound must
    // not fire for what is a missing model; skewd_clock_status says that).
    if let Ok(t) = &read {
        gauge(
            &mut reg,
            "skewd_clock_error_bound_seconds",
            "Half-width of the published interval: true time is within this of its centre (absent without an interval)",
            t.epsilon_ns() as f64 / 1e9,
        );
    }
    if let Some(k) = p.skew {
        gauge(
            &mut reg,
            "skewd_clock_offset_seconds",
            "System clock (CLOCK_REALTIME) minus reference time: the host's skew",
            k.offset.0 as f64 / 1e9,
        );
        gauge(
            &mut reg,
            "skewd_clock_offset_uncertainty_seconds",
            "Uncertainty of skewd_clock_offset_seconds",
            k.uncertainty.0 as f64 / 1e9,
        );
    }
    if let Some(m) = &p.model {
        gauge(
            &mut reg,
            "skewd_clock_frequency_ppm",
            "Rate of the steady clock (MONOTONIC_RAW) against the reference, minus one, in ppm",
            m.ageing.rate.as_ppm_f64(),
        );
    }
    family(
        &mut reg,
        "skewd_clock_status",
        "1 for the current status, 0 for the others",
        Status::ALL
            .iter()
            .map(|s| {
                (
                    vec![("status", s.as_str().to_owned())],
                    f64::from(u8::from(*s == status)),
                )
            })
            .collect(),
    );
    if let Some(m) = &p.model {
        gauge(
            &mut reg,
            "skewd_clock_model_age_seconds",
            "Time since the model's anchor was set from fresh evidence",
            now.since(m.anchor).0 as f64 / 1e9,
        );
    }
    gauge(
        &mut reg,
        "skewd_snapshot_age_seconds",
        "Time since the agent last refreshed its published state",
        now.since(p.at).0 as f64 / 1e9,
    );

    let src = |f: &dyn Fn(&SourceView) -> Option<f64>| -> Vec<(Labels, f64)> {
        snap.sources
            .iter()
            .filter_map(|s| f(s).map(|v| (vec![("source", s.name.clone())], v)))
            .collect()
    };
    family(
        &mut reg,
        "skewd_source_offset_seconds",
        "Centre of the source's latest sample minus the model's centre",
        src(&|s| s.report.offset.map(|o| o.0 as f64 / 1e9)),
    );
    family(
        &mut reg,
        "skewd_source_delay_seconds",
        "Round-trip delay of the source's latest sample",
        src(&|s| s.report.delay.map(|o| o.0 as f64 / 1e9)),
    );
    family(
        &mut reg,
        "skewd_source_root_distance_seconds",
        "Root distance the source advertised in its latest reply",
        src(&|s| s.report.root_distance.map(|o| o.0 as f64 / 1e9)),
    );
    family(
        &mut reg,
        "skewd_source_falseticker",
        "1 if the source's interval is disjoint from the published one",
        src(&|s| {
            Some(f64::from(u8::from(
                s.report.state == crate::core::source::SourceState::Falseticker,
            )))
        }),
    );
    family(
        &mut reg,
        "skewd_source_reachable",
        "1 if the source answered at least one of the last 8 requests",
        src(&|s| Some(f64::from(u8::from(s.report.reach != 0)))),
    );
    let mut req_rows = Vec::new();
    for s in &snap.sources {
        let c = s.report.counters;
        for (result, v) in [
            ("ok", c.ok),
            ("timeout", c.timeout),
            ("invalid", c.invalid),
            ("unsent", c.unsent),
        ] {
            req_rows.push((
                vec![("source", s.name.clone()), ("result", result.to_owned())],
                v,
            ));
        }
    }
    counter_family(
        &mut reg,
        "skewd_ntp_requests",
        "NTP requests by outcome",
        req_rows,
    );
    counter_family(
        &mut reg,
        "skewd_ntp_unexpected_replies",
        "Datagrams that answered no request of ours (duplicates, late replies, forgeries): discarded, changing nothing",
        snap.sources
            .iter()
            .map(|s| {
                (
                    vec![("source", s.name.clone())],
                    s.report.counters.unexpected,
                )
            })
            .collect(),
    );
    family(
        &mut reg,
        "skewd_source_authenticated",
        "1 if the source's samples are authenticated (an NTS source that answers), 0 if not",
        src(&|s| {
            Some(f64::from(u8::from(
                s.report.nts.is_some_and(|n| n.authenticated),
            )))
        }),
    );
    let nts: Vec<(&SourceView, crate::core::nts::NtsReport)> = snap
        .sources
        .iter()
        .filter_map(|s| Some((s, s.report.nts?)))
        .collect();
    if !nts.is_empty() {
        let label = |s: &SourceView| vec![("source", s.name.clone())];
        family(
            &mut reg,
            "skewd_nts_cookies",
            "NTS cookies held by the source (each request spends one; eight are kept)",
            nts.iter()
                .map(|(s, n)| (label(s), f64::from(n.cookies)))
                .collect(),
        );
        counter_family(
            &mut reg,
            "skewd_nts_key_exchanges",
            "NTS key exchanges by outcome",
            nts.iter()
                .flat_map(|(s, n)| {
                    [("ok", n.key_exchanges), ("failed", n.key_exchange_failures)].map(
                        |(result, v)| {
                            let mut l = label(s);
                            l.push(("result", result.to_owned()));
                            (l, v)
                        },
                    )
                })
                .collect(),
        );
        counter_family(
            &mut reg,
            "skewd_nts_authentication_failures",
            "Replies that answered our request but did not authenticate (altered or forged): never used",
            nts.iter().map(|(s, n)| (label(s), n.auth_failures)).collect(),
        );
        counter_family(
            &mut reg,
            "skewd_nts_naks",
            "NTS NAKs (the server refused a cookie; a new key exchange follows unless an authentic reply does)",
            nts.iter().map(|(s, n)| (label(s), n.naks)).collect(),
        );
    }
    counter(
        &mut reg,
        "skewd_clock_steps",
        "Steps of the system clock (REALTIME) seen",
        p.steps,
    );
    if snap.vmclock_watched {
        counter(
            &mut reg,
            "skewd_vmclock_disruptions",
            "Changes of the hypervisor's VMClock disruption marker (each drops the model)",
            p.interruptions.vmclock_disruptions,
        );
    }
    counter(
        &mut reg,
        "skewd_bound_violations",
        "Times the self-audit found a published interval that missed fresh evidence",
        p.violations,
    );
    if let Some(k) = &snap.kernel {
        gauge(
            &mut reg,
            "skewd_kernel_maxerror_seconds",
            "The kernel's own maximum error estimate (adjtimex maxerror)",
            k.maxerror_us as f64 / 1e6,
        );
        gauge(
            &mut reg,
            "skewd_kernel_synchronized",
            "1 if the kernel's STA_UNSYNC flag is clear",
            f64::from(u8::from(k.synchronized)),
        );
    }
    if let Some(shm) = &snap.shm {
        gauge(
            &mut reg,
            "skewd_shm_publishing",
            "1 while the shared-memory segment (what applications read) is being published",
            f64::from(u8::from(shm.publishing)),
        );
    }
    if let Some(http) = http {
        use std::sync::atomic::Ordering::Relaxed;
        gauge(
            &mut reg,
            "skewd_http_connections",
            "HTTP connections open",
            http.open.load(Relaxed) as f64,
        );
        counter(
            &mut reg,
            "skewd_http_connections_refused",
            "HTTP connections closed on accept (over the per-peer cap, or every slot busy)",
            http.refused.load(Relaxed),
        );
        counter(
            &mut reg,
            "skewd_http_connections_evicted",
            "Idle HTTP connections closed to make room for a new one (at the connection cap)",
            http.evicted.load(Relaxed),
        );
    }
    family(
        &mut reg,
        "skewd_build_info",
        "Build information",
        vec![(vec![("version", env!("CARGO_PKG_VERSION").to_owned())], 1.0)],
    );
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &reg);
    out
}
