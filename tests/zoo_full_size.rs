//! Every catalog entry at its real size: a synthesized checkpoint (real
//! parameter names and shapes, random weights) converts, and the artifact runs
//! on a real photo both in our engine and in Python's onnxruntime (the PyPI
//! wheel, no custom ops), with the same detections from both.
//!
//! The photo is resized to a 320-pixel short side rather than the catalog's
//! 800/1024 to keep 21 full-size networks × 2 runtimes within CI's budget; the
//! graph takes any size, so this changes the work, not the path.

mod support;

use std::path::Path;

use d2serve_d2onnx::ConvertOptions;
use d2serve_engine::runtime::{Model, SessionOptions};
use d2serve_registry::Catalog;
use support::{fixtures, ort_available};

fn python() -> Option<std::path::PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv-test/bin/python");
    let ok = std::process::Command::new(&python)
        .args(["-c", "import onnxruntime, numpy"])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    assert!(std::env::var("D2_REQUIRE_ORT").as_deref() != Ok("1"), "no onnxruntime in {}: run scripts/setup-test-env.sh", python.display());
    eprintln!("SKIPPED: no Python onnxruntime in {} (scripts/setup-test-env.sh installs it)", python.display());
    None
}

/// Runs a model on a raw uint8 HWC image and prints `count` then one line per
/// detection: class, score, box.
const PY_RUN: &str = r#"
import sys, numpy as np, onnxruntime as ort
model, raw, h, w = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
img = np.fromfile(raw, dtype=np.uint8).reshape(h, w, 3)
s = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
boxes, scores, classes, masks = s.run(["boxes", "scores", "classes", "mask_probs"], {"image": img})
assert masks.shape[0] == len(scores) and masks.shape[1] == masks.shape[2], masks.shape
print(len(scores), masks.shape[1])
for b, sc, c in zip(boxes, scores, classes):
    print(int(c), float(sc), *[float(v) for v in b])
"#;

#[test]
fn every_catalog_entry_converts_at_full_size_and_runs_in_both_runtimes() {
    if !ort_available() {
        return;
    }
    let Some(python) = python() else { return };
    let catalog = Catalog::embedded().unwrap();
    assert_eq!(catalog.models.len(), 21);
    let tmp = tempfile::tempdir().unwrap();

    let bytes = std::fs::read(fixtures().join("images/astronaut.png")).unwrap();
    let img = d2serve_engine::decode(&bytes, 100_000_000).unwrap();
    let (h, w) = d2serve_engine::resize::shortest_edge_size(img.height, img.width, 320, 512);
    let rgb = d2serve_engine::resize::resize_bilinear_rgb(&img.data, img.height, img.width, h, w);
    let raw = tmp.path().join("image.u8");
    std::fs::write(&raw, &rgb).unwrap();

    for entry in &catalog.models {
        let key = &entry.key;
        let pkl = tmp.path().join("synth.pkl");
        let mut f = std::io::BufWriter::new(std::fs::File::create(&pkl).unwrap());
        let tensors = d2serve_d2onnx::synth::write_checkpoint(entry, 3, &mut f).unwrap_or_else(|e| panic!("{key}: synth: {e}"));
        drop(f);
        let src = std::fs::metadata(&pkl).unwrap().len();
        let out = tmp.path().join("artifact");
        let m = d2serve_d2onnx::convert_checkpoint(entry, &catalog.classes(entry), &pkl, &out, &ConvertOptions::default())
            .unwrap_or_else(|e| panic!("{key}: conversion failed: {e}"));
        std::fs::remove_file(&pkl).unwrap();
        assert_eq!(m.classes.len(), entry.num_classes as usize, "{key}");
        // The graph holds the weights once: about the checkpoint's size.
        assert!(m.artifact.size > src * 9 / 10 && m.artifact.size < src * 11 / 10, "{key}: onnx {} vs pkl {src}", m.artifact.size);

        let model_path = out.join("model.onnx");
        let mut model = Model::load(&model_path, &SessionOptions::default()).unwrap_or_else(|e| panic!("{key}: {e}"));
        let ours = model.run(&rgb, h, w).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(ours.mask_size, entry.mask_head.resolution as usize, "{key}");
        for b in &ours.boxes {
            assert!(b[0] >= 0.0 && b[1] >= 0.0 && b[2] <= w as f32 && b[3] <= h as f32 && b[0] <= b[2] && b[1] <= b[3], "{key}: box {b:?} outside {w}x{h}");
        }
        assert!(ours.scores.windows(2).all(|p| p[0] >= p[1]), "{key}: scores not descending");
        assert!(ours.scores.len() <= entry.roi_heads.detections_per_image as usize, "{key}");

        let o = std::process::Command::new(&python)
            .args(["-c", PY_RUN])
            .arg(&model_path)
            .arg(&raw)
            .arg(h.to_string())
            .arg(w.to_string())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{key}: python onnxruntime failed: {}", String::from_utf8_lossy(&o.stderr));
        let mut lines = text.lines();
        let head: Vec<usize> = lines.next().unwrap().split_whitespace().map(|v| v.parse().unwrap()).collect();
        assert_eq!(head, [ours.scores.len(), ours.mask_size], "{key}: detections in Python vs ours");
        for (i, line) in lines.enumerate() {
            let v: Vec<f64> = line.split_whitespace().map(|x| x.parse().unwrap()).collect();
            assert_eq!(v[0] as i64, ours.classes[i], "{key}: detection {i} class");
            assert!((v[1] - ours.scores[i] as f64).abs() < 1e-5, "{key}: detection {i} score {} vs {}", v[1], ours.scores[i]);
            for k in 0..4 {
                assert!((v[2 + k] - ours.boxes[i][k] as f64).abs() < 1e-3, "{key}: detection {i} box");
            }
        }
        println!(
            "FULL-SIZE {key}: {tensors} tensors, checkpoint {src} B -> model.onnx {} B; {} detections on a {h}x{w} photo, identical in Python onnxruntime",
            m.artifact.size,
            ours.scores.len()
        );
    }
}
