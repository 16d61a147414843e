//! `skewd run`'s options: the config file merged with the command line
//! (flags win), checked before anything starts.

use crate::config::{FileConfig, DEFAULT_LISTEN, DEFAULT_POOL};
use crate::core::engine::EngineConfig;
use crate::paths::{DEFAULT_SHM, DEFAULT_STATE_DIR};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The hypervisor's VMClock page to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmClockPage {
    /// Where.
    pub path: PathBuf,
    /// The operator named it (then failing to read it is worth a warning;
    /// the default path is optional).
    pub named: bool,
}

/// What `skewd run`'s command line says (each `None` or empty: the
/// config file's, else the default).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--server`: NTP servers.
    pub servers: Vec<String>,
    /// `--nts-server`: NTS key-exchange servers.
    pub nts_servers: Vec<String>,
    /// `--nts-ca-file`.
    pub nts_ca_file: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--metrics-listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// `--shm`.
    pub shm: Option<PathBuf>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--poll`.
    pub poll: Option<Duration>,
}

/// Everything `skewd run` needs, after merging flags over the config file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Servers (`host:port`); each is one slot of N. For an NTS source,
    /// its key-exchange server.
    pub servers: Vec<String>,
    /// Per server: it ages its root dispersion itself (config only).
    pub dispersion_aged_by_server: Vec<bool>,
    /// Per server: an NTS source.
    pub nts: Vec<bool>,
    /// The TLS configuration of NTS key exchanges (when any source is NTS):
    /// its trust anchors were checked before anything started.
    pub nts_tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// The metrics-and-health-only listener, if any.
    pub metrics_listen: Option<SocketAddr>,
    /// Host names HTTP accepts besides addresses and `localhost`
    /// (DNS-rebinding protection): this host's name and the configured
    /// `http_hosts`.
    pub http_hosts: Vec<String>,
    /// Shared-memory segment path (`None`: not published).
    pub shm_path: Option<PathBuf>,
    /// State directory.
    pub state_dir: PathBuf,
    /// Engine settings (sources, leap table and rate hint are filled in at
    /// start from the servers and the state directory).
    pub engine: EngineConfig,
    /// Use kernel receive timestamps.
    pub kernel_timestamps: bool,
    /// Whether the directories were given explicitly (no fallback then).
    pub explicit_dirs: bool,
    /// The VMClock page to watch.
    pub vmclock: VmClockPage,
}

impl RunOptions {
    /// Merge the config file with flags (flags win). `--server` and
    /// `--nts-server` together replace the config's servers.
    pub fn from_parts(file: FileConfig, flags: Flags) -> anyhow::Result<RunOptions> {
        let Flags {
            servers,
            nts_servers,
            nts_ca_file,
            listen,
            metrics_listen,
            shm,
            state_dir,
            poll,
        } = flags;
        let mut file = file;
        if nts_ca_file.is_some() {
            file.nts_ca_file = nts_ca_file;
        }
        if let Some(p) = poll {
            file.poll_interval_s = Some(p.as_secs_f64());
        }
        if let Some(l) = listen {
            file.listen = Some(l.to_string());
            file.allow_remote_http = Some(true); // an explicit flag is the operator saying so
        }
        if let Some(m) = metrics_listen {
            file.metrics_listen = Some(m.to_string());
        }
        let mut nts: Vec<bool> = vec![false; servers.len()];
        nts.resize(servers.len() + nts_servers.len(), true);
        let servers: Vec<String> = servers
            .iter()
            .map(|s| crate::config::with_default_port(s))
            .chain(
                nts_servers
                    .iter()
                    .map(|s| crate::config::with_port(s, crate::config::NTS_KE_PORT)),
            )
            .collect();
        for s in &servers {
            crate::config::validate_address(s)?;
        }
        file.validate()?;
        let from_file = servers.is_empty();
        let mut servers: Vec<String> = if from_file {
            nts = file.server.iter().map(|s| s.nts).collect();
            file.server.iter().map(|s| s.address.clone()).collect()
        } else {
            servers
        };
        let dispersion_aged_by_server: Vec<bool> = if from_file {
            file.server
                .iter()
                .map(|s| s.dispersion_aged_by_server)
                .collect()
        } else {
            vec![false; servers.len()]
        };
        if servers.is_empty() {
            tracing::info!(
                "no servers configured: using the public pool ({})",
                DEFAULT_POOL.join(", ")
            );
            servers = DEFAULT_POOL.iter().map(|s| s.to_string()).collect();
            nts = vec![false; servers.len()];
        }
        // An NTS source without usable trust anchors is refused here,
        // before anything starts.
        let nts_tls = if nts.iter().any(|n| *n) {
            Some(super::nts::client_config(file.nts_ca_file.as_deref())?)
        } else {
            None
        };
        let explicit_dirs = shm.is_some()
            || state_dir.is_some()
            || file.shm_path.is_some()
            || file.state_dir.is_some();
        let dispersion_aged_by_server = if dispersion_aged_by_server.len() == servers.len() {
            dispersion_aged_by_server
        } else {
            vec![false; servers.len()]
        };
        crate::config::refuse_duplicates(&servers)?;
        if servers.len() > crate::config::MAX_SERVERS {
            anyhow::bail!(
                "{} servers: at most {}",
                servers.len(),
                crate::config::MAX_SERVERS
            );
        }
        let listen =
            crate::config::listen_address(file.listen.as_deref().unwrap_or(DEFAULT_LISTEN))?;
        let metrics_listen = file
            .metrics_listen
            .as_deref()
            .map(crate::config::listen_address)
            .transpose()?;
        // Addresses are always accepted; names are the operator's and this
        // host's own (what a scraper on another host is likely to send).
        let mut http_hosts = file.http_hosts.clone();
        if let Ok(h) = nix::unistd::gethostname() {
            let h = h.to_string_lossy().to_ascii_lowercase();
            if let Some((short, _)) = h.split_once('.') {
                http_hosts.push(short.to_owned());
            }
            http_hosts.push(h);
        }
        Ok(RunOptions {
            http_hosts,
            dispersion_aged_by_server,
            nts,
            nts_tls,
            servers,
            listen,
            metrics_listen,
            shm_path: Some(
                shm.or(file.shm_path.clone())
                    .unwrap_or_else(|| DEFAULT_SHM.into()),
            ),
            state_dir: state_dir
                .or(file.state_dir.clone())
                .unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
            engine: file.engine_config(),
            kernel_timestamps: file.kernel_timestamps.unwrap_or(true),
            explicit_dirs,
            vmclock: match &file.vmclock_path {
                Some(p) => VmClockPage {
                    path: p.clone(),
                    named: true,
                },
                None => VmClockPage {
                    path: crate::shm::vmclock::DEFAULT_PATH.into(),
                    named: false,
                },
            },
        })
    }
}
