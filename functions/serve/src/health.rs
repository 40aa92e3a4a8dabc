//! The probes: liveness (`livez`, `is_alive`, `is_running`, `health`,
//! `is_deployed`) and readiness (`readyz`, `is_ready`), open without a token.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Value, json};

use crate::S;
use crate::inference::resolve_model;

pub(crate) fn running() -> Json<Value> {
    Json(json!({"running": true, "mode": "production"}))
}

/// Liveness: the process serves HTTP.
#[utoipa::path(method(get, post), path = "/is_alive", tag = "health", responses((status = 200, body = crate::openapi::Running)))]
pub(crate) async fn is_alive() -> Json<Value> {
    running()
}

/// Liveness (`AppApi.is_ready_for_api_calls` reads `running`).
#[utoipa::path(method(get, post), path = "/is_running", tag = "health", responses((status = 200, body = crate::openapi::Running)))]
pub(crate) async fn is_running() -> Json<Value> {
    running()
}

/// Liveness for orchestrators.
#[utoipa::path(method(get, post), path = "/livez", tag = "health", responses((status = 200, body = crate::openapi::Running)))]
pub(crate) async fn livez() -> Json<Value> {
    running()
}

/// Readiness in the Supervisely shape (`TaskApi.is_ready`, `ModelAPI.is_deployed` read `status`).
#[utoipa::path(method(get, post), path = "/is_ready", tag = "health", responses(
    (status = 200, description = "The default model can be answered now", body = crate::openapi::Ready),
    (status = 503, description = "Not ready; the reason is in detail", body = crate::openapi::NotReady, headers(("retry-after" = u64))),
))]
pub(crate) async fn is_ready(st: S) -> Response {
    readiness(st).await
}

/// Readiness for orchestrators (same answer as `is_ready`).
#[utoipa::path(method(get, post), path = "/readyz", tag = "health", responses(
    (status = 200, description = "The default model can be answered now", body = crate::openapi::Ready),
    (status = 503, description = "Not ready; the reason is in detail", body = crate::openapi::NotReady, headers(("retry-after" = u64))),
))]
pub(crate) async fn readyz(st: S) -> Response {
    readiness(st).await
}

/// The old app's probe (the key really ends with a colon there).
#[utoipa::path(method(get, post), path = "/is_deployed", tag = "health", responses((status = 200, body = crate::openapi::Deployed)))]
pub(crate) async fn is_deployed() -> Json<Value> {
    Json(json!({"deployed": true, "description:": "Model is ready to receive requests"}))
}

#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, body = crate::openapi::Health)))]
pub(crate) async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready = the default model can be answered now: it is loaded, or its
/// artifact can be had (published in a registry that answers, or verified in
/// the cache folder while the registry is down), and the server is not
/// draining. Otherwise 503 with the reason (and `Retry-After`), in the shape
/// Supervisely's own apps give while not deployed (`ModelAPI.is_deployed`
/// reads `status`; `livez`/`is_alive` only say the process serves HTTP).
pub(crate) async fn readiness(State(st): S) -> Response {
    let ready = || Json(json!({"status": "ready"})).into_response();
    let not_ready = |reason: String| {
        let body = json!({
            "status": "not ready",
            "error": "not_ready",
            "detail": format!("Service not ready: {reason}"),
            "success": false,
            "message": "Service not ready",
        });
        let mut resp = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        resp.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from_static("5"));
        resp
    };
    if st.admission.is_draining() {
        return not_ready("the server is shutting down".into());
    }
    let key = match resolve_model(&st, None) {
        Ok(key) => key,
        Err(e) => return not_ready(e.detail),
    };
    match st.cache.can_serve(&key).await {
        Ok(()) => ready(),
        Err(reason) => not_ready(format!("the default model cannot be answered: {reason}")),
    }
}
