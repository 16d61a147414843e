//! Strict TOML configuration: unknown keys are errors (with line and
//! column), every duration and rate carries its unit in the key name, and
//! every value is range-checked before the agent starts.
//!
//! ```toml
//! listen = "127.0.0.1:9469"
//! shm_path = "/run/skewd/clock"
//! state_dir = "/var/lib/skewd"
//! poll_interval_s = 16
//!
//! [[server]]
//! address = "ntp1.example.net:123"
//!
//! [assumptions]
//! max_frequency_error_ppm = 200
//! ```

use crate::core::engine::EngineConfig;
use crate::core::source::SourceConfig;
use crate::core::time::{Nanos, Rate};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The config file every command reads when it exists (`--config`
/// overrides it).
pub const DEFAULT_CONFIG: &str = "/etc/skewd/skewd.toml";
/// Default HTTP listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9469";
pub use crate::paths::{DEFAULT_SHM, DEFAULT_STATE_DIR};
/// The most servers a config may name.
pub const MAX_SERVERS: usize = 64;
/// Servers used when none are configured (each name is one slot).
pub const DEFAULT_POOL: [&str; 4] = [
    "0.pool.ntp.org:123",
    "1.pool.ntp.org:123",
    "2.pool.ntp.org:123",
    "3.pool.ntp.org:123",
];

/// Whether `address` (`host[:port]`) names a server of the public NTP
/// pool (`pool.ntp.org` or a zone of it), which skewd polls by the pool's
/// usage guidance whatever the configuration asks.
pub fn is_public_pool(address: &str) -> bool {
    let host = address
        .rsplit_once(':')
        .map_or(address, |(h, _)| h)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    host == "pool.ntp.org" || host.ends_with(".pool.ntp.org")
}

/// One configured server.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `host:port` (a name is resolved at start and again while unreachable).
    pub address: String,
    /// Whether this server smears leap seconds. Only `false` is accepted:
    /// a smearing server is off UTC by up to half a second for a day around
    /// a leap and changes its rate by ~11.6 ppm at the smear's onset, which
    /// the bound cannot express (see `validate`).
    #[serde(default)]
    pub leap_smearing: bool,
    /// The server ages its root dispersion itself before sending (chrony
    /// does; ntpd does not). skewd then trusts the advertised root distance
    /// as of the transmit time instead of ageing it again at Phi_s. Set it
    /// only for servers you know run chrony (or another daemon that does):
    /// for an ntpd-style server its error since its last update would escape
    /// the bound.
    #[serde(default)]
    pub dispersion_aged_by_server: bool,
    /// An NTS server (RFC 8915): `address` is its key-exchange server
    /// (`host[:port]`, port 4460 by default); the NTP server and port come
    /// from the key exchange (the same host and port 123 unless it names
    /// others), and every reply is authenticated.
    #[serde(default)]
    pub nts: bool,
}

/// Oscillator assumptions (docs/model.md, "Rate and ageing").
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssumptionsConfig {
    /// phi_hw: the oscillator's rate error never exceeds this.
    pub max_frequency_error_ppm: f64,
    /// phi_min: measured rate bounds are never taken narrower than this.
    pub min_frequency_bound_ppm: f64,
    /// D: the rate changes by at most this much per second.
    pub max_frequency_change_ppb_per_s: f64,
    /// Anchors older than this are not used as rate evidence.
    pub rate_window_s: f64,
    /// Phi_s: servers' root dispersion is aged at least at this rate.
    pub server_dispersion_rate_ppm: f64,
    /// Our own timestamping uncertainty added to each exchange.
    pub local_precision_ns: u64,
}

impl Default for AssumptionsConfig {
    fn default() -> Self {
        AssumptionsConfig {
            max_frequency_error_ppm: 200.0,
            min_frequency_bound_ppm: 1.0,
            max_frequency_change_ppb_per_s: 20.0,
            rate_window_s: 1024.0,
            server_dispersion_rate_ppm: 15.0,
            local_precision_ns: 100,
        }
    }
}

