//! `zoo eval` with the real binary on the trained sample (samples/shapes: a
//! Mask R-CNN trained here with Detectron2, its validation set, and what
//! Detectron2's COCOEvaluator reported for it):
//! - imported with `zoo import` and scored with `zoo eval`, its box and mask AP
//!   are within 0.2 AP of Detectron2's;
//! - instance by instance, its detections are Detectron2's;
//! - Detectron2's own detections, scored by `zoo eval --results`, give
//!   Detectron2's own figures (the metric itself, on real detections);
//! - a wrong file or a dataset of other classes is a clear error.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::{repo_root, text, zoo};
use d2serve_engine::coco::{Dataset, Rle, read_results};
use d2serve_engine::testing::ort_available;
use serde_json::Value;

const METRICS: [&str; 6] = ["AP", "AP50", "AP75", "APs", "APm", "APl"];
/// AP parity bound (Detectron2's 0-100 scale): issue 23's contract.
const AP_BOUND: f64 = 0.2;

fn sample() -> PathBuf {
    repo_root().join("samples/shapes")
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

/// Largest |ours - Detectron2's| over the six APs of one task, asserted within `bound`.
fn compare_ap(task: &str, ours: &Value, d2: &Value, bound: f64) -> f64 {
    let mut worst = 0.0f64;
    for m in METRICS {
        let (a, b) = (ours[m].as_f64(), d2[m].as_f64());
        match (a, b) {
            (Some(a), Some(b)) => {
                let d = (a - b).abs();
                worst = worst.max(d);
                assert!(d <= bound, "{task} {m}: d2serve {a:.4} vs Detectron2 {b:.4} (bound {bound})");
            }
            // Undefined (no object of that size) on both sides.
            (None, None) => {}
            _ => panic!("{task} {m}: d2serve {:?} vs Detectron2 {:?}", ours[m], d2[m]),
        }
    }
    worst
}

/// The sample imported with `zoo import` into a temporary artifacts folder
/// (returned with its path); None without ONNX Runtime.
fn imported_sample() -> Option<(tempfile::TempDir, String)> {
    if !ort_available() {
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let artifacts = tmp.path().join("artifacts").display().to_string();
    let ckpt = sample().join("model/model_final.pth");
    let out = zoo(&["import", ckpt.to_str().unwrap(), "--name", "shapes"], &[("ZOO_ARTIFACTS", &artifacts)]);
    assert!(out.status.success(), "{}", text(&out));
    Some((tmp, artifacts))
}

#[test]
fn the_trained_sample_scores_what_detectron2_reported() {
    let Some((tmp, artifacts)) = imported_sample() else { return };
    let e = [("ZOO_ARTIFACTS", artifacts.as_str())];
    let val = sample().join("val");
    let ann = val.join("instances.json");
    let dets = tmp.path().join("out/detections.json");
    let out = zoo(
        &["eval", "shapes", "--images", val.to_str().unwrap(), "--annotations", ann.to_str().unwrap(), "--json", "--detections", dets.to_str().unwrap()],
        &e,
    );
    assert!(out.status.success(), "{}", text(&out));
    let ours: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    let d2 = read_json(&sample().join("d2_eval.json"));
    assert_eq!(ours["model"], "shapes");
    assert_eq!(ours["annotations"], ann.display().to_string());
    assert_eq!(ours["images"].as_u64(), Some(read_json(&ann)["images"].as_array().unwrap().len() as u64));
    let wb = compare_ap("bbox", &ours["box_ap"], &d2["bbox"], AP_BOUND);
    let wm = compare_ap("segm", &ours["mask_ap"], &d2["segm"], AP_BOUND);
    println!(
        "trained sample: d2serve box AP {:.3} mask AP {:.3}; Detectron2 {:.3} / {:.3}; worst |difference| over AP..APl: box {wb:.4}, mask {wm:.4} (bound {AP_BOUND})",
        ours["box_ap"]["AP"].as_f64().unwrap(),
        ours["mask_ap"]["AP"].as_f64().unwrap(),
        d2["bbox"]["AP"].as_f64().unwrap(),
        d2["segm"]["AP"].as_f64().unwrap()
    );

    // The detections file is what was scored: re-scoring it gives the same figures.
    let out = zoo(&["eval", "shapes", "--results", dets.to_str().unwrap(), "--images", val.to_str().unwrap(), "--annotations", ann.to_str().unwrap(), "--json"], &e);
    assert!(out.status.success(), "{}", text(&out));
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((&again["box_ap"], &again["mask_ap"]), (&ours["box_ap"], &ours["mask_ap"]));

    instances_match_detectron2(&ann, &dets);
    // The sample is a trained model, not noise (random weights score about 0): the
    // bar it was trained to, mask AP 50 on its validation set.
    assert!(ours["mask_ap"]["AP"].as_f64().unwrap() >= 50.0 && ours["box_ap"]["AP"].as_f64().unwrap() >= 50.0, "{ours}");
}

/// Instance-level parity of d2serve's final detections with Detectron2's
/// (COCOEvaluator's results file) on every validation image. Each Detectron2
/// detection scoring at least 0.1 (further from the 0.05 threshold than any
/// float32 difference) must be found among ours with the same class: score
/// within 5e-3, box corners within 1 px, mask IoU at least 0.95 (masks of
/// 50+ px); at most 2 % of them may be missing, and at most 2 % of ours unmatched.
fn instances_match_detectron2(ann: &Path, ours_file: &Path) {
    let gt = Dataset::from_slice(&std::fs::read(ann).unwrap()).unwrap();
    let d2 = read_results(&std::fs::read(sample().join("d2_detections.json")).unwrap(), &gt).unwrap();
    let ours = read_results(&std::fs::read(ours_file).unwrap(), &gt).unwrap();
    let by_image = |v: &[d2serve_engine::coco::Detection]| {
        let mut m: HashMap<i64, Vec<d2serve_engine::coco::Detection>> = HashMap::new();
        for d in v.iter().filter(|d| d.score >= 0.1) {
            m.entry(d.image_id).or_default().push(d.clone());
        }
        m
    };
    let (d2m, mut ourm) = (by_image(&d2), by_image(&ours));
    let (mut total, mut missing, mut worst_score, mut worst_box, mut worst_iou) = (0usize, 0usize, 0.0f64, 0.0f64, 1.0f64);
    for (img, dets) in &d2m {
        let cands = ourm.entry(*img).or_default();
        for d in dets {
            total += 1;
            let best = cands
                .iter()
                .enumerate()
                .filter(|(_, o)| o.category_id == d.category_id)
                .map(|(i, o)| (i, d.bbox.iter().zip(o.bbox).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)))
                .min_by(|a, b| a.1.total_cmp(&b.1));
            let Some((i, box_diff)) = best.filter(|(_, bd)| *bd <= 1.0) else {
                missing += 1;
                continue;
            };
            let o = cands.remove(i);
            worst_box = worst_box.max(box_diff);
            worst_score = worst_score.max((o.score - d.score).abs());
            let (dm, om): (&Rle, &Rle) = (d.mask.as_ref().unwrap(), o.mask.as_ref().unwrap());
            if dm.area() >= 50 {
                let inter = dm.intersection(om) as f64;
                let union = (dm.area() + om.area()) as f64 - inter;
                worst_iou = worst_iou.min(inter / union);
            }
        }
    }
    let extra: usize = ourm.values().map(Vec::len).sum();
    println!(
        "trained sample, instances vs Detectron2 (score >= 0.1): {} of {total} matched, {extra} extra; worst score {worst_score:.2e} (bound 5e-3), box {worst_box:.3} px (1), mask IoU {worst_iou:.4} (0.95)",
        total - missing
    );
    assert!(total >= 100, "the validation set yields {total} detections: too few to say anything");
    assert!(missing as f64 <= 0.02 * total as f64, "{missing} of {total} Detectron2 detections missing");
    assert!(extra as f64 <= 0.02 * total as f64, "{extra} detections Detectron2 does not have");
    assert!(worst_score <= 5e-3 && worst_iou >= 0.95, "score {worst_score}, mask IoU {worst_iou}");
}

#[test]
fn detectron2s_own_detections_score_detectron2s_figures() {
    // pycocotools (inside Detectron2's COCOEvaluator) scored these very detections.
    let val = sample().join("val");
    let ann = val.join("instances.json");
    let d2dets = sample().join("d2_detections.json");
    let out = zoo(&["eval", "shapes", "--results", d2dets.to_str().unwrap(), "--images", val.to_str().unwrap(), "--annotations", ann.to_str().unwrap(), "--json"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let ours: Value = serde_json::from_slice(&out.stdout).unwrap();
    let d2 = read_json(&sample().join("d2_eval.json"));
    // COCOEvaluator prints to 1e-4 of an AP point at best; our reimplementation is exact.
    let wb = compare_ap("bbox", &ours["box_ap"], &d2["bbox"], 1e-4);
    let wm = compare_ap("segm", &ours["mask_ap"], &d2["segm"], 1e-4);
    println!("Detectron2's detections: zoo eval vs COCOEvaluator, worst |difference| box {wb:.2e}, mask {wm:.2e} (bound 1e-4)");
}

#[test]
fn wrong_inputs_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let val = sample().join("val");
    let ann = val.join("instances.json");
    // An image given as the annotations.
    let png = val.join("val_0000.png");
    let out = zoo(&["eval", "shapes", "--results", ann.to_str().unwrap(), "--images", val.to_str().unwrap(), "--annotations", png.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass a COCO instances JSON"), "{}", text(&out));
    // A results file naming an image the annotations do not have.
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, r#"[{"image_id": 99999, "category_id": 1, "score": 0.9, "bbox": [0, 0, 5, 5]}]"#).unwrap();
    let out = zoo(&["eval", "shapes", "--results", bad.to_str().unwrap(), "--images", val.to_str().unwrap(), "--annotations", ann.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("names image 99999"), "{}", text(&out));
    // A model not imported.
    let envs = [("ZOO_ARTIFACTS", tmp.path().to_str().unwrap())];
    let out = zoo(&["eval", "nope", "--images", val.to_str().unwrap(), "--annotations", ann.to_str().unwrap()], &envs);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("zoo import CHECKPOINT --name nope"), "{}", text(&out));
}

#[test]
fn a_dataset_of_other_classes_is_refused_by_name() {
    let Some((tmp, artifacts)) = imported_sample() else { return };
    let e = [("ZOO_ARTIFACTS", artifacts.as_str())];
    let val = sample().join("val");
    let mut ann = read_json(&val.join("instances.json"));
    ann["categories"] = serde_json::json!([{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]);
    let path = tmp.path().join("other.json");
    std::fs::write(&path, ann.to_string()).unwrap();
    let out = zoo(&["eval", "shapes", "--images", val.to_str().unwrap(), "--annotations", path.to_str().unwrap()], &e);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let s = String::from_utf8_lossy(&out.stderr);
    assert!(s.contains("share no name") && s.contains("cat, dog") && s.contains("disc"), "{s}");
}
