//! Conversion end to end at full size (synthesized checkpoints with the real
//! names and shapes), its determinism, and its refusals.

use std::path::{Path, PathBuf};

use d2serve_d2onnx::{ConvertError, ConvertOptions, convert_checkpoint};
use d2serve_registry::Catalog;

const R50_FPN: &str = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x";

fn synth(cat: &Catalog, key: &str, dir: &Path) -> PathBuf {
    let entry = cat.require(key).unwrap();
    let path = dir.join(format!("{}.pkl", key.replace('/', "_")));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    d2serve_d2onnx::synth::write_checkpoint(entry, 7, &mut f).unwrap();
    drop(f);
    path
}

fn convert(cat: &Catalog, key: &str, pkl: &Path, out: &Path) -> Result<d2serve_registry::Manifest, ConvertError> {
    let entry = cat.require(key).unwrap();
    convert_checkpoint(entry, &cat.classes(entry), pkl, out, &ConvertOptions::default())
}

/// All 21 catalog entries (every architecture). tests/zoo_full_size.rs also
/// runs each artifact, in our engine and in Python's onnxruntime.
#[test]
fn every_catalog_entry_converts_at_full_size() {
    let cat = Catalog::embedded().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let keys: Vec<String> = cat.models.iter().map(|m| m.key.clone()).collect();
    assert_eq!(keys.len(), 21);
    for key in &keys {
        let key = key.as_str();
        let pkl = synth(&cat, key, tmp.path());
        let out = tmp.path().join("out");
        let m = convert(&cat, key, &pkl, &out).unwrap_or_else(|e| panic!("{key}: {e}"));
        let entry = cat.require(key).unwrap();
        assert_eq!(m.key, key);
        assert_eq!(m.classes.len(), entry.num_classes as usize);
        assert_eq!(m.resize.min_size, entry.input.min_size_test);
        let onnx = std::fs::metadata(out.join("model.onnx")).unwrap().len();
        let src = std::fs::metadata(&pkl).unwrap().len();
        assert_eq!(m.artifact.size, onnx);
        // The graph holds the weights once: about the checkpoint's size.
        assert!(onnx > src * 9 / 10 && onnx < src * 11 / 10, "{key}: onnx {onnx} vs pkl {src}");
        println!("{key}: checkpoint {src} bytes -> model.onnx {onnx} bytes");
        std::fs::remove_file(&pkl).unwrap();
    }
}

#[test]
fn conversion_is_deterministic_and_atomic() {
    let cat = Catalog::embedded().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/r50_fpn/model.pkl");
    let tmp = tempfile::tempdir().unwrap();
    let key = R50_FPN;
    let a = convert(&cat, key, &fixture, &tmp.path().join("a")).unwrap();
    let b = convert(&cat, key, &fixture, &tmp.path().join("b")).unwrap();
    assert_eq!(a, b);
    assert_eq!(
        std::fs::read(tmp.path().join("a/model.onnx")).unwrap(),
        std::fs::read(tmp.path().join("b/model.onnx")).unwrap()
    );
    let a_json = std::fs::read(tmp.path().join("a/manifest.json")).unwrap();
    assert_eq!(a_json, std::fs::read(tmp.path().join("b/manifest.json")).unwrap());
    // Only the two files: no temporary left behind.
    let mut names: Vec<_> = std::fs::read_dir(tmp.path().join("a")).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["manifest.json", "model.onnx"]);
    assert_eq!(a.source.sha256.len(), 64);
    assert_eq!(a.opset, 21);
}

#[test]
fn a_checkpoint_of_another_architecture_is_refused_with_the_tensor_named() {
    let cat = Catalog::embedded().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let r50 = synth(&cat, "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x", tmp.path());
    // As R101: res4 has 23 blocks there, 6 here.
    let err = convert(&cat, "COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x", &r50, &tmp.path().join("x")).unwrap_err();
    assert!(matches!(err, ConvertError::MissingWeight(ref n) if n == "backbone.bottom_up.res4.6.conv1.weight"), "{err}");
    // As LVIS: the predictor has 81 rows, not 1231.
    let err = convert(&cat, "LVISv0.5-InstanceSegmentation/mask_rcnn_R_50_FPN_1x", &r50, &tmp.path().join("y")).unwrap_err();
    assert!(err.to_string().contains("80 classes") || err.to_string().contains("cls_score"), "{err}");
    // As LSJ: the LSJ box head has convs the 2fc checkpoint lacks.
    let err = convert(&cat, "new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ", &r50, &tmp.path().join("z")).unwrap_err();
    assert!(err.to_string().contains("lacks weight"), "{err}");

    let r101 = synth(&cat, "COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x", tmp.path());
    let err = convert(&cat, "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x", &r101, &tmp.path().join("w")).unwrap_err();
    assert!(matches!(err, ConvertError::ExtraWeights(ref v) if v[0].starts_with("backbone.bottom_up.res4.")), "{err}");
    assert!(!tmp.path().join("w/manifest.json").exists(), "nothing written on failure");

    let err = convert(&cat, "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x", &tmp.path().join("missing.pkl"), &tmp.path().join("v")).unwrap_err();
    assert!(err.to_string().contains("missing.pkl"), "{err}");
}