/// Status timetable; unset values derive from the poll interval.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimetableConfig {
    /// synchronized -> free_running after this long without majority agreement.
    pub free_run_after_s: Option<f64>,
    /// free_running -> unknown this long after the last anchor.
    pub holdover_s: Option<f64>,
    /// ... or once the error bound (half-width) would exceed this.
    pub max_error_bound_ms: Option<f64>,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Servers.
    #[serde(default)]
    pub server: Vec<ServerConfig>,
    /// HTTP listen address.
    pub listen: Option<String>,
    /// Shared-memory segment path.
    pub shm_path: Option<PathBuf>,
    /// State directory.
    pub state_dir: Option<PathBuf>,
    /// Poll interval in seconds.
    pub poll_interval_s: Option<f64>,
    /// Use kernel receive timestamps (SO_TIMESTAMPNS) when available.
    pub kernel_timestamps: Option<bool>,
    /// Allow `listen` on a non-loopback address.
    pub allow_remote_http: Option<bool>,
    /// A second listener that serves only `/metrics` and the health checks
    /// (`/livez`, `/readyz`, `/healthz`): the address a remote Prometheus
    /// scrapes, while the interval API (and its long polls) stays on
    /// `listen`, on loopback. Any address; no Host check (it takes no
    /// action and reveals only what the metrics do).
    pub metrics_listen: Option<String>,
    /// Host names the HTTP API accepts besides addresses, `localhost` and
    /// this host's own name: the names clients use to reach it (a DNS
    /// alias a scraper uses, say). Any other name is refused with 421 (a
    /// DNS-rebinding page in a browser).
    #[serde(default)]
    pub http_hosts: Vec<String>,
    /// The hypervisor's VMClock page, watched for its disruption marker
    /// (default `/dev/vmclock0` when it exists).
    pub vmclock_path: Option<PathBuf>,
    /// A PEM bundle of CA certificates trusted for NTS key exchanges, in
    /// addition to the system store.
    pub nts_ca_file: Option<PathBuf>,
    /// Oscillator assumptions.
    #[serde(default)]
    pub assumptions: AssumptionsConfig,
    /// Status timetable.
    #[serde(default)]
    pub timetable: TimetableConfig,
}

