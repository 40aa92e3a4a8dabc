//! What a user re-publishes reaches a running `serve`, and nothing stale or
//! foreign passes for current (the real binary, a folder registry):
//! a corrected class list over the same graph, a sample over a zoo-labelled
//! copy of the same graph in a shared cache folder, and a registry that this
//! cache folder never read.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use d2serve_registry::Registry;
use d2serve_registry::store::LocalStore;
use serde_json::Value;

fn folder_registry(root: &Path) -> Registry {
    Registry::new(std::sync::Arc::new(LocalStore::new(root)))
}

/// `zoo import`'s library path: the custom training run as `name` with these class names.
fn import_with_classes(dir: &Path, name: &str, classes: &[&str], tag: &str) -> PathBuf {
    let list = dir.join(format!("{tag}.json"));
    std::fs::write(&list, serde_json::to_vec(classes).unwrap()).unwrap();
    let req = d2serve_d2onnx::import::ImportRequest {
        checkpoint: fixtures().join("custom_r50_fpn/model_final.pth"),
        config: None,
        classes: Some(list),
        name: name.to_string(),
    };
    let out = dir.join(tag);
    d2serve_d2onnx::import::import_checkpoint(&req, &d2serve_registry::Catalog::embedded().unwrap(), &out, &Default::default()).unwrap();
    out
}

async fn class_titles(base: &str) -> Vec<String> {
    let meta: Value = reqwest::Client::new().post(format!("{base}/get_output_classes_and_tags")).body("{}").send().await.unwrap().json().await.unwrap();
    meta["classes"].as_array().unwrap_or_else(|| panic!("{meta}")).iter().map(|c| c["title"].as_str().unwrap().to_string()).collect()
}

/// Poll `probe` until it holds (the server's index TTL is 1 s here).
async fn eventually<F, Fut>(what: &str, within: Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !probe().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn predict(base: &str, model: &str) -> Value {
    let png = std::fs::read(fixtures().join("images/astronaut.png")).unwrap();
    let r = reqwest::Client::new().post(format!("{base}/v1/models/{model}/predict?conf=0.05")).body(png).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// The scenario: `zoo import --classes typo.json --name fruit --to …`
/// with `lemn`, then the same with the list fixed. The second publish is a new
/// version, the running server answers `lemon` within its index TTL (classes,
/// inference replies, /v1/models), and rolling back brings `lemn` back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrected_class_list_reaches_a_running_server() {
    if !ort_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("registry");
    let reg = folder_registry(&root);
    let typo = import_with_classes(tmp.path(), "fruit", &["kiwi", "lemn", "plum"], "typo");
    let first = reg.publish("fruit", &typo).await.unwrap();
    let s = start_serve_model(tmp.path(), &format!("file://{}", root.display()), "fruit", &["--index-ttl", "1"], &[]).await;
    assert_eq!(class_titles(&s.base).await, ["kiwi", "lemn", "plum"]);
    let reply = predict(&s.base, "fruit").await;
    assert_eq!(reply["artifact"], first.artifact);

    let fixed = import_with_classes(tmp.path(), "fruit", &["kiwi", "lemon", "plum"], "fixed");
    assert_eq!(std::fs::read(typo.join("model.onnx")).unwrap(), std::fs::read(fixed.join("model.onnx")).unwrap(), "the premise: one graph, two manifests");
    let second = reg.publish("fruit", &fixed).await.unwrap();
    assert!(second.uploaded, "a corrected manifest is not 'already stored'");
    assert_ne!(second.artifact, first.artifact);
    assert_eq!(second.previous.as_deref(), Some(first.artifact.as_str()));

    let base = s.base.clone();
    eventually("the fixed class list served", Duration::from_secs(10), || {
        let base = base.clone();
        async move { class_titles(&base).await == ["kiwi", "lemon", "plum"] }
    })
    .await;
    let reply = predict(&s.base, "fruit").await;
    assert_eq!(reply["artifact"], second.artifact, "{}", reply["artifact"]);
    let objects = reply["annotation"]["objects"].as_array().unwrap();
    assert!(!objects.is_empty(), "the fixture detects something at conf 0.05");
    assert!(objects.iter().all(|o| ["kiwi", "lemon", "plum"].contains(&o["classTitle"].as_str().unwrap())), "{reply}");
    let models: Value = reqwest::get(format!("{}/v1/models", s.base)).await.unwrap().json().await.unwrap();
    let row = models["models"].as_array().unwrap().iter().find(|m| m["key"] == "fruit").unwrap();
    assert_eq!((row["artifact"].as_str(), &row["classes"]), (Some(second.artifact.as_str()), &serde_json::json!(["kiwi", "lemon", "plum"])));

    reg.set_current("fruit", &first.artifact).await.unwrap();
    eventually("the roll back served", Duration::from_secs(10), || {
        let base = base.clone();
        async move { class_titles(&base).await == ["kiwi", "lemn", "plum"] }
    })
    .await;
}

/// The same `model.onnx`, first published as the zoo model (a catalog name, its
/// APs) and cached, then published to another registry as the random-weight
/// sample: a server on the second registry with the same cache folder calls it
/// a sample everywhere, never the real checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_over_a_zoo_labelled_copy_is_labelled_sample() {
    if !ort_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("shared-cache");
    let cache_arg = cache.display().to_string();
    let zoo_dir = convert_family(tmp.path(), "r50_fpn", KEY, "zoo-labelled");
    let zoo_root = tmp.path().join("zoo-registry");
    folder_registry(&zoo_root).publish(KEY, &zoo_dir).await.unwrap();
    {
        let s = start_serve(tmp.path(), &format!("file://{}", zoo_root.display()), &["--cache-dir", &cache_arg, "--preload"], &[]).await;
        let models: Value = reqwest::get(format!("{}/v1/models", s.base)).await.unwrap().json().await.unwrap();
        assert_eq!((&models["models"][0]["source"], &models["models"][0]["box_ap"]), (&Value::from("zoo"), &Value::from(41.0)));
    }

    let catalog = d2serve_registry::Catalog::embedded().unwrap();
    let entry = catalog.require(KEY).unwrap();
    let sample_dir = tmp.path().join("sample");
    let opts = d2serve_d2onnx::ConvertOptions { min_size: Some(320), max_size: Some(512), random_weights: true, ..Default::default() };
    d2serve_d2onnx::convert_checkpoint(entry, &catalog.classes(entry), &fixtures().join("r50_fpn/model.pkl"), &sample_dir, &opts).unwrap();
    assert_eq!(std::fs::read(zoo_dir.join("model.onnx")).unwrap(), std::fs::read(sample_dir.join("model.onnx")).unwrap(), "the premise: one graph");
    let sample_root = tmp.path().join("sample-registry");
    let published = folder_registry(&sample_root).publish(KEY, &sample_dir).await.unwrap();

    let s = start_serve(tmp.path(), &format!("file://{}", sample_root.display()), &["--cache-dir", &cache_arg, "--preload"], &[]).await;
    let c = reqwest::Client::new();
    let models: Value = c.get(format!("{}/v1/models", s.base)).send().await.unwrap().json().await.unwrap();
    let m = &models["models"][0];
    assert_eq!((m["source"].as_str(), m["artifact"].as_str()), (Some("sample"), Some(published.artifact.as_str())), "{m}");
    assert!(m["box_ap"].is_null() && m["mask_ap"].is_null(), "{m}");
    let info: Value = c.post(format!("{}/get_session_info", s.base)).body("{}").send().await.unwrap().json().await.unwrap();
    let text = info.to_string().to_lowercase();
    assert!(text.contains("sample") && !text.contains("41"), "{info}");
    let reply = predict(&s.base, "r50-fpn-3x").await;
    assert_eq!(reply["artifact"], published.artifact);
}

