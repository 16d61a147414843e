//! Local HTTP API (axum). Every handler reads its own clock and computes
//! from the last publication through the one read function
//! ([`crate::state::Snapshot::now`]); bad input gets a 4xx with a JSON
//! error body; waits are capped; a global concurrency limit sheds load.

use crate::clock;
use crate::core::model::Status;
use crate::core::read::{LeapFree, ReadError, Utc};
use crate::core::time::clamp_i64;
use crate::state::{healthy, Shared, Snapshot};
use crate::wait::{commit_wait_async, wait_async, Observation, WaitError};
use axum::error_handling::HandleErrorLayer;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Longest wait a request may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(10);
/// Default wait when `timeout_ms` is not given.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(1);
/// Waits (`/v1/wait`, `/v1/commit-wait`) served at once; more are shed
/// with 503. They have their own budget so that they can never starve the
/// quick endpoints.
pub const MAX_WAITS: usize = 256;
/// Status pages rendered at once; more are shed with 503.
pub const MAX_PAGES: usize = 4;
/// Quick requests (`/v1/now`, `/v1/status`, `/healthz`, `/metrics`)
/// served at once; more are shed with 503.
pub const MAX_QUICK: usize = 64;

/// A route group's protection: shed beyond `limit` at once, time out.
fn budget(r: Router<Arc<Shared>>, limit: usize, timeout: Duration) -> Router<Arc<Shared>> {
    r.layer(
        tower::ServiceBuilder::new()
            .layer(HandleErrorLayer::new(overloaded))
            .load_shed()
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(limit))
            .timeout(timeout),
    )
}

/// The router with all routes and the protective layers. `hosts` are the
/// Host header values accepted besides loopback names and addresses (the
/// listen address, names the operator configured): a page in a browser
/// that rebinds a DNS name to 127.0.0.1 must not reach the API.
///
/// At most `max_waits` waits are served at once (at most [`MAX_WAITS`]):
/// waits are never evicted as idle, so they must leave most of the
/// server's connection slots to everyone else.
pub fn router(shared: Arc<Shared>, hosts: Vec<String>, max_waits: usize) -> Router {
    let waits = Router::new()
        .route("/v1/wait", get(wait))
        .route("/v1/commit-wait", post(commit_wait));
    // The page is the largest answer: a few at a time, the rest shed.
    let page = Router::new().route("/", get(crate::page::index));
    let quick = Router::new()
        .route("/v1/now", get(now))
        .route("/v1/status", get(status))
        .route("/healthz", get(healthz))
        .route("/readyz", get(healthz))
        .route("/livez", get(livez))
        .route("/metrics", get(metrics));
    let hosts = Arc::new(hosts);
    budget(
        waits,
        max_waits.clamp(1, MAX_WAITS),
        MAX_WAIT + Duration::from_secs(5),
    )
    .merge(budget(quick, MAX_QUICK, Duration::from_secs(5)))
    .merge(budget(page, MAX_PAGES, Duration::from_secs(5)))
    .fallback(not_found)
    .method_not_allowed_fallback(method_not_allowed)
    .with_state(shared)
    .layer(axum::middleware::from_fn(move |req, next| {
        host_check(hosts.clone(), req, next)
    }))
    .layer(axum::middleware::from_fn(size_check))
}

/// The metrics listener's router: `/metrics` and the health checks only,
/// everything else 404 — a remote scraper never reaches the interval API
/// or its long polls. No Host check: it takes no action and shows nothing
/// the metrics do not, and scrapers name hosts in many ways.
pub fn metrics_router(shared: Arc<Shared>) -> Router {
    let quick = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(healthz))
        .route("/livez", get(livez));
    budget(quick, MAX_QUICK, Duration::from_secs(5))
        .fallback(not_found_here)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(shared)
        .layer(axum::middleware::from_fn(size_check))
}

async fn not_found_here() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint on the metrics listener: /metrics, /livez, /readyz (/healthz)",
    )
}

/// Longest request target answered (414 beyond).
pub const MAX_URI: usize = 4096;
/// Most header bytes answered (431 beyond). A head longer than the
/// server's buffer (`serve::Limits::max_header_bytes`, 16 KiB) never gets
/// here: hyper answers it 431 without a body and closes the connection.
pub const MAX_HEADERS: usize = 8192;