/// A configuration problem.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {cause}")]
    Read {
        /// Path.
        path: PathBuf,
        /// Cause.
        cause: std::io::Error,
    },
    /// TOML syntax or schema error (the message names line and column).
    #[error("{path}: {message}")]
    Parse {
        /// Path.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value out of range.
    #[error("{key}: {reason}")]
    Invalid {
        /// The offending key.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

impl FileConfig {
    /// Parse TOML text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
        let mut cfg: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        for s in &mut cfg.server {
            s.address = if s.nts {
                with_port(&s.address, NTS_KE_PORT)
            } else {
                with_default_port(&s.address)
            };
        }
        if let Some(l) = &cfg.listen {
            listen_address(l)?;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Read and parse a file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_owned(),
            cause,
        })?;
        FileConfig::parse(&text, path)
    }

    /// Range checks that TOML types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let a = &self.assumptions;
        check_range(
            "assumptions.max_frequency_error_ppm",
            a.max_frequency_error_ppm,
            1.0,
            10_000.0,
        )?;
        check_range(
            "assumptions.min_frequency_bound_ppm",
            a.min_frequency_bound_ppm,
            0.001,
            a.max_frequency_error_ppm,
        )?;
        check_range(
            "assumptions.max_frequency_change_ppb_per_s",
            a.max_frequency_change_ppb_per_s,
            0.0,
            1e6,
        )?;
        check_range("assumptions.rate_window_s", a.rate_window_s, 1.0, 86_400.0)?;
        check_range(
            "assumptions.server_dispersion_rate_ppm",
            a.server_dispersion_rate_ppm,
            15.0,
            10_000.0,
        )?;
        if a.local_precision_ns > 1_000_000_000 {
            return Err(invalid(
                "assumptions.local_precision_ns",
                "must be at most 1e9",
            ));
        }
        if let Some(p) = self.poll_interval_s {
            check_range("poll_interval_s", p, 0.125, 1024.0)?;
        }
        let t = &self.timetable;
        if let Some(v) = t.free_run_after_s {
            check_range("timetable.free_run_after_s", v, 0.1, 86_400.0)?;
        }
        if let Some(v) = t.holdover_s {
            check_range("timetable.holdover_s", v, 1.0, 30.0 * 86_400.0)?;
        }
        if let Some(v) = t.max_error_bound_ms {
            check_range("timetable.max_error_bound_ms", v, 0.001, 1e7)?;
        }
        for s in &self.server {
            validate_address(&s.address)?;
        }
        if self.server.iter().any(|s| s.leap_smearing) {
            return Err(invalid(
                "server.leap_smearing",
                "leap-smearing servers are not supported: around a leap second a smeared clock is off UTC by up to 0.5 s for a day and its rate changes by ~11.6 ppm at the smear's onset, so a hard bound would be either wrong or a second wide; use servers that announce leap seconds (leap_smearing = false)",
            ));
        }
        let addrs: Vec<String> = self.server.iter().map(|s| s.address.clone()).collect();
        refuse_duplicates(&addrs)?;
        if self.server.len() > MAX_SERVERS {
            return Err(invalid(
                "server",
                format!(
                    "{} servers: at most {MAX_SERVERS} (each holds sockets; 4 to 8 are plenty: 4 tolerate one liar or one outage, 6 two liars or one outage)",
                    self.server.len()
                ),
            ));
        }
        if let Some(l) = &self.listen {
            let addr = listen_address(l)?;
            if !addr.ip().is_loopback() && self.allow_remote_http != Some(true) {
                return Err(invalid(
                    "listen",
                    format!(
                        "{l} is not loopback; set allow_remote_http = true to serve other hosts"
                    ),
                ));
            }
        }
        if let Some(m) = &self.metrics_listen {
            let addr = listen_address(m)?;
            let api = listen_address(self.listen.as_deref().unwrap_or(DEFAULT_LISTEN))?;
            if addr.port() == api.port() && addr.port() != 0 {
                return Err(invalid(
                    "metrics_listen",
                    format!("{m} uses the port of listen ({api}): give the metrics listener a port of its own (e.g. 9470)"),
                ));
            }
        }
        Ok(())
    }

    /// The engine configuration these settings describe.
    pub fn engine_config(&self) -> EngineConfig {
        let poll = secs(self.poll_interval_s.unwrap_or(16.0));
        let mut e = EngineConfig::new(poll, 0);
        e.sources = self
            .server
            .iter()
            .map(|s| source_config(&s.address, s.dispersion_aged_by_server, s.nts))
            .collect();
        let a = &self.assumptions;
        e.assumptions.phi_hw = ppm(a.max_frequency_error_ppm);
        e.assumptions.phi_min = ppm(a.min_frequency_bound_ppm);
        e.assumptions.wander = Rate((a.max_frequency_change_ppb_per_s * 1e3).ceil() as i128);
        e.assumptions.rate_window = secs(a.rate_window_s);
        e.sample.server_dispersion_rate = ppm(a.server_dispersion_rate_ppm);
        e.sample.local_rate_bound = ppm(a.max_frequency_error_ppm);
        e.sample.local_precision = Nanos(a.local_precision_ns as i128);
        let t = &self.timetable;
        if let Some(v) = t.free_run_after_s {
            e.timetable.free_run_after = secs(v);
        }
        if let Some(v) = t.holdover_s {
            e.timetable.holdover = secs(v);
        }
        if let Some(v) = t.max_error_bound_ms {
            e.timetable.max_half_width = Nanos((v * 1e6).ceil() as i128);
        }
        e
    }
}

