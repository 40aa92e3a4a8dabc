//! Supervisely's video and asynchronous routes against the real `serve` and a
//! stub of the platform's REST API on loopback (protocol §11): frames served as
//! multipart parts in reverse order, the token checked on every call. Each
//! frame's prediction must equal the server's own `/inference_image` answer
//! for the same PNG; the async lifecycle, stop, tracking, a project run and
//! the errors behave as the protocol's recommended semantics say.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "stub-token";
const PNGS: [&str; 4] = ["astronaut.png", "chelsea.png", "coffee.png", "motorcycle_wide.png"];

struct Stub {
    images: Vec<Vec<u8>>,
    frame_requests: AtomicUsize,
}

impl Stub {
    /// Video 7: one frame per fixture PNG; 8: the first PNG 6 times; 9: 200 frames, slow; 13: fails on frames past 1.
    fn frames(&self, video: i64) -> Option<Vec<usize>> {
        match video {
            7 => Some((0..self.images.len()).collect()),
            8 => Some(vec![0; 6]),
            9 => Some((0..200).map(|i| i % self.images.len()).collect()),
            13 => Some(vec![0; 5]),
            _ => None,
        }
    }
}

fn multipart(parts: Vec<(String, Vec<u8>)>) -> Response {
    let boundary = "stubboundary42";
    let mut out = Vec::new();
    for (name, bytes) in parts {
        out.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\nContent-Type: image/png\r\n\r\n").as_bytes());
        out.extend(bytes);
        out.extend(b"\r\n");
    }
    out.extend(format!("--{boundary}--\r\n").as_bytes());
    ([(axum::http::header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))], out).into_response()
}

async fn platform(State(stub): State<Arc<Stub>>, Path(method): Path<String>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(TOKEN) {
        return (StatusCode::UNAUTHORIZED, "bad x-api-key").into_response();
    }
    let not_found = (StatusCode::NOT_FOUND, Json(json!({"error": "not found"}))).into_response();
    let id = body.get("id").or_else(|| body.get("videoId")).and_then(Value::as_i64).unwrap_or(-1);
    match method.as_str() {
        "videos.info" => match stub.frames(id) {
            Some(f) => Json(json!({"id": id, "datasetId": 20, "projectId": 10, "name": format!("clip{id}.mp4"),
                "fileMeta": {"framesCount": f.len(), "duration": f.len() as f64 / 25.0, "width": 640, "height": 480}})).into_response(),
            None => not_found,
        },
        "videos.bulk.download-frame" => {
            let Some(frames) = stub.frames(id) else { return not_found };
            let want: Vec<i64> = body["frames"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
            if id == 13 && want.iter().any(|&i| i > 1) {
                return (StatusCode::INTERNAL_SERVER_ERROR, "storage down").into_response();
            }
            if id == 9 {
                tokio::time::sleep(Duration::from_millis(50 * want.len() as u64)).await;
            }
            stub.frame_requests.fetch_add(want.len(), Ordering::Relaxed);
            // Reverse order: parts are matched by name, never by position.
            multipart(want.iter().rev().map(|&i| (i.to_string(), stub.images[frames[i as usize]].clone())).collect())
        }
        "images.download" if (1..=stub.images.len() as i64).contains(&id) => stub.images[id as usize - 1].clone().into_response(),
        "projects.info" if id == 10 => Json(json!({"id": 10, "type": "images", "name": "proj"})).into_response(),
        "datasets.list" => Json(json!({"total": 1, "pagesCount": 1, "entities": [{"id": 20, "name": "ds"}]})).into_response(),
        "images.list" => Json(json!({"total": stub.images.len(), "pagesCount": 1,
            "entities": PNGS.iter().enumerate().map(|(i, n)| json!({"id": i + 1, "name": n})).collect::<Vec<_>>()})).into_response(),
        "images.bulk.download" => {
            let ids: Vec<i64> = body["imageIds"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
            multipart(ids.iter().rev().map(|&i| (i.to_string(), stub.images[i as usize - 1].clone())).collect())
        }
        _ => not_found,
    }
}

async fn start_stub() -> (String, Arc<Stub>) {
    let images = PNGS.iter().map(|n| std::fs::read(fixtures().join("images").join(n)).unwrap()).collect();
    let stub = Arc::new(Stub { images, frame_requests: AtomicUsize::new(0) });
    let app = axum::Router::new().route("/public/api/v3/{method}", axum::routing::post(platform)).with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), stub)
}

