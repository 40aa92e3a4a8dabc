//! The Supervisely app's entrypoint (`serve --supervisely-app`, supervisely/config.json)
//! driven as the platform drives it: the environment of a recorded app start
//! (TASK_ID, SERVER_ADDRESS, API_TOKEN, context.*, modal.state.*), Team Files
//! and image downloads served by a local stub of the Supervisely REST API, and
//! commands posted to `/<command>` with the body the platform forwards
//! (`{"command", "context", "state", "api_token", …}`, supervisely-api.md §1.2).

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "app-task-token-0001";
const TEAM: i64 = 440;
const TASK: i64 = 31337;
const WEIGHTS: &str = "/detectron2/4242_lemons/checkpoints/model_final.pth";

#[derive(Clone, Default)]
struct Stub {
    /// Team Files path -> local file.
    files: Arc<HashMap<String, PathBuf>>,
    /// (route, body) of every call, for assertions.
    calls: Arc<Mutex<Vec<(String, Value)>>>,
}

async fn file_download(State(s): State<Stub>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.calls.lock().unwrap().push(("file-storage.download".into(), v.clone()));
    if headers.get("x-api-key").and_then(|h| h.to_str().ok()) != Some(TOKEN) {
        return (StatusCode::UNAUTHORIZED, Vec::new());
    }
    if v["teamId"] != TEAM {
        return (StatusCode::FORBIDDEN, Vec::new());
    }
    match v["path"].as_str().and_then(|p| s.files.get(p)) {
        Some(local) => (StatusCode::OK, std::fs::read(local).unwrap()),
        None => (StatusCode::NOT_FOUND, br#"{"error": "file not found"}"#.to_vec()),
    }
}

async fn image_download(State(s): State<Stub>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let key = headers.get("x-api-key").and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
    s.calls.lock().unwrap().push(("images.download".into(), json!({"body": v, "x-api-key": key})));
    if v["id"] == 7 { (StatusCode::OK, std::fs::read(fixtures().join("images/chelsea.png")).unwrap()) } else { (StatusCode::NOT_FOUND, Vec::new()) }
}

async fn start_stub(files: HashMap<String, PathBuf>) -> (String, Stub) {
    let stub = Stub { files: Arc::new(files), calls: Arc::default() };
    let app = axum::Router::new()
        .route("/public/api/v3/file-storage.download", post(file_download))
        .route("/public/api/v3/images.download", post(image_download))
        .with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, stub)
}