/// Refuse oversized requests with a JSON error body.
async fn size_check(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let uri = req.uri().to_string().len();
    if uri > MAX_URI {
        return error(
            StatusCode::URI_TOO_LONG,
            format!("request target of {uri} bytes: at most {MAX_URI}"),
        );
    }
    let head: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if head > MAX_HEADERS {
        return error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("{head} bytes of headers: at most {MAX_HEADERS}"),
        );
    }
    next.run(req).await
}

/// Whether `host` (a Host header value, maybe with a port) is an address
/// (a page that rebinds a DNS name to this host sends that name, never an
/// address), a loopback name, or one of `allowed` (the operator's names
/// and this host's own name).
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host
            }
        }),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok()
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(&name))
}

async fn host_check(
    hosts: Arc<Vec<String>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    match host {
        Some(h) if host_allowed(h, &hosts) => next.run(req).await,
        Some(h) => error(
            StatusCode::MISDIRECTED_REQUEST,
            format!("Host {h:?} does not name this agent (a DNS rebinding page?); configure it in http_hosts"),
        ),
        None => error(StatusCode::BAD_REQUEST, "a Host header is required"),
    }
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed here: /v1/commit-wait takes POST, the others GET",
    )
}

async fn overloaded(err: tower::BoxError) -> Response {
    if err.is::<tower::timeout::error::Elapsed>() {
        error(StatusCode::SERVICE_UNAVAILABLE, "request took too long")
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, "overloaded, try again")
    }
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(json!({ "error": msg.into() }))).into_response()
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint; see / (status page), /v1/now, /v1/status, /v1/wait, /v1/commit-wait, /livez, /readyz (/healthz), /metrics",
    )
}

/// An interval in the JSON shape of `/v1/now`: the plain `_ns` bounds are
/// UTC (Unix ns), the `_leapfree_ns` ones on the leap-free timescale
/// commit-wait uses; all null without a model (and with an `error` when the
/// bounds would not fit 64-bit ns: never clamped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NowJson {
    /// UTC is surely not before this (Unix ns).
    pub earliest_ns: Option<i64>,
    /// UTC is surely not after this (Unix ns).
    pub latest_ns: Option<i64>,
    /// The same lower bound on the leap-free timescale.
    pub earliest_leapfree_ns: Option<i64>,
    /// The same upper bound on the leap-free timescale.
    pub latest_leapfree_ns: Option<i64>,
    /// Half the width, rounded up.
    pub epsilon_ns: Option<i64>,
    /// What the interval is good for.
    pub status: Status,
    /// The local CLOCK_MONOTONIC_RAW instant it was computed for.
    pub steady_ns: i64,
    /// Why the bounds are null although there is a model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
}

impl NowJson {
    /// The JSON shape of a read at `at`.
    pub fn of(r: crate::state::Now, at: crate::core::time::Steady) -> NowJson {
        let empty = |status, error| NowJson {
            earliest_ns: None,
            latest_ns: None,
            earliest_leapfree_ns: None,
            latest_leapfree_ns: None,
            epsilon_ns: None,
            status,
            steady_ns: at.0,
            error,
        };
        match r {
            Ok(t) => NowJson {
                earliest_ns: Some(t.utc.earliest.0),
                latest_ns: Some(t.utc.latest.0),
                earliest_leapfree_ns: Some(t.leapfree.earliest.0),
                latest_leapfree_ns: Some(t.leapfree.latest.0),
                epsilon_ns: Some(t.epsilon_ns()),
                status: t.status,
                steady_ns: at.0,
                error: None,
            },
            Err(ReadError::NoModel(s)) => empty(s, None),
            Err(ReadError::Unrepresentable) => empty(
                Status::Disrupted,
                Some("the interval does not fit 64-bit Unix nanoseconds"),
            ),
            Err(ReadError::Source(never)) => match never {},
        }
    }

    /// The JSON shape of a strict read of `snap` now.
    pub fn now(snap: &Snapshot) -> NowJson {
        let (r, at) = snap.now();
        NowJson::of(r, at)
    }
}

async fn now(State(s): State<Arc<Shared>>) -> Json<NowJson> {
    Json(NowJson::now(&s.get()))
}

/// The engine must have published within this for `/livez` (it refreshes
/// every 0.5 s).
pub const LIVE_WITHIN: Duration = Duration::from_secs(5);

