//! Supervisely's video and asynchronous routes: a video by id (synchronous and
//! asynchronous), images by id asynchronously, and the polling routes of
//! [`crate::jobs`]. Frames come from the platform in batches, the next batch
//! downloading while the current one is inferred; every frame goes through the
//! same inference slots as synchronous requests. Under AWS Lambda nothing
//! survives an invocation, so the asynchronous routes answer 400 there.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use d2serve_engine::pipeline::Settings;
use d2serve_engine::tracker::{BotSort, Detection, TrackerSettings};
use d2serve_engine::windows::{MergeMode, WindowParams};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::inference::{parse_body, parse_settings, parse_window, prediction_json, requested_model, resolve_model, run_inference, state_of};
use crate::jobs::Job;
use crate::platform::{FRAMES_PER_CALL, Platform, VideoInfo};
use crate::{AppState, DEFAULT_CONF_THRES, MAX_BATCH, S};

/// What one request asks to run.
#[derive(Clone)]
struct Work {
    key: String,
    settings: Settings,
    window: Option<(WindowParams, MergeMode)>,
    batch: usize,
    /// `tracker: "botsort"` with its settings (videos only).
    tracker: Option<TrackerSettings>,
}

fn first_i64(state: &Value, keys: &[&str]) -> Result<Option<i64>, ApiError> {
    for k in keys {
        match state.get(*k) {
            None | Some(Value::Null) => continue,
            Some(v) => return v.as_i64().map(Some).ok_or_else(|| ApiError::bad_request("bad_field", format!("state.{k} must be an integer, got {v}"))),
        }
    }
    Ok(None)
}

fn work_of(st: &AppState, state: &Value, headers: &HeaderMap) -> Result<Work, ApiError> {
    let key = resolve_model(st, requested_model(state, headers))?;
    let batch = match first_i64(state, &["batch_size"])? {
        None => MAX_BATCH,
        Some(n) if n >= 1 && n as usize <= MAX_BATCH => n as usize,
        Some(n) => return Err(ApiError::bad_request("batch_too_large", format!("Batch size should be less than or equal to {MAX_BATCH} for this model (got {n})."))),
    };
    let tracker = match state.get("tracker") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if t == "botsort" => Some(TrackerSettings::parse(state.get("tracker_settings")).map_err(|e| ApiError::bad_request("bad_tracker_settings", e))?),
        Some(t) => return Err(ApiError::bad_request("bad_tracker", format!("tracker {t} is not supported: use \"botsort\" or null"))),
    };
    Ok(Work { key, settings: parse_settings(state, DEFAULT_CONF_THRES)?, window: parse_window(state, st.cfg.sliding_window)?, batch, tracker })
}

/// The tracks of one video request and what `video_ann` is built from.
struct Tracking {
    tracker: BotSort,
    /// Per processed frame: its index and (track id, class title, label geometry) per figure.
    frames: Vec<(i64, Vec<(u64, String, Value)>)>,
    size: (usize, usize),
}

impl Tracking {
    /// Keep the frame's tracked detections only (in detection order), with their
    /// track ids in `customBigData`, and remember the figures for `video_ann`.
    fn frame(&mut self, frame: i64, a: &mut crate::inference::Answer) -> Vec<u64> {
        let p = &a.prediction;
        let dets: Vec<Detection> = p
            .instances
            .iter()
            .map(|i| Detection { bbox: i.bbox.map(f64::from), score: f64::from(i.score), class_id: i.class_id })
            .collect();
        let out = self.tracker.update(&dets);
        let objects = a.model.objects(&p.instances);
        let mut figures = Vec::new();
        for (track, class_id, det) in &out.active {
            if let Some(d) = det {
                let o = &objects[*d];
                let geometry = json!({"bitmap": o["bitmap"], "shape": "bitmap", "geometryType": "bitmap"});
                figures.push((*track, a.model.manifest.classes[*class_id].name.clone(), geometry));
            }
        }
        self.frames.push((frame, figures));
        self.size = (p.height, p.width);
        let keep: std::collections::HashMap<usize, u64> = out.detection_track.into_iter().collect();
        let mut ids = Vec::new();
        let mut kept = Vec::new();
        for (i, inst) in std::mem::take(&mut a.prediction.instances).into_iter().enumerate() {
            if let Some(id) = keep.get(&i) {
                ids.push(*id);
                kept.push(inst);
            }
        }
        a.prediction.instances = kept;
        ids
    }

