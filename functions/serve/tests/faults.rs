//! Fault drills: the real `serve` binary, loopback only, under the faults an
//! operator meets: a registry outage (warm and cold), a corrupted cache file,
//! clients that leave, overload, SIGTERM with requests in flight, and a
//! roll-forward while requests run. Each drill asserts what the clients saw
//! and that nothing accepted was lost.
//!
//! The fixture models infer in ~0.1 s, too fast to fill a queue on purpose, so
//! the drills that need a queue set `D2_FAULT_INFER_DELAY_MS`: each inference
//! then holds its slot that much longer, exactly as a slower model would.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use d2serve_registry::Registry;
use d2serve_registry::store::LocalStore;
use serde_json::Value;

/// The drills time queues: run them one at a time so they do not slow each other down.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn image() -> Vec<u8> {
    std::fs::read(fixtures().join("images/chelsea.png")).unwrap()
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
    seconds: f64,
}

async fn predict_with(c: &reqwest::Client, base: &str) -> Result<Answer, reqwest::Error> {
    let t = Instant::now();
    let r = c.post(format!("{base}/v1/models/r50-fpn-3x/predict")).body(image()).send().await?;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.json().await.unwrap_or(Value::Null);
    Ok(Answer { status, headers, body, seconds: t.elapsed().as_secs_f64() })
}

async fn predict(base: &str) -> Answer {
    predict_with(&reqwest::Client::new(), base).await.expect("the server answers")
}

async fn metrics(base: &str) -> String {
    reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap()
}

/// The value of one metric line (`name{labels}` exactly as printed).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

fn delay_env(ms: u64) -> Vec<(String, String)> {
    vec![("D2_FAULT_INFER_DELAY_MS".into(), ms.to_string())]
}

fn registry_root(tmp: &Path) -> PathBuf {
    tmp.join("registry")
}

fn artifact_file(cache: &Path, artifact: &str) -> PathBuf {
    cache.join(KEY).join(artifact).join("model.onnx")
}

/// The registry goes away: a warm process keeps serving (with a Warning
/// header and the stale metric), so does a fresh process over the same cache
/// folder, and all is normal again once the registry is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_down_with_a_warm_cache_keeps_serving() {
    if !ort_available() {
        return;
    }
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let reg = local_registry(tmp.path()).await;
    let cache = tmp.path().join("cache");
    let cache_arg = cache.display().to_string();
    let args = ["--cache-dir", cache_arg.as_str(), "--index-ttl", "0.2"];
    let s = start_serve(tmp.path(), &reg, &args, &[]).await;
    let first = predict(&s.base).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(first.headers.get("warning").is_none());
    let artifact = first.headers["x-model-artifact"].to_str().unwrap().to_string();
    assert_eq!(first.body["artifact"], artifact.as_str());

    let root = registry_root(tmp.path());
    let away = tmp.path().join("registry-away");
    std::fs::rename(&root, &away).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let warm = predict(&s.base).await;
    assert_eq!(warm.status, 200, "a warm process serves through the outage: {}", warm.body);
    let warning = warm.headers["warning"].to_str().unwrap();
    assert!(warning.contains("registry unreachable"), "{warning}");
    assert_eq!(reqwest::get(format!("{}/readyz", s.base)).await.unwrap().status(), 200);
    assert_eq!(metric(&metrics(&s.base).await, "d2serve_registry_index_stale"), 1.0);
    drop(s);

    // A fresh process: the last index read and the verified artifact are in the cache folder.
    let s = start_serve(tmp.path(), &reg, &args, &[]).await;
    let ready = reqwest::get(format!("{}/readyz", s.base)).await.unwrap();
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());
    let cold = predict(&s.base).await;
    assert_eq!(cold.status, 200, "a fresh process serves from the cache folder: {}", cold.body);
    assert_eq!(cold.headers["x-model-artifact"], artifact.as_str());
    assert!(cold.headers.contains_key("warning"));
    assert_eq!(cold.body["annotation"], first.body["annotation"], "the same artifact, the same answer");
    let models: Value = reqwest::get(format!("{}/v1/models", s.base)).await.unwrap().json().await.unwrap();
    assert_eq!(models["models"][0]["key"], KEY, "{models}");

    std::fs::rename(&away, &root).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let back = predict(&s.base).await;
    assert_eq!(back.status, 200);
    assert!(back.headers.get("warning").is_none(), "no warning once the registry answers again");
    assert_eq!(metric(&metrics(&s.base).await, "d2serve_registry_index_stale"), 0.0);
}