/// The environment of an app start, as the platform gives it (values quoted as in the original app's local.env).
fn app_env(server: &str, modal: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("TASK_ID", TASK.to_string()),
        ("SERVER_ADDRESS", server.to_string()),
        ("API_TOKEN", TOKEN.to_string()),
        ("context.teamId", TEAM.to_string()),
        ("context.workspaceId", "662".to_string()),
        ("APP_NAME", "\"Serve Detectron2 (d2serve)\"".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    env.extend(modal.iter().map(|(k, v)| (format!("modal.state.{k}"), v.to_string())));
    env
}

/// The body the platform forwards to `/<command>`.
fn platform_body(command: &str, state: Value, server: &str) -> Value {
    json!({"command": command, "context": {}, "state": state, "user_api_key": TOKEN, "api_token": TOKEN, "instance_type": null, "server_address": server})
}

/// Post `command` to the app as the platform forwards it.
async fn command(base: &str, command: &str, state: Value, server: &str) -> reqwest::Response {
    reqwest::Client::new().post(format!("{base}/{command}")).json(&platform_body(command, state, server)).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_weights_from_team_files_are_served_as_the_platform_calls() {
    if !ort_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = fixtures().join("custom_r50_fpn");
    let files: HashMap<String, PathBuf> = [
        (WEIGHTS.to_string(), run.join("model_final.pth")),
        ("/detectron2/4242_lemons/checkpoints/model_config.yaml".to_string(), run.join("config.yaml")),
        ("/detectron2/4242_lemons/info/model_classes.json".to_string(), run.join("model_classes.json")),
    ]
    .into();
    let (server, stub) = start_stub(files).await;
    let registry = format!("file://{}", tmp.path().join("app-registry").display());
    let env = app_env(&server, &[("weightsInitialization", "\"custom\""), ("weightsPath", &format!("\"{WEIGHTS}\"")), ("device", "\"cpu\"")]);
    let s = start_serve(tmp.path(), &registry, &["--supervisely-app"], &env).await;
    let info: Value = command(&s.base, "get_session_info", json!({}), &server).await.json().await.unwrap();
    assert_eq!(info["session_id"], TASK, "{info}");
    assert_eq!(info["model_name"], "supervisely/4242_lemons/model_final", "{info}");
    assert_eq!(info["pretrained_on_dataset"], "custom");
    assert_eq!(info["number_of_classes"], 3);
    let ready = command(&s.base, "is_ready", json!({}), &server).await;
    assert_eq!(ready.status(), 200);

    let meta: Value = command(&s.base, "get_output_classes_and_tags", json!({}), &server).await.json().await.unwrap();
    let titles: Vec<&str> = meta["classes"].as_array().unwrap().iter().map(|c| c["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["kiwi", "lemon", "plum"]);

    // The recorded inference_batch_ids body shape, by image id through the stub's images.download.
    let r = command(&s.base, "inference_image_id", json!({"image_id": 7, "settings": null}), &server).await;
    assert_eq!(r.status(), 200);
    let ann: Value = r.json().await.unwrap();
    assert_eq!(ann["image_id"], 7);
    for o in ann["annotation"]["objects"].as_array().unwrap() {
        assert!(titles.contains(&o["classTitle"].as_str().unwrap()));
    }
    let batch: Value = command(&s.base, "inference_batch_ids", json!({"dataset_id": 49711, "batch_ids": [7, 7], "settings": null}), &server).await.json().await.unwrap();
    assert_eq!(batch.as_array().map(Vec::len), Some(2), "{batch}");

    let calls = stub.calls.lock().unwrap().clone();
    let fetched: Vec<&str> = calls.iter().filter(|(r, _)| r == "file-storage.download").filter_map(|(_, b)| b["path"].as_str()).collect();
    assert!(fetched.contains(&WEIGHTS) && fetched.iter().any(|p| p.ends_with("info/model_classes.json")), "{fetched:?}");
    let image_calls: Vec<&Value> = calls.iter().filter(|(r, _)| r == "images.download").map(|(_, b)| b).collect();
    assert_eq!(image_calls.len(), 3);
    assert!(image_calls.iter().all(|b| b["x-api-key"] == TOKEN), "images are read with the request's api_token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pretrained_choice_is_served_from_the_registry() {
    if !ort_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let registry = local_registry(tmp.path()).await;
    let (server, _stub) = start_stub(HashMap::new()).await;
    let env = app_env(
        &server,
        &[
            ("weightsInitialization", "\"pretrained\""),
            ("pretrainedDataset", "\"COCO\""),
            ("selectedModel.COCO", "\"COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x\""),
            ("selectedModel", r#"{"COCO": "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x", "LVIS": "lvis-r50-fpn"}"#),
            ("device", "\"auto\""),
        ],
    );
    let s = start_serve(tmp.path(), &registry, &["--supervisely-app"], &env).await;
    let info: Value = command(&s.base, "get_session_info", json!({}), &server).await.json().await.unwrap();
    assert_eq!((info["session_id"].as_i64(), info["model_name"].as_str()), (Some(TASK), Some(KEY)), "{info}");
}

/// A path that Team Files does not have: the app stops at once with a message naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_custom_weights_stop_the_app_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, _stub) = start_stub(HashMap::new()).await;
    let registry = format!("file://{}", tmp.path().join("app-registry").display());
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_serve"))
        .args(["--supervisely-app", "--registry", &registry, "--listen", "127.0.0.1:0", "--cache-dir"])
        .arg(tmp.path().join("cache"))
        .envs(app_env(&server, &[("weightsInitialization", "custom"), ("weightsPath", "/detectron2/1_gone/checkpoints/model_final.pth")]))
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("/detectron2/1_gone/checkpoints/model_final.pth does not exist in team 440"), "{err}");
}
