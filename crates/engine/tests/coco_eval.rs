//! `engine::coco` against pycocotools: the fixture (tests/fixtures/coco_eval,
//! written by scripts/coco_eval_reference.py) holds an awkward dataset, a
//! results file and what pycocotools computed from them.

use std::path::PathBuf;

use d2serve_engine::coco::{Dataset, IouType, evaluate, read_results, rle};
use serde_json::Value;

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/coco_eval").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn average_precision_matches_pycocotools() {
    let gt = Dataset::from_slice(&fixture("instances.json")).unwrap();
    let dets = read_results(&fixture("results.json"), &gt).unwrap();
    let expected: Value = serde_json::from_slice(&fixture("expected.json")).unwrap();
    let mut worst = 0.0f64;
    for (t, key) in [(IouType::Bbox, "bbox"), (IouType::Segm, "segm")] {
        let s = evaluate(&gt, &dets, t).unwrap();
        let want: Vec<f64> = expected[key]["stats"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        for (i, (got, want)) in s.stats.iter().zip(&want).enumerate() {
            let d = (got - want).abs();
            worst = worst.max(d);
            assert!(d <= 1e-4, "{key} stat {i} ({}): {got} vs pycocotools {want}", d2serve_engine::coco::STAT_NAMES[i]);
        }
        for (cat, ap) in &s.per_category {
            let want = expected[key]["per_category"][cat.to_string()].as_f64().unwrap();
            let d = (ap - want).abs();
            worst = worst.max(d);
            assert!(d <= 1e-4, "{key} category {cat}: {ap} vs pycocotools {want}");
        }
        // The fixture must exercise something: defined, non-trivial APs.
        assert!(s.stats[0] > 0.05 && s.stats[0] < 0.95, "{key} AP {}", s.stats[0]);
    }
    println!("worst |d2serve - pycocotools| over 24 stats and the per-category APs: {worst:e} (bound 1e-4)");
}

#[test]
fn polygons_and_boxes_rasterise_as_pycocotools() {
    let gt = Dataset::from_slice(&fixture("instances.json")).unwrap();
    let raw: Value = serde_json::from_slice(&fixture("instances.json")).unwrap();
    let expected: Value = serde_json::from_slice(&fixture("expected.json")).unwrap();
    let want = expected["rasterised"].as_object().unwrap();
    assert!(want.len() >= 3, "the fixture has polygon annotations");
    for (id, counts) in want {
        let n = raw["annotations"].as_array().unwrap().iter().position(|a| a["id"].to_string() == *id).unwrap();
        let got = gt.annotations[n].mask.as_ref().unwrap().to_compact_string();
        assert_eq!(got, counts.as_str().unwrap(), "annotation {id}");
    }
    for b in expected["boxes_20x30"].as_object().unwrap().values() {
        let bx: Vec<f64> = b["box"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let r = rle::from_polygon(&rle::box_polygon([bx[0], bx[1], bx[2], bx[3]]), 20, 30);
        assert_eq!(r.to_compact_string(), b["counts"].as_str().unwrap(), "box {bx:?}");
    }
}
