//! The OpenAPI 3.1 contract, generated from the handlers' `#[utoipa::path]`
//! annotations and the schema types below (served at `GET /openapi.json`; a
//! page that renders it offline at `GET /docs`). The types that the handlers
//! serialize (errors, session info, the model list) are the ones described
//! here; the Supervisely annotation shapes mirror `d2serve_engine::supervisely`,
//! and schemathesis checks every answer against them in `.ci/run`.

#![allow(dead_code)] // schema-only types: read by the generated spec, never built

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every error: a short code and what to do; `success`/`message` for Supervisely clients.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `bad_image`, `unknown_model`, `overloaded`.
    pub error: String,
    /// What went wrong and what to do about it.
    pub detail: String,
    /// Always false.
    pub success: bool,
    /// The same text as `detail`.
    pub message: String,
}

/// The error answers every model route may give (each one `ErrorBody`).
#[derive(utoipa::IntoResponses)]
pub enum ErrorResponses {
    #[response(status = 400, description = "Bad input (JSON, fields, settings, image)")]
    BadRequest(ErrorBody),
    #[response(status = 401, description = "A token is needed (--auth-token)")]
    Unauthorized(ErrorBody),
    #[response(status = 404, description = "Unknown or unpublished model")]
    NotFound(ErrorBody),
    #[response(status = 413, description = "Body or image too large")]
    TooLarge(ErrorBody),
    #[response(status = 415, description = "Not an image format the server reads")]
    UnsupportedImage(ErrorBody),
    #[response(status = 422, description = "Under AWS Lambda only: the answer would exceed Lambda's 6 MB response limit (gzipped too, where the client accepts gzip); the detail says how to ask for less")]
    ResponseTooLarge(ErrorBody),
    #[response(status = "4XX", description = "Other caller errors")]
    OtherClientError(ErrorBody),
    #[response(
        status = 503,
        description = "Transient: overloaded, draining, or the registry unreachable with nothing cached; retry after Retry-After seconds",
        headers(("retry-after" = u64, description = "Seconds to wait"))
    )]
    Unavailable(ErrorBody),
    #[response(status = "5XX", description = "The server's own fault (502: the registry is broken; 504: past --request-timeout; 507: the model's artifact cannot fit in the cache folder)")]
    ServerError(ErrorBody),
}

/// `is_alive`, `is_running`, `livez`.
#[derive(Serialize, ToSchema)]
pub struct Running {
    pub running: bool,
    pub mode: String,
}

/// `is_ready`, `readyz` when ready.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// `ready`.
    pub status: String,
}