/// Liveness: the engine is publishing (whatever the status). A failure
/// here means restart the agent; `/readyz` (also `/healthz`) says whether
/// its interval is worth using.
async fn livez(State(s): State<Arc<Shared>>) -> Response {
    let snap = s.get();
    let age = clock::raw().since(snap.publication.at);
    if age.0 >= 0 && age.0 <= LIVE_WITHIN.as_nanos() as i128 {
        Json(json!({ "live": true, "last_publication_ns_ago": clamp_i64(age.0) })).into_response()
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the engine has not published for {:.1} s",
                age.0 as f64 / 1e9
            ),
        )
    }
}

/// Readiness: synchronized, and publishing to shared memory.
async fn healthz(State(s): State<Arc<Shared>>) -> Response {
    let snap = s.get();
    let st = NowJson::now(&snap).status;
    let problem = snap.publishing_problem();
    let code = if healthy(st) && problem.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({ "status": st.as_str() });
    if let Some(p) = problem {
        body["problem"] = json!(p);
    }
    (code, Json(body)).into_response()
}

#[derive(Serialize)]
struct SourceJson {
    name: String,
    address: Option<String>,
    state: &'static str,
    reachable: bool,
    reach: u8,
    /// Source minus skewd's centre (positive: the source is ahead).
    offset_ns: Option<i64>,
    /// Half the width of the latest sample's interval.
    offset_half_width_ns: Option<i64>,
    delay_ns: Option<i64>,
    root_distance_ns: Option<i64>,
    requests_sent: u64,
    requests_unsent: u64,
    replies_ok: u64,
    timeouts: u64,
    replies_invalid: u64,
    replies_unexpected: u64,
    replies_implausible: u64,
    kernel_stamp_fallbacks: u64,
    kernel_tx_stamps: u64,
    kernel_tx_stamp_fallbacks: u64,
    interleaved_replies: u64,
    poll_interval_s: f64,
    /// "by_server" (chrony-style), "fixed" (ntpd-style), or null.
    dispersion_ageing: Option<&'static str>,
    declared_aged: bool,
    /// A hint, never applied: how much narrower this source's interval
    /// would be were it declared `dispersion_aged_by_server` (only when it
    /// is seen to age its dispersion itself and is not declared).
    declaring_would_narrow_ns: Option<i64>,
    duplicate_of: Option<String>,
    /// Its samples are authenticated (an NTS source that answers).
    authenticated: bool,
    /// NTS: cookies, key exchanges, authentication failures (null: not NTS).
    nts: Option<serde_json::Value>,
}

fn ns(n: crate::core::time::Nanos) -> i64 {
    clamp_i64(n.0)
}

/// The `epsilon_budget` object of `/v1/status`: each part's share of the
/// half-width in ns (halves possible), and the source each end comes from.
fn budget_json(snap: &Snapshot, b: &crate::core::budget::Budget) -> serde_json::Value {
    let mut parts = serde_json::Map::new();
    for (name, v) in b.halves() {
        parts.insert(format!("{name}_ns"), json!(v));
    }
    let end = |side: &crate::core::budget::Side| {
        json!({
            "source": side.source.and_then(|i| snap.sources.get(i.0)).map(|v| v.name.clone()),
            "carried": side.carried,
            "reach_ns": ns(side.parts.total()),
        })
    };
    parts.insert("lower_end".into(), end(&b.sides.lo));
    parts.insert("upper_end".into(), end(&b.sides.hi));
    serde_json::Value::Object(parts)
}

