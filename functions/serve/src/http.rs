//! What every answer passes through: errors in the `{error, detail}` shape,
//! the request id, deadline, access log and metrics, and the JSON answer with
//! its Server-Timing and model headers.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use crate::admission::{REQUEST, RequestCtx};
use crate::error::ApiError;
use crate::{AppState, S, access};

/// Every error answer in the documented shape `{"error", "detail"}`: the
/// rejections axum's extractors write as plain text (a body that is not
/// multipart, a body over the limit, a bad query string, a wrong method)
/// are rewritten with their text as the detail; headers such as `Allow` stay.
pub(crate) async fn json_errors(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024).await.map(|b| String::from_utf8_lossy(&b).trim().to_string()).unwrap_or_default();
    let code = match status.as_u16() {
        400 => "bad_request",
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "unprocessable_entity",
        _ if status.is_server_error() => "internal",
        _ => "client_error",
    };
    let allow = parts.headers.get(axum::http::header::ALLOW).and_then(|v| v.to_str().ok()).filter(|a| !a.is_empty());
    let detail = match (status, allow) {
        (StatusCode::METHOD_NOT_ALLOWED, Some(allow)) => format!("{method} is not allowed on {path}; use {}", allow.replace(',', " or ")),
        _ if text.is_empty() => status.canonical_reason().unwrap_or("error").to_string(),
        _ => text,
    };
    let mut out = ApiError::new(status, code, detail).into_response();
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

/// The route label of a path in metrics (no secret prefix, no model keys).
pub(crate) fn metric_route(st: &AppState, path: &str) -> String {
    let path = access::strip_prefix(st, path).unwrap_or(path);
    if path.starts_with("/v1/models/") { "/v1/models/{key}/predict".to_string() } else { path.to_string() }
}

/// Request id, deadline, JSON access log, request metrics, and the record of
/// a request whose client left before its answer (status 499, as nginx logs it).
pub(crate) async fn observe(State(st): S, req: Request, next: Next) -> Response {
    let id = st.request_ids.fetch_add(1, Ordering::Relaxed);
    let route = metric_route(&st, req.uri().path());
    let method = req.method().clone();
    let t = Instant::now();
    let ctx = Arc::new(RequestCtx::new(st.cfg.request_timeout.map(|d| t + d)));
    // Dropped unfinished = the client disconnected (hyper drops the handler).
    struct Left<'a> {
        st: &'a AppState,
        ctx: Arc<RequestCtx>,
        id: u64,
        route: &'a str,
        t: Instant,
        answered: bool,
    }
    impl Drop for Left<'_> {
        fn drop(&mut self) {
            if self.answered {
                return;
            }
            let stage = self.ctx.stage();
            self.st.metrics.request(self.route, 499);
            self.st.metrics.cancelled(stage.as_str());
            tracing::info!(request_id = self.id, route = %self.route, status = 499, stage = stage.as_str(), seconds = self.t.elapsed().as_secs_f64(), "request cancelled: the client disconnected");
        }
    }
    let mut left = Left { st: &st, ctx: ctx.clone(), id, route: &route, t, answered: false };
    let run = REQUEST.scope(ctx.clone(), next.run(req));
    let mut resp = match ctx.deadline {
        None => run.await,
        Some(deadline) => match tokio::time::timeout_at(deadline.into(), run).await {
            Ok(resp) => resp,
            // An inference that started runs to its end (its slot stays taken) and is discarded.
            Err(_) if ctx.was_admitted() => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "request_timeout", "the request took longer than its deadline (--request-timeout)").into_response(),
            Err(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "request_timeout", "the request's deadline (--request-timeout) passed before its inference could start; retry later")
                .retry_after(st.admission.retry_after_s())
                .into_response(),
        },
    };
    left.answered = true;
    let status = resp.status().as_u16();
    st.metrics.request(&route, status);
    if let Ok(v) = HeaderValue::from_str(&format!("req-{id}")) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let index = st.cache.index_status();
    if let Some(reason) = &index.unreachable {
        let age = index.age_s().map(|s| format!("{s:.0} s ago")).unwrap_or_else(|| "at an unknown time".into());
        let text = format!("199 d2serve \"registry unreachable; serving the index read {age} and cached artifacts: {}\"", reason.replace(['"', '\\'], "'"));
        if let Ok(v) = HeaderValue::from_str(&text.chars().filter(|c| c.is_ascii() && !c.is_ascii_control()).collect::<String>()) {
            resp.headers_mut().insert(axum::http::header::WARNING, v);
        }
    }
    let model = resp.headers().get("x-model").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    tracing::info!(request_id = id, %method, route = %route, status, model = %model, seconds = t.elapsed().as_secs_f64(), "request");
    resp
}

/// JSON response with the model and Server-Timing (fetch, decode, infer, encode) headers.
pub(crate) fn respond(key: &str, artifact: &str, body: Value, timings: &[(&'static str, f64)], encode_start: Instant, st: &AppState) -> Response {
    let encode_s = encode_start.elapsed().as_secs_f64();
    st.metrics.observe(key, "encode", encode_s);
    let mut timing: Vec<String> = timings.iter().map(|(k, s)| format!("{k};dur={:.1}", s * 1000.0)).collect();
    timing.push(format!("encode;dur={:.1}", encode_s * 1000.0));
    let mut resp = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&timing.join(", ")) {
        resp.headers_mut().insert("server-timing", v);
    }
    if let Ok(v) = HeaderValue::from_str(key) {
        resp.headers_mut().insert("x-model", v);
    }
    if let Ok(v) = HeaderValue::from_str(artifact) {
        resp.headers_mut().insert("x-model-artifact", v);
    }
    resp
}
