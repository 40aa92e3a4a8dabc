//! The `serve` function: one axum Router speaking the Supervisely serving API
//! and a small native API. `main.rs` hands it to `lambda_http::run` under AWS
//! Lambda or to `axum::serve` elsewhere; everything here is tested without AWS.

pub mod access;
pub mod admission;
pub mod coco;
pub mod error;
pub mod fetch;
pub mod listener;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod sly_app;
pub mod ssrf;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use d2serve_engine::pipeline::{Roi, Settings};
use d2serve_engine::{LoadedModel, ModelCache, Prediction, RgbImage, supervisely};
use d2serve_registry::{Catalog, ClassInfo, S3Config};
use serde_json::{Value, json};

use crate::admission::{Admission, REQUEST, RequestCtx};
use crate::error::ApiError;
use crate::fetch::Fetcher;
use crate::metrics::Metrics;

/// Default object confidence threshold of the Supervisely settings (the Python app's YAML).
pub use d2serve_engine::pipeline::DEFAULT_CONF_THRES;
const APP_NAME: &str = "Serve Detectron2";
const MAX_BATCH: usize = 16;

pub struct Config {
    pub catalog: Catalog,
    /// Key (or alias) of the model used when a request names none.
    pub default_model: String,
    pub max_pixels: u64,
    pub max_body_bytes: usize,
    /// Supervisely instance for `inference_image_id` (`SERVER_ADDRESS`).
    pub supervisely_server: Option<String>,
    /// Fallback API token (`API_TOKEN`).
    pub supervisely_token: Option<String>,
    pub s3: S3Config,
    pub device: String,
    /// Each request's deadline (`--request-timeout`); None: none.
    pub request_timeout: Option<Duration>,
    /// Bearer token for everything but the health routes (`--auth-token`).
    pub auth_token: Option<String>,
    /// Secret path prefix under which requests need no token (`--path-prefix`), e.g. `/s-1f3a…`.
    pub path_prefix: Option<String>,
    /// The Supervisely task id when run as a Supervisely app (`TASK_ID`), for `get_session_info`.
    pub session_id: Option<i64>,
    /// Fault drills only (`D2_FAULT_INFER_DELAY_MS`): extra time each inference holds its
    /// slot, so the tests can fill a queue with the small fixture models.
    pub fault_infer_delay: Option<Duration>,
}

pub struct AppState {
    pub cfg: Config,
    pub cache: Arc<ModelCache>,
    pub fetcher: Fetcher,
    pub metrics: Metrics,
    pub admission: Arc<Admission>,
    /// Client connections (the HTTP server outside Lambda counts them).
    pub connections: Arc<listener::ConnStats>,
    meta_bodies: Mutex<HashMap<String, Bytes>>,
    request_ids: AtomicU64,
}

impl AppState {
    pub fn new(cfg: Config, cache: Arc<ModelCache>, fetcher: Fetcher, admission: Arc<Admission>) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            cache,
            fetcher,
            metrics: Metrics::default(),
            admission,
            connections: Arc::default(),
            meta_bodies: Mutex::new(HashMap::new()),
            request_ids: AtomicU64::new(1),
        })
    }
}

type S = State<Arc<AppState>>;

/// Routes every client may reach without a token: orchestrators' probes.
pub const HEALTH_ROUTES: [&str; 7] = ["/livez", "/readyz", "/health", "/is_alive", "/is_running", "/is_ready", "/is_deployed"];

/// The whole HTTP API: at the root and, with `--path-prefix`, under the prefix too.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.cfg.max_body_bytes;
    let api = routes();
    let app = match state.cfg.path_prefix.as_deref() {
        Some(prefix) => Router::new().nest(prefix, api.clone()).merge(api),
        None => api,
    };
    let app = app
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), access::check))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint; see README (Supervisely API and /v1/models)") })
        .with_state(state);
    // Outside the routes: axum adds a 405's `Allow` header as the route's answer
    // leaves it, after the routes' own layers, and the error body names it.
    Router::new().fallback_service(app).layer(axum::middleware::from_fn(json_errors))
}

fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(page::index))
        .route("/docs", get(page::docs))
        .route("/openapi.json", get(page::openapi_json))
        .route("/get_session_info", post(session_info).get(session_info))
        .route("/get_output_classes_and_tags", post(output_classes).get(output_classes))
        .route("/get_model_meta", post(model_meta).get(model_meta))
        .route("/get_custom_inference_settings", post(custom_settings).get(custom_settings))
        .route("/inference_image_url", post(inference_image_url))
        .route("/inference_image_id", post(inference_image_id))
        .route("/inference_batch_ids", post(inference_batch_ids))
        .route("/inference_image", post(inference_image))
        .route("/inference_batch", post(inference_batch))
        .route("/is_alive", get(is_alive).post(is_alive))
        .route("/is_running", get(is_running).post(is_running))
        .route("/livez", get(livez).post(livez))
        .route("/is_ready", get(is_ready).post(is_ready))
        .route("/readyz", get(readyz).post(readyz))
        .route("/is_deployed", get(is_deployed).post(is_deployed))
        .route("/health", get(health))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{*rest}", post(native_predict))
        .route("/metrics", get(metrics))
}

