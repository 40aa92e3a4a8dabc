//! The real Supervisely Python SDK (PyPI `supervisely`, in `.venv-sdk`, installed
//! by scripts/setup-test-env.sh) as the client of a served model, over TCP:
//! Session (session info, model meta, default settings, inference by path, by
//! batch of paths, by URL, with settings and ROI) and ModelAPI.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisely_sdk_works_unchanged() {
    if !ort_available() {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv-sdk/bin/python");
    if !python.exists() {
        assert!(std::env::var("D2_REQUIRE_SDK").as_deref() != Ok("1"), "no Supervisely SDK in .venv-sdk: run scripts/setup-test-env.sh");
        eprintln!("SKIPPED: no Supervisely SDK in {} (scripts/setup-test-env.sh installs it)", python.display());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = local_registry(tmp.path()).await;
    // Images for the URL test come from a loopback file server: opened explicitly.
    let s = start_serve(tmp.path(), &reg, &["--allow-hosts", "127.0.0.1"], &[]).await;
    let images = fixtures().join("images");
    let port = free_port();
    let mut files = std::process::Command::new(&python)
        .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string()])
        .current_dir(&images)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let out = tokio::process::Command::new(&python)
        .arg(root.join("tests/sdk_client.py"))
        .arg(&s.base)
        .arg(&images)
        .args(["--url-base", &format!("http://127.0.0.1:{port}")])
        .output()
        .await
        .unwrap();
    let _ = files.kill();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the SDK client failed:\n{text}");
    assert!(text.contains("SDK CLIENT:") && text.contains(" 0 failed"), "{text}");
    assert!(text.contains("inference_image_url") || text.contains("url"), "the URL path ran: {text}");
}
