//! `zoo pull` / `zoo verify` end to end: the real binary against a local HTTP
//! server that drops connections, fails, stalls and lies.

mod common;

use std::time::Duration;

use common::{Behavior, FileServer, catalog_with, files_under, fixture_checkpoint, text, zoo};
use sha2::{Digest, Sha256};

const KEY: &str = "Test/mask_rcnn_fixture";

struct Env {
    _tmp: tempfile::TempDir,
    catalog: String,
    cache: std::path::PathBuf,
    server: FileServer,
    bytes: Vec<u8>,
    file: String,
}

impl Env {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let (bytes, file) = fixture_checkpoint();
        let catalog = catalog_with(tmp.path(), &[KEY], &file).display().to_string();
        let cache = tmp.path().join("cache");
        let server = FileServer::start(bytes.clone());
        Self {
            _tmp: tmp,
            catalog,
            cache,
            server,
            bytes,
            file,
        }
    }

    fn zoo(&self, args: &[&str]) -> std::process::Output {
        let base = self.server.base();
        let cache = self.cache.display().to_string();
        zoo(
            args,
            &[("ZOO_CATALOG", &self.catalog), ("ZOO_CACHE", &cache), ("ZOO_MIRROR", &base)],
        )
    }

    fn cached(&self) -> std::path::PathBuf {
        self.cache.join(KEY).join(&self.file)
    }

    fn lock(&self) -> String {
        std::fs::read_to_string(self.cache.join("models.lock")).unwrap_or_default()
    }
}

fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

#[test]
fn pull_resumes_with_range_after_a_dropped_connection() {
    let env = Env::new();
    env.server.then(Behavior::DropAfter(400_000));
    let out = env.zoo(&["pull", KEY]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(env.cached()).unwrap(), env.bytes);
    let ranges = env.server.ranges();
    assert_eq!(ranges, vec![None, Some("bytes=400000-".to_string())], "second request resumes");
    // First pull pins size and sha256 in models.lock.
    let lock = env.lock();
    assert!(lock.contains(&sha256(&env.bytes)), "{lock}");
    assert!(lock.contains(&format!("size = {}", env.bytes.len())), "{lock}");
    assert_eq!(files_under(&env.cache), vec![format!("{KEY}/{}", env.file), "models.lock".to_string()]);
}

#[test]
fn pull_retries_server_errors_then_succeeds() {
    let env = Env::new();
    env.server.then(Behavior::Status(500)).then(Behavior::Status(503));
    let out = env.zoo(&["pull", KEY]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env.server.ranges().len(), 3);
    assert_eq!(std::fs::read(env.cached()).unwrap(), env.bytes);
}