fn running() -> Json<Value> {
    Json(json!({"running": true, "mode": "production"}))
}

/// Liveness: the process serves HTTP.
#[utoipa::path(method(get, post), path = "/is_alive", tag = "health", responses((status = 200, body = crate::openapi::Running)))]
async fn is_alive() -> Json<Value> {
    running()
}

/// Liveness (`AppApi.is_ready_for_api_calls` reads `running`).
#[utoipa::path(method(get, post), path = "/is_running", tag = "health", responses((status = 200, body = crate::openapi::Running)))]
async fn is_running() -> Json<Value> {
    running()
}

/// Liveness for orchestrators.
#[utoipa::path(method(get, post), path = "/livez", tag = "health", responses((status = 200, body = crate::openapi::Running)))]
async fn livez() -> Json<Value> {
    running()
}

/// Readiness in the Supervisely shape (`TaskApi.is_ready`, `ModelAPI.is_deployed` read `status`).
#[utoipa::path(method(get, post), path = "/is_ready", tag = "health", responses(
    (status = 200, description = "The default model can be answered now", body = crate::openapi::Ready),
    (status = 503, description = "Not ready; the reason is in detail", body = crate::openapi::NotReady, headers(("retry-after" = u64))),
))]
async fn is_ready(st: S) -> Response {
    readiness(st).await
}

/// Readiness for orchestrators (same answer as `is_ready`).
#[utoipa::path(method(get, post), path = "/readyz", tag = "health", responses(
    (status = 200, description = "The default model can be answered now", body = crate::openapi::Ready),
    (status = 503, description = "Not ready; the reason is in detail", body = crate::openapi::NotReady, headers(("retry-after" = u64))),
))]
async fn readyz(st: S) -> Response {
    readiness(st).await
}

/// The old app's probe (the key really ends with a colon there).
#[utoipa::path(method(get, post), path = "/is_deployed", tag = "health", responses((status = 200, body = crate::openapi::Deployed)))]
async fn is_deployed() -> Json<Value> {
    Json(json!({"deployed": true, "description:": "Model is ready to receive requests"}))
}

