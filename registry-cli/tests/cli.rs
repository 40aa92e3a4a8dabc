//! CLI manners: help with examples, exit codes, the embedded catalog.

mod common;

use common::{text, zoo};

#[test]
fn every_help_page_shows_an_example() {
    for args in [
        vec!["--help"],
        vec!["list", "--help"],
        vec!["show", "--help"],
        vec!["pull", "--help"],
        vec!["verify", "--help"],
        vec!["publish", "--help"],
        vec!["convert", "--help"],
        vec!["synth", "--help"],
        vec!["predict", "--help"],
        vec!["draw", "--help"],
        vec!["bench", "--help"],
        vec!["import", "--help"],
        vec!["load", "--help"],
        vec!["supervisely-app", "--help"],
        vec!["registry", "ls", "--help"],
        vec!["registry", "gc", "--help"],
        vec!["registry", "set", "--help"],
    ] {
        let out = zoo(&args, &[]);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("Examples:") && help.contains("zoo "), "{args:?} help has no example:\n{help}");
    }
}

/// A nested error (zoo context, converter error, reader error) prints each
/// message once, in order: the exact text is pinned.
#[test]
fn a_nested_error_says_each_thing_once() {
    let tmp = tempfile::tempdir().unwrap();
    let evil = tmp.path().join("evil.pkl");
    // Protocol 2, GLOBAL 'posix system', STOP: what `pickle.dumps(os.system)` starts with.
    std::fs::write(&evil, b"\x80\x02cposix\nsystem\nq\x00.").unwrap();
    let out = zoo(&["convert", evil.to_str().unwrap(), "--as", "r50-fpn-3x", "--out", tmp.path().join("o").to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.starts_with("zoo: error: ")).unwrap_or_else(|| panic!("{err}"));
    assert_eq!(line.matches("refusing global `posix.system`").count(), 1, "said more than once: {line}");
    assert!(
        line.starts_with(&format!("zoo: error: converting {} (COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x): cannot read the checkpoint: refusing global `posix.system` at byte 2", evil.display())),
        "{line}"
    );
}

/// One default confidence everywhere: zoo predict's is serve's and batch's (the Supervisely app's 0.45).
#[test]
fn predict_defaults_to_the_shared_confidence() {
    let out = zoo(&["predict", "--help"], &[]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains(&format!("[default: {}]", d2serve_engine::pipeline::DEFAULT_CONF_THRES)), "{help}");
    assert_eq!(d2serve_engine::pipeline::DEFAULT_CONF_THRES, 0.45);
}

#[test]
fn usage_errors_exit_1_and_say_what_to_do() {
    let out = zoo(&["pull"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("or pass --all"));

    let out = zoo(&["frobnicate"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    let out = zoo(&["show", "casacde"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("zoo list"));

    let out = zoo(&["list"], &[("ZOO_CATALOG", "/nonexistent/models.toml")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/models.toml"));
}

#[test]
fn list_shows_the_21_models_with_their_aps() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().display().to_string();
    let out = zoo(&["list"], &[("ZOO_CACHE", &cache)]);
    assert!(out.status.success(), "{}", text(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(s.lines().count(), 22, "header + 21 rows:\n{s}");
    let row = s.lines().find(|l| l.starts_with("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x ")).unwrap();
    assert!(row.contains("41.0") && row.contains("37.2"), "{row}");

    let out = zoo(&["list", "--json"], &[("ZOO_CACHE", &cache)]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 21);
    let city = rows.iter().find(|r| r["key"] == "Cityscapes/mask_rcnn_R_50_FPN").unwrap();
    assert_eq!(city["box_ap"], serde_json::Value::Null);
    assert_eq!(city["num_classes"], 8);
}

#[test]
fn show_prints_every_setting_and_the_classes() {
    let out = zoo(&["show", "lvis-x101-fpn", "--json"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["classes"].as_array().unwrap().len(), 1230);
    assert_eq!(v["roi_heads"]["score_thresh_test"], 0.0001);
    assert_eq!(v["rpn"]["nms_thresh"], 0.7, "f32 settings print as written");
    assert_eq!(v["backbone"]["num_groups"], 32);

    let out = zoo(&["show", "r50-c4-1x"], &[]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("kind: c4") && s.contains("classes: 80 (person"), "{s}");
}

/// `zoo convert --synth` converts a full-size synthesized checkpoint (C4: the
/// smallest); `--all` goes through every entry and reports each one it cannot
/// convert (here: none is downloaded) with what to do, then fails.
#[test]
fn convert_synth_and_convert_all() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache").display().to_string();
    let out_dir = tmp.path().join("c4");
    let out = zoo(
        &["convert", "COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x", "--synth", "--out", out_dir.to_str().unwrap(), "--json"],
        &[("ZOO_CACHE", &cache)],
    );
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["manifest"]["key"], "COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x");
    assert!(out_dir.join("model.onnx").metadata().unwrap().len() > 100_000_000, "full-size weights");
    let mut names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["c4"], "the synthesized checkpoint is removed");

    let out = zoo(&["convert"], &[("ZOO_CACHE", &cache)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--all"), "{}", text(&out));

    let all = tmp.path().join("all");
    let out = zoo(&["convert", "--all", "--out", all.to_str().unwrap()], &[("ZOO_CACHE", &cache)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("not downloaded").count(), 21, "{err}");
    assert!(err.contains("zoo pull") && err.contains("--synth") && err.contains("21 of 21 models failed"), "{err}");
}

/// A checkpoint converted with --random-weights is listed as a sample, with
/// none of the real checkpoint's APs.
#[test]
fn a_random_weight_artifact_is_listed_as_a_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let artifacts = tmp.path().join("artifacts");
    let pkl = common::repo_root().join("tests/fixtures/r50_fpn/model.pkl");
    let a = artifacts.display().to_string();
    let envs = [("ZOO_ARTIFACTS", a.as_str())];
    let out = zoo(&["convert", pkl.to_str().unwrap(), "--as", "r50-fpn-3x", "--random-weights"], &envs);
    assert!(out.status.success(), "{}", text(&out));
    let out = zoo(&["list", "--json"], &envs);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r50 = rows.as_array().unwrap().iter().find(|r| r["key"] == "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x").unwrap();
    assert_eq!((r50["source"].as_str(), r50["converted"].as_bool()), (Some("sample"), Some(true)), "{r50}");
    assert!(r50["box_ap"].is_null() && r50["mask_ap"].is_null() && r50["name"].as_str().unwrap().contains("random weights"), "{r50}");
    let other = rows.as_array().unwrap().iter().find(|r| r["key"] == "COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x").unwrap();
    assert_eq!(other["source"], "zoo");
    assert!(other["box_ap"].is_number());
    let out = zoo(&["list"], &envs);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.lines().any(|l| l.starts_with("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x ") && l.contains("SAMPLE (random weights)")), "{s}");
}

/// The Supervisely app's config.json is what the catalog gives: its model
/// table is generated (`zoo supervisely-app`), never edited by hand.
#[test]
fn the_supervisely_app_config_is_generated_from_the_catalog() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../supervisely");
    let out = zoo(&["supervisely-app", "--check", "--out", dir.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let tmp = tempfile::tempdir().unwrap();
    let stale = tmp.path().join("config.json");
    std::fs::write(&stale, "{}").unwrap();
    let out = zoo(&["supervisely-app", "--check", "--out", tmp.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("run `zoo supervisely-app --out"), "{}", text(&out));
}
