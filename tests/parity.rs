//! Converter parity with Detectron2: each fixture family's checkpoint is
//! converted (zoo families with `convert_checkpoint`, custom training runs
//! through the import path), run in ONNX Runtime on the fixture's preprocessed
//! images, and compared with Detectron2's own outputs.
//!
//! The contract is `shared/tools/parity.py`'s, per image, pooled over the
//! family's images, with no exemptions:
//! * a Detectron2 instance is matched by one of ours of the same class with
//!   box IoU ≥ 0.99 and |Δscore| ≤ max(1e-3, 3 × Detectron2's own float32
//!   spread of scores on that image);
//! * matched instances ≥ min(0.98, Detectron2's own agreement − 0.02) and
//!   extra ≤ max(0.02, Detectron2's own extra + 0.02), summed over images;
//! * every matched instance's mask probabilities within max(1e-3, 3 ×
//!   Detectron2's own spread of mask probabilities on that image).
//!
//! "Detectron2's own spread" (`meta.json` `images.NAME.self_spread`) is how far
//! Detectron2 moves from its stored outputs when rerun with oneDNN off (another
//! float32 summation order): no float32 implementation can promise to be
//! closer than that.
//!
//! Also checked: ≥ 98% of Detectron2's RPN proposals are among ours (IoU ≥ 0.99),
//! and the backbone features where the fixture stores them (`chelsea`) within
//! 1e-4 relative (max |d| / max |reference|), or 4 × the distance between two
//! float32 runs of our own graph (optimizations on and off). Worst cases are printed.

mod support;

use std::path::Path;

use d2serve_d2onnx::ConvertOptions;
use d2serve_engine::runtime::{Model, RawDetections, Runtime, SessionOptions, auto_choice};
use d2serve_engine::testing::openvino_available;
use d2serve_registry::spec::ModelSpec;
use d2serve_registry::Catalog;
use support::{Npy, fixtures, graph_input, iou, match_instances, ort_available};

/// Detectron2's own float32 spread on one image (`meta.json`).
#[derive(Debug, Clone, Copy)]
struct Spread {
    matched: f64,
    extra: f64,
    worst_score: f64,
    worst_mask: f64,
}

impl Spread {
    fn read(dir: &Path, image: &str) -> Spread {
        let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
        let s = &meta["images"][image]["self_spread"];
        let get = |k: &str, d: f64| s[k].as_f64().unwrap_or(d);
        Spread {
            matched: get("matched", 1.0),
            extra: get("extra", 0.0),
            worst_score: get("worst_score", 0.0),
            worst_mask: get("worst_mask", 0.0),
        }
    }
    fn score_bound(&self) -> f32 {
        (3.0 * self.worst_score).max(1e-3) as f32
    }
    fn mask_bound(&self) -> f32 {
        (3.0 * self.worst_mask).max(1e-3) as f32
    }
    fn matched_floor(&self) -> f64 {
        (self.matched - 0.02).min(0.98)
    }
    fn extra_ceiling(&self) -> f64 {
        (self.extra + 0.02).max(0.02)
    }
}

#[derive(Default, Debug, Clone)]
struct Tally {
    golden: usize,
    matched: usize,
    extra: usize,
    /// Σ per image of floor × golden (ceiling × golden): the pooled bounds.
    need_matched: f64,
    allow_extra: f64,
    proposals: usize,
    proposals_matched: usize,
    worst_score: f32,
    worst_box_iou: f32,
    worst_mask: f32,
    /// Largest mask difference as a fraction of its image's bound.
    worst_mask_ratio: f32,
}

impl Tally {
    /// `n / of`; with nothing to match, the whole of it (1.0) or none of it (0.0).
    fn frac(n: usize, of: usize, empty: f64) -> f64 {
        if of == 0 { empty } else { n as f64 / of as f64 }
    }
}

/// Detectron2's outputs on one image.
struct Reference {
    /// (box in the resized frame, score, class, mask probabilities `M×M`).
    instances: Vec<([f32; 4], f32, i64, Vec<f32>)>,
    proposals: Vec<[f32; 4]>,
}

