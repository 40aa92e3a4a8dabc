//! `zoo import` with the real binary: a training run's OUTPUT_DIR
//! (model_final.pth + config.yaml + model_classes.json) imported under a name
//! of its own, published, listed with its class count, and predicted with
//! under that name; a mismatch is exit 1 with the key to fix.

mod common;

use common::{repo_root, text, zoo};
use d2serve_engine::testing::ort_available;

#[test]
fn an_output_dir_becomes_a_listed_published_predictable_model() {
    let tmp = tempfile::tempdir().unwrap();
    let run = repo_root().join("tests/fixtures/custom_r50_fpn");
    let artifacts = tmp.path().join("artifacts");
    let registry = tmp.path().join("registry");
    let (a, r) = (artifacts.display().to_string(), format!("file://{}", registry.display()));
    let envs = [("ZOO_ARTIFACTS", a.as_str()), ("ZOO_REGISTRY", r.as_str())];
    let ckpt = run.join("model_final.pth");

    let out = zoo(&["import", ckpt.to_str().unwrap(), "--name", "acme/lemons", "--to", &r], &envs);
    assert!(out.status.success(), "{}", text(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("3 classes (kiwi, lemon, plum)") && s.contains("published"), "{s}");
    assert!(artifacts.join("acme/lemons/model.onnx").is_file());

    let out = zoo(&["list", "--json"], &envs);
    assert!(out.status.success(), "{}", text(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = rows.as_array().unwrap().iter().find(|r| r["key"] == "acme/lemons").unwrap_or_else(|| panic!("{rows}"));
    assert_eq!((row["num_classes"].as_u64(), row["converted"].as_bool(), row["published"].as_bool()), (Some(3), Some(true), Some(true)), "{row}");
    assert_eq!(row["dataset"], "custom");
    let out = zoo(&["list"], &envs);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.lines().any(|l| l.starts_with("acme/lemons") && l.contains("custom") && l.contains(" 3 ")), "{s}");

    let out = zoo(&["registry", "ls"], &envs);
    assert!(out.status.success(), "{}", text(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("acme/lemons (acme/lemons, 3 classes, imported)"), "{s}");

    if ort_available() {
        let json = tmp.path().join("astronaut.json");
        let image = repo_root().join("tests/fixtures/images/astronaut.png");
        let out = zoo(&["predict", image.to_str().unwrap(), "--model", "acme/lemons", "--json", json.to_str().unwrap(), "--conf", "0.3"], &envs);
        assert!(out.status.success(), "{}", text(&out));
        let ann: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        let objects = ann["objects"].as_array().unwrap();
        assert!(!objects.is_empty(), "{ann}");
        assert!(objects.iter().all(|o| ["kiwi", "lemon", "plum"].contains(&o["classTitle"].as_str().unwrap())), "{ann}");
    }

    // The class file disagrees with the config: exit 1, naming both numbers.
    let names = tmp.path().join("names.txt");
    std::fs::write(&names, "a\nb\n").unwrap();
    let out = zoo(&["import", ckpt.to_str().unwrap(), "--classes", names.to_str().unwrap(), "--name", "two", "--out", tmp.path().join("two").to_str().unwrap()], &envs);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 classes") && err.contains("NUM_CLASSES = 3"), "{err}");
}

/// A config, a class list or an image given where the checkpoint goes is named
/// for what it is, with the argument it belongs to.
#[test]
fn a_file_that_is_not_a_checkpoint_is_named_for_what_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let run = repo_root().join("tests/fixtures/custom_r50_fpn");
    let out = tmp.path().join("x").display().to_string();
    for (file, what) in [
        (run.join("config.yaml"), "is a YAML file, not a checkpoint"),
        (run.join("model_classes.json"), "is a JSON file, not a checkpoint"),
        (repo_root().join("tests/fixtures/images/coffee.jpg"), "is an image, not a checkpoint"),
    ] {
        let o = zoo(&["import", file.to_str().unwrap(), "--name", "x", "--out", &out], &[]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(what) && err.contains("model_final.pth"), "{err}");
        assert!(!err.contains("opcode"), "{err}");
    }
}