    /// Supervisely's VideoAnnotation JSON (protocol §6.4), with true frame indices.
    fn video_ann(&self, frames_count: i64) -> Value {
        let key = || format!("{:032x}", rand::random::<u128>());
        let mut objects: Vec<(u64, String, String)> = Vec::new();
        let mut frames = Vec::new();
        let mut figure_id = 0u64;
        for (index, figures) in &self.frames {
            let figs: Vec<Value> = figures
                .iter()
                .map(|(track, class, geometry)| {
                    let object_key = match objects.iter().find(|o| o.0 == *track) {
                        Some(o) => o.2.clone(),
                        None => {
                            let k = key();
                            objects.push((*track, class.clone(), k.clone()));
                            k
                        }
                    };
                    figure_id += 1;
                    // Integer ids (the track id for an object, a counter for a figure) let the
                    // SDK read it with a KeyIdMap, whose ids must be unique.
                    json!({"key": key(), "id": figure_id, "objectKey": object_key, "objectId": track, "geometryType": "bitmap", "geometry": geometry, "nnCreated": true, "nnUpdated": true, "trackId": track.to_string()})
                })
                .collect();
            frames.push(json!({"index": index, "figures": figs}));
        }
        let objects: Vec<Value> = objects.into_iter().map(|(track, class, k)| json!({"key": k, "id": track, "classTitle": class, "tags": []})).collect();
        json!({"size": {"height": self.size.0, "width": self.size.1}, "description": "", "key": key(), "tags": [], "objects": objects, "frames": frames, "framesCount": frames_count})
    }
}

fn no_async_under_lambda(st: &AppState) -> Result<(), ApiError> {
    if st.cfg.async_requests {
        return Ok(());
    }
    Err(ApiError::bad_request(
        "async_unavailable",
        "asynchronous requests need a server that outlives the request; under AWS Lambda use /inference_video_id (bounded by the function's timeout), /inference_batch_ids, or run serve as a container",
    ))
}

/// The frames a video request names (protocol §4.1): start, count (or end,
/// exclusive, or duration), step and direction; every index inside the video.
fn frames_of(state: &Value, info: &VideoInfo) -> Result<Vec<i64>, ApiError> {
    let start = first_i64(state, &["startFrameIndex", "start_frame_index", "start_frame"])?.unwrap_or(0);
    let step = first_i64(state, &["stride", "step"])?.unwrap_or(1);
    if step < 1 {
        return Err(ApiError::bad_request("bad_field", format!("stride must be at least 1, got {step}")));
    }
    let count = match first_i64(state, &["framesCount", "frames_count", "num_frames"])? {
        Some(n) => n,
        None => match first_i64(state, &["endFrameIndex", "end_frame_index", "end_frame"])? {
            Some(end) => end - start,
            None => match (state.get("duration").and_then(Value::as_f64), info.duration.filter(|d| *d > 0.0)) {
                (Some(secs), Some(video_secs)) => (secs * info.frames_count as f64 / video_secs) as i64,
                _ => info.frames_count - start,
            },
        },
    };
    if count < 1 {
        return Err(ApiError::bad_request("bad_frame_range", format!("the request names no frames (count {count} from frame {start})")));
    }
    let forward = state.get("direction").and_then(Value::as_str).is_none_or(|d| d == "forward");
    let frames: Vec<i64> = (0..count).step_by(step as usize).map(|k| if forward { start + k } else { start - k }).collect();
    if let Some(bad) = frames.iter().find(|&&f| f < 0 || f >= info.frames_count) {
        return Err(ApiError::bad_request(
            "bad_frame_range",
            format!("frame {bad} is outside video {} (frames 0..{}): check startFrameIndex, framesCount/endFrameIndex and direction", info.id, info.frames_count - 1),
        ));
    }
    Ok(frames)
}