async fn post(base: &str, route: &str, state: Value) -> (u16, Value) {
    let r = reqwest::Client::new().post(format!("{base}/{route}")).json(&json!({"state": state, "context": {}, "api_token": TOKEN})).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The server's own answer for fixture PNG `i` through `/inference_image`.
async fn own_answer(base: &str, i: usize) -> Value {
    let form = reqwest::multipart::Form::new()
        .part("files", reqwest::multipart::Part::bytes(std::fs::read(fixtures().join("images").join(PNGS[i])).unwrap()).file_name(PNGS[i]))
        .text("settings", r#"{"settings": {"conf_thres": 0.3}}"#);
    let r: Value = reqwest::Client::new().post(format!("{base}/inference_image")).multipart(form).send().await.unwrap().json().await.unwrap();
    r["annotation"].clone()
}

/// Poll until the request is no longer inferring; its last progress reply.
async fn wait_done(base: &str, uuid: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (st, p) = post(base, "get_inference_progress", json!({"inference_request_uuid": uuid})).await;
        assert_eq!(st, 200, "{p}");
        if p["is_inferring"] == false {
            return p;
        }
        assert!(Instant::now() < deadline, "still inferring: {p}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn videos_and_async_requests_through_a_stub_platform() {
    if !ort_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = local_registry(tmp.path()).await;
    let (platform_url, stub) = start_stub().await;
    let s = start_serve(tmp.path(), &reg, &["--supervisely-server", &platform_url], &[]).await;
    let base = s.base.as_str();
    let conf = json!({"conf_thres": 0.3});
    let info: Value = reqwest::Client::new().post(format!("{base}/get_session_info")).body("{}").send().await.unwrap().json().await.unwrap();
    for flag in ["videos_support", "async_video_inference_support", "async_image_inference_support", "tracking_on_videos_support"] {
        assert_eq!(info[flag], true, "{flag}");
    }
    assert_eq!(info["tracking_algorithms"], json!(["botsort"]));

    // Synchronous: frames 1..3, in order, each equal to the image route's answer.
    let (st, r) = post(base, "inference_video_id", json!({"videoId": 7, "startFrameIndex": 1, "framesCount": 3, "settings": conf})).await;
    assert_eq!(st, 200, "{r}");
    let ann = r["ann"].as_array().unwrap();
    assert_eq!(ann.len(), 3);
    for (k, p) in ann.iter().enumerate() {
        assert_eq!((p["frame_index"].as_i64(), p["video_id"].as_i64(), p["dataset_id"].as_i64(), p["project_id"].as_i64()), (Some(1 + k as i64), Some(7), Some(20), Some(10)));
        assert_eq!(p["annotation"], own_answer(base, 1 + k).await, "frame {}", 1 + k);
    }
    assert_eq!(r["video_ann"], Value::Null);

    // Asynchronous: start at once, results popped in order, final result, clear.
    let (st, r) = post(base, "inference_video_id_async", json!({"video_id": 7, "settings": conf})).await;
    assert_eq!(st, 200, "{r}");
    let uuid = r["inference_request_uuid"].as_str().unwrap().to_string();
    assert!(uuid.len() == 32 && uuid.chars().all(|c| c.is_ascii_hexdigit()), "{uuid}");
    let done = wait_done(base, &uuid).await;
    assert_eq!((done["stage"].as_str(), done["finished"].as_bool(), done["progress"]["total"].as_u64()), (Some("Finished"), Some(true), Some(4)), "{done}");
    let (_, popped) = post(base, "pop_inference_results", json!({"inference_request_uuid": uuid})).await;
    let frames: Vec<i64> = popped["pending_results"].as_array().unwrap().iter().map(|p| p["frame_index"].as_i64().unwrap()).collect();
    assert_eq!(frames, [0, 1, 2, 3]);
    assert_eq!(popped["exception"], Value::Null, "exception is present and null");
    let (_, again) = post(base, "pop_inference_results", json!({"inference_request_uuid": uuid})).await;
    assert_eq!(again["pending_results"], json!([]), "popped results are not re-delivered");
    let (_, result) = post(base, "get_inference_result", json!({"inference_request_uuid": uuid})).await;
    assert_eq!(result, json!({"video_ann": null}));
    let (_, prep) = post(base, "get_preparing_progress", json!({"inference_request_uuid": uuid})).await;
    assert!(prep["status"].is_string(), "never a null status: {prep}");
    assert_eq!(post(base, "clear_inference_request", json!({"inference_request_uuid": uuid})).await, (200, json!({"success": true})));

    // Tracking on 6 identical frames: every tracked detection keeps one id; video_ann covers the 6 frames.
    let (st, r) = post(base, "inference_video_id", json!({"videoId": 8, "framesCount": 6, "tracker": "botsort", "settings": conf,
        "tracker_settings": {"track_high_thresh": 0.3, "new_track_thresh": 0.3}})).await;
    assert_eq!(st, 200, "{r}");
    let preds = r["ann"].as_array().unwrap();
    let ids: Vec<Value> = preds.iter().map(|p| p["annotation"]["customBigData"].clone()).collect();
    assert!(!ids[0].as_array().unwrap().is_empty(), "something tracked at conf 0.3");
    assert!(ids.iter().all(|i| *i == ids[0]), "the same track ids on identical frames: {ids:?}");
    for p in preds {
        assert_eq!(p["annotation"]["objects"].as_array().unwrap().len(), ids[0].as_array().unwrap().len(), "objects = tracked detections");
    }
    let va = &r["video_ann"];
    assert_eq!(va["framesCount"], 6);
    let tracks = va["objects"].as_array().unwrap().len();
    assert_eq!(tracks, ids[0].as_array().unwrap().len());
    let figures: Vec<usize> = va["frames"].as_array().unwrap().iter().map(|f| f["figures"].as_array().unwrap().len()).collect();
    assert_eq!(figures, vec![tracks; 6]);
    assert_eq!(va["frames"].as_array().unwrap().iter().map(|f| f["index"].as_i64().unwrap()).collect::<Vec<_>>(), [0, 1, 2, 3, 4, 5]);
    let (st, r) = post(base, "inference_video_id", json!({"videoId": 8, "tracker": "botsort", "tracker_settings": {"with_reid": true}})).await;
    assert_eq!((st, r["error"].as_str()), (400, Some("bad_tracker_settings")), "{r}");
    let tracking_settings: Value = reqwest::get(format!("{base}/get_tracking_settings")).await.unwrap().json().await.unwrap();
    assert_eq!(tracking_settings["botsort"]["with_reid"], false);

    // Stop: ends a long request early, and the platform hears no more frame requests.
    let (_, r) = post(base, "inference_video_id_async", json!({"videoId": 9, "batch_size": 4, "settings": conf})).await;
    let uuid = r["inference_request_uuid"].as_str().unwrap().to_string();
    let t = Instant::now();
    loop {
        let (_, p) = post(base, "get_inference_progress", json!({"inference_request_uuid": uuid})).await;
        if p["pending_results"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "{p}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    post(base, "stop_inference", json!({"inference_request_uuid": uuid})).await;
    let done = wait_done(base, &uuid).await;
    assert_eq!(done["stage"], "Cancelled", "{done}");
    let fetched = stub.frame_requests.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stub.frame_requests.load(Ordering::Relaxed), fetched, "no frame requests after the stop took effect");
    assert!(done["progress"]["current"].as_u64().unwrap() < 200);

    // Images by id and a project run: names in the platform's order, the same answers.
    let (_, r) = post(base, "inference_image_id_async", json!({"image_id": 2, "settings": conf})).await;
    let uuid = r["inference_request_uuid"].as_str().unwrap().to_string();
    let done = wait_done(base, &uuid).await;
    assert_eq!(done["result"]["annotation"], own_answer(base, 1).await, "one image: result is its prediction");
    let (_, r) = post(base, "inference_project_id_async", json!({"projectId": 10, "dataset_ids": [20], "settings": conf})).await;
    let uuid = r["inference_request_uuid"].as_str().unwrap().to_string();
    wait_done(base, &uuid).await;
    let (_, popped) = post(base, "pop_inference_results", json!({"inference_request_uuid": uuid})).await;
    let items = popped["pending_results"].as_array().unwrap();
    assert_eq!(items.iter().map(|p| p["image_name"].as_str().unwrap()).collect::<Vec<_>>(), PNGS);
    assert_eq!(items[2]["annotation"], own_answer(base, 2).await);
    assert_eq!((items[0]["dataset_id"].as_i64(), items[0]["image_id"].as_i64()), (Some(20), Some(1)));

    // Errors: a 4xx at once where the request can be judged, an error state where the platform fails later.
    assert_eq!(post(base, "inference_video_id_async", json!({"videoId": 404})).await.0, 404);
    assert_eq!(post(base, "inference_video_id", json!({"videoId": 7, "startFrameIndex": 2, "framesCount": 5})).await.0, 400);
    assert_eq!(post(base, "inference_video_id", json!({"startFrameIndex": 0})).await.0, 400);
    assert_eq!(post(base, "get_inference_progress", json!({})).await.0, 400);
    assert_eq!(post(base, "get_inference_progress", json!({"inference_request_uuid": "0".repeat(32)})).await.0, 404);
    let r = reqwest::Client::new().post(format!("{base}/inference_video_id")).json(&json!({"state": {"videoId": 7}, "api_token": "wrong"})).send().await.unwrap();
    assert_eq!(r.status(), 403);
    // A server_address in the body is not followed (the configured platform answers, not 169.254.169.254).
    let r = reqwest::Client::new()
        .post(format!("{base}/inference_video_id"))
        .json(&json!({"state": {"videoId": 7, "framesCount": 1}, "api_token": TOKEN, "server_address": "http://169.254.169.254"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, r) = post(base, "inference_video_id_async", json!({"videoId": 13, "batch_size": 2})).await;
    let uuid = r["inference_request_uuid"].as_str().unwrap().to_string();
    let failed = wait_done(base, &uuid).await;
    assert_eq!((failed["stage"].as_str(), failed["progress"]["total"].as_u64()), (Some("Error"), Some(0)), "{failed}");
    assert!(failed["exception"]["message"].as_str().unwrap().contains("videos.bulk.download-frame"), "{failed}");
    let (_, popped) = post(base, "pop_inference_results", json!({"inference_request_uuid": uuid})).await;
    assert_eq!(popped["pending_results"].as_array().unwrap().len(), 2, "the frames done before the failure stay poppable");

    let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("d2serve_async_started_total 5"), "{metrics}");
}
