//! The NTS key exchange's shell: TLS 1.3 only (rustls, ring provider),
//! ALPN `ntske/1`, certificates checked against the system store plus the
//! operator's `nts_ca_file`. It moves bytes: the request records and the
//! decoding of the response, the exporter label and contexts, the keys'
//! use are the core's ([`crate::core::nts`]). It also resolves the NTP
//! server the exchange names (the key-exchange host, port 123, unless the
//! server says otherwise).

use crate::core::nts::ke::{
    self, exporter_context, Direction, AEAD_AES_SIV_CMAC_256, ALPN, DEFAULT_NTP_PORT,
    EXPORTER_LABEL, KEY_LEN,
};
use crate::core::nts::{KeFailure, KeOutcome, Key};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A key exchange that has not finished by then has failed (the core
/// gives it up a little later in any case).
pub const KE_DEADLINE: Duration = Duration::from_secs(10);

/// Why no usable set of trust anchors.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The CA file could not be read.
    #[error("nts_ca_file {path}: cannot read it: {cause}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The CA file holds no certificate.
    #[error("nts_ca_file {0}: no PEM certificate in it")]
    Empty(PathBuf),
    /// A certificate in the CA file does not parse.
    #[error("nts_ca_file {path}: {why}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// No CA file and no certificate in the system store.
    #[error("no trusted CA for NTS: the system certificate store is empty ({0}); install ca-certificates or set nts_ca_file")]
    NoSystemRoots(String),
}

/// The largest CA file read.
const MAX_CA_FILE_LEN: u64 = 16 << 20;

/// The trust anchors: the system store, plus every certificate of
/// `ca_file`. Refused when `ca_file` is unreadable, empty or invalid, or
/// when there is none at all.
pub fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, CaError> {
    let mut store = RootCertStore::empty();
    if let Some(path) = ca_file {
        // A CA bundle is a few hundred kB at most: read no more than 16 MiB
        // (a device such as /dev/zero would never end).
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_CA_FILE_LEN + 1).read_to_end(&mut bytes))
            .map_err(|cause| CaError::Read {
                path: path.to_owned(),
                cause,
            })?;
        if bytes.len() as u64 > MAX_CA_FILE_LEN {
            return Err(CaError::Invalid {
                path: path.to_owned(),
                why: format!("longer than {MAX_CA_FILE_LEN} bytes"),
            });
        }
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(&bytes) {
            let invalid = |why: String| CaError::Invalid {
                path: path.to_owned(),
                why,
            };
            let cert = cert.map_err(|e| invalid(format!("not PEM: {e}")))?;
            store
                .add(cert)
                .map_err(|e| invalid(format!("certificate {}: {e}", n + 1)))?;
            n += 1;
        }
        if n == 0 {
            return Err(CaError::Empty(path.to_owned()));
        }
    }
    let system = rustls_native_certs::load_native_certs();
    let (added, _ignored) = store.add_parsable_certificates(system.certs);
    if store.is_empty() {
        let why = match (added, system.errors.first()) {
            (_, Some(e)) => e.to_string(),
            _ => "no certificate found".to_owned(),
        };
        return Err(CaError::NoSystemRoots(why));
    }
    Ok(store)
}

/// The TLS client configuration for NTS-KE: TLS 1.3 only, ALPN `ntske/1`.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, CaError> {
    let roots = roots(ca_file)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        // The ring provider supports TLS 1.3: this cannot fail.
        .map_err(|e| CaError::NoSystemRoots(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(cfg))
}

/// What a finished key exchange gave.
#[derive(Debug)]
pub struct KeDone {
    /// Keys and cookies, for the engine.
    pub outcome: KeOutcome,
    /// The NTP server (`host:port`) it names.
    pub ntp_server: String,
    /// Its addresses (IPv4 first).
    pub ntp_addrs: Vec<SocketAddr>,
}

/// A failed key exchange: its kind for the engine, and words for the log.
pub type KeFailed = (KeFailure, String);

/// `host` and `port` of `host:port` (brackets of an IPv6 literal removed).
fn split(name: &str) -> Option<(&str, u16)> {
    let (host, port) = name.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some((host, port.parse().ok()?))
}

/// Run one key exchange with the NTS-KE server `name` (`host:port`):
/// send `request`, read the response, export the keys, resolve the NTP
/// server. At most [`KE_DEADLINE`].
pub async fn key_exchange(
    config: Arc<ClientConfig>,
    name: String,
    request: Vec<u8>,
) -> Result<KeDone, KeFailed> {
    match tokio::time::timeout(KE_DEADLINE, exchange(config, &name, &request)).await {
        Ok(r) => r,
        Err(_) => Err((
            KeFailure::TimedOut,
            format!("no complete response within {KE_DEADLINE:?}"),
        )),
    }
}

