//! What the accuracy benches share: settings from the environment, and a
//! series of reads of one agent's segment, each checked against the host
//! clock read around it (the servers serve the host clock, so it is true
//! time here).

use skewd::client::Clock;

/// The run's settings: `SKEWD_ACCURACY_SECS` (default `secs`),
/// `SKEWD_ACCURACY_WARMUP` (default `warmup`), `SKEWD_ACCURACY_POLL`
/// (default 1s); `None` when cargo only lists benches or one of `tools`
/// is missing (said on stderr).
pub fn settings(bench: &str, tools: &[&str], secs: u64, warmup: u64) -> Option<(u64, u64, String)> {
    if std::env::args().any(|a| a == "--list") {
        return None;
    }
    for tool in tools {
        if !super::common::have(tool) {
            eprintln!("{bench}: {tool} is not installed (tests/run.sh installs chrony)");
            return None;
        }
    }
    Some((
        env_secs("SKEWD_ACCURACY_SECS", secs),
        env_secs("SKEWD_ACCURACY_WARMUP", warmup),
        std::env::var("SKEWD_ACCURACY_POLL").unwrap_or_else(|_| "1s".into()),
    ))
}

/// Print the result `out` (JSON, last line), then fail if an agent
/// counted a bound violation or a read missed the host clock.
pub fn finish(out: &serde_json::Value, series: &[Series], agents: &[std::net::SocketAddr]) {
    for http in agents {
        let st = super::common::get_json(*http, "/v1/status");
        assert_eq!(st["bound_violations"], 0, "{st}");
    }
    println!("{out}");
    let missed: u64 = series.iter().map(|s| s.misses).sum();
    assert_eq!(missed, 0, "an interval missed the host clock");
}

/// `name` from the environment, in seconds, else `default`.
pub fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p`-th percentile of `v` (0 when empty).
pub fn pct(v: &mut [i64], p: usize) -> i64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[(v.len() - 1) * p / 100]
}

/// One agent's reads.
pub struct Series {
    pub name: &'static str,
    pub clock: Clock,
    pub eps: Vec<i64>,
    pub reads: u64,
    pub misses: u64,
}

impl Series {
    /// Reads of the segment `clock`.
    pub fn new(name: &'static str, clock: Clock) -> Series {
        Series {
            name,
            clock,
            eps: vec![],
            reads: 0,
            misses: 0,
        }
    }

    /// Reads of `agent`'s segment, once it is synchronized (30 s at most).
    pub fn synchronized(
        name: &'static str,
        agent: &super::common::Agent,
        http: std::net::SocketAddr,
    ) -> Series {
        use super::common::{get_json, wait_until};
        assert!(
            wait_until(std::time::Duration::from_secs(30), || get_json(
                http, "/v1/now"
            )["status"]
                == "synchronized"),
            "skewd ({name}) never synchronized"
        );
        Series::new(name, Clock::open(&agent.dir.join("clock")).unwrap())
    }

    /// Read once between two host clock reads: count a miss, and keep the
    /// half-width when `keep` (after the warm-up).
    pub fn read(&mut self, keep: bool) {
        let b = common_realtime();
        let t = self.clock.now();
        let a = common_realtime();
        let Ok(t) = t else { return };
        self.reads += 1;
        if (t.utc.earliest.0 as i128) > a || (t.utc.latest.0 as i128) < b {
            self.misses += 1;
            eprintln!("MISS ({}): {t:?} vs [{b}, {a}]", self.name);
        }
        if keep {
            self.eps.push(t.epsilon_ns());
        }
    }

    /// Median and 90th percentile of the kept half-widths.
    pub fn summary(&mut self) -> (i64, i64) {
        (pct(&mut self.eps, 50), pct(&mut self.eps, 90))
    }
}

fn common_realtime() -> i128 {
    skewd::clock::realtime().0
}
