//! `zoo publish` and `zoo registry` with the real binary, to a folder and to a
//! local S3 server.

mod common;

use common::{text, zoo};
use d2serve_registry::Registry;
use d2serve_registry::testing::{MotoServer, fake_artifact};

const KEY: &str = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x";

fn publish_and_list(to: &str, envs: &[(&str, &str)], extra: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let artifacts = tmp.path().join("artifacts");
    // The default artifact folder is ARTIFACTS/KEY, where `zoo convert` writes.
    fake_artifact(&artifacts.join(KEY), KEY, 5_000, 1);
    let other = tmp.path().join("other");
    fake_artifact(&other, KEY, 6_000, 2);
    // Version ids: the sha256 of each manifest.
    let id1 = Registry::check_artifact_dir(&artifacts.join(KEY), KEY).unwrap().1;
    let id2 = Registry::check_artifact_dir(&other, KEY).unwrap().1;
    let a = artifacts.display().to_string();
    let mut envs = envs.to_vec();
    envs.push(("ZOO_ARTIFACTS", &a));

    let args = |v: &[&str]| -> Vec<String> { v.iter().chain(extra).map(|s| s.to_string()).collect() };
    let run = |v: &[&str]| {
        let a = args(v);
        zoo(&a.iter().map(String::as_str).collect::<Vec<_>>(), &envs)
    };

    let out = run(&["publish", "r50-fpn-3x", "--to", to]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id1));

    let o = other.display().to_string();
    let out = run(&["publish", KEY, "--artifact", &o, "--to", to, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["artifact"], id2);
    assert_eq!(p["previous"], id1);

    let out = run(&["registry", "ls", "--registry", to, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let ls: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ls["index"]["models"][KEY]["artifact"], id2);
    assert_eq!(ls["artifacts"].as_array().unwrap().len(), 2);

    let out = run(&["registry", "ls", "--registry", to]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains(KEY) && s.contains(&format!("current {}", id2)), "{s}");

    // Roll back through the index.
    let out = run(&["registry", "set", KEY, &id1, "--registry", to]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&["registry", "ls", "--registry", to, "--json"]);
    let ls: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ls["index"]["models"][KEY]["artifact"], id1);

    // Publishing a model with no converted artifact says what to do.
    let out = run(&["publish", "r50-c4-1x", "--to", to]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("zoo convert"), "{}", text(&out));
}

#[test]
fn publish_to_a_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = format!("file://{}", tmp.path().join("registry").display());
    publish_and_list(&reg, &[], &[]);
    // Layout: index.json + models/<key>/<sha>/{model.onnx,manifest.json}
    let index = std::fs::read_to_string(tmp.path().join("registry/index.json")).unwrap();
    assert!(index.contains(KEY));
}

#[test]
fn publish_to_s3() {
    let Some(moto) = MotoServer::start() else { return };
    tokio::runtime::Runtime::new().unwrap().block_on(moto.create_bucket("models"));
    let env = moto.env();
    let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    publish_and_list("s3://models/registry", &envs, &["--s3-endpoint", &moto.endpoint, "--s3-path-style"]);
}

#[test]
fn bad_registry_locations_are_explained() {
    let out = zoo(&["registry", "ls", "--registry", "ftp://x/y"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("s3://BUCKET"), "{}", text(&out));
}