/// One image through the model, waiting for a slot when the queue is full
/// (background work is not refused like a client; it waits its turn).
async fn infer_waiting(st: &Arc<AppState>, job: &Job, w: &Work, bytes: Vec<u8>) -> Result<Option<crate::inference::Answer>, ApiError> {
    loop {
        if job.stopped() {
            return Ok(None);
        }
        match run_inference(st, &w.key, bytes.clone(), w.settings.clone(), w.window, 0.0).await {
            Err(e) if e.error == "overloaded" => tokio::time::sleep(Duration::from_millis(200)).await,
            other => return other.map(Some),
        }
    }
}

/// Batches downloaded one ahead: while batch n is handed out, batch n+1 is
/// already downloading. Dropping it aborts the download in flight.
struct Prefetch<B, T, F> {
    batches: Vec<B>,
    n: usize,
    next: Option<tokio::task::JoinHandle<Result<Vec<T>, ApiError>>>,
    fetch: F,
    what: &'static str,
}

impl<B: Clone, T, F: Fn(B) -> tokio::task::JoinHandle<Result<Vec<T>, ApiError>>> Prefetch<B, T, F> {
    fn new(batches: Vec<B>, fetch: F, what: &'static str) -> Self {
        let next = batches.first().cloned().map(&fetch);
        Self { batches, n: 0, next, fetch, what }
    }

    /// The next batch and its downloaded items; None after the last one.
    async fn next(&mut self) -> Option<Result<(B, Vec<T>), ApiError>> {
        let handle = self.next.take()?;
        let got = match handle.await {
            Ok(r) => r,
            Err(e) => Err(ApiError::internal(format!("{} download crashed: {e}", self.what))),
        };
        let batch = self.batches[self.n].clone();
        self.n += 1;
        self.next = self.batches.get(self.n).cloned().map(&self.fetch);
        Some(got.map(|items| (batch, items)))
    }
}

impl<B, T, F> Drop for Prefetch<B, T, F> {
    fn drop(&mut self) {
        if let Some(h) = self.next.take() {
            h.abort();
        }
    }
}

/// Where one async result came from, beside its annotation.
#[derive(Default)]
struct Origin {
    video_id: Option<i64>,
    frame_index: Option<i64>,
    dataset_id: Option<i64>,
    project_id: Option<i64>,
}

/// One async result: the prediction with the fields Supervisely's async results carry.
fn item_json(a: &crate::inference::Answer, name: Option<&str>, image_id: Option<i64>, origin: Origin) -> Value {
    let mut p = prediction_json(a, name, image_id);
    if let Value::Object(o) = &mut p {
        for k in ["source", "path", "url"] {
            o.insert(k.into(), Value::Null);
        }
        o.insert("video_id".into(), json!(origin.video_id));
        o.insert("frame_index".into(), json!(origin.frame_index));
        o.insert("dataset_id".into(), json!(origin.dataset_id));
        o.insert("project_id".into(), json!(origin.project_id));
    }
    p
}