#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, body = crate::openapi::Health)))]
async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready = the default model can be answered now: it is loaded, or its
/// artifact can be had (published in a registry that answers, or verified in
/// the cache folder while the registry is down), and the server is not
/// draining. Otherwise 503 with the reason (and `Retry-After`), in the shape
/// Supervisely's own apps give while not deployed (`ModelAPI.is_deployed`
/// reads `status`; `livez`/`is_alive` only say the process serves HTTP).
async fn readiness(State(st): S) -> Response {
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

/// Every error answer in the documented shape `{"error", "detail"}`: the
/// rejections axum's extractors write as plain text (a body that is not
/// multipart, a body over the limit, a bad query string, a wrong method)
/// are rewritten with their text as the detail; headers such as `Allow` stay.
async fn json_errors(req: Request, next: Next) -> Response {
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
fn metric_route(st: &AppState, path: &str) -> String {
    let path = access::strip_prefix(st, path).unwrap_or(path);
    if path.starts_with("/v1/models/") { "/v1/models/{key}/predict".to_string() } else { path.to_string() }
}

/// Request id, deadline, JSON access log, request metrics, and the record of
/// a request whose client left before its answer (status 499, as nginx logs it).
async fn observe(State(st): S, req: Request, next: Next) -> Response {
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

// ---------- model selection and settings ----------

/// The registry key of the requested model: a catalog key or alias, else
/// the key of a model of one's own (`zoo import`), which only the registry
/// knows; an unpublished one is refused when it is loaded ([`load_model`]).
fn resolve_model(st: &AppState, requested: Option<&str>) -> Result<String, ApiError> {
    let name = requested.filter(|s| !s.is_empty()).unwrap_or(&st.cfg.default_model);
    if st.cfg.catalog.get(name).is_none() && (name.len() > 256 || name.chars().any(|c| c.is_control() || c == '\\')) {
        return Err(unknown_model(name));
    }
    Ok(st.cfg.catalog.registry_key(name))
}

fn unknown_model(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_model",
        format!("no model `{name}`; GET /v1/models lists the models this server has"),
    )
}

/// The loaded model of `key`. A name that is neither in the catalog nor in
/// the registry is an unknown model (404), as it was before imported models.
async fn load_model(st: &AppState, key: &str) -> Result<Arc<LoadedModel>, ApiError> {
    match st.cache.get(key).await {
        Err(d2serve_engine::LoadError::NotPublished(_)) if st.cfg.catalog.get(key).is_none() => Err(unknown_model(key)),
        other => Ok(other?),
    }
}

/// `state.model`, else the `x-model` header.
fn requested_model<'a>(state: &'a Value, headers: &'a HeaderMap) -> Option<&'a str> {
    state
        .get("model")
        .and_then(Value::as_str)
        .or_else(|| headers.get("x-model").and_then(|v| v.to_str().ok()))
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_request("bad_json", format!("the body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request("bad_json", "the body must be a JSON object"));
    }
    Ok(v)
}

fn state_of(body: &Value) -> Value {
    match body.get("state") {
        Some(s) if s.is_object() => s.clone(),
        _ => json!({}),
    }
}

fn roi_from(v: &Value) -> Result<Roi, ApiError> {
    let bad = || ApiError::bad_request("bad_rectangle", "rectangle must be Supervisely Rectangle JSON: {\"points\": {\"exterior\": [[left, top], [right, bottom]]}}");
    let ext = v.pointer("/points/exterior").and_then(Value::as_array).ok_or_else(bad)?;
    if ext.len() != 2 {
        return Err(bad());
    }
    let mut pts = Vec::new();
    for p in ext {
        let a = p.as_array().filter(|a| a.len() == 2).ok_or_else(bad)?;
        let coord = |x: &Value| -> Result<usize, ApiError> {
            let f = x.as_f64().ok_or_else(bad)?;
            if f < 0.0 || f.fract() != 0.0 {
                return Err(ApiError::bad_request("bad_rectangle", format!("rectangle coordinate {f} is not a non-negative integer")));
            }
            Ok(f as usize)
        };
        pts.push((coord(&a[0])?, coord(&a[1])?));
    }
    Ok(Roi {
        left: pts[0].0.min(pts[1].0),
        top: pts[0].1.min(pts[1].1),
        right: pts[0].0.max(pts[1].0),
        bottom: pts[0].1.max(pts[1].1),
    })
}

/// Inference settings from a request `state` (settings may be null; the
/// rectangle may sit in `state` or in `state.settings`).
pub fn parse_settings(state: &Value, default_conf: f64) -> Result<Settings, ApiError> {
    let settings = match state.get("settings") {
        None | Some(Value::Null) => json!({}),
        Some(s) if s.is_object() => s.clone(),
        Some(_) => return Err(ApiError::bad_request("bad_settings", "state.settings must be an object")),
    };
    let conf_thres = match settings.get("conf_thres") {
        None | Some(Value::Null) => default_conf,
        Some(v) => match v.as_f64() {
            Some(c) if (0.0..=1.0).contains(&c) => c,
            _ => return Err(ApiError::bad_request("bad_settings", format!("conf_thres must be a number in [0, 1], got {v}"))),
        },
    };
    let classes = match settings.get("classes") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "all" => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|c| c.as_str().map(str::to_string).ok_or_else(|| ApiError::bad_request("bad_settings", "classes must be a list of class names")))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err(ApiError::bad_request("bad_settings", "classes must be a list of class names or \"all\"")),
    };
    let rect = state.get("rectangle").filter(|v| !v.is_null()).or_else(|| settings.get("rectangle").filter(|v| !v.is_null()));
    let roi = rect.map(roi_from).transpose()?;
    Ok(Settings { conf_thres, classes, roi })
}

// ---------- inference ----------

struct Answer {
    model: Arc<LoadedModel>,
    prediction: Prediction,
    timings: Vec<(&'static str, f64)>,
}

async fn run_inference(st: &Arc<AppState>, key: &str, bytes: Vec<u8>, settings: Settings, fetch_s: f64) -> Result<Answer, ApiError> {
    let model = load_model(st, key).await?;
    let max_pixels = st.cfg.max_pixels;
    let permit = st.admission.admit().await?;
    let m = model.clone();
    let delay = st.cfg.fault_infer_delay;
    // The slot travels with the work: if the client leaves, the computation
    // still ends before another one takes its CPUs.
    let (decode_s, prediction) = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        let t = Instant::now();
        let image: RgbImage = d2serve_engine::decode(&bytes, max_pixels)?;
        let decode_s = t.elapsed().as_secs_f64();
        Ok::<_, ApiError>((decode_s, m.predict(&image, &settings)?))
    })
    .await
    .map_err(|e| ApiError::internal(format!("inference crashed: {e}")))??;
    let infer_s = (prediction.timings.resize + prediction.timings.infer + prediction.timings.postprocess).as_secs_f64();
    for (stage, s) in [("fetch", fetch_s), ("decode", decode_s), ("infer", infer_s)] {
        st.metrics.observe(key, stage, s);
    }
    Ok(Answer {
        model,
        prediction,
        timings: vec![("fetch", fetch_s), ("decode", decode_s), ("infer", infer_s)],
    })
}