impl Reference {
    fn detectron2(dir: &Path, image: &str) -> Self {
        let gold: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{image}.instances.json"))).unwrap()).unwrap();
        let probs = Npy::read(&dir.join(format!("{image}.mask_probs.npy")));
        let m2 = probs.shape[1] * probs.shape[2];
        let gprobs = probs.f32();
        let instances = gold
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                let b: Vec<f32> = g["box_resized"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
                let raw = g["raw_index"].as_u64().unwrap() as usize;
                (
                    [b[0], b[1], b[2], b[3]],
                    g["score"].as_f64().unwrap() as f32,
                    g["class_id"].as_i64().unwrap(),
                    gprobs[raw * m2..(raw + 1) * m2].to_vec(),
                )
            })
            .collect();
        let proposals = Npy::read(&dir.join(format!("{image}.proposals.npy"))).f32().chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]).collect();
        Reference { instances, proposals }
    }
}

const IMAGES: [&str; 4] = ["astronaut", "chelsea", "coffee", "motorcycle_wide"];

fn check_family(family: &str, key: &str) {
    if !ort_available() {
        return;
    }
    let dir = fixtures().join(family);
    let catalog = Catalog::embedded().unwrap();
    let entry = catalog.require(key).unwrap();
    let out = tempfile::tempdir().unwrap();
    let opts = ConvertOptions { min_size: Some(320), max_size: Some(512), debug_outputs: true, ..Default::default() };
    d2serve_d2onnx::convert_checkpoint(entry, &catalog.classes(entry), &dir.join("model.pkl"), out.path(), &opts)
        .unwrap_or_else(|e| panic!("{family}: conversion failed: {e}"));
    let manifest = d2serve_registry::manifest::Manifest::from_slice(&std::fs::read(out.path().join("manifest.json")).unwrap(), "manifest.json").unwrap();
    check_artifact(family, &out.path().join("model.onnx"), entry.input.format == "BGR", manifest.spec.as_ref().expect("the manifest's spec"));
}

/// A custom training run (model_final.pth with optimizer state, cfg.dump()
/// config.yaml, model_classes.json) through `zoo import`'s library path: config
/// and classes found beside the checkpoint, as a user's OUTPUT_DIR has them.
fn check_custom(family: &str) {
    if !ort_available() {
        return;
    }
    let dir = fixtures().join(family);
    import_and_check(family, &dir.join("model_final.pth"), None);
}

/// Import `checkpoint` (config found beside it, or `config`) through `zoo
/// import`'s library path and hold the graph to the contract on `family`.
fn import_and_check(family: &str, checkpoint: &Path, config: Option<&Path>) {
    let out = tempfile::tempdir().unwrap();
    let req = d2serve_d2onnx::import::ImportRequest {
        checkpoint: checkpoint.to_path_buf(),
        config: config.map(Path::to_path_buf),
        classes: None,
        name: format!("imported/{family}"),
    };
    let opts = ConvertOptions { debug_outputs: true, ..Default::default() };
    let imported = d2serve_d2onnx::import::import_checkpoint(&req, &Catalog::embedded().unwrap(), out.path(), &opts)
        .unwrap_or_else(|e| panic!("{family}: import failed: {e}"));
    let spec = imported.manifest.spec.as_ref().unwrap();
    check_artifact(family, &out.path().join("model.onnx"), spec.input.format == "BGR", spec);
}