async fn status(State(s): State<Arc<Shared>>) -> Response {
    let snap = s.get();
    let (read, reading) = snap.now_read();
    let budget = snap.budget(&read, reading);
    let r = NowJson::of(read, reading.at);
    let p = &snap.publication;
    let sources: Vec<SourceJson> = snap
        .sources
        .iter()
        .map(|v| SourceJson {
            name: v.name.clone(),
            address: v.address.map(|a| a.to_string()),
            state: v.report.state.as_str(),
            reachable: v.report.reach != 0,
            reach: v.report.reach,
            offset_ns: v.report.offset.map(ns),
            offset_half_width_ns: v.report.half_width.map(ns),
            delay_ns: v.report.delay.map(ns),
            root_distance_ns: v.report.root_distance.map(ns),
            requests_sent: v.report.counters.sent,
            requests_unsent: v.report.counters.unsent,
            replies_ok: v.report.counters.ok,
            timeouts: v.report.counters.timeout,
            replies_invalid: v.report.counters.invalid,
            replies_unexpected: v.report.counters.unexpected,
            replies_implausible: v.report.counters.implausible,
            kernel_stamp_fallbacks: v.report.counters.kernel_stamp_fallbacks,
            kernel_tx_stamps: v.report.counters.kernel_tx_stamps,
            kernel_tx_stamp_fallbacks: v.report.counters.kernel_tx_stamp_fallbacks,
            interleaved_replies: v.report.counters.interleaved,
            dispersion_ageing: v.report.dispersion_ages_itself.map(|a| {
                if a {
                    "by_server"
                } else {
                    "fixed"
                }
            }),
            declared_aged: v.report.declared_aged,
            declaring_would_narrow_ns: (v.report.dispersion_ages_itself == Some(true)
                && !v.report.declared_aged)
                .then_some(v.report.dispersion_ageing_added)
                .flatten()
                .map(ns),
            poll_interval_s: v.report.poll.0 as f64 / 1e9,
            duplicate_of: v.duplicate_of.clone(),
            authenticated: v.report.nts.is_some_and(|n| n.authenticated),
            nts: v.report.nts.map(|n| crate::daemon::nts::status_json(&n)),
        })
        .collect();
    let model = p.model.as_ref();
    Json(json!({
        "status": r.status,
        "earliest_ns": r.earliest_ns,
        "latest_ns": r.latest_ns,
        "earliest_leapfree_ns": r.earliest_leapfree_ns,
        "latest_leapfree_ns": r.latest_leapfree_ns,
        "epsilon_ns": r.epsilon_ns,
        "epsilon_budget": budget.as_ref().map(|b| budget_json(&snap, b)),
        "leap": p.leap,
        "offset_ns": p.skew.map(|k| ns(k.offset)),
        "offset_uncertainty_ns": p.skew.map(|k| ns(k.uncertainty)),
        "frequency_ppm": model.map(|m| m.ageing.rate.as_ppm_f64()),
        "frequency_bound_ppm": model.map(|m| m.ageing.phi.as_ppm_f64()),
        "clock_steps": p.steps,
        "bound_violations": p.violations,
        "clocksource": p.clocksource,
        "interruptions": {
            "suspends": p.interruptions.suspends,
            "clocksource_changes": p.interruptions.clocksource_changes,
            "vmclock_disruptions": p.interruptions.vmclock_disruptions,
        },
        "vmclock": snap.vmclock_watched.then(|| json!({
            "disruption_marker": p.vmclock_marker,
            "disruptions": p.interruptions.vmclock_disruptions,
        })),
        "sources": sources,
        "kernel": snap.kernel,
        "shared_memory": snap.shm.as_ref().map(|m| json!({
            "path": m.path,
            "publishing": m.publishing,
            "problem": m.problem,
        })),
    }))
    .into_response()
}

/// One strict read of the latest publication, as a waiter sees it, on
/// timescale `scale`: after an unnoticed suspend the steady clock is behind
/// true time, and an interval (or a commit timestamp) taken from it would be
/// too early.
fn observe(s: &Shared, scale: Scale) -> Result<Observation, std::convert::Infallible> {
    let (r, _) = s.get().now();
    Ok(match r {
        Ok(t) => match scale {
            Scale::Utc => Observation::of::<Utc>(&t),
            Scale::LeapFree => Observation::of::<LeapFree>(&t),
        },
        Err(ReadError::NoModel(st)) => Observation::without_model(st),
        Err(_) => Observation::without_model(Status::Disrupted),
    })
}

/// Which timescale a wait compares on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scale {
    /// UTC (`until=`, as `/v1/now`'s `earliest_ns`).
    Utc,
    /// Leap-free (`until_leapfree=`, as commit-wait timestamps).
    LeapFree,
}

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

/// A 400 with a JSON error body.
struct BadRequest(String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, self.0)
    }
}

fn param<T: std::str::FromStr>(
    q: &HashMap<String, String>,
    key: &str,
) -> Result<Option<T>, BadRequest> {
    match q.get(key) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            BadRequest(format!(
                "{key}: {v:?} is not a valid non-negative integer in range"
            ))
        }),
    }
}