fn prediction_json(model: &LoadedModel, p: &Prediction, name: Option<&str>, image_id: Option<i64>) -> Value {
    json!({
        "annotation": model.annotation(p),
        "data": {},
        "image_id": image_id,
        "image_name": name,
        "name": name,
        "dataset_id": null,
        "project_id": null,
    })
}

/// JSON response with the model and Server-Timing (fetch, decode, infer, encode) headers.
fn respond(key: &str, artifact: &str, body: Value, timings: &[(&'static str, f64)], encode_start: Instant, st: &AppState) -> Response {
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

// ---------- Supervisely endpoints ----------

/// What the server runs: model, checkpoint, dataset, classes, device.
#[utoipa::path(method(get, post), path = "/get_session_info", tag = "supervisely", request_body(content = Option<crate::openapi::SuperviselyRequest>, description = "Optional; `state.model` picks a model other than the default"), responses(
        (status = 200, body = crate::openapi::SessionInfo),
        crate::openapi::ErrorResponses
))]
async fn session_info(State(st): S, headers: HeaderMap, body: Bytes) -> Result<Json<crate::openapi::SessionInfo>, ApiError> {
    let body = parse_body(&body)?;
    let key = resolve_model(&st, requested_model(&state_of(&body), &headers))?;
    let (display_name, checkpoint, checkpoint_url, dataset, classes_count) = match st.cfg.catalog.get(&key) {
        Some(entry) => {
            let dataset = st.cfg.catalog.datasets[&entry.dataset].title.clone();
            let classes = st.cfg.catalog.classes(entry).len();
            match published_manifest(&st, &key).await.filter(|m| m.is_sample()) {
                // A catalog architecture published with random weights (the demo's sample, --synth):
                // its manifest's name says so, and the real checkpoint's name and URL are not its.
                Some(m) => (m.name, "random weights".to_string(), Value::Null, dataset, classes),
                None => (
                    entry.name.clone(),
                    entry.key.rsplit('/').next().unwrap_or(&entry.key).to_string(),
                    Value::from(entry.url.clone()),
                    dataset,
                    classes,
                ),
            }
        }
        // A model of one's own: what its manifest records. Supervisely's
        // app reports "custom" as the dataset of such a model.
        None => {
            let m = &load_model(&st, &key).await?.manifest;
            (m.name.clone(), m.source.file.clone(), Value::Null, "custom".to_string(), m.classes.len())
        }
    };
    let checkpoint_url = checkpoint_url.as_str().map(str::to_string);
    Ok(Json(crate::openapi::SessionInfo {
        app_name: APP_NAME.into(),
        session_id: st.cfg.session_id,
        model_name: key,
        model_display_name: display_name,
        checkpoint_name: checkpoint,
        checkpoint_url,
        pretrained_on_dataset: dataset,
        number_of_classes: classes_count,
        device: st.cfg.device.clone(),
        runtime: "onnxruntime".into(),
        sliding_window_support: "none".into(),
        videos_support: false,
        async_video_inference_support: false,
        tracking_on_videos_support: false,
        async_image_inference_support: false,
        tracking_algorithms: vec![],
        batch_inference_support: true,
        max_batch_size: MAX_BATCH,
        task_type: "instance segmentation".into(),
        app: APP_NAME.into(),
        kind: "Instance Segmentation".into(),
        classes_count,
        tags_count: 1,
    }))
}

/// The manifest of `key`'s current artifact in the registry (None when the
/// registry cannot say: the catalog's description stands then).
async fn published_manifest(st: &AppState, key: &str) -> Option<d2serve_registry::Manifest> {
    let index = st.cache.index().await.ok()?;
    let entry = index.models.get(key)?;
    st.cache.manifest(key, &entry.artifact).await.ok()
}

/// A zoo model's classes come from the catalog (no model load needed); a
/// model of one's own carries its names and colours in its manifest.
async fn class_list(st: &AppState, key: &str) -> Result<Vec<ClassInfo>, ApiError> {
    match st.cfg.catalog.get(key) {
        Some(entry) => Ok(st.cfg.catalog.classes(entry).classes),
        None => Ok(load_model(st, key).await?.manifest.classes.clone()),
    }
}

/// The model's classes and the confidence tag, as a Supervisely ProjectMeta.
#[utoipa::path(method(get, post), path = "/get_output_classes_and_tags", tag = "supervisely", request_body(content = Option<crate::openapi::SuperviselyRequest>), responses(
        (status = 200, body = crate::openapi::ProjectMeta),
        crate::openapi::ErrorResponses
))]
async fn output_classes(st: S, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    model_meta(st, headers, body).await
}