/// Run the converted graph at `onnx` on the family's images and hold it to the
/// contract in ONNX Runtime; then in OpenVINO where it is installed: wherever
/// `--runtime auto` would pick OpenVINO for `spec`, the contract must hold there
/// too, and a graph OpenVINO cannot run must be one auto never gives it.
fn check_artifact(family: &str, onnx: &Path, bgr: bool, spec: &ModelSpec) {
    let dir = fixtures().join(family);
    let mut model = Model::load(onnx, &SessionOptions::default(), Some(spec)).unwrap();
    if let Err(e) = hold_to_contract(family, "onnxruntime", &dir, bgr, &mut model, |image, rgb, h, w, det| {
        if image == "chelsea" {
            let mut plain = Model::load(onnx, &SessionOptions { optimize: false, ..Default::default() }, None).unwrap();
            let other = plain.run(rgb, h, w).unwrap();
            check_features(family, &dir, det, &other);
        }
    }) {
        panic!("{e}");
    }
    if !openvino_available() {
        return;
    }
    let auto = auto_choice(Some(spec), &SessionOptions { runtime: Runtime::Auto, ..Default::default() });
    let opts = SessionOptions { runtime: Runtime::OpenVino, ..Default::default() };
    let outcome = match Model::load(onnx, &opts, Some(spec)) {
        Ok(model) if model.runtime() == Runtime::OpenVino => {
            let mut model = model;
            hold_to_contract(family, "openvino", &dir, bgr, &mut model, |_, _, _, _, _| {})
        }
        Ok(_) => Err(format!("{family}: OpenVINO cannot run this graph (the load fell back to ONNX Runtime)")),
        Err(e) => Err(format!("{family}: OpenVINO cannot load it: {e}")),
    };
    println!(
        "RUNTIME {family}: openvino contract {}; auto picks {} ({})",
        match &outcome {
            Ok(()) => "passes".to_string(),
            Err(e) => format!("FAILS: {e}"),
        },
        auto.runtime,
        auto.reason
    );
    if auto.runtime == Runtime::OpenVino {
        outcome.unwrap_or_else(|e| panic!("auto runs {family} in OpenVINO, where the parity contract fails: {e}"));
    }
}

/// The contract on the family's images in `model`; `also` sees each image's
/// input and detections (the feature check). Prints what it measured.
fn hold_to_contract(
    family: &str,
    runtime: &str,
    dir: &Path,
    bgr: bool,
    model: &mut Model,
    mut also: impl FnMut(&str, &[u8], usize, usize, &RawDetections),
) -> Result<(), String> {
    let mut t = Tally { worst_box_iou: 1.0, ..Default::default() };
    for image in IMAGES {
        let (rgb, h, w) = graph_input(dir, image, bgr);
        let det = model.run(&rgb, h, w).map_err(|e| format!("{family}/{image} in {runtime}: {e}"))?;
        also(image, &rgb, h, w, &det);
        let spread = Spread::read(dir, image);
        let (golden, matched, extra) = (t.golden, t.matched, t.extra);
        compare(&Reference::detectron2(dir, image), &det, &spread, &mut t);
        println!(
            "PARITY {family}/{image} ({runtime}): golden {} ours {} matched {} extra {} (score bound {:.1e}, mask bound {:.1e})",
            t.golden - golden,
            det.scores.len(),
            t.matched - matched,
            t.extra - extra,
            spread.score_bound(),
            spread.mask_bound()
        );
    }
    let (mfrac, efrac, pfrac) = (
        Tally::frac(t.matched, t.golden, 1.0),
        Tally::frac(t.extra, t.golden, 0.0),
        Tally::frac(t.proposals_matched, t.proposals, 1.0),
    );
    let g = t.golden.max(1) as f64;
    println!(
        "PARITY {family} ({runtime}): instances matched {mfrac:.4} ({}/{}, need {:.4}), extra {efrac:.4} (allowed {:.4}), proposals matched {pfrac:.4}, worst |dscore| {:.2e}, worst box IoU {:.5}, worst mask_probs |d| {:.2e} ({:.2} of its image's bound)",
        t.matched,
        t.golden,
        t.need_matched / g,
        t.allow_extra / g,
        t.worst_score,
        t.worst_box_iou,
        t.worst_mask,
        t.worst_mask_ratio
    );
    let fail = |what: String| Err(format!("{family} in {runtime}: {what}"));
    if t.golden == 0 {
        return fail("the fixture has no instances".into());
    }
    if (t.matched as f64) < t.need_matched - 1e-9 {
        return fail(format!("instances matched {mfrac:.4} < {:.4}", t.need_matched / g));
    }
    if t.extra as f64 > t.allow_extra + 1e-9 {
        return fail(format!("extra {efrac:.4} > {:.4}", t.allow_extra / g));
    }
    if t.worst_mask_ratio > 1.0 {
        return fail(format!("mask probabilities differ by {:.2e}, {:.2} × the bound", t.worst_mask, t.worst_mask_ratio));
    }
    if pfrac < 0.98 {
        return fail(format!("proposals matched {pfrac:.4}"));
    }
    Ok(())
}

