//! The real Supervisely Python SDK (PyPI `supervisely`, in `.venv-sdk`, installed
//! by scripts/setup-test-env.sh) as the client of a served model, over TCP:
//! Session (session info, model meta, default settings, inference by path, by
//! batch of paths, by URL, with settings and ROI) and ModelAPI, also through a
//! secret path prefix on a server that wants a token.

mod common;

use common::*;

/// The repository root and the SDK's Python, when ONNX Runtime and the SDK
/// are installed (a loud skip otherwise; a failure under D2_REQUIRE_SDK=1).
fn sdk_python() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    if !ort_available() {
        return None;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv-sdk/bin/python");
    if !python.exists() {
        assert!(std::env::var("D2_REQUIRE_SDK").as_deref() != Ok("1"), "no Supervisely SDK in .venv-sdk: run scripts/setup-test-env.sh");
        eprintln!("SKIPPED: no Supervisely SDK in {} (scripts/setup-test-env.sh installs it)", python.display());
        return None;
    }
    Some((root, python))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisely_sdk_works_unchanged() {
    let Some((root, python)) = sdk_python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let reg = local_registry(tmp.path()).await;
    // Images for the URL test come from a loopback file server: opened explicitly.
    // The server wants a token, which the SDK never sends: its session URL
    // carries the secret path prefix instead (what --path-prefix is for).
    let s = start_serve(tmp.path(), &reg, &["--allow-hosts", "127.0.0.1", "--path-prefix", "s-5ec2e7"], &[("D2_AUTH_TOKEN".into(), "not-sent-by-the-sdk".into())]).await;
    let session_url = format!("{}/s-5ec2e7", s.base);
    assert_eq!(reqwest::get(format!("{}/get_session_info", s.base)).await.unwrap().status(), 401, "the root asks for the token");
    let images = fixtures().join("images");
    let files = serve_fixture_images(&python).await;
    let out = tokio::process::Command::new(&python)
        .arg(root.join("tests/sdk_client.py"))
        .arg(&session_url)
        .arg(&images)
        .args(["--url-base", &files.base])
        .output()
        .await
        .unwrap();
    drop(files);
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the SDK client failed:\n{text}");
    assert!(text.contains("SDK CLIENT:") && text.contains(" 0 failed"), "{text}");
    assert!(text.contains("inference_image_url") || text.contains("url"), "the URL path ran: {text}");
}

/// A model of one's own, imported from a training run (`zoo import`'s
/// library path), served by its registry key: the SDK sees its own class
/// names and the colours of its model_classes.json, and "custom" as dataset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_model_is_served_with_its_own_classes() {
    let Some((root, python)) = sdk_python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let reg_root = tmp.path().join("registry");
    publish_custom(tmp.path(), &reg_root, "custom_r50_fpn", "acme/lemons").await;
    let reg = format!("file://{}", reg_root.display());
    let s = start_serve_model(tmp.path(), &reg, "acme/lemons", &[], &[]).await;

    // The native listing names it as a custom model with its classes.
    let models: serde_json::Value = reqwest::get(format!("{}/v1/models", s.base)).await.unwrap().json().await.unwrap();
    let m = &models["models"][0];
    assert_eq!((m["key"].as_str(), m["source"].as_str(), m["default"].as_bool()), (Some("acme/lemons"), Some("custom"), Some(true)), "{models}");
    assert_eq!(m["classes"], serde_json::json!(["kiwi", "lemon", "plum"]));

    let classes = fixtures().join("custom_r50_fpn/model_classes.json");
    let out = tokio::process::Command::new(&python)
        .arg(root.join("tests/sdk_client.py"))
        .arg(&s.base)
        .arg(fixtures().join("images"))
        .arg("--expect-classes")
        .arg(&classes)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the SDK client failed on the imported model:\n{text}");
    assert!(text.contains("SDK CLIENT:") && text.contains(" 0 failed"), "{text}");

    // An unknown name is still a 404 naming the model, not a registry error.
    let r = reqwest::Client::new().post(format!("{}/v1/models/acme/nothing/predict", s.base)).body(vec![0u8; 4]).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unknown_model", "{body}");
}

/// The real SDK's Session/SessionJSON on the video, asynchronous, tracking and
/// project routes, against a stub of the platform that the script starts
/// (`tests/sdk_video_client.py`): frames equal the image route, tracking's
/// `video_ann` parses with a KeyIdMap, a stop halts the frame downloads. With
/// the newest SDK and with the two the Supervisely apps pin (6.73.374 for
/// Apply NN to Videos, 6.73.545 for the image apps).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisely_sdk_drives_videos_and_async_requests() {
    let Some((root, newest)) = sdk_python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let reg = local_registry(tmp.path()).await;
    let mut pythons = vec![("6.74.51".to_string(), newest)];
    for v in ["6.73.374", "6.73.545"] {
        let p = root.join(format!(".venv-sdk-{v}/bin/python"));
        if p.exists() {
            pythons.push((v.to_string(), p));
        } else {
            assert!(std::env::var("D2_REQUIRE_SDK").as_deref() != Ok("1"), "no SDK {v} in .venv-sdk-{v}: run scripts/setup-test-env.sh");
            eprintln!("SKIPPED: SDK {v} (scripts/setup-test-env.sh installs it)");
        }
    }
    for (version, python) in pythons {
        let stub_port = free_port();
        let platform = format!("http://127.0.0.1:{stub_port}");
        let s = start_serve(tmp.path(), &reg, &["--supervisely-server", &platform], &[]).await;
        let out = tokio::process::Command::new(&python)
            .arg(root.join("tests/sdk_video_client.py"))
            .arg(&s.base)
            .arg(fixtures().join("images"))
            .arg(stub_port.to_string())
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        println!("SDK {version}:\n{text}");
        assert!(out.status.success(), "the SDK {version} video client failed:\n{text}{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("SDK VIDEO: 6 passed, 0 failed"), "SDK {version}: {text}");
    }
}
