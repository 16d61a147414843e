//! `skewd`: the agent and its command-line tools. CLI parsing, config
//! loading, logging and runtime start only; the work lives in the library.

use clap::{Parser, Subcommand};
use skewd::client::{Clock, LeapFree, Mode, Utc};
use skewd::config::{FileConfig, DEFAULT_LISTEN};
use skewd::daemon::RunOptions;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "skewd",
    version,
    about = "Tells the programs on this host what time it surely is"
)]
struct Cli {
    /// Config file, for the agent and every command [default:
    /// /etc/skewd/skewd.toml when it exists]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

/// The config every command starts from: `--config`, else the default
/// file when it exists, else the built-in defaults.
fn load_config(
    explicit: Option<&std::path::Path>,
) -> anyhow::Result<(FileConfig, Option<PathBuf>)> {
    let path = match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => {
            let d = PathBuf::from(skewd::config::DEFAULT_CONFIG);
            d.exists().then_some(d)
        }
    };
    match path {
        Some(p) => Ok((FileConfig::load(&p)?, Some(p))),
        None => Ok((FileConfig::default(), None)),
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent (flags override the config file).
    Run {
        /// NTP server HOST[:PORT] (repeatable; port 123 by default)
        /// [default: the config's [[server]]s, else the public pool]
        #[arg(long = "server", value_name = "HOST:PORT")]
        servers: Vec<String>,
        /// NTS (authenticated NTP) server: its key-exchange HOST[:PORT]
        /// (repeatable; port 4460 by default). With --server, replaces the
        /// config's servers too.
        #[arg(long = "nts-server", value_name = "HOST:PORT")]
        nts_servers: Vec<String>,
        /// PEM CA certificates trusted for NTS key exchanges, besides the
        /// system store [default: `nts_ca_file` from the config]
        #[arg(long, value_name = "FILE")]
        nts_ca_file: Option<PathBuf>,
        /// HTTP listen address (the interval API, the status page, metrics)
        /// [default: `listen` from the config, else 127.0.0.1:9469]
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<SocketAddr>,
        /// A second listener serving only /metrics and the health checks,
        /// for a remote Prometheus [default: `metrics_listen` from the
        /// config, else none]
        #[arg(long, value_name = "ADDR:PORT")]
        metrics_listen: Option<SocketAddr>,
        /// Shared-memory segment path [default: `shm_path` from the config,
        /// else /run/skewd/clock; per user if that cannot be written]
        #[arg(long, value_name = "PATH")]
        shm: Option<PathBuf>,
        /// State directory (drift file) [default: `state_dir` from the
        /// config, else /var/lib/skewd; per user if that cannot be written]
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Poll interval for named servers, e.g. 1s, 16s [default:
        /// `poll_interval_s` from the config, else 16s; the public pool is
        /// never polled faster than 64s]
        #[arg(long, value_parser = humantime::parse_duration)]
        poll: Option<Duration>,
        /// Use only userspace receive stamps (no SO_TIMESTAMPNS).
        #[arg(long)]
        no_kernel_timestamps: bool,
        /// The hypervisor's VMClock page to watch for disruptions (live
        /// migration, snapshot restore); default /dev/vmclock0 if present.
        #[arg(long, value_name = "PATH")]
        vmclock: Option<PathBuf>,
        /// Declare every --server as ageing its own root dispersion before
        /// answering (chronyd does, ntpd does not): much narrower intervals
        /// against chrony servers, wrong for ntpd ones.
        #[arg(long)]
        servers_age_dispersion: bool,
    },
    /// Print the interval [earliest, latest] that contains true time now
    /// (read from shared memory).
    Now {
        /// JSON output.
        #[arg(long)]
        json: bool,
        /// Fast mode: one clock read, no suspend check.
        #[arg(long)]
        fast: bool,
        /// The interval at this CLOCK_MONOTONIC_RAW instant instead of now,
        /// without the reader's checks (for comparing readers).
        #[arg(long, hide = true, value_name = "NS", allow_hyphen_values = true)]
        at_raw_ns: Option<i64>,
        #[command(flatten)]
        from: Segment,
    },
    /// Print the agent's status and sources.
    Status {
        /// JSON output.
        #[arg(long)]
        json: bool,
        /// The agent's HTTP address [default: `listen` from the config,
        /// else 127.0.0.1:9469]
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Return once UNIX_NS (UTC, or leap-free with --leapfree) is surely in
    /// the past.
    WaitUntil {
        /// Unix time in nanoseconds (UTC unless --leapfree).
        unix_ns: i64,
        /// UNIX_NS is on the leap-free timescale (as commit-wait timestamps
        /// are), not UTC.
        #[arg(long)]
        leapfree: bool,
        /// Give up after this long.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        #[command(flatten)]
        from: Segment,
    },
    /// Pick a timestamp and return once it is surely in the past.
    CommitWait {
        /// JSON output.
        #[arg(long)]
        json: bool,
        /// Give up after this long.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        #[command(flatten)]
        from: Segment,
    },
    /// Wait until the agent is synchronized with an error bound of at most
    /// --max-error (like `chronyc waitsync`): exit 0 then, 1 on timeout.
    /// Reads shared memory, as applications do; the segment may appear
    /// while it waits. For boot ordering: skewd-wait-sync.service.
    WaitSync {
        /// The widest acceptable error bound (half-width), e.g. 1ms, 100us.
        #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
        max_error: Duration,
        /// Give up after this long (0s: never).
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// Look this often (and say why not yet, unless --quiet).
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Print nothing while waiting.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        from: Segment,
    },
    /// Validate a config file and say what it tolerates.
    CheckConfig {
        /// The file [default: --config, else /etc/skewd/skewd.toml]
        file: Option<PathBuf>,
    },
    /// Write the man pages and shell completions into DIR (packaging).
    #[command(hide = true)]
    GenerateAssets {
        /// The output directory (created if missing).
        dir: PathBuf,
    },
}

/// Where a reading command reads from.
#[derive(clap::Args, Debug)]
struct Segment {
    /// The shared-memory segment (default: the agent's, or the per-user
    /// fallback).
    #[arg(long, value_name = "PATH")]
    shm: Option<PathBuf>,
    /// Also check this VMClock page's disruption marker on every read
    /// (/dev/vmclock0 is checked when present and readable).
    #[arg(long, value_name = "PATH")]
    vmclock: Option<PathBuf>,
}

impl Segment {
    /// Open `--shm`, else the config's `shm_path`, else where the agent
    /// puts it by default.
    fn open(&self, mode: Mode, cfg: &FileConfig) -> anyhow::Result<Clock> {
        let path = match self.shm.clone().or_else(|| cfg.shm_path.clone()) {
            Some(p) => p,
            None => skewd::paths::find_segment().map_err(anyhow::Error::msg)?,
        };
        let clock = Clock::open_with(&path, mode)?;
        Ok(match &self.vmclock {
            Some(p) => clock.with_vmclock(p)?,
            None => clock,
        })
    }
}

fn init_logging() {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        if let Ok(j) = tracing_journald::layer() {
            tracing_subscriber::registry().with(filter).with(j).init();
            return;
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("skewd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn get(
    listen: SocketAddr,
    method: &str,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<skewd::httpc::Response> {
    match skewd::httpc::request(listen, method, path, timeout) {
        Ok(r) => Ok(r),
        // It answered, but not in a way this CLI can read.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(anyhow::anyhow!(
            "the server at {listen} sent a response skewd cannot read ({e}): is it skewd?"
        )),
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "cannot reach the agent at {listen} (is `skewd run` running?)"
        ))),
    }
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Cmd::CheckConfig { file } = &cli.cmd {
        let Some(file) = file.clone().or(cli.config.clone()).or_else(|| {
            let d = PathBuf::from(skewd::config::DEFAULT_CONFIG);
            d.exists().then_some(d)
        }) else {
            anyhow::bail!(
                "no config file: give one, or --config (the default {} does not exist)",
                skewd::config::DEFAULT_CONFIG
            );
        };
        return check_config(&file);
    }
    let (cfg, cfg_path) = load_config(cli.config.as_deref())?;
    match cli.cmd {
        Cmd::CheckConfig { .. } => unreachable!("handled above"),
        Cmd::Run {
            servers,
            nts_servers,
            nts_ca_file,
            listen,
            shm,
            state_dir,
            poll,
            no_kernel_timestamps,
            vmclock,
            servers_age_dispersion,
            metrics_listen,
        } => {
            init_logging();
            match &cfg_path {
                Some(p) => tracing::info!("config: {}", p.display()),
                None => tracing::info!(
                    "no config file ({} does not exist): built-in defaults and flags",
                    skewd::config::DEFAULT_CONFIG
                ),
            }
            let mut file = cfg;
            if no_kernel_timestamps {
                file.kernel_timestamps = Some(false);
            }
            if vmclock.is_some() {
                file.vmclock_path = vmclock;
            }
            let flagged = !servers.is_empty() || !nts_servers.is_empty();
            let mut opts = RunOptions::from_parts(
                file,
                skewd::daemon::options::Flags {
                    servers,
                    nts_servers,
                    nts_ca_file,
                    listen,
                    metrics_listen,
                    shm,
                    state_dir,
                    poll,
                },
            )?;
            if servers_age_dispersion {
                if !flagged {
                    anyhow::bail!("--servers-age-dispersion applies to --server flags; in a config file set dispersion_aged_by_server per [[server]]");
                }
                opts.dispersion_aged_by_server = vec![true; opts.servers.len()];
            }
            run(opts)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::WaitSync {
            max_error,
            timeout,
            interval,
            quiet,
            from,
        } => Ok(wait_sync(&from, &cfg, max_error, timeout, interval, quiet)),
        Cmd::Now {
            json,
            fast,
            at_raw_ns,
            from,
        } => {
            let read = from
                .open(if fast { Mode::Fast } else { Mode::Strict }, &cfg)
                .and_then(|c| {
                    Ok(match at_raw_ns {
                        Some(x) => c.at(x)?,
                        None => c.now()?,
                    })
                });
            let t = match read {
                Ok(t) => t,
                // Scripts asking for JSON get JSON, also when there is no
                // interval: null bounds, the status, and why.
                Err(e) if json => {
                    let status = match e.downcast_ref::<skewd::client::ClientError>() {
                        Some(skewd::client::ClientError::NoModel(s)) => s.as_str(),
                        _ => "unknown",
                    };
                    println!(
                        "{}",
                        serde_json::json!({
                            "earliest_ns": null, "latest_ns": null,
                            "earliest_leapfree_ns": null, "latest_leapfree_ns": null,
                            "epsilon_ns": null, "status": status, "error": format!("{e:#}"),
                        })
                    );
                    return Ok(ExitCode::FAILURE);
                }
                Err(e) => return Err(e),
            };
            let out = serde_json::json!({
                "earliest_ns": t.utc.earliest.0,
                "latest_ns": t.utc.latest.0,
                "earliest_leapfree_ns": t.leapfree.earliest.0,
                "latest_leapfree_ns": t.leapfree.latest.0,
                "epsilon_ns": t.epsilon_ns(),
                "status": t.status.as_str(),
            });
            if json {
                println!("{out}");
            } else {
                println!(
                    "earliest {}  latest {}  epsilon {}  status {}",
                    skewd::human::rfc3339(t.utc.earliest.0),
                    skewd::human::rfc3339(t.utc.latest.0),
                    skewd::human::ns(t.epsilon_ns()),
                    t.status.as_str()
                );
                println!(
                    "         {}           {}  (UTC, Unix ns)",
                    t.utc.earliest.0, t.utc.latest.0
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { json, listen } => {
            let listen = match listen {
                Some(l) => l,
                None => agent_address(&cfg)?,
            };
            let r = get(listen, "GET", "/v1/status", Duration::from_secs(5))?;
            if !(200..300).contains(&r.code) {
                // Not the interval API there (a metrics listener, another
                // server), or the agent refused: say what it said.
                let why = serde_json::from_str::<serde_json::Value>(&r.body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| r.body.chars().take(200).collect());
                anyhow::bail!("{listen} answered {} to /v1/status: {}", r.code, why.trim());
            }
            if json {
                println!("{}", r.body.trim());
            } else {
                print_status(&r.body)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::WaitUntil {
            unix_ns,
            leapfree,
            timeout,
            from,
        } => {
            let clock = from.open(Mode::Strict, &cfg)?;
            if leapfree {
                clock.wait_until(LeapFree(unix_ns), timeout, None)?;
            } else {
                clock.wait_until(Utc(unix_ns), timeout, None)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::CommitWait {
            json,
            timeout,
            from,
        } => {
            let clock = from.open(Mode::Strict, &cfg)?;
            let c = clock.commit_wait(timeout, None)?;
            if json {
                println!("{}", serde_json::to_string(&c)?);
            } else {
                println!(
                    "timestamp {} (leap-free ns) is in the past (waited {} ns, epsilon {} ns)",
                    c.timestamp_leapfree_ns, c.waited_ns, c.epsilon_ns
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::GenerateAssets { dir } => {
            let cmd = <Cli as clap::CommandFactory>::command();
            for path in skewd::daemon::assets::generate(cmd, &dir)? {
                println!("{}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `skewd check-config FILE`.
fn check_config(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let cfg = FileConfig::load(file)?;
    let nts = cfg.server.iter().filter(|s| s.nts).count();
    if nts > 0 {
        // The same check `run` makes before it starts.
        skewd::daemon::nts::roots(cfg.nts_ca_file.as_deref())
            .map_err(|e| anyhow::anyhow!("{}: {nts} NTS server(s) but {e}", file.display()))?;
    }
    let e = cfg.engine_config();
    println!(
        "{}: ok ({} servers, poll {} s, phi_hw {} ppm, D {} ppb/s)",
        file.display(),
        cfg.server.len(),
        e.poll.poll.0 as f64 / 1e9,
        e.assumptions.phi_hw.as_ppm_f64(),
        e.assumptions.wander.0 as f64 / 1e3
    );
    println!("{}", skewd::config::tolerance(cfg.server.len()));
    if nts > 0 {
        println!(
            "{nts} NTS server(s), authenticated; trusted CAs: the system store{}",
            cfg.nts_ca_file
                .as_ref()
                .map_or(String::new(), |p| format!(" and {}", p.display()))
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `skewd wait-sync`: poll the segment until it is synchronized with
/// ε ≤ `max_error`, saying why not every `interval`.
fn wait_sync(
    from: &Segment,
    cfg: &FileConfig,
    max_error: Duration,
    timeout: Duration,
    interval: Duration,
    quiet: bool,
) -> ExitCode {
    let start = std::time::Instant::now();
    let want = i64::try_from(max_error.as_nanos()).unwrap_or(i64::MAX);
    let interval = interval.max(Duration::from_millis(10));
    let mut said: Option<std::time::Instant> = None;
    loop {
        // Opened afresh on every look: the segment may not exist yet (the
        // agent is starting), or be replaced (removed and recreated).
        let read = from.open(Mode::Strict, cfg).map(|c| c.now());
        let why = match read {
            Ok(Ok(t))
                if t.status == skewd::core::model::Status::Synchronized
                    && t.epsilon_ns() <= want =>
            {
                println!(
                    "synchronized: error bound {} (at most {}) after {:.1} s",
                    skewd::human::ns(t.epsilon_ns()),
                    skewd::human::ns(want),
                    start.elapsed().as_secs_f64()
                );
                return ExitCode::SUCCESS;
            }
            Ok(Ok(t)) => format!(
                "status {}, error bound {} (want synchronized and at most {})",
                t.status.as_str(),
                skewd::human::ns(t.epsilon_ns()),
                skewd::human::ns(want)
            ),
            Ok(Err(e)) => format!("{e}"),
            Err(e) => format!("{e:#}"),
        };
        let elapsed = start.elapsed();
        if !timeout.is_zero() && elapsed >= timeout {
            eprintln!(
                "skewd: not synchronized within {}: {why}",
                humantime::format_duration(timeout)
            );
            return ExitCode::FAILURE;
        }
        if !quiet && said.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            println!("waiting ({:.0} s): {why}", elapsed.as_secs_f64());
            said = Some(std::time::Instant::now());
        }
        let left = if timeout.is_zero() {
            interval
        } else {
            interval.min(timeout - elapsed)
        };
        std::thread::sleep(left);
    }
}

/// Where to reach the agent: its configured listen address (an
/// unspecified one, 0.0.0.0, is reached on loopback).
fn agent_address(cfg: &FileConfig) -> anyhow::Result<SocketAddr> {
    let listen = cfg.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let mut a = skewd::config::listen_address(listen)?;
    if a.ip().is_unspecified() {
        a.set_ip(if a.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Ok(a)
}

fn print_status(body: &str) -> anyhow::Result<()> {
    let v: serde_json::Value = serde_json::from_str(body)?;
    let ms = |x: &serde_json::Value| {
        x.as_f64()
            .map_or("-".to_owned(), |n| format!("{:.3}", n / 1e6))
    };
    let pm = |x: &serde_json::Value, u: &serde_json::Value| match (x.as_i64(), u.as_i64()) {
        (Some(x), Some(u)) => format!("{} ± {}", skewd::human::signed_ns(x), skewd::human::ns(u)),
        _ => "-".to_owned(),
    };
    println!("status:        {}", v["status"].as_str().unwrap_or("?"));
    println!(
        "error bound:   {}",
        v["epsilon_ns"]
            .as_i64()
            .map_or("-".into(), skewd::human::ns)
    );
    println!(
        "system skew:   {} (REALTIME minus true time)",
        pm(&v["offset_ns"], &v["offset_uncertainty_ns"])
    );
    println!(
        "frequency:     {} (vs. MONOTONIC_RAW; the bound is what ε ages at)",
        match (
            v["frequency_ppm"].as_f64(),
            v["frequency_bound_ppm"].as_f64()
        ) {
            (Some(f), Some(b)) => format!("{f:+.3} ± {b:.3} ppm"),
            _ => "-".into(),
        }
    );
    println!(
        "clock steps:   {}   bound violations: {}",
        v["clock_steps"], v["bound_violations"]
    );
    print_budget(&v["epsilon_budget"]);
    println!();
    println!(
        "{:<28} {:<12} {:<4} {:>5} {:>22} {:>10} {:>11}",
        "SOURCE", "STATE", "AUTH", "REACH", "SRC−SKEWD ± HW ms", "DELAY ms", "ROOTDIST ms"
    );
    for s in v["sources"].as_array().into_iter().flatten() {
        let off = match (s["offset_ns"].as_f64(), s["offset_half_width_ns"].as_f64()) {
            (Some(o), Some(h)) => format!("{:+.3} ± {:.3}", o / 1e6, h / 1e6),
            (Some(o), None) => format!("{:+.3}", o / 1e6),
            _ => "-".into(),
        };
        // nts: authenticated NTS; NTS!: NTS but nothing authenticated now.
        let auth = match (s["nts"].is_object(), s["authenticated"] == true) {
            (true, true) => "nts",
            (true, false) => "NTS!",
            _ => "-",
        };
        println!(
            "{:<28} {:<12} {:<4} {:>5o} {:>22} {:>10} {:>11}",
            s["name"].as_str().unwrap_or("?"),
            s["state"].as_str().unwrap_or("?"),
            auth,
            s["reach"].as_u64().unwrap_or(0),
            off,
            ms(&s["delay_ns"]),
            ms(&s["root_distance_ns"]),
        );
    }
    for s in v["sources"].as_array().into_iter().flatten() {
        let n = &s["nts"];
        if n.is_object() {
            println!(
                "nts: {} ({}): {} cookies, {} key exchanges ({} failed{}), {} authentication failures, {} NAKs",
                s["name"].as_str().unwrap_or("?"),
                s["address"].as_str().unwrap_or("no NTP address yet"),
                n["cookies"],
                n["key_exchanges"],
                n["key_exchange_failures"],
                n["last_key_exchange_failure"]
                    .as_str()
                    .map_or(String::new(), |w| format!("; last: {w}")),
                n["authentication_failures"],
                n["naks"],
            );
        }
    }
    // Hints, never applied: servers seen to age their own root dispersion.
    for s in v["sources"].as_array().into_iter().flatten() {
        if let Some(n) = s["declaring_would_narrow_ns"].as_i64() {
            println!(
                "hint: {} ages its root dispersion itself (chrony-style): declaring it (dispersion_aged_by_server = true) would narrow its interval by {} on each side",
                s["name"].as_str().unwrap_or("?"),
                skewd::human::ns(n)
            );
        } else if s["dispersion_ageing"] == "fixed" && s["declared_aged"] == true {
            println!(
                "warning: {} is declared dispersion_aged_by_server but its root dispersion stays fixed (ntpd-style): the declaration can break the bound",
                s["name"].as_str().unwrap_or("?")
            );
        }
    }
    println!();
    println!("OFFSET is the source minus skewd's centre: positive means the source is ahead");
    println!("(chronyc shows the opposite sign); HW is half the width of its latest sample.");
    println!(
        "AUTH: nts = authenticated (NTS); NTS! = NTS, nothing authenticated now; - = plain NTP."
    );
    Ok(())
}

/// The error bound's budget as a short table: each part's share of ε
/// (parts that are zero left out), the gap between the two ends' centres,
/// and where each end comes from.
fn print_budget(b: &serde_json::Value) {
    if !b.is_object() {
        return;
    }
    let half_ns = |name: &str| b[format!("{name}_ns")].as_f64();
    println!("error bound made of (each part's share of it):");
    let names = skewd::core::budget::Part::ALL.map(|p| p.as_str());
    let mut named = 0.0;
    for name in names.iter().copied().chain(["centre_gap"]) {
        let Some(v) = half_ns(name).filter(|v| *v != 0.0) else {
            continue;
        };
        let shown = if name == "centre_gap" {
            skewd::human::signed_ns(v.round() as i64)
        } else {
            named += v;
            skewd::human::ns(v.round() as i64)
        };
        let note = if name == "centre_gap" {
            "  (half the distance from the lower end's centre up to the upper end's)"
        } else {
            ""
        };
        println!("  {:<24} {:>10}{note}", name.replace('_', " "), shown);
    }
    for (end, label) in [("lower_end", "lower end"), ("upper_end", "upper end")] {
        let e = &b[end];
        println!(
            "  {label} from {}{}, {} from its centre",
            e["source"].as_str().unwrap_or("(unknown)"),
            if e["carried"] == true {
                " (carried by the model from an earlier sample)"
            } else {
                ""
            },
            e["reach_ns"].as_i64().map_or("-".into(), skewd::human::ns),
        );
    }
    let gap = half_ns("centre_gap").unwrap_or(0.0);
    if gap < 0.0 && -gap > (named + gap) / 2.0 {
        println!(
            "  (the ends come from different samples whose centres overlap: the parts above add up to more than the bound, and each end's reach says why it lies where it does)"
        );
    }
}

fn run(mut opts: RunOptions) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // Signals first: a SIGHUP or SIGTERM during the start must not
        // kill the agent without a clean stop.
        let shutdown = skewd::daemon::signals();
        skewd::daemon::settle_dirs(&mut opts);
        // The segment next: exactly one agent may publish to it, and a
        // second one must stop before touching it or anything else.
        let shm = match opts.shm_path.as_deref() {
            Some(path) => match skewd::shm::Writer::create(path) {
                Ok(w) => {
                    tracing::info!("publishing to shared memory at {}", path.display());
                    Some(w)
                }
                Err(e @ skewd::shm::WriterError::Held { .. }) => return Err(e.into()),
                Err(e) => {
                    tracing::warn!("shared memory: {e} (trying again every 5 s)");
                    None
                }
            },
            None => None,
        };
        let listener = skewd::daemon::listen::from_systemd();
        skewd::daemon::run(opts, shm, listener, shutdown).await
    })
}