/// The model's classes and the confidence tag, as a Supervisely ProjectMeta (same as `get_output_classes_and_tags`).
#[utoipa::path(method(get, post), path = "/get_model_meta", tag = "supervisely", request_body(content = Option<crate::openapi::SuperviselyRequest>), responses(
        (status = 200, body = crate::openapi::ProjectMeta),
        crate::openapi::ErrorResponses
))]
async fn model_meta(State(st): S, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let body = parse_body(&body)?;
    let key = resolve_model(&st, requested_model(&state_of(&body), &headers))?;
    // Clients re-fetch the meta on every inference (1230 classes for LVIS): serve cached bytes.
    let cached = st.meta_bodies.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
    let bytes = match cached {
        Some(b) => b,
        None => {
            let b = Bytes::from(serde_json::to_vec(&supervisely::model_meta(&class_list(&st, &key).await?)).expect("meta serializes"));
            // Only a catalog model's classes are fixed; an imported model's may change with a roll-forward.
            if st.cfg.catalog.get(&key).is_some() {
                st.meta_bodies.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), b.clone());
            }
            b
        }
    };
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], bytes).into_response())
}

/// The default inference settings as YAML text.
#[utoipa::path(method(get, post), path = "/get_custom_inference_settings", tag = "supervisely", responses((status = 200, body = crate::openapi::CustomSettings)))]
async fn custom_settings() -> Json<Value> {
    // The Supervisely app's custom_settings.yaml, with the one default of zoo predict, serve and batch.
    Json(json!({"settings": format!("# object confidence threshold (for debug 0.001)\nconf_thres: {DEFAULT_CONF_THRES}\n")}))
}

/// Predict on an image fetched from `state.image_url`.
#[utoipa::path(post, path = "/inference_image_url", tag = "supervisely", request_body(content = crate::openapi::SuperviselyRequest, content_type = "application/json"), responses(
        (status = 200, body = crate::openapi::SuperviselyPrediction, headers(("server-timing" = String, description = "fetch, decode, infer, encode (ms)"), ("x-model" = String, description = "Registry key of the model used"), ("x-model-artifact" = String, description = "sha256 of the artifact that answered"))),
        crate::openapi::ErrorResponses
))]
async fn inference_image_url(State(st): S, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let body = parse_body(&body)?;
    let state = state_of(&body);
    let key = resolve_model(&st, requested_model(&state, &headers))?;
    let url = state
        .get("image_url")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("missing_field", "state.image_url (a string) is required"))?;
    let settings = parse_settings(&state, DEFAULT_CONF_THRES)?;
    let t = Instant::now();
    let bytes = st.fetcher.get(url).await?;
    let fetch_s = t.elapsed().as_secs_f64();
    let a = run_inference(&st, &key, bytes, settings, fetch_s).await?;
    let enc = Instant::now();
    let name = url.rsplit('/').next().filter(|s| !s.is_empty());
    let body = prediction_json(&a.model, &a.prediction, name, None);
    Ok(respond(&key, &a.model.version, body, &a.timings, enc, &st))
}

/// Download an image from the configured Supervisely instance.
async fn supervisely_image(st: &AppState, body: &Value, headers: &HeaderMap, id: i64) -> Result<Vec<u8>, ApiError> {
    let server = st.cfg.supervisely_server.as_deref().ok_or_else(|| {
        ApiError::bad_request("no_supervisely_server", "image ids need a Supervisely server: start serve with --supervisely-server (SERVER_ADDRESS) and send api_token")
    })?;
    let token = body
        .get("api_token")
        .and_then(Value::as_str)
        .or_else(|| body.pointer("/context/apiToken").and_then(Value::as_str))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::to_string)
        .or_else(|| st.cfg.supervisely_token.clone())
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "no_api_token", "send api_token (or x-api-key) to read images from Supervisely"))?;
    let url = format!("{}/public/api/v3/images.download", server.trim_end_matches('/'));
    let resp = reqwest::Client::new()
        .post(&url)
        .header("x-api-key", token)
        .json(&json!({"id": id}))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "supervisely_unreachable", format!("{url}: {e}")))?;
    match resp.status().as_u16() {
        200 => {}
        401 | 403 => return Err(ApiError::new(StatusCode::FORBIDDEN, "supervisely_refused", format!("Supervisely refused image {id}: check the API token"))),
        404 | 400 => return Err(ApiError::new(StatusCode::NOT_FOUND, "image_not_found", format!("Supervisely has no image {id}"))),
        s => return Err(ApiError::new(StatusCode::BAD_GATEWAY, "supervisely_error", format!("Supervisely answered {s} for image {id}"))),
    }
    let bytes = resp.bytes().await.map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "supervisely_unreachable", e.to_string()))?;
    Ok(bytes.to_vec())
}