/// `serve --registry registry` started where there is no `registry/`, with a
/// cache folder that another folder's registry filled: not ready (503 and the
/// reason), no answers from the other registry's models, and it says so at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_never_read_is_not_ready() {
    if !ort_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("shared-cache");
    let cache_arg = cache.display().to_string();
    let here = tmp.path().join("here");
    std::fs::create_dir_all(&here).unwrap();
    let reg = local_registry(&here).await;
    {
        let s = start_serve(tmp.path(), &reg, &["--cache-dir", &cache_arg, "--preload"], &[]).await;
        assert_eq!(reqwest::get(format!("{}/readyz", s.base)).await.unwrap().status(), 200);
    }
    // The same relative name, typed in a folder that has no registry.
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let port = free_port();
    let log = tmp.path().join("elsewhere.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_serve"))
        .current_dir(&elsewhere)
        .args(["--registry", "registry", "--listen", &format!("127.0.0.1:{port}"), "--cache-dir", &cache_arg])
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .stdout(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{base}/livez")).await.is_err() {
        assert!(Instant::now() < deadline, "{}", std::fs::read_to_string(&log).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert!(body.to_string().contains("registry"), "{body}");
    let png = std::fs::read(fixtures().join("images/astronaut.png")).unwrap();
    let r = reqwest::Client::new().post(format!("{base}/v1/models/r50-fpn-3x/predict")).body(png).send().await.unwrap();
    assert_eq!(r.status(), 503, "never another registry's models");
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log).unwrap();
    let line = log.lines().find(|l| l.contains("\"message\":\"registry")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("never read") && line.contains("\"answered\":false"), "{line}");
    assert!(line.contains(&elsewhere.join("registry").canonicalize().unwrap_or_else(|_| elsewhere.canonicalize().unwrap().join("registry")).display().to_string()), "the resolved path: {line}");
}

/// `serve --model typo` against a registry that answers warns at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_default_model_is_warned_about_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("registry");
    d2serve_registry::testing::fake_artifact(&tmp.path().join("a"), "acme/known", 100, 1);
    folder_registry(&root).publish("acme/known", &tmp.path().join("a")).await.unwrap();
    let s = start_serve_model(tmp.path(), &format!("file://{}", root.display()), "acme/typo", &[], &[]).await;
    let log = std::fs::read_to_string(&s.log).unwrap();
    let line = log.lines().find(|l| l.contains("default model is not published")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("acme/typo") && line.contains("acme/known") && line.contains("WARN"), "{line}");
    let registry_line = log.lines().find(|l| l.contains("\"answered\":true")).unwrap_or_else(|| panic!("{log}"));
    assert!(registry_line.contains("\"models\":1"), "{registry_line}");
}