/// The registry is down and nothing is cached: every model route says 503
/// with Retry-After (a transient fault Supervisely clients retry), never 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_down_cold_is_a_503_with_retry_after() {
    if !ort_available() {
        return;
    }
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let missing = format!("file://{}", tmp.path().join("unmounted").display());
    // An S3 registry whose endpoint refuses connections.
    let dead = free_port();
    let s3_env: Vec<(String, String)> =
        [("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_REGION", "us-east-1"), ("AWS_EC2_METADATA_DISABLED", "true")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let endpoint = format!("http://127.0.0.1:{dead}");
    for (reg, extra, env) in [
        (missing.as_str(), vec![], vec![]),
        ("s3://models/registry", vec!["--s3-endpoint", endpoint.as_str(), "--s3-path-style"], s3_env.clone()),
    ] {
        let s = start_serve(tmp.path(), reg, &extra, &env).await;
        let a = predict(&s.base).await;
        assert_eq!(a.status, 503, "{reg}: {}", a.body);
        assert_eq!(a.body["error"], "registry_unavailable", "{}", a.body);
        assert!(a.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
        let r = reqwest::Client::new().post(format!("{}/inference_image_url", s.base)).json(&serde_json::json!({"state": {"image_url": "http://127.0.0.1:1/x.png"}})).send().await.unwrap();
        assert_ne!(r.status(), 404);
        for path in ["/readyz", "/v1/models"] {
            let r = reqwest::get(format!("{}{path}", s.base)).await.unwrap();
            assert_eq!(r.status(), 503, "{reg} {path}");
            assert!(r.headers().contains_key("retry-after"), "{path}");
        }
        let sly = reqwest::Client::new()
            .post(format!("{}/inference_image", s.base))
            .multipart(reqwest::multipart::Form::new().part("files", reqwest::multipart::Part::bytes(image()).file_name("chelsea.png")))
            .send()
            .await
            .unwrap();
        assert_eq!(sly.status(), 503, "{reg}: the Supervisely route too");
        assert_eq!(reqwest::get(format!("{}/livez", s.base)).await.unwrap().status(), 200, "alive all along");
    }
}

/// A cached artifact whose bytes no longer hash to its name is deleted and
/// fetched again, never loaded; with the registry down it is refused (503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_cache_file_is_fetched_again() {
    if !ort_available() {
        return;
    }
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let reg = local_registry(tmp.path()).await;
    let cache = tmp.path().join("cache");
    let cache_arg = cache.display().to_string();
    let args = ["--cache-dir", cache_arg.as_str()];
    let s = start_serve(tmp.path(), &reg, &args, &[]).await;
    let first = predict(&s.base).await;
    assert_eq!(first.status, 200);
    let artifact = first.headers["x-model-artifact"].to_str().unwrap().to_string();
    drop(s);

    let corrupt = |path: &Path| {
        let mut bytes = std::fs::read(path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(path, bytes).unwrap();
    };
    let file = artifact_file(&cache, &artifact);
    corrupt(&file);
    let s = start_serve(tmp.path(), &reg, &args, &[]).await;
    let again = predict(&s.base).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["annotation"], first.body["annotation"]);
    let graph = d2serve_registry::Manifest::read(&file.with_file_name("manifest.json")).unwrap().artifact.sha256;
    assert_eq!(d2serve_registry::hashing::sha256_file(&file).unwrap(), graph, "fetched again, whole");
    assert_eq!(metric(&metrics(&s.base).await, "d2serve_corrupt_cache_refetches_total"), 1.0);
    drop(s);

    // Corrupt again with the registry gone: refused, not loaded.
    corrupt(&file);
    std::fs::rename(registry_root(tmp.path()), tmp.path().join("away")).unwrap();
    let s = start_serve(tmp.path(), &reg, &args, &[]).await;
    let refused = predict(&s.base).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(!file.exists(), "the corrupt file was deleted");
}