/// The backbone features (p2..p6, res4 or res5) on `chelsea`, where the fixture
/// stores them: max |ours - Detectron2| / max |Detectron2| per level, within
/// max(1e-4, 4 × the same measure between our two float32 runs).
fn check_features(family: &str, dir: &Path, det: &RawDetections, other: &RawDetections) {
    assert!(!det.features.is_empty(), "{family}: the debug graph has no feature outputs");
    for ((name, shape, ours), (_, _, alt)) in det.features.iter().zip(&other.features) {
        let path = dir.join(format!("chelsea.{name}.npy"));
        if !path.exists() {
            continue;
        }
        let gold = Npy::read(&path);
        assert_eq!(&gold.shape[..], &shape[1..], "{family}: {name} shape");
        let g = gold.f32();
        let scale = g.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let rel = |a: &[f32], b: &[f32]| a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs())) / scale;
        let (err, noise) = (rel(ours, &g), rel(ours, alt));
        let bound = (4.0 * noise).max(1e-4);
        println!("FEATURES {family}/{name}: max|d|/max|ref| {err:.2e} (float32 noise floor {noise:.2e}, bound {bound:.2e})");
        assert!(err <= bound, "{family}: feature {name} differs by {err:.2e} relative (bound {bound:.2e})");
    }
}

