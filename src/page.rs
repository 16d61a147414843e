//! The status page at `/`: server-rendered HTML with inline SVG and no
//! external assets, for people without a Grafana.

use crate::state::Shared;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use std::sync::Arc;

/// `GET /`.
pub async fn index(State(s): State<Arc<Shared>>) -> Response {
    let snap = s.get();
    let now = crate::http::NowJson::now(&snap);
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>skewd</title></head>\
         <body><h1>skewd</h1><p>status: {}</p></body></html>",
        now.status.as_str()
    ))
    .into_response()
}