/// Clients that give up while queued leave the queue (never computed); one
/// that gives up while its inference runs is finished and discarded. Both
/// are logged with status 499 and counted, and the server is idle again
/// within one inference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_leave_are_dropped_from_the_queue() {
    if !ort_available() {
        return;
    }
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let reg = local_registry(tmp.path()).await;
    let s = start_serve(tmp.path(), &reg, &["--preload", "--concurrency", "1", "--max-queue", "8"], &delay_env(1500)).await;
    let base = s.base.clone();
    let patient = tokio::spawn({
        let base = base.clone();
        async move { predict(&base).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(400)).build().unwrap();
    let mut leavers = Vec::new();
    for _ in 0..3 {
        let (c, base) = (impatient.clone(), base.clone());
        leavers.push(tokio::spawn(async move { predict_with(&c, &base).await }));
    }
    for l in leavers {
        assert!(l.await.unwrap().is_err(), "these clients gave up");
    }
    let a = patient.await.unwrap();
    assert_eq!(a.status, 200);
    // Nothing of the three is left to compute: the next request runs at once.
    let next = predict(&base).await;
    assert_eq!(next.status, 200);
    assert!(next.seconds < 2.5, "served within one inference ({:.2} s): the leavers were not computed", next.seconds);
    let m = metrics(&base).await;
    assert_eq!(metric(&m, "d2serve_cancelled_total{stage=\"queued\"}"), 3.0, "{m}");
    assert_eq!(metric(&m, "d2serve_requests_total{route=\"/v1/models/{key}/predict\",status=\"499\"}"), 3.0);
    assert_eq!(metric(&m, "d2serve_queue_waiting"), 0.0);

    // A client that leaves while its inference runs: finished, discarded, counted.
    let gone = predict_with(&impatient, &base).await;
    assert!(gone.is_err());
    let m = metrics(&base).await;
    assert_eq!(metric(&m, "d2serve_cancelled_total{stage=\"running\"}"), 1.0, "{m}");
    let t = Instant::now();
    let after = predict(&base).await;
    assert_eq!(after.status, 200);
    assert!(t.elapsed() < Duration::from_millis(4500), "waited at most for the discarded inference, then ran ({:?})", t.elapsed());
    let log = std::fs::read_to_string(&s.log).unwrap();
    let logged = log.lines().filter(|l| l.contains("\"status\":499")).count();
    assert_eq!(logged, 4, "each cancelled request is logged with status 499:\n{log}");
}

/// Overload is refused at once with 503 + Retry-After; whatever was admitted
/// is answered; a request past its deadline gets 504 (running) or 503 (waiting).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_at_once_and_admitted_work_is_answered() {
    if !ort_available() {
        return;
    }
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let reg = local_registry(tmp.path()).await;
    let s = start_serve(tmp.path(), &reg, &["--preload", "--concurrency", "1", "--max-queue", "1", "--queue-timeout", "30"], &delay_env(1000)).await;
    let mut calls = Vec::new();
    for _ in 0..5 {
        let base = s.base.clone();
        calls.push(tokio::spawn(async move { predict(&base).await }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ok = 0;
    let mut refused = 0;
    for c in calls {
        let a = c.await.unwrap();
        match a.status {
            200 => ok += 1,
            503 => {
                refused += 1;
                assert_eq!(a.body["error"], "overloaded", "{}", a.body);
                assert!(a.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
                assert!(a.seconds < 0.5, "refused at once, not after a wait ({:.2} s)", a.seconds);
            }
            other => panic!("unexpected {other}: {}", a.body),
        }
    }
    assert_eq!((ok, refused), (2, 3), "one running + one queued answered, the rest refused");
    drop(s);

    let s = start_serve(tmp.path(), &reg, &["--preload", "--concurrency", "1", "--queue-timeout", "0.4"], &delay_env(1500)).await;
    let first = tokio::spawn({
        let base = s.base.clone();
        async move { predict(&base).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let timed_out = predict(&s.base).await;
    assert_eq!(timed_out.status, 503, "{}", timed_out.body);
    assert!(timed_out.seconds >= 0.35 && timed_out.seconds < 1.2, "{:.2} s", timed_out.seconds);
    assert_eq!(first.await.unwrap().status, 200);
    drop(s);

    let s = start_serve(tmp.path(), &reg, &["--preload", "--request-timeout", "0.5"], &delay_env(1500)).await;
    let late = predict(&s.base).await;
    assert_eq!(late.status, 504, "{}", late.body);
    assert_eq!(late.body["error"], "request_timeout");
}

/// SIGTERM with 4 requests in flight (one running, three queued): all four
/// are answered, new ones are not taken, and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_what_was_accepted_and_exits_0() {
    if !ort_available() {
        return;
    }
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let reg = local_registry(tmp.path()).await;
    let mut s = start_serve(tmp.path(), &reg, &["--preload", "--concurrency", "1", "--max-queue", "8"], &delay_env(700)).await;
    let mut calls = Vec::new();
    for _ in 0..4 {
        let base = s.base.clone();
        calls.push(tokio::spawn(async move { predict(&base).await }));
    }
    let t = Instant::now();
    loop {
        let m = metrics(&s.base).await;
        if metric(&m, "d2serve_inferences_running") + metric(&m, "d2serve_queue_waiting") >= 4.0 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "the four requests never got in:\n{m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = s.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let late = reqwest::Client::new().post(format!("{}/v1/models/r50-fpn-3x/predict", s.base)).body(image()).send().await;
    match late {
        Err(_) => {}
        Ok(r) => assert_eq!(r.status(), 503, "a request after SIGTERM is not taken"),
    }
    for c in calls {
        let a = c.await.unwrap();
        assert_eq!(a.status, 200, "accepted before SIGTERM, answered: {}", a.body);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "serve did not exit after draining");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));
}

/// `zoo registry set` (here the library call) while requests run: the
/// running request finishes on the artifact it started with, and within
/// --index-ttl new requests use the new one; every request is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roll_forward_reaches_a_running_server() {
    if !ort_available() {
        return;
    }
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let root = registry_root(tmp.path());
    let registry = Registry::new(Arc::new(LocalStore::new(&root)));
    let catalog = d2serve_registry::Catalog::embedded().unwrap();
    let entry = catalog.require(KEY).unwrap();
    let mut artifacts = Vec::new();
    // Two artifacts of one key: the second graph also exports the debug outputs (another model.onnx, another sha).
    for (name, debug_outputs) in [("old", false), ("new", true)] {
        let out = tmp.path().join(name);
        let opts = d2serve_d2onnx::ConvertOptions { min_size: Some(320), max_size: Some(512), debug_outputs, ..Default::default() };
        d2serve_d2onnx::convert_checkpoint(entry, &catalog.classes(entry), &fixtures().join("r50_fpn/model.pkl"), &out, &opts).unwrap();
        artifacts.push(registry.publish(KEY, &out).await.unwrap().artifact);
    }
    let (old, new) = (artifacts[0].clone(), artifacts[1].clone());
    assert_ne!(old, new);
    registry.set_current(KEY, &old).await.unwrap();
    let s = start_serve(tmp.path(), &format!("file://{}", root.display()), &["--preload", "--index-ttl", "0.5", "--concurrency", "1"], &delay_env(800)).await;

    let running = tokio::spawn({
        let base = s.base.clone();
        async move { predict(&base).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    registry.set_current(KEY, &new).await.unwrap();
    let a = running.await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["x-model-artifact"], old.as_str(), "a running request finishes on the artifact it started with");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let b = predict(&s.base).await;
    assert_eq!(b.status, 200, "{}", b.body);
    assert_eq!(b.headers["x-model-artifact"], new.as_str(), "within --index-ttl the new artifact serves");
    assert_eq!(b.body["artifact"], new.as_str());
    // And back.
    registry.set_current(KEY, &old).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(predict(&s.base).await.headers["x-model-artifact"], old.as_str());
}

/// `--auth-token` guards everything but the probes; `--path-prefix` admits
/// Supervisely clients (which send no auth header) under a secret path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_token_and_secret_path_prefix() {
    if !ort_available() {
        return;
    }
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let reg = local_registry(tmp.path()).await;
    let token = "t0k3n-of-the-test";
    let s = start_serve(tmp.path(), &reg, &["--path-prefix", "/s-3b9d1c"], &[("D2_AUTH_TOKEN".into(), token.into())]).await;
    let c = reqwest::Client::new();
    let base = &s.base;
    for path in ["/v1/models", "/metrics", "/get_session_info"] {
        let r = c.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized");
        let wrong = c.get(format!("{base}{path}")).bearer_auth("t0k3n-of-the-tesT").send().await.unwrap();
        assert_eq!(wrong.status(), 401, "{path}: a wrong token");
        let right = c.get(format!("{base}{path}")).bearer_auth(token).send().await.unwrap();
        assert_eq!(right.status(), 200, "{path}: the right token");
        let prefixed = c.get(format!("{base}/s-3b9d1c{path}")).send().await.unwrap();
        assert_eq!(prefixed.status(), 200, "{path} under the secret prefix needs no token");
    }
    let r = c.post(format!("{base}/v1/models/r50-fpn-3x/predict")).body(image()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c.post(format!("{base}/v1/models/r50-fpn-3x/predict")).bearer_auth(token).body(image()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    for probe in ["/livez", "/readyz", "/is_alive"] {
        assert_eq!(c.get(format!("{base}{probe}")).send().await.unwrap().status(), 200, "{probe} stays open for orchestrators");
    }
    let near = c.get(format!("{base}/s-3b9d1cX/v1/models")).send().await.unwrap();
    assert!(near.status().is_client_error(), "a prefix must match a whole path segment: {}", near.status());
    let m = c.get(format!("{base}/metrics")).bearer_auth(token).send().await.unwrap().text().await.unwrap();
    assert!(!m.contains("s-3b9d1c"), "the secret prefix never reaches the metrics");
}

/// A cache folder too small for every model (Lambda's /tmp): fetching one
/// model removes another's cached files (it stays loaded and answering), and a
/// model that cannot fit at all is a 507 that names the storage setting, not a
/// disk filled half way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_folder_too_small_makes_room_or_says_so() {
    if !ort_available() {
        return;
    }
    let _serial = serial();
    const C4: &str = "COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x";
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry_with(tmp.path(), &[("r50_fpn", KEY), ("r50_c4", C4)]).await;
    let size = |family: &str| std::fs::metadata(tmp.path().join(format!("artifact-{family}/model.onnx"))).unwrap().len();
    let (fpn, c4) = (size("r50_fpn"), size("r50_c4"));
    // Room for either model's artifact (graph + manifest), not for both.
    let budget = (fpn.max(c4) + fpn.min(c4) / 2).to_string();
    let cache = tmp.path().join("cache");
    let cache_arg = cache.display().to_string();
    let s = start_serve(tmp.path(), &reg, &["--cache-dir", &cache_arg, "--cache-max-bytes", &budget], &[]).await;
    let c = reqwest::Client::new();
    let predict_model = |key: &'static str| {
        let (c, base) = (c.clone(), s.base.clone());
        async move {
            let r = c.post(format!("{base}/v1/models/{key}/predict")).body(image()).send().await.unwrap();
            let status = r.status().as_u16();
            let artifact = r.headers().get("x-model-artifact").map(|v| v.to_str().unwrap().to_string());
            (status, artifact, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, fpn_artifact, body) = predict_model(KEY).await;
    assert_eq!(status, 200, "{body}");
    let fpn_file = artifact_file(&cache, fpn_artifact.as_deref().unwrap());
    assert!(fpn_file.exists());
    let (status, _, body) = predict_model(C4).await;
    assert_eq!(status, 200, "the second model must fit by removing the first one's files: {body}");
    assert!(!fpn_file.exists(), "the first model's cached artifact made room");
    // Still loaded: it answers without its files.
    let (status, _, body) = predict_model(KEY).await;
    assert_eq!(status, 200, "{body}");
    drop(s);

    // Too small for any model: a 507 that says which setting to raise.
    let small = tmp.path().join("small");
    let small_arg = small.display().to_string();
    let s = start_serve(tmp.path(), &reg, &["--cache-dir", &small_arg, "--cache-max-bytes", "100000"], &[]).await;
    let a = predict(&s.base).await;
    assert_eq!((a.status, a.body["error"].as_str()), (507, Some("cache_full")), "{}", a.body);
    let detail = a.body["detail"].as_str().unwrap();
    assert!(detail.contains("ModelCacheStorage") && detail.contains("MB"), "{detail}");
    assert!(!artifact_file(&small, fpn_artifact.as_deref().unwrap()).exists(), "nothing was half written");
}
