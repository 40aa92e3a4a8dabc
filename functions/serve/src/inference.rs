//! From a request to an answer: which model, the settings (confidence,
//! classes, rectangle, sliding window), and one image through the model
//! inside an inference slot.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use d2serve_engine::pipeline::{Roi, Settings};
use d2serve_engine::windows::{BorderStrategy, MergeMode, WindowParams, WindowedPrediction};
use d2serve_engine::{LoadedModel, Prediction, RgbImage};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;

/// The registry key of the requested model: a catalog key or alias, else
/// the key of a model of one's own (`zoo import`), which only the registry
/// knows; an unpublished one is refused when it is loaded ([`load_model`]).
pub(crate) fn resolve_model(st: &AppState, requested: Option<&str>) -> Result<String, ApiError> {
    let name = requested.filter(|s| !s.is_empty()).unwrap_or(&st.cfg.default_model);
    if st.cfg.catalog.get(name).is_none() && (name.len() > 256 || name.chars().any(|c| c.is_control() || c == '\\')) {
        return Err(unknown_model(name));
    }
    Ok(st.cfg.catalog.registry_key(name))
}

pub(crate) fn unknown_model(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_model",
        format!("no model `{name}`; GET /v1/models lists the models this server has"),
    )
}

/// The loaded model of `key`. A name that is neither in the catalog nor in
/// the registry is an unknown model (404), as it was before imported models.
pub(crate) async fn load_model(st: &AppState, key: &str) -> Result<Arc<LoadedModel>, ApiError> {
    match st.cache.get(key).await {
        Err(d2serve_engine::LoadError::NotPublished(_)) if st.cfg.catalog.get(key).is_none() => Err(unknown_model(key)),
        other => Ok(other?),
    }
}

/// `state.model`, else the `x-model` header.
pub(crate) fn requested_model<'a>(state: &'a Value, headers: &'a HeaderMap) -> Option<&'a str> {
    state
        .get("model")
        .and_then(Value::as_str)
        .or_else(|| headers.get("x-model").and_then(|v| v.to_str().ok()))
}

pub(crate) fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_request("bad_json", format!("the body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request("bad_json", "the body must be a JSON object"));
    }
    Ok(v)
}

pub(crate) fn state_of(body: &Value) -> Value {
    match body.get("state") {
        Some(s) if s.is_object() => s.clone(),
        _ => json!({}),
    }
}

pub(crate) fn roi_from(v: &Value) -> Result<Roi, ApiError> {
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

/// Sliding-window settings (`settings.inference_mode: "sliding_window"` with
/// `settings.sliding_window_params`), when the server's mode is on. The
/// client cannot choose the merge: the server's mode applies, as in
/// Supervisely's servers.
pub fn parse_window(state: &Value, mode: Option<MergeMode>) -> Result<Option<(WindowParams, MergeMode)>, ApiError> {
    let bad = |detail: String| ApiError::bad_request("bad_sliding_window", detail);
    let settings = state.get("settings").filter(|s| s.is_object());
    let wanted = settings.and_then(|s| s.get("inference_mode")).and_then(Value::as_str);
    match wanted {
        None | Some("full_image") => return Ok(None),
        Some("sliding_window") => {}
        Some(other) => return Err(bad(format!("inference_mode `{other}`: use \"full_image\" or \"sliding_window\""))),
    }
    let Some(mode) = mode else { return Ok(None) };
    let params = settings
        .and_then(|s| s.get("sliding_window_params"))
        .and_then(Value::as_object)
        .ok_or_else(|| bad("inference_mode \"sliding_window\" needs settings.sliding_window_params: {windowHeight, windowWidth, overlapY, overlapX, borderStrategy}".into()))?;
    let int = |key: &str| -> Result<Option<usize>, ApiError> {
        match params.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| bad(format!("sliding_window_params.{key} must be a non-negative integer, got {v}"))),
        }
    };
    let border = match params.get("borderStrategy") {
        None | Some(Value::Null) => BorderStrategy::ShiftWindow,
        Some(Value::String(s)) => BorderStrategy::parse(s).map_err(|e| bad(e.0))?,
        Some(v) => return Err(bad(format!("sliding_window_params.borderStrategy must be a string, got {v}"))),
    };
    if state.get("rectangle").is_some_and(|r| !r.is_null()) || state.pointer("/settings/rectangle").is_some_and(|r| !r.is_null()) {
        return Err(bad("a rectangle and sliding_window together are not supported: send one or the other".into()));
    }
    let params = WindowParams {
        height: int("windowHeight")?,
        width: int("windowWidth")?,
        overlap_y: int("overlapY")?.unwrap_or(0),
        overlap_x: int("overlapX")?.unwrap_or(0),
        border,
    };
    Ok(Some((params, mode)))
}

// ---------- inference ----------

pub(crate) struct Answer {
    pub(crate) model: Arc<LoadedModel>,
    pub(crate) prediction: Prediction,
    /// The windows, in sliding-window mode (`prediction` is then their merge).
    pub(crate) windowed: Option<WindowedPrediction>,
    pub(crate) timings: Vec<(&'static str, f64)>,
}

pub(crate) async fn run_inference(st: &Arc<AppState>, key: &str, bytes: Vec<u8>, settings: Settings, window: Option<(WindowParams, MergeMode)>, fetch_s: f64) -> Result<Answer, ApiError> {
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
        // One slot for all the windows of one image: they run one after another.
        let answer = match window {
            None => (m.predict(&image, &settings)?, None),
            Some((params, mode)) => {
                let w = d2serve_engine::windows::predict_windows(&m, &image, &settings, &params, mode)?;
                (w.merged.clone(), Some(w))
            }
        };
        Ok::<_, ApiError>((decode_s, answer))
    })
    .await
    .map_err(|e| ApiError::internal(format!("inference crashed: {e}")))??;
    let (prediction, windowed) = prediction;
    let infer_s = (prediction.timings.resize + prediction.timings.infer + prediction.timings.postprocess).as_secs_f64();
    for (stage, s) in [("fetch", fetch_s), ("decode", decode_s), ("infer", infer_s)] {
        st.metrics.observe(key, stage, s);
    }
    Ok(Answer {
        model,
        prediction,
        windowed,
        timings: vec![("fetch", fetch_s), ("decode", decode_s), ("infer", infer_s)],
    })
}

pub(crate) fn prediction_json(a: &Answer, name: Option<&str>, image_id: Option<i64>) -> Value {
    // Supervisely's servers send the slides twice: `data` and `slides_data`.
    let slides = a.windowed.as_ref().map_or_else(|| json!({}), |w| w.slides_json(&a.model));
    json!({
        "annotation": a.model.annotation(&a.prediction),
        "data": slides,
        "slides_data": slides,
        "image_id": image_id,
        "image_name": name,
        "name": name,
        "dataset_id": null,
        "project_id": null,
    })
}