fn check_range(key: &'static str, v: f64, lo: f64, hi: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v >= lo && v <= hi {
        Ok(())
    } else {
        Err(invalid(key, format!("{v} is outside {lo}..={hi}")))
    }
}

/// The listen address `a` (`ADDR:PORT`, or `localhost:PORT`, which is
/// 127.0.0.1: resolving other names for a listen address would make it
/// depend on DNS at start).
pub fn listen_address(a: &str) -> Result<std::net::SocketAddr, ConfigError> {
    let a = a.trim();
    let text = match a.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => a.to_owned(),
    };
    text.parse().map_err(|_| {
        invalid(
            "listen",
            format!("{a:?} is not ADDR:PORT (an address, or localhost, and a port)"),
        )
    })
}

/// The port of an NTS key-exchange server that names none.
pub const NTS_KE_PORT: u16 = 4460;

/// What kind of source a configured server is.
pub fn source_config(address: &str, dispersion_aged_by_server: bool, nts: bool) -> SourceConfig {
    if nts {
        SourceConfig::Nts {
            dispersion_aged_by_server,
        }
    } else {
        SourceConfig::Ntp {
            dispersion_aged_by_server,
            public_pool: is_public_pool(address),
        }
    }
}

/// `a` with the NTP port (123) added when it names none: `time.example`
/// and `192.0.2.1` become `…:123`, a bare IPv6 address `[…]:123`.
pub fn with_default_port(a: &str) -> String {
    with_port(a, 123)
}

/// `a` with `port` added when it names none.
pub fn with_port(a: &str, port: u16) -> String {
    let a = a.trim();
    if a.starts_with('[') {
        if a.contains("]:") {
            a.to_owned()
        } else {
            format!("{a}:{port}")
        }
    } else {
        match a.matches(':').count() {
            0 => format!("{a}:{port}"),
            1 => a.to_owned(),
            _ => format!("[{a}]:{port}"),
        }
    }
}

/// Check a `host:port` string without resolving it.
pub fn validate_address(a: &str) -> Result<(), ConfigError> {
    let bad = || invalid("server.address", format!("{a:?} is not HOST:PORT"));
    let (host, port) = a.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    Ok(())
}

/// Refuse a server named twice: one server in two slots would count twice
/// toward the f tolerated faults. Names compare case-insensitively, IP
/// literals by address (an IPv4-mapped IPv6 address is the IPv4 one).
/// Different names for one address are caught when they resolve.
pub fn refuse_duplicates(addresses: &[String]) -> Result<(), ConfigError> {
    let key = |a: &str| -> String {
        if let Ok(sa) = a.parse::<std::net::SocketAddr>() {
            let ip = match sa.ip() {
                std::net::IpAddr::V6(v6) => v6
                    .to_ipv4_mapped()
                    .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
                v4 => v4,
            };
            return std::net::SocketAddr::new(ip, sa.port()).to_string();
        }
        a.to_ascii_lowercase()
    };
    let mut seen: Vec<(String, &str)> = Vec::new();
    for a in addresses {
        let k = key(a);
        if let Some((_, first)) = seen.iter().find(|(s, _)| *s == k) {
            return Err(invalid(
                "server.address",
                format!("{a:?} is the same server as {first:?}: each server may fill one slot (two would count twice toward the fault tolerance)"),
            ));
        }
        seen.push((k, a));
    }
    Ok(())
}

fn secs(v: f64) -> Nanos {
    Nanos((v * 1e9).round() as i128)
}

/// Rates are rounded up: a bound is never taken tighter than configured.
fn ppm(v: f64) -> Rate {
    Rate((v * 1e6).ceil() as i128)
}