/// Predict on Supervisely image `state.image_id` (needs --supervisely-server and a token).
#[utoipa::path(post, path = "/inference_image_id", tag = "supervisely", request_body(content = crate::openapi::SuperviselyRequest, content_type = "application/json"), responses(
        (status = 200, body = crate::openapi::SuperviselyPrediction, headers(("server-timing" = String, description = "fetch, decode, infer, encode (ms)"), ("x-model" = String, description = "Registry key of the model used"), ("x-model-artifact" = String, description = "sha256 of the artifact that answered"))),
        crate::openapi::ErrorResponses
))]
async fn inference_image_id(State(st): S, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let body = parse_body(&body)?;
    let state = state_of(&body);
    let key = resolve_model(&st, requested_model(&state, &headers))?;
    let id = ["image_id", "imageId"]
        .iter()
        .find_map(|k| state.get(*k).and_then(Value::as_i64))
        .ok_or_else(|| ApiError::bad_request("missing_field", "state.image_id (an integer) is required"))?;
    let settings = parse_settings(&state, DEFAULT_CONF_THRES)?;
    let t = Instant::now();
    let bytes = supervisely_image(&st, &body, &headers, id).await?;
    let a = run_inference(&st, &key, bytes, settings, t.elapsed().as_secs_f64()).await?;
    let enc = Instant::now();
    let body = prediction_json(&a.model, &a.prediction, None, Some(id));
    Ok(respond(&key, &a.model.version, body, &a.timings, enc, &st))
}

/// Predict on Supervisely images `state.batch_ids` (at most 16).
#[utoipa::path(post, path = "/inference_batch_ids", tag = "supervisely", request_body(content = crate::openapi::SuperviselyRequest, content_type = "application/json"), responses(
        (status = 200, body = Vec<crate::openapi::SuperviselyPrediction>, headers(("server-timing" = String, description = "fetch, decode, infer, encode (ms)"), ("x-model" = String, description = "Registry key of the model used"), ("x-model-artifact" = String, description = "sha256 of the artifact that answered"))),
        crate::openapi::ErrorResponses
))]
async fn inference_batch_ids(State(st): S, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let body = parse_body(&body)?;
    let state = state_of(&body);
    let key = resolve_model(&st, requested_model(&state, &headers))?;
    let ids: Vec<i64> = ["batch_ids", "image_ids", "images_ids", "imageIds"]
        .iter()
        .find_map(|k| state.get(*k).and_then(Value::as_array))
        .ok_or_else(|| ApiError::bad_request("missing_field", "state.batch_ids (a list of image ids) is required"))?
        .iter()
        .map(|v| v.as_i64().ok_or_else(|| ApiError::bad_request("bad_field", "batch_ids must be integers")))
        .collect::<Result<_, _>>()?;
    if ids.len() > MAX_BATCH {
        return Err(ApiError::bad_request("batch_too_large", format!("Batch size should be less than or equal to {MAX_BATCH}")));
    }
    let settings = parse_settings(&state, DEFAULT_CONF_THRES)?;
    let mut out = Vec::new();
    let mut timings = Vec::new();
    let mut artifact = String::new();
    for id in ids {
        let t = Instant::now();
        let bytes = supervisely_image(&st, &body, &headers, id).await?;
        let a = run_inference(&st, &key, bytes, settings.clone(), t.elapsed().as_secs_f64()).await?;
        out.push(prediction_json(&a.model, &a.prediction, None, Some(id)));
        timings = a.timings;
        artifact = a.model.version.clone();
    }
    Ok(respond(&key, &artifact, Value::Array(out), &timings, Instant::now(), &st))
}

/// Files and the state object of a Supervisely multipart request.
async fn read_multipart(mut mp: Multipart) -> Result<(Vec<(String, Vec<u8>)>, Value), ApiError> {
    let bad = |e: axum::extract::multipart::MultipartError| ApiError::new(e.status(), "bad_multipart", e.body_text());
    let mut files = Vec::new();
    let mut state = json!({});
    while let Some(field) = mp.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        match name.as_str() {
            "files" | "file" => {
                let fname = field.file_name().unwrap_or("image").to_string();
                let data = field.bytes().await.map_err(bad)?;
                files.push((fname, data.to_vec()));
            }
            "settings" | "state" => {
                let text = field.text().await.map_err(bad)?;
                let v = parse_body(&Bytes::from(text))?;
                // The SDK sends a state object {"settings": {...}}; accept bare settings too.
                state = if v.get("settings").is_some() || v.get("rectangle").is_some() || v.get("model").is_some() {
                    v
                } else {
                    json!({"settings": v})
                };
            }
            _ => {}
        }
    }
    if files.is_empty() {
        return Err(ApiError::bad_request("missing_field", "a multipart part named `files` with the image is required"));
    }
    Ok((files, state))
}