/// Match `det` against `reference` under the contract's rules, into `t`.
fn compare(reference: &Reference, det: &RawDetections, spread: &Spread, t: &mut Tally) {
    let m = det.mask_size;
    let (score_bound, mask_bound) = (spread.score_bound(), spread.mask_bound());
    let pairs = match_instances(reference.instances.iter().map(|(b, s, c, _)| (*b, *s, *c)), det, score_bound);
    for &(i, j, box_iou) in &pairs {
        let (_, score, _, gprobs) = &reference.instances[i];
        t.worst_score = t.worst_score.max((det.scores[j] - score).abs());
        t.worst_box_iou = t.worst_box_iou.min(box_iou);
        assert_eq!(gprobs.len(), m * m, "mask resolution");
        let ours = &det.mask_probs[j * m * m..(j + 1) * m * m];
        let d = ours.iter().zip(gprobs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        t.worst_mask = t.worst_mask.max(d);
        t.worst_mask_ratio = t.worst_mask_ratio.max(d / mask_bound);
    }
    let n = reference.instances.len();
    t.golden += n;
    t.matched += pairs.len();
    t.extra += det.scores.len() - pairs.len();
    t.need_matched += spread.matched_floor() * n as f64;
    t.allow_extra += spread.extra_ceiling() * n as f64;

    let (props, _) = det.proposals.as_ref().expect("debug outputs");
    for g in &reference.proposals {
        if props.iter().any(|p| iou(g, p) >= 0.99) {
            t.proposals_matched += 1;
        }
        t.proposals += 1;
    }
}

#[test]
fn r50_fpn() {
    check_family("r50_fpn", "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x");
}

#[test]
fn r50_fpn_lsj() {
    check_family("r50_fpn_lsj", "new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ");
}

#[test]
fn r101_fpn_lsj() {
    check_family("r101_fpn_lsj", "new_baselines/mask_rcnn_R_101_FPN_100ep_LSJ");
}

#[test]
fn lvis_x101_fpn() {
    check_family("lvis_x101_fpn", "LVISv0.5-InstanceSegmentation/mask_rcnn_X_101_32x8d_FPN_1x");
}

#[test]
fn cityscapes_r50_fpn() {
    check_family("cityscapes_r50_fpn", "Cityscapes/mask_rcnn_R_50_FPN");
}

#[test]
fn r50_c4() {
    check_family("r50_c4", "COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x");
}

#[test]
fn r50_dc5() {
    check_family("r50_dc5", "COCO-InstanceSegmentation/mask_rcnn_R_50_DC5_3x");
}

#[test]
fn regnetx_fpn_lsj() {
    check_family("regnetx_fpn_lsj", "new_baselines/mask_rcnn_regnetx_4gf_dds_FPN_100ep_LSJ");
}

#[test]
fn regnety_fpn_lsj() {
    check_family("regnety_fpn_lsj", "new_baselines/mask_rcnn_regnety_4gf_dds_FPN_100ep_LSJ");
}

#[test]
fn gn() {
    check_family("gn", "Misc/mask_rcnn_R_50_FPN_3x_gn");
}

#[test]
fn dconv() {
    check_family("dconv", "Misc/mask_rcnn_R_50_FPN_3x_dconv_c3-c5");
}

#[test]
fn cascade() {
    check_family("cascade", "Misc/cascade_mask_rcnn_R_50_FPN_3x");
}

#[test]
fn x152_cascade_gn_dconv() {
    check_family("x152_cascade_gn_dconv", "Misc/cascade_mask_rcnn_X_152_32x8d_FPN_IN5k_gn_dconv");
}

/// The converted graph uses standard ONNX ops only: it loads and runs in
/// The zoo families whose fixture carries a yacs `config.yaml` (`cfg.dump()`),
/// imported from that config instead of the catalog, as a user's fine-tuned
/// model of each architecture would be: FPN, LVIS, Cityscapes, C4, DC5, GN,
/// deformable, Cascade and X152 each read right from their own config.
#[test]
fn zoo_families_imported_from_their_own_config() {
    if !ort_available() {
        return;
    }
    let families = ["r50_fpn", "lvis_x101_fpn", "cityscapes_r50_fpn", "r50_c4", "r50_dc5", "gn", "dconv", "cascade", "x152_cascade_gn_dconv"];
    for family in families {
        let dir = fixtures().join(family);
        import_and_check(family, &dir.join("model.pkl"), Some(&dir.join("config.yaml")));
    }
}

#[test]
fn custom_r50_fpn() {
    check_custom("custom_r50_fpn");
}

#[test]
fn custom_c4_agnostic() {
    check_custom("custom_c4_agnostic");
}

/// Python's onnxruntime (the PyPI wheel) with no custom-op library.
#[test]
fn converted_graph_runs_in_python_onnxruntime() {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv-test/bin/python");
    let has_ort = std::process::Command::new(&python)
        .args(["-c", "import onnxruntime, numpy"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_ort {
        assert!(std::env::var("D2_REQUIRE_ORT").as_deref() != Ok("1"), "no onnxruntime in {}: run scripts/setup-test-env.sh", python.display());
        eprintln!("SKIPPED: no Python onnxruntime in {} (scripts/setup-test-env.sh installs it)", python.display());
        return;
    }
    let catalog = Catalog::embedded().unwrap();
    let entry = catalog.require("r50-fpn-3x").unwrap();
    let out = tempfile::tempdir().unwrap();
    d2serve_d2onnx::convert_checkpoint(entry, &catalog.classes(entry), &fixtures().join("r50_fpn/model.pkl"), out.path(), &ConvertOptions::default()).unwrap();
    let script = r#"
import sys, numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
img = (np.arange(320 * 480 * 3) % 251).astype(np.uint8).reshape(320, 480, 3)
outs = s.run(None, {"image": img})
print(" ".join(f"{o.name}:{r.dtype}:{list(r.shape)}" for o, r in zip(s.get_outputs(), outs)))
"#;
    let o = std::process::Command::new(&python).args(["-c", script]).arg(out.path().join("model.onnx")).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}\n{}", String::from_utf8_lossy(&o.stderr));
    println!("python onnxruntime: {text}");
    for (name, dtype) in [("boxes", "float32"), ("scores", "float32"), ("classes", "int64"), ("mask_probs", "float32")] {
        assert!(text.contains(&format!("{name}:{dtype}:")), "{text}");
    }
}

/// Decoding the fixture photos and resizing them (ResizeShortestEdge 320/512,
/// Pillow bilinear reproduced) gives exactly the network input Detectron2 used
/// (`NAME.preprocessed.npy`): identical, or one level off on under 0.1% of values.
#[test]
fn decode_and_resize_reproduce_detectron2_input() {
    for image in ["astronaut", "chelsea", "coffee", "motorcycle_wide"] {
        let bytes = std::fs::read(fixtures().join("images").join(format!("{image}.png"))).unwrap();
        let img = d2serve_engine::decode(&bytes, 100_000_000).unwrap();
        let (h, w) = d2serve_engine::resize::shortest_edge_size(img.height, img.width, 320, 512);
        let ours = d2serve_engine::resize::resize_bilinear_rgb(&img.data, img.height, img.width, h, w);
        let pre = Npy::read(&fixtures().join(format!("preprocessed/{image}.preprocessed.npy")));
        assert_eq!(pre.shape, vec![3, h, w], "{image}: resized size");
        let v = pre.f32();
        let (mut off_by_one, mut worse) = (0usize, 0usize);
        for c in 0..3 {
            for i in 0..h * w {
                // preprocessed is BGR, CHW.
                let theirs = v[(2 - c) * h * w + i] as i32;
                let d = (ours[i * 3 + c] as i32 - theirs).abs();
                if d == 1 {
                    off_by_one += 1;
                } else if d > 1 {
                    worse += 1;
                }
            }
        }
        let n = 3 * h * w;
        println!("RESIZE {image}: {h}x{w}, {off_by_one} of {n} values off by one, {worse} further");
        assert_eq!(worse, 0, "{image}");
        assert!((off_by_one as f64) < 0.001 * n as f64, "{image}: {off_by_one} off by one");
    }
}

/// Supervisely's fixed test resize (`inference_resize_transform: Resize`,
/// "keep aspect ratio" off): the manifest records it, the engine feeds the
/// network exactly that size whatever the photo's shape, and boxes come back
/// scaled per axis (Detectron2's `detector_postprocess` with scale_x != scale_y).
#[test]
fn supervisely_fixed_resize_is_applied_and_undone_per_axis() {
    if !ort_available() {
        return;
    }
    let run = fixtures().join("custom_r50_fpn");
    let tmp = tempfile::tempdir().unwrap();
    let ckpts = tmp.path().join("checkpoints");
    std::fs::create_dir_all(&ckpts).unwrap();
    std::fs::copy(run.join("model_final.pth"), ckpts.join("model_final.pth")).unwrap();
    let mut config = std::fs::read_to_string(run.join("config.yaml")).unwrap();
    config.push_str("inference_resize_transform:\n  class: Resize\n  params:\n    shape: [256, 384]\n");
    std::fs::write(ckpts.join("model_config.yaml"), config).unwrap();
    let req = d2serve_d2onnx::import::ImportRequest {
        checkpoint: ckpts.join("model_final.pth"),
        config: None,
        classes: Some(run.join("model_classes.json")),
        name: "fixed".into(),
    };
    let out = tmp.path().join("artifact");
    let imported = d2serve_d2onnx::import::import_checkpoint(&req, &Catalog::embedded().unwrap(), &out, &ConvertOptions::default()).unwrap();
    assert_eq!((imported.manifest.resize.rule.as_str(), imported.manifest.resize.size), ("Resize", Some([256, 384])));

    let bytes = std::fs::read(fixtures().join("images/motorcycle_wide.png")).unwrap();
    let image = d2serve_engine::decode(&bytes, 50_000_000).unwrap();
    let (oh, ow) = (image.height, image.width);
    assert!(ow * 256 != oh * 384, "the photo must have another aspect ratio than 384x256");
    let loaded = d2serve_engine::LoadedModel::open(&out, &SessionOptions::default()).unwrap();
    let settings = d2serve_engine::pipeline::Settings { conf_thres: 0.0, ..Default::default() };
    let p = loaded.predict(&image, &settings).unwrap();

    // The network's own answer on the 256x384 input, scaled back by hand.
    let resized = d2serve_engine::resize::resize_bilinear_rgb(&image.data, oh, ow, 256, 384);
    let raw = Model::load(&out.join("model.onnx"), &SessionOptions::default(), None).unwrap().run(&resized, 256, 384).unwrap();
    let (sx, sy) = (ow as f32 / 384.0, oh as f32 / 256.0);
    assert!(!p.instances.is_empty());
    let mut worst = 0f32;
    for inst in &p.instances {
        let j = (0..raw.scores.len()).find(|&j| raw.scores[j] == inst.score).expect("every instance is one of the network's");
        let b = raw.boxes[j];
        let want = [(b[0] * sx).clamp(0.0, ow as f32), (b[1] * sy).clamp(0.0, oh as f32), (b[2] * sx).clamp(0.0, ow as f32), (b[3] * sy).clamp(0.0, oh as f32)];
        for k in 0..4 {
            worst = worst.max((inst.bbox[k] - want[k]).abs());
        }
    }
    println!("FIXED RESIZE: {}x{} photo -> 256x384 network input, {} instances, worst box |d| {worst:.2e} px vs per-axis scaling", oh, ow, p.instances.len());
    assert!(worst <= 1e-3, "boxes are not the network's scaled per axis: worst {worst}");
}