/// The video worker: frames in batches, the next batch downloading while
/// the current one is inferred; stop is checked before each batch.
async fn run_video(st: Arc<AppState>, job: Arc<Job>, platform: Platform, info: VideoInfo, frames: Vec<i64>, w: Work) {
    job.start_inference(frames.len() as u64);
    let chunk = w.batch.min(FRAMES_PER_CALL).max(1);
    let chunks: Vec<Vec<i64>> = frames.chunks(chunk).map(<[i64]>::to_vec).collect();
    let fetch = |c: Vec<i64>| {
        let p = platform.clone();
        let id = info.id;
        tokio::spawn(async move { p.video_frames(id, &c).await })
    };
    let mut batches = Prefetch::new(chunks, fetch, "frame");
    let mut tracking = w.tracker.clone().map(|t| Tracking { tracker: BotSort::new(t), frames: Vec::new(), size: (0, 0) });
    'batches: while !job.stopped() {
        let (batch, images) = match batches.next().await {
            None => break,
            Some(Ok(got)) => got,
            Some(Err(e)) => return job.fail(&e),
        };
        for (frame, bytes) in batch.iter().zip(images) {
            match infer_waiting(&st, &job, &w, bytes).await {
                Ok(Some(mut a)) => {
                    let track_ids = tracking.as_mut().map(|t| t.frame(*frame, &mut a));
                    let origin = Origin { video_id: Some(info.id), frame_index: Some(*frame), dataset_id: info.dataset_id, project_id: info.project_id };
                    let mut p = item_json(&a, None, None, origin);
                    if let (Some(ids), Some(ann)) = (track_ids, p.get_mut("annotation").and_then(Value::as_object_mut)) {
                        ann.insert("customBigData".into(), json!(ids));
                    }
                    st.jobs.counters.items.fetch_add(1, Ordering::Relaxed);
                    job.push(p);
                }
                Ok(None) => break 'batches,
                Err(e) => return job.fail(&e),
            }
        }
    }
    drop(batches);
    let video_ann = tracking.map_or(Value::Null, |t| t.video_ann(info.frames_count));
    job.finish(Some(json!({"video_ann": video_ann})), None);
}

/// The images-by-id worker: in input order; for one image `result` is its prediction.
async fn run_images(st: Arc<AppState>, job: Arc<Job>, platform: Platform, ids: Vec<i64>, w: Work) {
    job.start_inference(ids.len() as u64);
    let mut last = None;
    let fetch = |id: i64| {
        let p = platform.clone();
        tokio::spawn(async move { p.image(id).await.map(|b| vec![b]) })
    };
    let mut images = Prefetch::new(ids.clone(), fetch, "image");
    'images: while !job.stopped() {
        let (id, bytes) = match images.next().await {
            None => break,
            Some(Ok(got)) => got,
            Some(Err(e)) => return job.fail(&e),
        };
        for b in bytes {
            match infer_waiting(&st, &job, &w, b).await {
                Ok(Some(a)) => {
                    let p = item_json(&a, None, Some(id), Origin::default());
                    st.jobs.counters.items.fetch_add(1, Ordering::Relaxed);
                    last = Some(p.clone());
                    job.push(p);
                }
                Ok(None) => break 'images,
                Err(e) => return job.fail(&e),
            }
        }
    }
    job.finish(None, if ids.len() == 1 { last } else { None });
}