/// Predict on an uploaded image (multipart `files`, optional `settings`).
#[utoipa::path(post, path = "/inference_image", tag = "supervisely", request_body(content = crate::openapi::InferenceForm, content_type = "multipart/form-data"), responses(
        (status = 200, body = crate::openapi::SuperviselyPrediction, headers(("server-timing" = String, description = "fetch, decode, infer, encode (ms)"), ("x-model" = String, description = "Registry key of the model used"), ("x-model-artifact" = String, description = "sha256 of the artifact that answered"))),
        crate::openapi::ErrorResponses
))]
async fn inference_image(State(st): S, headers: HeaderMap, mp: Multipart) -> Result<Response, ApiError> {
    let (mut files, state) = read_multipart(mp).await?;
    let key = resolve_model(&st, requested_model(&state, &headers))?;
    let settings = parse_settings(&state, DEFAULT_CONF_THRES)?;
    let (name, bytes) = files.swap_remove(0);
    let a = run_inference(&st, &key, bytes, settings, 0.0).await?;
    let enc = Instant::now();
    let body = prediction_json(&a.model, &a.prediction, Some(&name), None);
    Ok(respond(&key, &a.model.version, body, &a.timings, enc, &st))
}

/// Predict on uploaded images (multipart `files`, up to 16; optional `settings`).
#[utoipa::path(post, path = "/inference_batch", tag = "supervisely", request_body(content = crate::openapi::InferenceForm, content_type = "multipart/form-data"), responses(
        (status = 200, body = Vec<crate::openapi::SuperviselyPrediction>, headers(("server-timing" = String, description = "fetch, decode, infer, encode (ms)"), ("x-model" = String, description = "Registry key of the model used"), ("x-model-artifact" = String, description = "sha256 of the artifact that answered"))),
        crate::openapi::ErrorResponses
))]
async fn inference_batch(State(st): S, headers: HeaderMap, mp: Multipart) -> Result<Response, ApiError> {
    let (files, state) = read_multipart(mp).await?;
    if files.len() > MAX_BATCH {
        return Err(ApiError::bad_request("batch_too_large", format!("Batch size should be less than or equal to {MAX_BATCH}")));
    }
    let key = resolve_model(&st, requested_model(&state, &headers))?;
    let settings = parse_settings(&state, DEFAULT_CONF_THRES)?;
    let mut out = Vec::new();
    let mut timings = Vec::new();
    let mut artifact = String::new();
    for (name, bytes) in files {
        let a = run_inference(&st, &key, bytes, settings.clone(), 0.0).await?;
        out.push(prediction_json(&a.model, &a.prediction, Some(&name), None));
        timings = a.timings;
        artifact = a.model.version.clone();
    }
    Ok(respond(&key, &artifact, Value::Array(out), &timings, Instant::now(), &st))
}

// ---------- native API ----------

/// The models the registry holds, with dataset, APs and classes.
#[utoipa::path(get, path = "/v1/models", tag = "native", responses(
        (status = 200, body = crate::openapi::ModelList),
        crate::openapi::ErrorResponses
))]
async fn list_models(State(st): S) -> Result<Json<crate::openapi::ModelList>, ApiError> {
    let index = st.cache.index().await?;
    let loaded = st.cache.loaded_keys();
    let default_key = resolve_model(&st, None).ok();
    let mut models = Vec::with_capacity(index.models.len());
    for (key, e) in &index.models {
        let manifest = st.cache.manifest(key, &e.artifact).await;
        let (name, aliases, dataset, box_ap, mask_ap, classes, source) = match st.cfg.catalog.get(key) {
            Some(m) => {
                let classes = st.cfg.catalog.classes(m).classes.into_iter().map(|c| c.name).collect::<Vec<_>>();
                match manifest.ok().filter(|a| a.is_sample()) {
                    // Random weights in a catalog architecture: its manifest's name, no claim of the real APs.
                    Some(a) => (Some(a.name), m.aliases.clone(), Some(m.dataset.clone()), None, None, classes, "sample"),
                    None => (Some(m.name.clone()), m.aliases.clone(), Some(m.dataset.clone()), m.box_ap, Some(m.mask_ap), classes, "zoo"),
                }
            }
            // A model of one's own: its manifest has its name and classes.
            None => match manifest {
                Ok(m) => (Some(m.name), vec![], Some(m.dataset), None, None, m.classes.into_iter().map(|c| c.name).collect(), "custom"),
                Err(err) => {
                    tracing::warn!(model = %key, error = %err, "manifest unreadable for /v1/models");
                    (None, vec![], None, None, None, vec![], "custom")
                }
            },
        };
        models.push(crate::openapi::ModelInfo {
            key: key.clone(),
            name,
            aliases,
            dataset,
            source: source.to_string(),
            box_ap,
            mask_ap,
            num_classes: classes.len(),
            classes,
            artifact: e.artifact.clone(),
            artifact_bytes: e.size,
            published_at: e.published_at.clone(),
            loaded: loaded.contains(key),
            default: default_key.as_deref() == Some(key.as_str()),
        });
    }
    Ok(Json(crate::openapi::ModelList { models }))
}

