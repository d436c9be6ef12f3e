//! Operations endpoints, unauthenticated (they reveal no values, tokens or credential
//! ids): liveness, readiness, Prometheus metrics, the OpenAPI document.
//!
//! - `/healthz`: the process answers HTTP. Nothing else is checked, so an orchestrator
//!   restarts only a wedged process, never one whose upstream vault is down.
//! - `/readyz`: the catalog answers a query (503 if not: nothing can be resolved) and each
//!   backend's health is reported by name and error code. A failing backend makes the
//!   status `degraded`, not unready: the other backends' credentials still resolve, and
//!   pulling the whole service out of rotation would make one vault's outage everyone's.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ServiceState, json_response, management, openapi};

pub async fn healthz() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

pub async fn readyz(State(st): State<Arc<ServiceState>>) -> Response {
    let catalog = st
        .runtime
        .database()
        .lock()
        .query_row("SELECT count(*) FROM credentials", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|_| ())
        .map_err(|e| {
            tracing::error!(error = %e, "readiness: the catalog does not answer");
        });
    let health = management::check_health(&st).await;
    let backends: Vec<_> = health
        .iter()
        .map(|(name, r)| match r {
            Ok(_) => json!({"name": name, "healthy": true}),
            Err(code) => json!({"name": name, "healthy": false, "error": code}),
        })
        .collect();
    let all_healthy = health.values().all(Result::is_ok);
    let (status, word) = match (catalog.is_ok(), all_healthy) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        (true, true) => (StatusCode::OK, "ready"),
        (true, false) => (StatusCode::OK, "degraded"),
    };
    json_response(
        status,
        &json!({
            "status": word,
            "catalog": if catalog.is_ok() { "ok" } else { "unavailable" },
            "backends": backends,
        }),
    )
}

pub async fn metrics(State(st): State<Arc<ServiceState>>) -> Response {
    let mut resp = st.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

pub async fn openapi() -> Response {
    let mut resp = openapi::document_text().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
