//! The Supervisely serving API's routes: session info, classes, settings,
//! and inference on uploads, URLs and platform image ids.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Multipart, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use d2serve_engine::supervisely;
use d2serve_engine::windows::MergeMode;
use d2serve_registry::ClassInfo;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::http::respond;
use crate::inference::{load_model, parse_body, parse_settings, parse_window, prediction_json, requested_model, resolve_model, run_inference, state_of};
use crate::{APP_NAME, AppState, DEFAULT_CONF_THRES, MAX_BATCH, S};

/// What the server runs: model, checkpoint, dataset, classes, device.
#[utoipa::path(method(get, post), path = "/get_session_info", tag = "supervisely", request_body(content = Option<crate::openapi::SuperviselyRequest>, description = "Optional; `state.model` picks a model other than the default"), responses(
        (status = 200, body = crate::openapi::SessionInfo),
        crate::openapi::ErrorResponses
))]
pub(crate) async fn session_info(State(st): S, headers: HeaderMap, body: Bytes) -> Result<Json<crate::openapi::SessionInfo>, ApiError> {
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
    let runtime = runtime_of(&st, &key).await;
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
        runtime: runtime.runtime.to_string(),
        precision: runtime.precision.to_string(),
        runtime_reason: runtime.reason,
        sliding_window_support: st.cfg.sliding_window.map_or("none", MergeMode::as_str).into(),
        // Video by id works everywhere (under Lambda within the function's timeout);
        // the asynchronous family needs a process that outlives the request.
        videos_support: true,
        async_video_inference_support: st.cfg.async_requests,
        tracking_on_videos_support: true,
        async_image_inference_support: st.cfg.async_requests,
        tracking_algorithms: vec!["botsort".into()],
        batch_inference_support: true,
        max_batch_size: MAX_BATCH,
        task_type: "instance segmentation".into(),
        app: APP_NAME.into(),
        kind: "Instance Segmentation".into(),
        classes_count,
        tags_count: 1,
    }))
}

/// The runtime and precision `key` runs in (or will, when loaded), and why.
pub(crate) async fn runtime_of(st: &AppState, key: &str) -> d2serve_engine::cache::RuntimeInfo {
    let spec = match st.cfg.catalog.get(key) {
        Some(entry) => Some(entry.spec()),
        None => published_manifest(st, key).await.and_then(|m| m.spec),
    };
    st.cache.runtime_of(key, spec.as_ref())
}

/// The manifest of `key`'s current artifact in the registry (None when the
/// registry cannot say: the catalog's description stands then).
pub(crate) async fn published_manifest(st: &AppState, key: &str) -> Option<d2serve_registry::Manifest> {
    let index = st.cache.index().await.ok()?;
    let entry = index.models.get(key)?;
    st.cache.manifest(key, &entry.artifact).await.ok()
}

/// A zoo model's classes come from the catalog (no model load needed); a
/// model of one's own carries its names and colours in its manifest.
pub(crate) async fn class_list(st: &AppState, key: &str) -> Result<Vec<ClassInfo>, ApiError> {
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
pub(crate) async fn output_classes(st: S, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    model_meta(st, headers, body).await
}

/// The model's classes and the confidence tag, as a Supervisely ProjectMeta (same as `get_output_classes_and_tags`).
#[utoipa::path(method(get, post), path = "/get_model_meta", tag = "supervisely", request_body(content = Option<crate::openapi::SuperviselyRequest>), responses(
        (status = 200, body = crate::openapi::ProjectMeta),
        crate::openapi::ErrorResponses
))]
pub(crate) async fn model_meta(State(st): S, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
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
pub(crate) async fn custom_settings() -> Json<Value> {
    // The Supervisely app's custom_settings.yaml, with the one default of zoo predict, serve and batch.
    Json(json!({"settings": format!("# object confidence threshold (for debug 0.001)\nconf_thres: {DEFAULT_CONF_THRES}\n")}))
}

/// Predict on an image fetched from `state.image_url`.
#[utoipa::path(post, path = "/inference_image_url", tag = "supervisely", request_body(content = crate::openapi::SuperviselyRequest, content_type = "application/json"), responses(
        (status = 200, body = crate::openapi::SuperviselyPrediction, headers(("server-timing" = String, description = "fetch, decode, infer, encode (ms)"), ("x-model" = String, description = "Registry key of the model used"), ("x-model-artifact" = String, description = "sha256 of the artifact that answered"))),
        crate::openapi::ErrorResponses
))]
pub(crate) async fn inference_image_url(State(st): S, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let body = parse_body(&body)?;
    let state = state_of(&body);
    let key = resolve_model(&st, requested_model(&state, &headers))?;
    let url = state
        .get("image_url")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("missing_field", "state.image_url (a string) is required"))?;
    let settings = parse_settings(&state, DEFAULT_CONF_THRES)?;
    let window = parse_window(&state, st.cfg.sliding_window)?;
    let t = Instant::now();
    let bytes = st.fetcher.get(url).await?;
    let fetch_s = t.elapsed().as_secs_f64();
    let a = run_inference(&st, &key, bytes, settings, window, fetch_s).await?;
    let enc = Instant::now();
    let name = url.rsplit('/').next().filter(|s| !s.is_empty());
    let body = prediction_json(&a, name, None);
    Ok(respond(&key, &a.model.version, body, &a.timings, enc, &st))
}

/// Download an image from the request's Supervisely instance.
pub(crate) async fn supervisely_image(st: &AppState, body: &Value, headers: &HeaderMap, id: i64) -> Result<Vec<u8>, ApiError> {
    crate::platform::Platform::for_request(st, body, headers)?.image(id).await
}

