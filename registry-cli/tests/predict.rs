//! `zoo predict` end to end with the real binary: convert the r50_fpn fixture,
//! predict on photos, and check the Supervisely JSON and the overlay picture it
//! writes; the device flag's refusal without the GPU library; the missing-model
//! message.

mod common;

use std::path::Path;

use common::{convert_r50_fixture, repo_root, text, zoo};
use d2serve_engine::testing::ort_available;

fn png_size(path: &Path) -> (u32, u32) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (img.width(), img.height())
}

#[test]
fn predict_writes_annotations_and_overlays() {
    if !ort_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let artifact = convert_r50_fixture(tmp.path());

    // One image: --json and --overlay are files.
    let photo = repo_root().join("tests/fixtures/images/coffee.png");
    let (json, overlay) = (tmp.path().join("coffee.json"), tmp.path().join("coffee.overlay.png"));
    let out = zoo(
        &[
            "predict",
            photo.to_str().unwrap(),
            "--artifact",
            artifact.to_str().unwrap(),
            "--conf",
            "0.3",
            "--json",
            json.to_str().unwrap(),
            "--overlay",
            overlay.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let ann: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let (w, h) = png_size(&photo);
    assert_eq!((ann["size"]["width"].as_u64(), ann["size"]["height"].as_u64()), (Some(w as u64), Some(h as u64)));
    let objects = ann["objects"].as_array().unwrap();
    assert!(!objects.is_empty(), "the fixture model finds objects on coffee at conf 0.3: {ann}");
    for o in objects {
        assert_eq!(o["geometryType"], "bitmap");
        let conf = o["tags"].as_array().unwrap().iter().find(|t| t["name"] == "confidence").expect("a confidence tag");
        assert!(conf["value"].as_f64().unwrap() >= 0.3, "{o}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("{} instances", objects.len())), "{stdout}");
    assert_eq!(png_size(&overlay), (w, h), "the overlay is the photo's size");
    let drawn = image::open(&overlay).unwrap().to_rgb8();
    let orig = image::open(&photo).unwrap().to_rgb8();
    let changed = drawn.pixels().zip(orig.pixels()).filter(|(a, b)| a != b).count();
    assert!(changed > 1000, "masks and boxes are drawn over the photo ({changed} pixels changed)");

    // Several images: --json and --overlay are folders, one file per image.
    let (jdir, odir) = (tmp.path().join("json"), tmp.path().join("overlay"));
    let astronaut = repo_root().join("tests/fixtures/images/astronaut.png");
    let out = zoo(
        &[
            "predict",
            photo.to_str().unwrap(),
            astronaut.to_str().unwrap(),
            "--artifact",
            artifact.to_str().unwrap(),
            "--json",
            jdir.to_str().unwrap(),
            "--overlay",
            odir.to_str().unwrap(),
            "--threads",
            "1",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    for stem in ["coffee", "astronaut"] {
        assert!(jdir.join(format!("{stem}.json")).is_file() && odir.join(format!("{stem}.png")).is_file(), "{stem}: {}", text(&out));
    }

    // CUDA without the onnxruntime-gpu library: one clear error saying how to get it.
    let lib = d2serve_engine::runtime::find_library().unwrap();
    if !lib.parent().is_some_and(|d| d.join("libonnxruntime_providers_cuda.so").exists()) {
        let out = zoo(&["predict", photo.to_str().unwrap(), "--artifact", artifact.to_str().unwrap(), "--device", "cuda"], &[]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("install-ort.sh --gpu") && err.contains("--device cpu"), "{err}");
        let out = zoo(&["predict", photo.to_str().unwrap(), "--artifact", artifact.to_str().unwrap()], &[("D2_DEVICE", "auto")]);
        assert!(out.status.success(), "auto falls back to CPU: {}", text(&out));
    }
}

#[test]
fn predict_without_a_converted_model_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let photo = repo_root().join("tests/fixtures/images/coffee.png");
    let out = zoo(&["predict", photo.to_str().unwrap(), "--model", "r50-fpn-3x", "--artifact", tmp.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("zoo convert COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x"), "{err}");
}
