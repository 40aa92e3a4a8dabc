//! The native API: the registry's models, prediction on a raw image or a URL
//! (Supervisely or COCO form), and Prometheus metrics.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use d2serve_engine::pipeline::Settings;
use d2serve_engine::windows::{BorderStrategy, WindowParams};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::http::respond;
use crate::inference::{parse_body, parse_settings, parse_window, resolve_model, run_inference};
use crate::{S, coco};

/// The models the registry holds, with dataset, APs and classes.
#[utoipa::path(get, path = "/v1/models", tag = "native", responses(
        (status = 200, body = crate::openapi::ModelList),
        crate::openapi::ErrorResponses
))]
pub(crate) async fn list_models(State(st): S) -> Result<Json<crate::openapi::ModelList>, ApiError> {
    let index = st.cache.index().await?;
    let loaded = st.cache.loaded_keys();
    let default_key = resolve_model(&st, None).ok();
    let mut models = Vec::with_capacity(index.models.len());
    for (key, e) in &index.models {
        let manifest = st.cache.manifest(key, &e.artifact).await;
        let spec = match st.cfg.catalog.get(key) {
            Some(entry) => Some(entry.spec()),
            None => manifest.as_ref().ok().and_then(|m| m.spec.clone()),
        };
        let runtime = st.cache.runtime_of(key, spec.as_ref());
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
            runtime: runtime.runtime.to_string(),
            precision: runtime.precision.to_string(),
            default: default_key.as_deref() == Some(key.as_str()),
        });
    }
    Ok(Json(crate::openapi::ModelList { models }))
}

#[derive(serde::Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PredictQuery {
    /// `supervisely` (default) or `coco`.
    format: Option<String>,
    /// Confidence threshold in [0, 1] for raw image bodies (default 0: every detection).
    #[param(minimum = 0.0, maximum = 1.0)]
    conf: Option<f64>,
    /// Sliding-window inference for raw image bodies: the window as HEIGHTxWIDTH, e.g. `256x256`
    /// (JSON bodies use Supervisely's `settings.inference_mode` and `settings.sliding_window_params`).
    window: Option<String>,
    /// The windows' overlap as YxX, e.g. `32x32` (default `0x0`).
    overlap: Option<String>,
}

/// `256x256` as (256, 256).
pub(crate) fn size_pair(s: &str, what: &str) -> Result<(usize, usize), ApiError> {
    s.split_once(['x', 'X'])
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
        .ok_or_else(|| ApiError::bad_request("bad_sliding_window", format!("{what} `{s}`: write HEIGHTxWIDTH in pixels, e.g. 256x256")))
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
pub(crate) async fn native_predict(State(st): S, Path(rest): Path<String>, Query(q): Query<PredictQuery>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
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
    let (bytes, settings, window) = if is_json {
        let v = parse_body(&body)?;
        let state = json!({"settings": v.get("settings").cloned().unwrap_or(Value::Null), "rectangle": v.get("rectangle").cloned().unwrap_or(Value::Null)});
        let settings = parse_settings(&state, conf)?;
        let window = parse_window(&state, st.cfg.sliding_window)?;
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
        (bytes, settings, window)
    } else {
        let window = match &q.window {
            None => None,
            Some(size) => {
                let (height, width) = size_pair(size, "window")?;
                let (overlap_y, overlap_x) = q.overlap.as_deref().map(|o| size_pair(o, "overlap")).transpose()?.unwrap_or((0, 0));
                let mode = st.cfg.sliding_window.ok_or_else(|| ApiError::bad_request("sliding_window_off", "this server runs with --sliding-window none"))?;
                Some((WindowParams { height: Some(height), width: Some(width), overlap_y, overlap_x, border: BorderStrategy::ShiftWindow }, mode))
            }
        };
        (body.to_vec(), Settings { conf_thres: conf, ..Default::default() }, window)
    };
    let a = run_inference(&st, &key, bytes, settings, window, t.elapsed().as_secs_f64()).await?;
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
    let out = match (&a.windowed, out) {
        (Some(w), Value::Object(mut o)) => {
            o.insert("slides".into(), w.slides_json(&a.model)["slides"].take());
            Value::Object(o)
        }
        (_, out) => out,
    };
    Ok(respond(&key, &a.model.version, out, &a.timings, enc, &st))
}

/// Prometheus metrics: requests, stage latencies, the queue, cancellations, the registry's state.
#[utoipa::path(get, path = "/metrics", tag = "native", responses(
        (status = 200, content_type = "text/plain", body = String),
        (status = 401, body = crate::openapi::ErrorBody),
))]
pub(crate) async fn metrics(State(st): S) -> Response {
    let stats = st.cache.stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut body = st.metrics.render(&stats, st.cache.loaded_keys().len(), &st.admission, &st.cache.index_status(), &st.connections);
    let c = &st.jobs.counters;
    body.push_str("# HELP d2serve_async_requests Asynchronous requests kept now, by state.\n# TYPE d2serve_async_requests gauge\n");
    for (state, n) in st.jobs.census() {
        body.push_str(&format!("d2serve_async_requests{{state=\"{state}\"}} {n}\n"));
    }
    body.push_str(&format!(
        "# HELP d2serve_async_started_total Asynchronous requests started.\n# TYPE d2serve_async_started_total counter\nd2serve_async_started_total {}\n\
         # HELP d2serve_async_refused_total Asynchronous requests refused (--max-async-requests).\n# TYPE d2serve_async_refused_total counter\nd2serve_async_refused_total {}\n\
         # HELP d2serve_async_items_total Frames and images inferred for asynchronous and video requests.\n# TYPE d2serve_async_items_total counter\nd2serve_async_items_total {}\n",
        c.started.load(std::sync::atomic::Ordering::Relaxed),
        c.refused.load(std::sync::atomic::Ordering::Relaxed),
        c.items.load(std::sync::atomic::Ordering::Relaxed),
    ));
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

