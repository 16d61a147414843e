//! The blocking HTTP client the CLI (and the tests) use to talk to the
//! local agent: `ureq` without TLS, proxies or redirects, every status code
//! returned as a response (not an error), bodies capped at 4 MiB.

use std::net::SocketAddr;
use std::time::Duration;

/// A response: status code and body.
#[derive(Debug)]
pub struct Response {
    /// HTTP status code.
    pub code: u16,
    /// Body text.
    pub body: String,
}

/// The largest body read.
const MAX_BODY: u64 = 4 << 20;

/// Send `method path` to `addr` with an empty body and read the whole
/// response, within `timeout` (connecting within 2 s).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    timeout: Duration,
) -> std::io::Result<Response> {
    let io = |e: ureq::Error| match e {
        ureq::Error::Io(e) => e,
        ureq::Error::Timeout(t) => {
            std::io::Error::new(std::io::ErrorKind::TimedOut, format!("timed out ({t})"))
        }
        e => std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        // The agent is local: an HTTP_PROXY in the environment must not
        // take the request elsewhere.
        .proxy(None)
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(2)))
        .timeout_global(Some(timeout))
        .build()
        .into();
    let uri = format!("http://{addr}{path}");
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(&uri)
        .header("Content-Length", "0")
        // One request per connection: the agent frees the slot at once
        // (it caps connections; a kept-alive one waits to be evicted).
        .header("Connection", "close")
        .body(())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let mut resp = agent.run(req).map_err(io)?;
    let code = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string()
        .map_err(io)?;
    Ok(Response { code, body })
}