/// The project worker: the datasets asked for (all by default), their images
/// in the platform's order, downloaded in batches (the next while the current
/// one is inferred); each result names its image and dataset.
async fn run_project(st: Arc<AppState>, job: Arc<Job>, platform: Platform, project: i64, dataset_ids: Option<Vec<i64>>, w: Work) {
    let datasets = match platform.datasets(project).await {
        Ok(d) => d,
        Err(e) => return job.fail(&e),
    };
    let mut work: Vec<(i64, Vec<(i64, String)>)> = Vec::new();
    for ds in datasets {
        let Some(id) = ds.get("id").and_then(Value::as_i64) else { continue };
        if dataset_ids.as_ref().is_some_and(|want| !want.contains(&id)) {
            continue;
        }
        match platform.images(id).await {
            Ok(images) => work.push((id, images.iter().filter_map(|i| Some((i.get("id")?.as_i64()?, i.get("name")?.as_str()?.to_string()))).collect())),
            Err(e) => return job.fail(&e),
        }
    }
    let total: usize = work.iter().map(|(_, imgs)| imgs.len()).sum();
    job.start_inference(total as u64);
    let batches: Vec<(i64, Vec<(i64, String)>)> = work.iter().flat_map(|(ds, imgs)| imgs.chunks(w.batch.max(1)).map(move |c| (*ds, c.to_vec()))).collect();
    let fetch = |(ds, imgs): (i64, Vec<(i64, String)>)| {
        let p = platform.clone();
        tokio::spawn(async move { p.images_bulk(ds, &imgs.iter().map(|i| i.0).collect::<Vec<_>>()).await })
    };
    let mut batches = Prefetch::new(batches, fetch, "image");
    'batches: while !job.stopped() {
        let ((ds, imgs), bytes) = match batches.next().await {
            None => break,
            Some(Ok(got)) => got,
            Some(Err(e)) => return job.fail(&e),
        };
        for ((id, name), b) in imgs.iter().zip(bytes) {
            match infer_waiting(&st, &job, &w, b).await {
                Ok(Some(a)) => {
                    let origin = Origin { dataset_id: Some(ds), project_id: Some(project), ..Default::default() };
                    let p = item_json(&a, Some(name), Some(*id), origin);
                    st.jobs.counters.items.fetch_add(1, Ordering::Relaxed);
                    job.push(p);
                }
                Ok(None) => break 'batches,
                Err(e) => return job.fail(&e),
            }
        }
    }
    drop(batches);
    job.finish(None, None);
}

/// Start predicting on every image of a project (`projectId`, optionally `dataset_ids`); poll with the uuid.
#[utoipa::path(post, path = "/inference_project_id_async", tag = "supervisely", request_body(content = crate::openapi::SuperviselyRequest, content_type = "application/json"), responses(
        (status = 200, description = "`{\"message\": \"Inference has started.\", \"inference_request_uuid\"}`", body = Object),
        crate::openapi::ErrorResponses
))]
pub(crate) async fn inference_project_id_async(State(st): S, headers: HeaderMap, body: Bytes) -> Result<Json<Value>, ApiError> {
    no_async_under_lambda(&st)?;
    let body = parse_body(&body)?;
    let state = state_of(&body);
    let w = work_of(&st, &state, &headers)?;
    let project = first_i64(&state, &["projectId", "project_id"])?.ok_or_else(|| ApiError::bad_request("missing_field", "Project id is not provided: send state.projectId"))?;
    let dataset_ids = match state.get("dataset_ids").filter(|v| !v.is_null()).or_else(|| state.get("datasetIds").filter(|v| !v.is_null())) {
        None => None,
        Some(Value::Array(a)) => Some(a.iter().map(|v| v.as_i64().ok_or_else(|| ApiError::bad_request("bad_field", "dataset_ids must be integers"))).collect::<Result<Vec<_>, _>>()?),
        Some(v) => return Err(ApiError::bad_request("bad_field", format!("dataset_ids must be a list of integers, got {v}"))),
    };
    let platform = Platform::for_request(&st, &body, &headers)?;
    // Read before scheduling: an unknown or non-image project is a 4xx now, not a failed request later.
    platform.images_project(project).await?;
    let job = st.jobs.create()?;
    tokio::spawn(run_project(st.clone(), job.clone(), platform, project, dataset_ids, w));
    Ok(Json(json!({"message": "Inference has started.", "inference_request_uuid": job.uuid})))
}

/// Validate a video request and prepare its worker (info read before scheduling, so a bad id or range is a 4xx).
async fn video_request(st: &Arc<AppState>, headers: &HeaderMap, body: &Bytes) -> Result<(Platform, VideoInfo, Vec<i64>, Work), ApiError> {
    let body = parse_body(body)?;
    let state = state_of(&body);
    let w = work_of(st, &state, headers)?;
    let video = first_i64(&state, &["videoId", "video_id"])?.ok_or_else(|| ApiError::bad_request("missing_field", "Video id is not provided: send state.videoId"))?;
    let platform = Platform::for_request(st, &body, headers)?;
    let info = platform.video_info(video).await?;
    let frames = frames_of(&state, &info)?;
    Ok((platform, info, frames, w))
}