/// Predict on Supervisely image `state.image_id` (needs --supervisely-server and a token).
#[utoipa::path(post, path = "/inference_image_id", tag = "supervisely", request_body(content = crate::openapi::SuperviselyRequest, content_type = "application/json"), responses(
        (status = 200, body = crate::openapi::SuperviselyPrediction, headers(("server-timing" = String, description = "fetch, decode, infer, encode (ms)"), ("x-model" = String, description = "Registry key of the model used"), ("x-model-artifact" = String, description = "sha256 of the artifact that answered"))),
        crate::openapi::ErrorResponses
))]
pub(crate) async fn inference_image_id(State(st): S, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let body = parse_body(&body)?;
    let state = state_of(&body);
    let key = resolve_model(&st, requested_model(&state, &headers))?;
    let id = ["image_id", "imageId"]
        .iter()
        .find_map(|k| state.get(*k).and_then(Value::as_i64))
        .ok_or_else(|| ApiError::bad_request("missing_field", "state.image_id (an integer) is required"))?;
    let settings = parse_settings(&state, DEFAULT_CONF_THRES)?;
    let window = parse_window(&state, st.cfg.sliding_window)?;
    let t = Instant::now();
    let bytes = supervisely_image(&st, &body, &headers, id).await?;
    let a = run_inference(&st, &key, bytes, settings, window, t.elapsed().as_secs_f64()).await?;
    let enc = Instant::now();
    let body = prediction_json(&a, None, Some(id));
    Ok(respond(&key, &a.model.version, body, &a.timings, enc, &st))
}

/// Predict on Supervisely images `state.batch_ids` (at most 16).
#[utoipa::path(post, path = "/inference_batch_ids", tag = "supervisely", request_body(content = crate::openapi::SuperviselyRequest, content_type = "application/json"), responses(
        (status = 200, body = Vec<crate::openapi::SuperviselyPrediction>, headers(("server-timing" = String, description = "fetch, decode, infer, encode (ms)"), ("x-model" = String, description = "Registry key of the model used"), ("x-model-artifact" = String, description = "sha256 of the artifact that answered"))),
        crate::openapi::ErrorResponses
))]
pub(crate) async fn inference_batch_ids(State(st): S, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
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
    let window = parse_window(&state, st.cfg.sliding_window)?;
    let mut out = Vec::new();
    let mut timings = Vec::new();
    let mut artifact = String::new();
    for id in ids {
        let t = Instant::now();
        let bytes = supervisely_image(&st, &body, &headers, id).await?;
        let a = run_inference(&st, &key, bytes, settings.clone(), window, t.elapsed().as_secs_f64()).await?;
        out.push(prediction_json(&a, None, Some(id)));
        timings = a.timings;
        artifact = a.model.version.clone();
    }
    Ok(respond(&key, &artifact, Value::Array(out), &timings, Instant::now(), &st))
}

/// Files and the state object of a Supervisely multipart request.
pub(crate) async fn read_multipart(mut mp: Multipart) -> Result<(Vec<(String, Vec<u8>)>, Value), ApiError> {
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
pub(crate) async fn inference_image(State(st): S, headers: HeaderMap, mp: Multipart) -> Result<Response, ApiError> {
    let (mut files, state) = read_multipart(mp).await?;
    let key = resolve_model(&st, requested_model(&state, &headers))?;
    let settings = parse_settings(&state, DEFAULT_CONF_THRES)?;
    let window = parse_window(&state, st.cfg.sliding_window)?;
    let (name, bytes) = files.swap_remove(0);
    let a = run_inference(&st, &key, bytes, settings, window, 0.0).await?;
    let enc = Instant::now();
    let body = prediction_json(&a, Some(&name), None);
    Ok(respond(&key, &a.model.version, body, &a.timings, enc, &st))
}

/// Predict on uploaded images (multipart `files`, up to 16; optional `settings`).
#[utoipa::path(post, path = "/inference_batch", tag = "supervisely", request_body(content = crate::openapi::InferenceForm, content_type = "multipart/form-data"), responses(
        (status = 200, body = Vec<crate::openapi::SuperviselyPrediction>, headers(("server-timing" = String, description = "fetch, decode, infer, encode (ms)"), ("x-model" = String, description = "Registry key of the model used"), ("x-model-artifact" = String, description = "sha256 of the artifact that answered"))),
        crate::openapi::ErrorResponses
))]
pub(crate) async fn inference_batch(State(st): S, headers: HeaderMap, mp: Multipart) -> Result<Response, ApiError> {
    let (files, state) = read_multipart(mp).await?;
    if files.len() > MAX_BATCH {
        return Err(ApiError::bad_request("batch_too_large", format!("Batch size should be less than or equal to {MAX_BATCH}")));
    }
    let key = resolve_model(&st, requested_model(&state, &headers))?;
    let settings = parse_settings(&state, DEFAULT_CONF_THRES)?;
    let window = parse_window(&state, st.cfg.sliding_window)?;
    let mut out = Vec::new();
    let mut timings = Vec::new();
    let mut artifact = String::new();
    for (name, bytes) in files {
        let a = run_inference(&st, &key, bytes, settings.clone(), window, 0.0).await?;
        out.push(prediction_json(&a, Some(&name), None));
        timings = a.timings;
        artifact = a.model.version.clone();
    }
    Ok(respond(&key, &artifact, Value::Array(out), &timings, Instant::now(), &st))
}
