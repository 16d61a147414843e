//! Local HTTP API (axum). Every handler computes from its own clock read
//! and the last published snapshot; bad input gets a 4xx with a JSON error
//! body; waits are capped; a global concurrency limit sheds load.

use crate::clock;
use crate::core::time::clamp_i64;
use crate::daemon::{healthy, Shared};
use crate::snapshot::NowReading;
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
/// Requests served at once; more are shed with 503.
pub const MAX_CONCURRENT: usize = 512;

/// The router with all routes and the protective layers.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/now", get(now))
        .route("/v1/status", get(status))
        .route("/v1/wait", get(wait))
        .route("/v1/commit-wait", post(commit_wait))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(shared)
        .layer(
            tower::ServiceBuilder::new()
                .layer(HandleErrorLayer::new(overloaded))
                .load_shed()
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                    MAX_CONCURRENT,
                ))
                .timeout(MAX_WAIT + Duration::from_secs(5)),
        )
}

async fn overloaded(err: tower::BoxError) -> Response {
    if err.is::<tower::timeout::error::Elapsed>() {
        error(StatusCode::REQUEST_TIMEOUT, "request took too long")
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
        "no such endpoint; see /v1/now, /v1/status, /v1/wait, /v1/commit-wait, /healthz, /metrics",
    )
}

async fn now(State(s): State<Arc<Shared>>) -> Json<NowReading> {
    Json(s.get().read_now())
}

async fn healthz(State(s): State<Arc<Shared>>) -> Response {
    let st = s.get().status_at(clock::raw());
    let code = if healthy(st) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(json!({ "status": st.as_str() }))).into_response()
}

#[derive(Serialize)]
struct SourceJson {
    name: String,
    address: Option<String>,
    state: &'static str,
    reachable: bool,
    reach: u8,
    offset_ns: Option<i64>,
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
    duplicate_of: Option<String>,
}

fn ns(n: crate::core::time::Nanos) -> i64 {
    clamp_i64(n.0)
}

async fn status(State(s): State<Arc<Shared>>) -> Response {
    let snap = s.get();
    let r = snap.read_now();
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
            duplicate_of: v.duplicate_of.clone(),
        })
        .collect();
    Json(json!({
        "status": r.status,
        "earliest_ns": r.earliest_ns,
        "latest_ns": r.latest_ns,
        "earliest_leapfree_ns": r.earliest_leapfree_ns,
        "latest_leapfree_ns": r.latest_leapfree_ns,
        "epsilon_ns": r.epsilon_ns,
        "leap": snap.leap,
        "offset_ns": snap.realtime_offset.map(|o| clamp_i64(o.0)),
        "offset_uncertainty_ns": snap.realtime_offset.map(|o| clamp_i64(o.1)),
        "frequency_ppm": snap.frequency_ppm,
        "frequency_bound_ppm": snap.model.map(|m| m.ageing.phi.as_ppm_f64()),
        "clock_steps": snap.steps,
        "bound_violations": snap.violations,
        "clocksource": snap.clocksource,
        "vmclock": snap.vmclock.map(|(marker, disruptions)| json!({
            "disruption_marker": marker,
            "disruptions": disruptions,
        })),
        "sources": sources,
        "kernel": snap.kernel,
    }))
    .into_response()
}

/// One strict read of the in-process snapshot, as a waiter sees it, on
/// timescale `scale`: after an unnoticed suspend the steady clock is behind
/// true time, and an interval (or a commit timestamp) taken from it would be
/// too early.
fn observe(s: &Shared, scale: Scale) -> Result<Observation, WaitError> {
    let r = s.get().read_now();
    let status = r.status;
    let (lo, hi) = match scale {
        Scale::Utc => (r.earliest_ns, r.latest_ns),
        Scale::LeapFree => (r.earliest_leapfree_ns, r.latest_leapfree_ns),
    };
    Ok(match (lo, hi, r.epsilon_ns) {
        (Some(lo), Some(hi), Some(e)) => Observation {
            earliest_ns: Some(lo.into()),
            latest_ns: Some(hi.into()),
            epsilon_ns: Some(e.into()),
            status,
        },
        _ => Observation::without_model(status),
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

fn timeout_response(e: WaitError) -> Response {
    match e {
        WaitError::Timeout { .. } => error(StatusCode::REQUEST_TIMEOUT, e.to_string()),
        WaitError::Read(_) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
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
    let body = crate::metrics::render(&s.get(), clock::raw());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