/// Predict on frames of Supervisely video `state.videoId`, all in one answer (`{"ann": [...], "video_ann": null}`).
#[utoipa::path(post, path = "/inference_video_id", tag = "supervisely", request_body(content = crate::openapi::SuperviselyRequest, content_type = "application/json"), responses(
        (status = 200, description = "`{\"ann\": [one prediction per frame, in range order], \"video_ann\": null}`", body = Object),
        crate::openapi::ErrorResponses
))]
pub(crate) async fn inference_video_id(State(st): S, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let (platform, info, frames, w) = video_request(&st, &headers, &body).await?;
    let job = Job::detached(st.jobs.ttl);
    run_video(st.clone(), job.clone(), platform, info, frames, w).await;
    let (ann, error) = job.take_all();
    if let Some(e) = error {
        let detail = e.get("message").and_then(Value::as_str).unwrap_or("the video request failed").to_string();
        return Err(ApiError::new(axum::http::StatusCode::BAD_GATEWAY, "video_failed", detail));
    }
    let mut reply = json!({"ann": ann});
    if let (Value::Object(r), Value::Object(f)) = (&mut reply, job.final_result_json()) {
        r.extend(f);
    }
    Ok(Json(reply).into_response())
}

/// Start predicting on frames of video `state.videoId`; poll with the uuid.
#[utoipa::path(post, path = "/inference_video_id_async", tag = "supervisely", request_body(content = crate::openapi::SuperviselyRequest, content_type = "application/json"), responses(
        (status = 200, description = "`{\"message\": \"Inference has started.\", \"inference_request_uuid\"}`", body = Object),
        crate::openapi::ErrorResponses
))]
pub(crate) async fn inference_video_id_async(State(st): S, headers: HeaderMap, body: Bytes) -> Result<Json<Value>, ApiError> {
    no_async_under_lambda(&st)?;
    let (platform, info, frames, w) = video_request(&st, &headers, &body).await?;
    let job = st.jobs.create()?;
    tokio::spawn(run_video(st.clone(), job.clone(), platform, info, frames, w));
    Ok(Json(json!({"message": "Inference has started.", "inference_request_uuid": job.uuid})))
}

/// Start predicting on Supervisely images by id (`image_ids`, `batch_ids`, `image_id`, …); poll with the uuid.
#[utoipa::path(post, path = "/inference_image_id_async", tag = "supervisely", request_body(content = crate::openapi::SuperviselyRequest, content_type = "application/json"), responses(
        (status = 200, description = "`{\"message\": \"Scheduled inference task.\", \"inference_request_uuid\"}`", body = Object),
        crate::openapi::ErrorResponses
))]
pub(crate) async fn inference_image_id_async(State(st): S, headers: HeaderMap, body: Bytes) -> Result<Json<Value>, ApiError> {
    no_async_under_lambda(&st)?;
    let body = parse_body(&body)?;
    let state = state_of(&body);
    let w = work_of(&st, &state, &headers)?;
    // The first key present wins, as in the SDK; a scalar is one id.
    let ids_value = ["batch_ids", "image_ids", "images_ids", "imageIds", "image_id", "imageId"]
        .iter()
        .find_map(|k| state.get(*k))
        .ok_or_else(|| ApiError::bad_request("missing_field", "Image ids are not provided: send state.image_ids (a list) or state.image_id"))?;
    let ids: Vec<i64> = match ids_value {
        Value::Array(a) => a.iter().map(|v| v.as_i64().ok_or_else(|| ApiError::bad_request("bad_field", "image ids must be integers"))).collect::<Result<_, _>>()?,
        v => vec![v.as_i64().ok_or_else(|| ApiError::bad_request("bad_field", format!("image ids must be integers, got {v}")))?],
    };
    if ids.is_empty() {
        return Err(ApiError::bad_request("missing_field", "Image ids are not provided: the list is empty"));
    }
    let platform = Platform::for_request(&st, &body, &headers)?;
    let job = st.jobs.create()?;
    tokio::spawn(run_images(st.clone(), job.clone(), platform, ids, w));
    Ok(Json(json!({"message": "Scheduled inference task.", "inference_request_uuid": job.uuid})))
}