/// `is_ready`, `readyz` when not ready (503): the reason is in `detail`.
#[derive(Serialize, ToSchema)]
pub struct NotReady {
    /// `not ready`.
    pub status: String,
    pub error: String,
    pub detail: String,
    pub success: bool,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct Deployed {
    pub deployed: bool,
    #[serde(rename = "description:")]
    pub description: String,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// The inference settings (`state.settings`).
#[derive(Serialize, ToSchema)]
pub struct InferenceSettings {
    /// Object confidence threshold in [0, 1]; default 0.45.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub conf_thres: Option<f64>,
    /// Class names to keep, or `"all"`.
    pub classes: Option<ClassFilter>,
    pub rectangle: Option<Rectangle>,
    /// `full_image` (default) or `sliding_window` (then `sliding_window_params` is required;
    /// the server's `--sliding-window` mode merges the windows).
    pub inference_mode: Option<String>,
    pub sliding_window_params: Option<SlidingWindowParams>,
}

/// Supervisely's sliding-window parameters (integers, pixels).
#[derive(Serialize, ToSchema)]
#[allow(non_snake_case)]
pub struct SlidingWindowParams {
    /// Default: the image's height.
    pub windowHeight: Option<u32>,
    /// Default: the image's width.
    pub windowWidth: Option<u32>,
    /// Must be smaller than the window; default 0.
    pub overlapY: Option<u32>,
    pub overlapX: Option<u32>,
    /// `shift_window` (default) or `change_size`.
    pub borderStrategy: Option<String>,
}

/// Class names to keep, or `"all"`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ClassFilter {
    Names(Vec<String>),
    /// `all`
    All(String),
}

/// A Supervisely Rectangle: `{"points": {"exterior": [[left, top], [right, bottom]]}}`.
#[derive(Serialize, ToSchema)]
pub struct Rectangle {
    pub points: RectanglePoints,
}

#[derive(Serialize, ToSchema)]
pub struct RectanglePoints {
    /// Two `[x, y]` corners (non-negative integers).
    #[schema(min_items = 2, max_items = 2)]
    pub exterior: Vec<[u32; 2]>,
}

/// The request `state`; which fields a command reads is said on each route.
#[derive(Serialize, ToSchema)]
pub struct RequestState {
    pub settings: Option<InferenceSettings>,
    /// Region of interest (also accepted in `settings.rectangle`).
    pub rectangle: Option<Rectangle>,
    /// A model to use instead of the default (catalog key, alias, or an imported model's key).
    pub model: Option<String>,
    /// `inference_image_url`: the image's http(s) URL.
    pub image_url: Option<String>,
    /// `inference_image_id`: a Supervisely image id.
    pub image_id: Option<i64>,
    /// `inference_batch_ids`: Supervisely image ids (at most 16).
    pub batch_ids: Option<Vec<i64>>,
}

/// The body Supervisely clients send: `{"state", "context", "api_token"}`.
#[derive(Serialize, ToSchema)]
pub struct SuperviselyRequest {
    pub state: Option<RequestState>,
    #[schema(value_type = Option<Object>)]
    pub context: Option<serde_json::Value>,
    /// Token for reading images from the Supervisely instance (`inference_image_id`).
    pub api_token: Option<String>,
}

/// `inference_image` / `inference_batch`: multipart form.
#[derive(ToSchema)]
pub struct InferenceForm {
    /// The image file(s) (`inference_batch`: up to 16 parts named `files`).
    #[schema(value_type = String, format = Binary)]
    pub files: Vec<u8>,
    /// JSON text: a state object `{"settings": {...}}` or bare settings.
    pub settings: Option<String>,
}

/// `get_session_info`.
#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    pub app_name: String,
    /// The Supervisely task id when run as a Supervisely app, else null.
    pub session_id: Option<i64>,
    /// The model's registry key.
    pub model_name: String,
    pub model_display_name: String,
    pub checkpoint_name: String,
    pub checkpoint_url: Option<String>,
    pub pretrained_on_dataset: String,
    pub number_of_classes: usize,
    pub device: String,
    /// `onnxruntime` or `openvino`: what the model runs in (`--runtime auto` resolved).
    pub runtime: String,
    /// `f32` or `bf16`.
    pub precision: String,
    /// Why that runtime (auto's reason, the flag, or `loaded`).
    pub runtime_reason: String,
    pub sliding_window_support: String,
    pub videos_support: bool,
    pub async_video_inference_support: bool,
    pub tracking_on_videos_support: bool,
    pub async_image_inference_support: bool,
    pub tracking_algorithms: Vec<String>,
    pub batch_inference_support: bool,
    pub max_batch_size: usize,
    #[serde(rename = "task type")]
    pub task_type: String,
    pub app: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub classes_count: usize,
    pub tags_count: usize,
}

/// One object class of the project meta.
#[derive(Serialize, ToSchema)]
pub struct ObjClass {
    pub title: String,
    pub description: String,
    /// `bitmap`.
    pub shape: String,
    /// `#RRGGBB`.
    pub color: String,
    #[schema(value_type = Object)]
    pub geometry_config: serde_json::Value,
    pub hotkey: String,
}