/// What `n` servers tolerate, in words (and a warning when it is fragile).
pub fn tolerance(n: usize) -> String {
    let f = crate::core::select::tolerated_faults(n);
    let need = 2 * f + 1;
    let spare = n.saturating_sub(need);
    let mut s = format!(
        "{n} servers: up to {f} may be wrong (lying) without a wrong interval; `synchronized` needs {need} answering and agreeing, so it survives {spare} unreachable"
    );
    if n < 4 || spare == 0 {
        s.push_str(&format!(
            "\nwarning: with {n} servers one server down leaves `synchronized` (free_running, /readyz 503); use an even number, 4 or more (4 tolerate one liar or one outage)"
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_servers_are_recognised() {
        for (a, yes) in [
            ("0.pool.ntp.org:123", true),
            ("2.debian.pool.ntp.org", true),
            ("POOL.NTP.ORG.:123", true),
            ("pool.ntp.org.example.com:123", false),
            ("mypool.ntp.org", false),
            ("time.example", false),
            ("[2001:db8::1]:123", false),
        ] {
            assert_eq!(is_public_pool(a), yes, "{a}");
        }
        let cfg = FileConfig::parse(
            "[[server]]\naddress = \"1.pool.ntp.org\"\n[[server]]\naddress = \"ntp.example\"\n",
            Path::new("t"),
        )
        .unwrap();
        let pools: Vec<bool> = cfg
            .engine_config()
            .sources
            .iter()
            .map(|s| {
                matches!(
                    s,
                    SourceConfig::Ntp {
                        public_pool: true,
                        ..
                    }
                )
            })
            .collect();
        assert_eq!(pools, [true, false]);
    }

    #[test]
    fn nts_servers_default_to_port_4460_and_become_nts_sources() {
        let cfg = FileConfig::parse(
            "nts_ca_file = \"/etc/skewd/ca.pem\"\n[[server]]\naddress = \"time.cloudflare.com\"\nnts = true\n[[server]]\naddress = \"[2001:db8::1]\"\nnts = true\ndispersion_aged_by_server = true\n[[server]]\naddress = \"ntp.example\"\n",
            Path::new("t"),
        )
        .unwrap();
        let addrs: Vec<&str> = cfg.server.iter().map(|s| s.address.as_str()).collect();
        assert_eq!(
            addrs,
            [
                "time.cloudflare.com:4460",
                "[2001:db8::1]:4460",
                "ntp.example:123"
            ]
        );
        assert_eq!(
            cfg.nts_ca_file.as_deref(),
            Some(Path::new("/etc/skewd/ca.pem"))
        );
        assert_eq!(
            cfg.engine_config().sources,
            [
                SourceConfig::Nts {
                    dispersion_aged_by_server: false
                },
                SourceConfig::Nts {
                    dispersion_aged_by_server: true
                },
                SourceConfig::Ntp {
                    dispersion_aged_by_server: false,
                    public_pool: false
                },
            ]
        );
        let e = FileConfig::parse("[[server]]\naddress = \"a\"\nnts = 1\n", Path::new("t"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3"), "{e}");
        let e = FileConfig::parse("nts_ca = \"x\"\n", Path::new("t"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nts_ca"), "{e}");
    }

    #[test]
    fn the_metrics_listener_needs_a_port_of_its_own() {
        let p = Path::new("t");
        let e = FileConfig::parse("metrics_listen = \"0.0.0.0:9469\"", p).unwrap_err();
        assert!(e.to_string().contains("port of its own"), "{e}");
        assert!(FileConfig::parse("metrics_listen = \"0.0.0.0:9470\"", p).is_ok());
        assert!(FileConfig::parse("metrics_listen = \"nonsense\"", p).is_err());
    }

    #[test]
    fn ports_default_to_123_and_localhost_listens_on_loopback() {
        assert_eq!(with_default_port("time.example"), "time.example:123");
        assert_eq!(with_default_port("192.0.2.1"), "192.0.2.1:123");
        assert_eq!(with_default_port("192.0.2.1:4123"), "192.0.2.1:4123");
        assert_eq!(with_default_port("2001:db8::1"), "[2001:db8::1]:123");
        assert_eq!(with_default_port("[2001:db8::1]"), "[2001:db8::1]:123");
        assert_eq!(with_default_port("[2001:db8::1]:9"), "[2001:db8::1]:9");
        let cfg = FileConfig::parse(
            "listen = \"localhost:19469\"\n[[server]]\naddress = \"a.example\"\n",
            Path::new("t"),
        )
        .unwrap();
        assert_eq!(cfg.server[0].address, "a.example:123");
        assert_eq!(
            listen_address("localhost:19469").unwrap().to_string(),
            "127.0.0.1:19469"
        );
        assert!(listen_address("example.com:80").is_err());
        assert!(FileConfig::parse("listen = \"nowhere\"\n", Path::new("t")).is_err());
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let e =
            FileConfig::parse("poll_interval_s = 1\nbogus = 3\n", Path::new("x.toml")).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("line 2") && m.contains("column 1"), "{m}");
        assert!(m.contains("bogus"), "{m}");
    }

    #[test]
    fn ranges_and_mixing_are_checked() {
        let p = Path::new("x.toml");
        assert!(FileConfig::parse("poll_interval_s = 0", p).is_err());
        assert!(FileConfig::parse("poll_interval_s = nan", p).is_err());
        assert!(FileConfig::parse("[assumptions]\nserver_dispersion_rate_ppm = 1", p).is_err());
        assert!(FileConfig::parse("listen = \"0.0.0.0:9469\"", p).is_err());
        assert!(
            FileConfig::parse("listen = \"0.0.0.0:9469\"\nallow_remote_http = true", p).is_ok()
        );
        let mixed = "[[server]]\naddress = \"a:123\"\nleap_smearing = true\n[[server]]\naddress = \"b:123\"\n";
        assert!(FileConfig::parse(mixed, p).is_err());
        let all = "[[server]]\naddress = \"a:123\"\nleap_smearing = true\n";
        let e = FileConfig::parse(all, p).unwrap_err().to_string();
        assert!(e.contains("not supported"), "{e}");
        assert!(FileConfig::parse(
            "[[server]]\naddress = \"a:123\"\nleap_smearing = false\n",
            p
        )
        .is_ok());
        assert!(FileConfig::parse("[[server]]\naddress = \"no host\"", p).is_err());
        assert!(FileConfig::parse("[[server]]\naddress = \"host:0\"", p).is_err());
    }

    #[test]
    fn duplicate_servers_are_refused() {
        let p = Path::new("x.toml");
        for dup in [
            "[[server]]\naddress = \"ntp.example:123\"\n[[server]]\naddress = \"NTP.example:123\"\n",
            "[[server]]\naddress = \"127.0.0.1:123\"\n[[server]]\naddress = \"[::ffff:127.0.0.1]:123\"\n",
        ] {
            let e = FileConfig::parse(dup, p).unwrap_err().to_string();
            assert!(e.contains("same server"), "{e}");
        }
        // the same host on another port is another server
        let ok =
            "[[server]]\naddress = \"127.0.0.1:123\"\n[[server]]\naddress = \"127.0.0.1:124\"\n";
        assert!(FileConfig::parse(ok, p).is_ok());
    }

    #[test]
    fn units_reach_the_engine() {
        let c = FileConfig::parse(
            "poll_interval_s = 2\n[assumptions]\nmax_frequency_error_ppm = 100\nmax_frequency_change_ppb_per_s = 5\n",
            Path::new("x"),
        )
        .unwrap();
        let e = c.engine_config();
        assert_eq!(e.poll.poll, Nanos::from_secs(2));
        assert_eq!(e.assumptions.phi_hw, Rate::from_ppm(100));
        assert_eq!(e.assumptions.wander, Rate::from_ppb(5));
    }
}
