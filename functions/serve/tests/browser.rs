//! The page at `GET /` in a real browser: Debian's chromium and chromedriver,
//! driven over WebDriver by selenium (`tests/browser_check.py`; both installed by
//! scripts/setup-test-env.sh). A fixture photo chosen in the page must draw as
//! many instances as the API returns for the same bytes, with the same classes
//! in the legend; a file that is not an image must show the API's own detail;
//! a pasted URL must draw what the API answers for that URL.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_draws_what_the_api_answers() {
    if !ort_available() {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv-test/bin/python");
    let have = python.exists()
        && std::path::Path::new("/usr/bin/chromedriver").exists()
        && std::process::Command::new(&python).args(["-c", "import selenium"]).status().is_ok_and(|s| s.success());
    if !have {
        assert!(std::env::var("D2_REQUIRE_BROWSER").as_deref() != Ok("1"), "no chromium/chromedriver/selenium: run scripts/setup-test-env.sh");
        eprintln!("SKIPPED: no chromium, chromedriver or selenium (scripts/setup-test-env.sh installs them)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = local_registry(tmp.path()).await;
    // Pasted URLs point at a loopback file server: opened explicitly, as a deployment would open its hosts.
    let s = start_serve(tmp.path(), &reg, &["--allow-hosts", "127.0.0.1"], &[]).await;
    let files = serve_fixture_images(&python).await;
    let bad = tmp.path().join("notes.txt");
    std::fs::write(&bad, "this is a text file, not a photo\n").unwrap();
    let out = tokio::process::Command::new(&python)
        .arg(root.join("tests/browser_check.py"))
        .arg(&s.base)
        .arg(fixtures().join("images/astronaut.png"))
        .arg(&bad)
        .args(["--image-url", &format!("{}/chelsea.png", files.base)])
        .output()
        .await
        .unwrap();
    drop(files);
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("BROWSER CHECK:") && text.contains(" 0 failed"), "the browser check failed:\n{text}");
}