fn polled(body: &Bytes) -> Result<Value, ApiError> {
    Ok(state_of(&parse_body(body)?))
}

/// Stage, progress, pending count, errors and `is_inferring` of an asynchronous request.
#[utoipa::path(post, path = "/get_inference_progress", tag = "supervisely", request_body(content = crate::openapi::SuperviselyRequest, content_type = "application/json"), responses((status = 200, body = Object), crate::openapi::ErrorResponses))]
pub(crate) async fn get_inference_progress(State(st): S, body: Bytes) -> Result<Json<Value>, ApiError> {
    Ok(Json(st.jobs.get(&polled(&body)?)?.progress_json()))
}

/// Every result waiting, oldest first, removed from the server.
#[utoipa::path(post, path = "/pop_inference_results", tag = "supervisely", request_body(content = crate::openapi::SuperviselyRequest, content_type = "application/json"), responses((status = 200, body = Object), crate::openapi::ErrorResponses))]
pub(crate) async fn pop_inference_results(State(st): S, body: Bytes) -> Result<Json<Value>, ApiError> {
    Ok(Json(st.jobs.get(&polled(&body)?)?.pop_json()))
}

/// The final result (`{"video_ann": null}` for a video; null for images, or while running).
#[utoipa::path(post, path = "/get_inference_result", tag = "supervisely", request_body(content = crate::openapi::SuperviselyRequest, content_type = "application/json"), responses((status = 200, body = Object), crate::openapi::ErrorResponses))]
pub(crate) async fn get_inference_result(State(st): S, body: Bytes) -> Result<Json<Value>, ApiError> {
    Ok(Json(st.jobs.get(&polled(&body)?)?.final_result_json()))
}

/// Stop a request at its next batch; what is queued stays poppable.
#[utoipa::path(post, path = "/stop_inference", tag = "supervisely", request_body(content = crate::openapi::SuperviselyRequest, content_type = "application/json"), responses((status = 200, body = Object), crate::openapi::ErrorResponses))]
pub(crate) async fn stop_inference(State(st): S, body: Bytes) -> Result<Json<Value>, ApiError> {
    st.jobs.get(&polled(&body)?)?.stop();
    Ok(Json(json!({"message": "Inference will be stopped.", "success": true})))
}

/// Stop and forget a request (it answers for another minute).
#[utoipa::path(post, path = "/clear_inference_request", tag = "supervisely", request_body(content = crate::openapi::SuperviselyRequest, content_type = "application/json"), responses((status = 200, body = Object), crate::openapi::ErrorResponses))]
pub(crate) async fn clear_inference_request(State(st): S, body: Bytes) -> Result<Json<Value>, ApiError> {
    st.jobs.clear(&polled(&body)?)?;
    Ok(Json(json!({"success": true})))
}

/// The request's stage as a progress object; never a null status.
#[utoipa::path(post, path = "/get_preparing_progress", tag = "supervisely", request_body(content = crate::openapi::SuperviselyRequest, content_type = "application/json"), responses((status = 200, body = Object), crate::openapi::ErrorResponses))]
pub(crate) async fn get_preparing_progress(State(st): S, body: Bytes) -> Result<Json<Value>, ApiError> {
    Ok(Json(st.jobs.get(&polled(&body)?)?.preparing_json()))
}

/// The tracker's settings: what is implemented, with the SDK's defaults.
#[utoipa::path(method(get, post), path = "/get_tracking_settings", tag = "supervisely", responses((status = 200, description = "`{\"botsort\": {…}}`", body = Object)))]
pub(crate) async fn get_tracking_settings() -> Json<Value> {
    Json(json!({"botsort": TrackerSettings::default().describe()}))
}