/// `get_output_classes_and_tags` / `get_model_meta`: a Supervisely ProjectMeta.
#[derive(Serialize, ToSchema)]
pub struct ProjectMeta {
    pub classes: Vec<ObjClass>,
    /// The `confidence` tag meta.
    #[schema(value_type = Vec<Object>)]
    pub tags: Vec<serde_json::Value>,
    #[serde(rename = "projectSettings")]
    #[schema(value_type = Object)]
    pub project_settings: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct CustomSettings {
    /// YAML text of the default settings (`conf_thres`).
    pub settings: String,
}

#[derive(Serialize, ToSchema)]
pub struct ImageSize {
    pub height: usize,
    pub width: usize,
}

/// A bitmap geometry: `origin` `[col, row]` of the mask's box, `data` the
/// base64 of a zlib-compressed 1-bit PNG (the SDK's encoding).
#[derive(Serialize, ToSchema)]
pub struct Bitmap {
    pub origin: Vec<usize>,
    pub data: String,
}

#[derive(Serialize, ToSchema)]
pub struct ConfidenceTag {
    /// `confidence`.
    pub name: String,
    pub value: f64,
}

/// One detected instance.
#[derive(Serialize, ToSchema)]
pub struct AnnotationObject {
    #[serde(rename = "classTitle")]
    pub class_title: String,
    pub description: String,
    pub tags: Vec<ConfidenceTag>,
    pub bitmap: Bitmap,
    pub shape: String,
    #[serde(rename = "geometryType")]
    pub geometry_type: String,
    #[serde(rename = "nnCreated")]
    pub nn_created: bool,
    #[serde(rename = "nnUpdated")]
    pub nn_updated: bool,
}

/// A Supervisely annotation of one image (its original size).
#[derive(Serialize, ToSchema)]
pub struct Annotation {
    pub description: String,
    pub size: ImageSize,
    #[schema(value_type = Vec<Object>)]
    pub tags: Vec<serde_json::Value>,
    pub objects: Vec<AnnotationObject>,
    #[serde(rename = "customBigData")]
    #[schema(value_type = Object)]
    pub custom_big_data: serde_json::Value,
}

/// The answer for one image of a Supervisely inference command.
#[derive(Serialize, ToSchema)]
pub struct SuperviselyPrediction {
    pub annotation: Annotation,
    /// `{}`, or in sliding-window mode `{"slides": [...]}`: one slide per window, then the whole
    /// image with every window's labels, then with the merged ones.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// The same as `data` (Supervisely's servers send both).
    #[schema(value_type = Object)]
    pub slides_data: serde_json::Value,
    pub image_id: Option<i64>,
    pub image_name: Option<String>,
    pub name: Option<String>,
    pub dataset_id: Option<i64>,
    pub project_id: Option<i64>,
}

/// An image file's bytes as the request body.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct ImageBytes(pub Vec<u8>);

/// `POST /v1/models/{model}/predict` with a JSON body.
#[derive(Serialize, ToSchema)]
pub struct UrlRequest {
    /// `http(s)://…` (public addresses unless the server allows more) or `s3://bucket/key`.
    pub url: String,
    pub settings: Option<InferenceSettings>,
    pub rectangle: Option<Rectangle>,
}

/// A native answer in Supervisely form (`format=supervisely`, the default).
#[derive(Serialize, ToSchema)]
pub struct NativePrediction {
    /// The registry key of the model used.
    pub model: String,
    /// sha256 of the artifact that answered.
    pub artifact: String,
    pub annotation: Annotation,
    /// In sliding-window mode: the slides, as in Supervisely's `data.slides`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub slides: Option<Vec<serde_json::Value>>,
}

/// One COCO result (`format=coco`): compressed RLE as pycocotools writes it.
#[derive(Serialize, ToSchema)]
pub struct CocoResult {
    pub category_id: usize,
    pub category_name: String,
    pub score: f64,
    /// `[x, y, width, height]`.
    pub bbox: Vec<f64>,
    /// `{"size": [height, width], "counts": "…"}`.
    #[schema(value_type = Object)]
    pub segmentation: serde_json::Value,
}

/// A native answer in COCO form.
#[derive(Serialize, ToSchema)]
pub struct CocoPrediction {
    pub model: String,
    pub artifact: String,
    pub height: usize,
    pub width: usize,
    pub results: Vec<CocoResult>,
}

/// `POST /v1/models/{model}/predict` answers in one of two forms.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum NativeAnswer {
    Supervisely(NativePrediction),
    Coco(CocoPrediction),
}