#[test]
fn pull_survives_a_stalled_connection_via_the_read_timeout() {
    let env = Env::new();
    env.server.then(Behavior::Stall(300_000, Duration::from_secs(5)));
    let out = env.zoo(&["pull", KEY, "--timeout", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env.server.ranges()[1].as_deref(), Some("bytes=300000-"));
    assert_eq!(std::fs::read(env.cached()).unwrap(), env.bytes);
}

#[test]
fn corrupt_download_is_rejected_by_md5_and_removed() {
    let env = Env::new();
    env.server.then(Behavior::Corrupt);
    let out = env.zoo(&["pull", KEY, "--retries", "0"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let prefix = &env.file[12..18];
    assert!(
        err.contains(&format!("md5 of {} starts with", env.file)) && err.contains(&format!("the zoo name says {prefix}")),
        "{err}"
    );
    assert!(err.contains("it was removed, run the pull again"), "{err}");
    assert!(files_under(&env.cache).is_empty(), "nothing left behind: {:?}", files_under(&env.cache));
}

#[test]
fn pinned_sha256_is_enforced_on_later_pulls() {
    let env = Env::new();
    let out = env.zoo(&["pull", KEY]);
    assert!(out.status.success(), "{}", text(&out));
    // Pretend the first pull had recorded a different file.
    let lock_path = env.cache.join("models.lock");
    let real = sha256(&env.bytes);
    let lock = env.lock().replace(&real, &"0".repeat(64));
    std::fs::write(&lock_path, &lock).unwrap();
    std::fs::remove_file(env.cached()).unwrap();

    let out = env.zoo(&["pull", KEY]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("has sha256 {real}")) && err.contains("models.lock pins"), "{err}");
    assert!(!env.cached().exists(), "the mismatching file is not kept");
    assert_eq!(std::fs::read_to_string(&lock_path).unwrap(), lock, "the lock is untouched");
}

#[test]
fn missing_file_is_a_clear_error_without_retries() {
    let env = Env::new();
    env.server.then(Behavior::Status(404));
    let out = env.zoo(&["pull", KEY]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("answered 404") && err.contains("does not exist"), "{err}");
    assert_eq!(env.server.ranges().len(), 1, "a 404 is not retried");
    assert!(files_under(&env.cache).is_empty());
}

#[test]
fn giving_up_keeps_the_partial_file_for_a_later_resume() {
    let env = Env::new();
    env.server.then(Behavior::DropAfter(200_000)).then(Behavior::Status(502));
    let out = env.zoo(&["pull", KEY, "--retries", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("run the pull again to resume"));
    assert!(!env.cached().exists());
    // The next pull resumes from the partial file.
    let out = env.zoo(&["pull", KEY]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env.server.ranges().last().unwrap().as_deref(), Some("bytes=200000-"));
    assert_eq!(std::fs::read(env.cached()).unwrap(), env.bytes);
}

#[test]
fn verify_reports_good_and_corrupt_cache_entries() {
    let env = Env::new();
    assert!(env.zoo(&["pull", KEY]).status.success());
    let out = env.zoo(&["verify", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["status"], "ok");
    assert_eq!(v[0]["sha256"], sha256(&env.bytes));

    let mut bytes = env.bytes.clone();
    bytes[10] ^= 1;
    std::fs::write(env.cached(), &bytes).unwrap();
    let out = env.zoo(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("CORRUPT"), "{}", text(&out));
}

#[test]
fn pull_all_downloads_every_entry_in_parallel() {
    let tmp = tempfile::tempdir().unwrap();
    let (bytes, file) = fixture_checkpoint();
    let keys = ["Test/a", "Test/b", "Test/c", "Test/d"];
    let catalog = catalog_with(tmp.path(), &keys, &file).display().to_string();
    let server = FileServer::start(bytes.clone());
    let cache = tmp.path().join("cache");
    let base = server.base();
    let c = cache.display().to_string();
    let envs = [("ZOO_CATALOG", catalog.as_str()), ("ZOO_CACHE", c.as_str()), ("ZOO_MIRROR", base.as_str())];
    let out = zoo(&["pull", "--all", "--jobs", "2", "--json"], &envs);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report.as_array().unwrap().len(), 4);
    for k in keys {
        assert_eq!(std::fs::read(cache.join(k).join(&file)).unwrap(), bytes);
    }
    // A second run finds everything cached and downloads nothing.
    let before = server.ranges().len();
    let out = zoo(&["pull", "--all"], &envs);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(server.ranges().len(), before);
    assert!(String::from_utf8_lossy(&out.stdout).contains("already cached, verified"));

    let out = zoo(&["list", "--json"], &envs);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for row in rows.as_array().unwrap() {
        for field in ["key", "name", "model_id", "dataset", "num_classes", "box_ap", "mask_ap"] {
            assert!(row.get(field).is_some(), "list --json lacks {field}");
        }
        assert_eq!(row["cached"], true);
    }
}

#[test]
fn pull_convert_chains_download_and_conversion() {
    let env = Env::new();
    let artifacts = env._tmp.path().join("artifacts");
    let base = env.server.base();
    let cache = env.cache.display().to_string();
    let a = artifacts.display().to_string();
    let out = zoo(
        &["pull", KEY, "--convert"],
        &[("ZOO_CATALOG", &env.catalog), ("ZOO_CACHE", &cache), ("ZOO_MIRROR", &base), ("ZOO_ARTIFACTS", &a)],
    );
    assert!(out.status.success(), "{}", text(&out));
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(artifacts.join(KEY).join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["key"], KEY);
    assert_eq!(manifest["source"]["sha256"], sha256(&env.bytes));
    assert!(artifacts.join(KEY).join("model.onnx").is_file());
}
