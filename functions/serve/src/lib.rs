//! The `serve` function: one axum Router speaking the Supervisely serving API
//! and a small native API. `main.rs` hands it to `lambda_http::run` under AWS
//! Lambda or to [`listener::serve`] elsewhere; everything here is tested without AWS.
//!
//! By concern: [`health`] (probes), [`http`] (error shape, access log, metrics,
//! answer headers), [`inference`] (model choice, settings, one image through a
//! model in a slot), [`supervisely_routes`] and [`native_routes`] (the two APIs),
//! [`admission`] and [`access`] (who gets in), [`listener`] (connections).

pub mod access;
pub mod admission;
mod async_routes;
pub mod coco;
pub mod error;
pub mod fetch;
mod health;
mod http;
mod inference;
pub mod lambda_limits;
pub mod jobs;
pub mod listener;
pub mod metrics;
mod native_routes;
pub mod openapi;
pub mod page;
pub mod platform;
pub mod sly_app;
pub mod ssrf;
mod supervisely_routes;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use d2serve_engine::ModelCache;
use d2serve_engine::windows::MergeMode;
use d2serve_registry::{Catalog, S3Config};

use crate::admission::Admission;
use crate::async_routes::{clear_inference_request, get_inference_progress, get_inference_result, get_preparing_progress, get_tracking_settings, inference_image_id_async, inference_project_id_async, inference_video_id, inference_video_id_async, pop_inference_results, stop_inference};
use crate::error::ApiError;
use crate::fetch::Fetcher;
use crate::health::{health, is_alive, is_deployed, is_ready, is_running, livez, readyz};
use crate::http::{json_errors, observe};
use crate::metrics::Metrics;
use crate::native_routes::{list_models, metrics, native_predict};
use crate::supervisely_routes::{custom_settings, inference_batch, inference_batch_ids, inference_image, inference_image_id, inference_image_url, model_meta, output_classes, session_info};

/// Default object confidence threshold of the Supervisely settings (the Python app's YAML).
pub use d2serve_engine::pipeline::DEFAULT_CONF_THRES;
pub(crate) const APP_NAME: &str = "Serve Detectron2";
pub(crate) const MAX_BATCH: usize = 16;

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
    /// How sliding-window answers are merged (`--sliding-window`); None: the
    /// mode is off and such settings get a whole-image answer, as Supervisely's
    /// servers in mode "none" give.
    pub sliding_window: Option<MergeMode>,
    /// Asynchronous requests are served (false under AWS Lambda, where nothing outlives an invocation).
    pub async_requests: bool,
    /// Asynchronous requests running at once (`--max-async-requests`).
    pub max_async_requests: usize,
    /// How long an asynchronous request nobody polls is kept (`--async-ttl`).
    pub async_ttl: Duration,
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
    /// Asynchronous requests by uuid.
    pub jobs: Arc<jobs::Jobs>,
    meta_bodies: Mutex<HashMap<String, Bytes>>,
    request_ids: AtomicU64,
}

impl AppState {
    pub fn new(cfg: Config, cache: Arc<ModelCache>, fetcher: Fetcher, admission: Arc<Admission>) -> Arc<Self> {
        let jobs = Arc::new(jobs::Jobs::new(cfg.max_async_requests.max(1), cfg.async_ttl));
        Arc::new(Self {
            cfg,
            cache,
            fetcher,
            metrics: Metrics::default(),
            admission,
            connections: Arc::default(),
            jobs,
            meta_bodies: Mutex::new(HashMap::new()),
            request_ids: AtomicU64::new(1),
        })
    }
}

pub(crate) type S = State<Arc<AppState>>;

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
        .route("/inference_video_id", post(inference_video_id))
        .route("/inference_video_id_async", post(inference_video_id_async))
        .route("/inference_image_id_async", post(inference_image_id_async))
        .route("/inference_batch_ids_async", post(inference_image_id_async))
        .route("/inference_project_id_async", post(inference_project_id_async))
        .route("/get_inference_progress", post(get_inference_progress))
        .route("/pop_inference_results", post(pop_inference_results))
        .route("/get_inference_result", post(get_inference_result))
        .route("/stop_inference", post(stop_inference))
        .route("/clear_inference_request", post(clear_inference_request))
        .route("/get_preparing_progress", post(get_preparing_progress))
        .route("/get_tracking_settings", post(get_tracking_settings).get(get_tracking_settings))
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


pub use inference::{parse_settings, parse_window};