#[derive(serde::Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PredictQuery {
    /// `supervisely` (default) or `coco`.
    format: Option<String>,
    /// Confidence threshold in [0, 1] for raw image bodies (default 0: every detection).
    #[param(minimum = 0.0, maximum = 1.0)]
    conf: Option<f64>,
}

/// Predict on a raw image body, or on `{"url": …}`.
#[utoipa::path(post, path = "/v1/models/{model}/predict", tag = "native",
    params(("model" = String, Path, example = "r50-fpn-3x", description = "Catalog key (its `/` may be sent as is or as %2F), alias such as `r50-fpn-3x`, or an imported model's key"), PredictQuery),
    request_body(description = "The image file's bytes (JPEG, PNG, BMP, WebP, TIFF), or JSON naming its URL", content(
        (crate::openapi::ImageBytes = "application/octet-stream"),
        (crate::openapi::UrlRequest = "application/json"),
    )),
    responses(
        (status = 200, description = "Supervisely (default) or COCO (`format=coco`) form", body = crate::openapi::NativeAnswer, headers(("server-timing" = String, description = "fetch, decode, infer, encode (ms)"), ("x-model" = String, description = "Registry key of the model used"), ("x-model-artifact" = String, description = "sha256 of the artifact that answered"))),
        crate::openapi::ErrorResponses
))]
async fn native_predict(State(st): S, Path(rest): Path<String>, Query(q): Query<PredictQuery>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let key = rest
        .strip_suffix("/predict")
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "use POST /v1/models/{key}/predict"))?;
    let key = resolve_model(&st, Some(key))?;
    let conf = q.conf.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&conf) {
        return Err(ApiError::bad_request("bad_settings", "conf must be in [0, 1]"));
    }
    let coco = match q.format.as_deref() {
        None | Some("supervisely") => false,
        Some("coco") => true,
        Some(f) => return Err(ApiError::bad_request("bad_format", format!("format `{f}`: use supervisely or coco"))),
    };
    let is_json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let t = Instant::now();
    let (bytes, settings) = if is_json {
        let v = parse_body(&body)?;
        let settings = parse_settings(&json!({"settings": v.get("settings").cloned().unwrap_or(Value::Null), "rectangle": v.get("rectangle").cloned().unwrap_or(Value::Null)}), conf)?;
        let src = v
            .get("url")
            .or_else(|| v.get("image_url"))
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request("missing_field", "JSON bodies need \"url\" (http(s):// or s3://)"))?;
        let bytes = if let Some(s3) = src.strip_prefix("s3://") {
            let (bucket, key) = s3.split_once('/').ok_or_else(|| ApiError::bad_request("bad_url", "s3 URIs look like s3://bucket/key"))?;
            let store = d2serve_registry::open_store(&format!("s3://{bucket}"), &st.cfg.s3)
                .await
                .map_err(|e| ApiError::bad_request("bad_url", e.to_string()))?;
            store
                .get(key)
                .await
                .map_err(|e| ApiError::bad_request("url_unreachable", e.to_string()))?
                .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "image_not_found", format!("{src} does not exist")))?
                .bytes
                .to_vec()
        } else {
            st.fetcher.get(src).await?
        };
        (bytes, settings)
    } else {
        (body.to_vec(), Settings { conf_thres: conf, ..Default::default() })
    };
    let a = run_inference(&st, &key, bytes, settings, t.elapsed().as_secs_f64()).await?;
    let enc = Instant::now();
    let out = if coco {
        let p = &a.prediction;
        let results: Vec<Value> = p
            .instances
            .iter()
            .map(|i| coco::result(i.class_id, &a.model.manifest.classes[i.class_id].name, i.score, i.bbox, &i.mask, p.height, p.width))
            .collect();
        json!({"model": key, "artifact": a.model.version, "height": p.height, "width": p.width, "results": results})
    } else {
        json!({"model": key, "artifact": a.model.version, "annotation": a.model.annotation(&a.prediction)})
    };
    Ok(respond(&key, &a.model.version, out, &a.timings, enc, &st))
}

/// Prometheus metrics: requests, stage latencies, the queue, cancellations, the registry's state.
#[utoipa::path(get, path = "/metrics", tag = "native", responses(
        (status = 200, content_type = "text/plain", body = String),
        (status = 401, body = crate::openapi::ErrorBody),
))]
async fn metrics(State(st): S) -> Response {
    let stats = st.cache.stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let body = st.metrics.render(&stats, st.cache.loaded_keys().len(), &st.admission, &st.cache.index_status(), &st.connections);
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