/// One model the registry holds.
#[derive(Serialize, ToSchema)]
pub struct ModelInfo {
    /// Registry key (a catalog key, or an imported model's name).
    pub key: String,
    pub name: Option<String>,
    pub aliases: Vec<String>,
    pub dataset: Option<String>,
    /// `zoo` (the real checkpoint), `sample` (random weights), or `custom`.
    pub source: String,
    pub box_ap: Option<f64>,
    pub mask_ap: Option<f64>,
    pub num_classes: usize,
    pub classes: Vec<String>,
    /// sha256 of the current artifact.
    pub artifact: String,
    pub artifact_bytes: u64,
    pub published_at: String,
    /// Loaded in this process now.
    pub loaded: bool,
    /// `onnxruntime` or `openvino`: what it runs in (or will, when loaded).
    pub runtime: String,
    /// `f32` or `bf16`.
    pub precision: String,
    /// The model requests get when they name none.
    pub default: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ModelList {
    pub models: Vec<ModelInfo>,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("Only when the server runs with --auth-token; under its --path-prefix no token is needed.")).build()));
    }
}

/// A route answering both GET and POST gets one operation id per method
/// (OpenAPI requires them unique): the GET one ends in `_get`.
struct UniqueOperationIds;

impl Modify for UniqueOperationIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            if let (Some(get), Some(_)) = (item.get.as_mut(), item.post.as_ref()) {
                if let Some(id) = get.operation_id.as_mut() {
                    id.push_str("_get");
                }
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "d2serve",
        description = "Detectron2 Mask R-CNN models served without Python: the Supervisely serving API (as the Supervisely SDK's Session and ModelAPI call it) and a native API. Every error is JSON `{\"error\", \"detail\"}`; 4xx is the caller's to fix, 503 (with Retry-After) is transient, other 5xx are the server's faults.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth, &UniqueOperationIds),
    security((), ("bearer" = [])),
    paths(
        crate::page::index,
        crate::page::docs,
        crate::page::openapi_json,
        crate::supervisely_routes::session_info,
        crate::supervisely_routes::model_meta,
        crate::supervisely_routes::output_classes,
        crate::supervisely_routes::custom_settings,
        crate::supervisely_routes::inference_image_url,
        crate::supervisely_routes::inference_image_id,
        crate::supervisely_routes::inference_batch_ids,
        crate::supervisely_routes::inference_image,
        crate::supervisely_routes::inference_batch,
        crate::async_routes::inference_video_id,
        crate::async_routes::inference_video_id_async,
        crate::async_routes::inference_image_id_async,
        crate::async_routes::inference_project_id_async,
        crate::async_routes::get_inference_progress,
        crate::async_routes::pop_inference_results,
        crate::async_routes::get_inference_result,
        crate::async_routes::stop_inference,
        crate::async_routes::clear_inference_request,
        crate::async_routes::get_preparing_progress,
        crate::async_routes::get_tracking_settings,
        crate::health::is_alive,
        crate::health::is_running,
        crate::health::livez,
        crate::health::is_ready,
        crate::health::readyz,
        crate::health::is_deployed,
        crate::health::health,
        crate::native_routes::list_models,
        crate::native_routes::native_predict,
        crate::native_routes::metrics,
    ),
    tags(
        (name = "supervisely", description = "The Supervisely serving API"),
        (name = "health", description = "Probes: open without a token"),
        (name = "native", description = "The native API"),
        (name = "page", description = "The browser page and these docs"),
    )
)]
pub struct ApiDoc;

/// The spec as JSON text (built once).
pub fn spec_json() -> &'static str {
    static SPEC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SPEC.get_or_init(|| ApiDoc::openapi().to_pretty_json().expect("the spec serializes"))
}