struct WaitParams {
    timeout: Duration,
    max_epsilon_ns: Option<i128>,
}

fn wait_params(q: &HashMap<String, String>) -> Result<WaitParams, BadRequest> {
    for k in q.keys() {
        if !matches!(
            k.as_str(),
            "until" | "until_leapfree" | "timeout_ms" | "max_epsilon_ns"
        ) {
            return Err(BadRequest(format!("unknown parameter {k:?}")));
        }
    }
    let timeout = match param::<u64>(q, "timeout_ms")? {
        Some(ms) if ms > MAX_WAIT.as_millis() as u64 => {
            return Err(BadRequest(format!(
                "timeout_ms: at most {} ms",
                MAX_WAIT.as_millis()
            )))
        }
        Some(ms) => Duration::from_millis(ms),
        None => DEFAULT_WAIT,
    };
    let max_epsilon_ns = param::<u64>(q, "max_epsilon_ns")?.map(|v| v as i128);
    Ok(WaitParams {
        timeout,
        max_epsilon_ns,
    })
}

/// A wait that did not succeed: 409 (generic clients retry 408 and 503
/// by themselves; asking again at once would not help), with why, the
/// status and the error bound at the last read.
fn timeout_response(e: WaitError) -> Response {
    match e {
        WaitError::Timeout { status, epsilon_ns } => {
            let why = if crate::wait::usable(status) {
                "not surely past before the timeout"
            } else {
                "no usable interval (unknown or disrupted) before the timeout"
            };
            (
                StatusCode::CONFLICT,
                Json(json!({
                    "error": format!("{why}: {e}"),
                    "reached": false,
                    "status": status.as_str(),
                    "epsilon_ns": epsilon_ns,
                })),
            )
                .into_response()
        }
        WaitError::Read(never) => match never {},
    }
}

async fn wait(State(s): State<Arc<Shared>>, q: Params) -> Response {
    let Ok(Query(q)) = q else {
        return error(StatusCode::BAD_REQUEST, "malformed query string");
    };
    let (scale, until): (Scale, i64) = match (param(&q, "until"), param(&q, "until_leapfree")) {
        (Ok(Some(u)), Ok(None)) => (Scale::Utc, u),
        (Ok(None), Ok(Some(u))) => (Scale::LeapFree, u),
        (Ok(Some(_)), Ok(Some(_))) => {
            return error(
                StatusCode::BAD_REQUEST,
                "give one of until (UTC Unix ns) and until_leapfree (leap-free ns), not both",
            )
        }
        (Ok(None), Ok(None)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "until: required (UTC Unix ns; or until_leapfree for a commit-wait timestamp)",
            )
        }
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    if until < 0 {
        return error(StatusCode::BAD_REQUEST, "until: must be non-negative ns");
    }
    let p = match wait_params(&q) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    match wait_async(
        || observe(&s, scale),
        until.into(),
        p.timeout,
        p.max_epsilon_ns,
    )
    .await
    {
        Ok(f) => Json(json!({
            "until_ns": until,
            "timescale": match scale { Scale::Utc => "utc", Scale::LeapFree => "leapfree" },
            "earliest_ns": f.last.earliest_ns.map(clamp_i64),
            "waited_ns": clamp_i64(f.waited.as_nanos() as i128),
            "status": f.last.status.as_str(),
        }))
        .into_response(),
        Err(e) => timeout_response(e),
    }
}

async fn commit_wait(State(s): State<Arc<Shared>>, q: Params) -> Response {
    let Ok(Query(q)) = q else {
        return error(StatusCode::BAD_REQUEST, "malformed query string");
    };
    if q.contains_key("until") || q.contains_key("until_leapfree") {
        return error(
            StatusCode::BAD_REQUEST,
            "until: not accepted here; commit-wait picks its own timestamp",
        );
    }
    let p = match wait_params(&q) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    match commit_wait_async(|| observe(&s, Scale::LeapFree), p.timeout, p.max_epsilon_ns).await {
        Ok(c) => Json(c).into_response(),
        Err(e) => timeout_response(e),
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let body = crate::metrics::render(&s.get(), clock::raw(), Some(&s.http));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