async fn exchange(
    config: Arc<ClientConfig>,
    name: &str,
    request: &[u8],
) -> Result<KeDone, KeFailed> {
    let unreachable = |e: String| (KeFailure::Unreachable, e);
    let tls_failed = |e: String| (KeFailure::Tls, e);
    let (host, _) = split(name).ok_or_else(|| unreachable(format!("{name:?} is not HOST:PORT")))?;
    let server_name = ServerName::try_from(host.to_owned())
        .map_err(|e| unreachable(format!("{host:?} is not a host name or address: {e}")))?;
    let tcp = tokio::net::TcpStream::connect(name)
        .await
        .map_err(|e| unreachable(format!("connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(server_name, tcp)
        .await
        .map_err(|e| tls_failed(format!("TLS: {e}")))?;
    {
        let conn = tls.get_ref().1;
        if conn.alpn_protocol() != Some(ALPN) {
            return Err(tls_failed(
                "the server did not agree to ALPN ntske/1".to_owned(),
            ));
        }
        if conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
            return Err(tls_failed("not TLS 1.3".to_owned()));
        }
    }
    tls.write_all(request)
        .await
        .map_err(|e| unreachable(format!("send: {e}")))?;
    tls.flush()
        .await
        .map_err(|e| unreachable(format!("send: {e}")))?;
    let mut buf = Vec::with_capacity(1024);
    let response = loop {
        let mut chunk = [0u8; 4096];
        let n = tls
            .read(&mut chunk)
            .await
            .map_err(|e| unreachable(format!("receive: {e}")))?;
        if n == 0 {
            break ke::finish(&buf);
        }
        buf.extend_from_slice(&chunk[..n]);
        match ke::decode_response(&buf) {
            Ok(Some((r, _))) => break Ok(r),
            Ok(None) => continue,
            Err(e) => break Err(e),
        }
    };
    let response = response.map_err(|e| (KeFailure::Response(e), e.to_string()))?;
    let export = |dir| -> Result<Key, KeFailed> {
        let ctx = exporter_context(AEAD_AES_SIV_CMAC_256, dir);
        tls.get_ref()
            .1
            .export_keying_material([0u8; KEY_LEN], EXPORTER_LABEL, Some(&ctx))
            .map(Key)
            .map_err(|e| tls_failed(format!("key export: {e}")))
    };
    let (c2s, s2c) = (export(Direction::C2s)?, export(Direction::S2c)?);
    // Done with TLS: say so, but do not wait for the server.
    let _ = tokio::time::timeout(Duration::from_millis(100), tls.shutdown()).await;
    let ntp_host = response.server.clone().unwrap_or_else(|| host.to_owned());
    let ntp_port = response.port.unwrap_or(DEFAULT_NTP_PORT);
    let ntp_server = match ntp_host.parse::<std::net::Ipv6Addr>() {
        Ok(_) => format!("[{ntp_host}]:{ntp_port}"),
        Err(_) => format!("{ntp_host}:{ntp_port}"),
    };
    let ntp_addrs = crate::net::resolve(&ntp_server).await.map_err(|e| {
        (
            KeFailure::NtpAddress,
            format!("NTP server {ntp_server}: {e}"),
        )
    })?;
    let ntp_addrs: Vec<_> = ntp_addrs.into_iter().filter(unicast).collect();
    if ntp_addrs.is_empty() {
        return Err((
            KeFailure::NtpAddress,
            format!("NTP server {ntp_server}: not a unicast address"),
        ));
    }
    Ok(KeDone {
        outcome: KeOutcome {
            c2s,
            s2c,
            cookies: response.cookies,
        },
        ntp_server,
        ntp_addrs,
    })
}

/// Whether `a` can be a server's unicast address: a server record may name
/// any host (RFC 8915), but not an unspecified, broadcast or multicast one.
fn unicast(a: &SocketAddr) -> bool {
    match a.ip() {
        std::net::IpAddr::V4(v4) => {
            !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast())
        }
        std::net::IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}

/// An NTS source's figures in `/v1/status`.
pub fn status_json(n: &crate::core::nts::NtsReport) -> serde_json::Value {
    serde_json::json!({
        "authenticated": n.authenticated,
        "cookies": n.cookies,
        "key_exchanges": n.key_exchanges,
        "key_exchange_failures": n.key_exchange_failures,
        "last_key_exchange_failure": n.last_key_exchange_failure.map(|f| f.to_string()),
        "authentication_failures": n.auth_failures,
        "naks": n.naks,
        "authenticated_replies": n.authenticated_replies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unicast_ntp_servers_are_taken() {
        for bad in [
            "0.0.0.0:123",
            "255.255.255.255:123",
            "224.0.0.1:123",
            "[::]:123",
            "[ff02::1]:123",
        ] {
            assert!(!unicast(&bad.parse().unwrap()), "{bad}");
        }
        for good in [
            "127.0.0.1:123",
            "192.0.2.1:4123",
            "[::1]:123",
            "[2001:db8::1]:123",
        ] {
            assert!(unicast(&good.parse().unwrap()), "{good}");
        }
    }

    #[test]
    fn names_split_into_host_and_port() {
        assert_eq!(split("time.example:4460"), Some(("time.example", 4460)));
        assert_eq!(split("[2001:db8::1]:4460"), Some(("2001:db8::1", 4460)));
        assert_eq!(split("127.0.0.1"), None);
    }

    #[test]
    fn unusable_ca_files_are_refused_with_the_reason() {
        let dir = std::env::temp_dir().join(format!("skewd-nts-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        assert!(matches!(roots(Some(&missing)), Err(CaError::Read { .. })));
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        assert!(matches!(roots(Some(&empty)), Err(CaError::Empty(_))));
        let junk = dir.join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = roots(Some(&junk)).unwrap_err();
        assert!(matches!(e, CaError::Invalid { .. }), "{e}");
        // A file without end is refused, not read until memory runs out.
        let e = roots(Some(Path::new("/dev/zero"))).unwrap_err();
        assert!(e.to_string().contains("longer than"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
