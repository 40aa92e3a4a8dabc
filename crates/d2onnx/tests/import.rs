//! `zoo import`'s library path on the custom training-run fixture, laid out
//! the ways users bring models: Detectron2's OUTPUT_DIR (cfg.dump YAML), a
//! Supervisely training folder (tagged model_config.yaml, info/model_classes.json),
//! Supervisely's sparse model_config.json over a catalog model, and a
//! zoo-style YAML with a `_BASE_` chain. Each form must describe the same
//! model, so each must give the same graph, byte for byte. And every way the
//! pieces can disagree is refused with a message that names the key.

use std::path::{Path, PathBuf};

use d2serve_d2onnx::import::{ImportRequest, import_checkpoint};
use d2serve_d2onnx::yacs::{self, CfgValue};
use d2serve_registry::Catalog;

fn run_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/custom_r50_fpn")
}

fn import(req: &ImportRequest, out: &Path) -> Result<d2serve_d2onnx::import::Imported, String> {
    import_checkpoint(req, &Catalog::embedded().unwrap(), out, &Default::default()).map_err(|e| {
        // The whole chain, as the CLI prints it.
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        msg
    })
}

fn req(checkpoint: PathBuf, config: Option<PathBuf>, classes: Option<PathBuf>) -> ImportRequest {
    ImportRequest { checkpoint, config, classes, name: "lemons".into() }
}

/// The reference: OUTPUT_DIR as Detectron2 leaves it.
fn reference(out: &Path) -> d2serve_d2onnx::import::Imported {
    import(&req(run_dir().join("model_final.pth"), None, None), out).unwrap()
}

/// `yaml.dump(cfg)` of a CfgNode, as Supervisely's training app writes
/// model_config.yaml: every node tagged, lists as Python tuples.
fn supervisely_yaml(v: &CfgValue, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        CfgValue::Map(m) => {
            out.push_str("!!python/object/new:detectron2.config.config.CfgNode\n");
            out.push_str(&format!("{pad}dictitems:\n"));
            for (k, v) in m.iter() {
                out.push_str(&format!("{pad}  {k}: "));
                supervisely_yaml(v, indent + 4, out);
            }
            out.push_str(&format!(
                "{pad}state:\n{pad}  __deprecated_keys__: !!set {{}}\n{pad}  __immutable__: false\n{pad}  __new_allowed__: false\n{pad}  __renamed_keys__: {{}}\n"
            ));
        }
        CfgValue::List(items) if items.is_empty() => out.push_str("[]\n"),
        CfgValue::List(items) => {
            out.push_str("!!python/tuple\n");
            for item in items {
                out.push_str(&format!("{pad}- "));
                supervisely_yaml(item, indent + 2, out);
            }
        }
        CfgValue::Str(s) => out.push_str(&format!("'{}'\n", s.replace('\'', "''"))),
        CfgValue::Bool(b) => out.push_str(if *b { "true\n" } else { "false\n" }),
        CfgValue::Null => out.push_str("null\n"),
        CfgValue::Int(i) => out.push_str(&format!("{i}\n")),
        CfgValue::Float(f) => out.push_str(&format!("{f:?}\n")),
    }
}

#[test]
fn every_config_form_gives_the_same_graph() {
    let tmp = tempfile::tempdir().unwrap();
    let want = reference(&tmp.path().join("ref"));
    let spec = want.manifest.spec.clone().unwrap();
    assert_eq!(spec.num_classes, 3);
    assert_eq!((spec.roi_heads.score_thresh_test, spec.roi_heads.detections_per_image), (0.3, 50));
    let names: Vec<_> = want.manifest.classes.iter().map(|c| (c.name.as_str(), c.hex_color())).collect();
    assert_eq!(names, [("kiwi", "#E6194B".into()), ("lemon", "#3CB44B".into()), ("plum", "#FFE119".into())]);
    let same = |what: &str, got: &d2serve_d2onnx::import::Imported| {
        assert_eq!(got.manifest.spec.as_ref(), Some(&spec), "{what}: model description");
        assert_eq!(got.manifest.classes, want.manifest.classes, "{what}: classes");
        assert_eq!(got.manifest.artifact.sha256, want.manifest.artifact.sha256, "{what}: model.onnx differs");
        println!("IMPORT {what}: same description, classes and model.onnx ({})", &got.manifest.artifact.sha256[..12]);
    };

    // 1. A Supervisely training folder: <run>/checkpoints/{model_final.pth,
    //    model_config.yaml} and <run>/info/model_classes.json, nothing given.
    let dump = yacs::parse_yaml(&std::fs::read_to_string(run_dir().join("config.yaml")).unwrap()).unwrap();
    let run = tmp.path().join("detectron2/4242_lemons");
    std::fs::create_dir_all(run.join("checkpoints")).unwrap();
    std::fs::create_dir_all(run.join("info")).unwrap();
    std::fs::copy(run_dir().join("model_final.pth"), run.join("checkpoints/model_final.pth")).unwrap();
    std::fs::copy(run_dir().join("model_classes.json"), run.join("info/model_classes.json")).unwrap();
    let mut tagged = dump.clone();
    // Supervisely records its test resize beside the config (here the run's own 320/512).
    tagged.merge_from(
        yacs::parse_yaml("{inference_resize_transform: {class: ResizeShortestEdge, params: {short_edge_length: [320, 320], max_size: 512}}}")
            .unwrap(),
    );
    let mut text = String::new();
    supervisely_yaml(&tagged, 0, &mut text);
    assert!(text.contains("!!python/object/new:detectron2.config.config.CfgNode") && text.contains("!!python/tuple"));
    std::fs::write(run.join("checkpoints/model_config.yaml"), &text).unwrap();
    let got = import(&req(run.join("checkpoints/model_final.pth"), None, None), &tmp.path().join("sly")).unwrap();
    assert!(got.config.ends_with("model_config.yaml") && got.classes.as_ref().unwrap().ends_with("info/model_classes.json"));
    same("supervisely model_config.yaml + info/model_classes.json", &got);

    // 2. Supervisely's sparse model_config.json over the catalog's R50-FPN 3x,
    //    with the fixture's narrower widths (not in the JSON: widths come
    //    from the weights).
    let json_dir = tmp.path().join("json/checkpoints");
    std::fs::create_dir_all(&json_dir).unwrap();
    std::fs::copy(run_dir().join("model_final.pth"), json_dir.join("model_final.pth")).unwrap();
    std::fs::write(
        json_dir.join("model_config.json"),
        r#"{"model_id": 137849600,
            "model": {"roi_heads": {"num_classes": 3, "box_predictor": {"num_classes": 3, "test_score_thresh": 0.3, "test_topk_per_image": 50},
                                    "mask_head": {"num_classes": 3}},
                      "input_format": "BGR", "backbone": {"bottom_up": {"stem": {"in_channels": 3}}}},
            "train": {"max_iter": 100, "output_dir": "/tmp"},
            "optimizer": {"lr": 0.01},
            "inference_resize_transform": {"class": "ResizeShortestEdge", "params": {"short_edge_length": [320, 320], "max_size": 512}}}"#,
    )
    .unwrap();
    let got = import(&req(json_dir.join("model_final.pth"), None, Some(run_dir().join("model_classes.json"))), &tmp.path().join("json-out")).unwrap();
    // Widths differ between the catalog's description and the fixture; the
    // graph is built from the weights' shapes, so only these fields are compared.
    let g = got.manifest.spec.as_ref().unwrap();
    assert_eq!((g.num_classes, g.roi_heads.score_thresh_test, g.roi_heads.detections_per_image), (3, 0.3, 50));
    assert_eq!((g.input.min_size_test, g.input.max_size_test), (320, 512));
    assert!(got.notes.iter().any(|n| n.contains("model.backbone.bottom_up.stem.in_channels")), "{:?}", got.notes);
    println!("IMPORT supervisely model_config.json: {:?}", got.notes);

    // 3. A zoo-style YAML: `_BASE_` names the zoo's Base-RCNN-FPN.yaml, which
    //    is not on disk: the catalog supplies it.
    let base_dir = tmp.path().join("base");
    std::fs::create_dir_all(&base_dir).unwrap();
    std::fs::write(
        base_dir.join("lemons.yaml"),
        "_BASE_: \"../Base-RCNN-FPN.yaml\"\nMODEL:\n  MASK_ON: True\n  RESNETS: {DEPTH: 50, STEM_OUT_CHANNELS: 4, RES2_OUT_CHANNELS: 16, WIDTH_PER_GROUP: 4}\n  FPN: {OUT_CHANNELS: 32}\n  ROI_HEADS: {NUM_CLASSES: 3, SCORE_THRESH_TEST: 0.3}\n  ROI_BOX_HEAD: {FC_DIM: 64, CONV_DIM: 32}\n  ROI_MASK_HEAD: {CONV_DIM: 32}\nINPUT: {MIN_SIZE_TEST: 320, MAX_SIZE_TEST: 512}\nTEST: {DETECTIONS_PER_IMAGE: 50}\n",
    )
    .unwrap();
    let got = import(
        &req(run_dir().join("model_final.pth"), Some(base_dir.join("lemons.yaml")), Some(run_dir().join("model_classes.json"))),
        &tmp.path().join("base-out"),
    )
    .unwrap();
    same("zoo-style YAML with _BASE_: ../Base-RCNN-FPN.yaml", &got);

    // 4. Names only (one per line): the names are kept, colours are fixed ones.
    std::fs::write(tmp.path().join("names.txt"), "kiwi\nlemon\nplum\n").unwrap();
    let got = import(&req(run_dir().join("model_final.pth"), None, Some(tmp.path().join("names.txt"))), &tmp.path().join("txt")).unwrap();
    assert_eq!(got.manifest.classes.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["kiwi", "lemon", "plum"]);
    assert_eq!(got.manifest.source.kind, d2serve_registry::manifest::SourceKind::Custom);
    assert_eq!(got.manifest.dataset, "custom");
}

/// A config that disagrees with the weights, or with the class file, is an
/// error naming what to change; so is a config that asks for more than data.
#[test]
fn disagreements_are_refused_with_the_key_to_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(run_dir().join("config.yaml")).unwrap();
    let write = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let with = |from: &str, to: &str| {
        assert_eq!(config.matches(from).count(), 1, "{from}");
        config.replace(from, to)
    };
    let ckpt = run_dir().join("model_final.pth");
    let classes = run_dir().join("model_classes.json");
    let cases: Vec<(&str, PathBuf, PathBuf, &[&str])> = vec![
        ("NUM_CLASSES 4", write("k4.yaml", &with("    NUM_CLASSES: 3\n", "    NUM_CLASSES: 4\n")), write("c4.txt", "a\nb\nc\nd\n"), &["cls_score", "NUM_CLASSES", "3"]),
        ("4 class names for 3 classes", run_dir().join("config.yaml"), write("c4b.txt", "a\nb\nc\nd\n"), &["4 classes", "NUM_CLASSES = 3"]),
        ("agnostic boxes", write("agn.yaml", &with("    CLS_AGNOSTIC_BBOX_REG: false\n", "    CLS_AGNOSTIC_BBOX_REG: true\n")), classes.clone(), &["bbox_pred", "CLS_AGNOSTIC_BBOX_REG"]),
        ("agnostic masks", write("agm.yaml", &with("    CLS_AGNOSTIC_MASK: false\n", "    CLS_AGNOSTIC_MASK: true\n")), classes.clone(), &["mask_head.predictor", "CLS_AGNOSTIC_MASK"]),
        ("cascade heads", write("cas.yaml", &with("    NAME: StandardROIHeads\n", "    NAME: CascadeROIHeads\n")), classes.clone(), &["box_predictor.0.cls_score", "CascadeROIHeads"]),
        ("keypoints", write("kp.yaml", &with("  KEYPOINT_ON: false\n", "  KEYPOINT_ON: true\n")), classes.clone(), &["MODEL.KEYPOINT_ON", "keypoint"]),
        ("code in the config", write("evil.yaml", &format!("{config}EVIL: !!python/object/apply:os.system ['touch /tmp/pwned']\n")), classes.clone(), &["os.system"]),
        ("a LazyConfig .py", write("cfg.py", "model = None\n"), classes.clone(), &["LazyConfig"]),
        ("a LazyConfig YAML", run_dir().join("../r50_fpn_lsj/config.yaml"), classes.clone(), &["LazyConfig YAML", "model_config.json", "model_id"]),
    ];
    for (what, config, classes, words) in cases {
        let err = match import(&req(ckpt.clone(), Some(config), Some(classes)), &tmp.path().join("out")) {
            Ok(_) => panic!("{what}: imported; it must be refused"),
            Err(e) => e,
        };
        for w in words {
            assert!(err.contains(w), "{what}: `{err}` should mention `{w}`");
        }
        println!("REFUSED {what}: {err}");
    }
    assert!(!tmp.path().join("out/manifest.json").exists(), "a refused import left a manifest behind");

    // A name that is a catalog model's would shadow it.
    let mut r = req(ckpt.clone(), None, None);
    r.name = "r50-fpn-3x".into();
    let err = import(&r, &tmp.path().join("out")).unwrap_err();
    assert!(err.contains("catalog"), "{err}");
    // No config anywhere near a bare checkpoint.
    let lone = tmp.path().join("lone");
    std::fs::create_dir_all(&lone).unwrap();
    std::fs::copy(&ckpt, lone.join("model_final.pth")).unwrap();
    let err = import(&req(lone.join("model_final.pth"), None, None), &tmp.path().join("out")).unwrap_err();
    assert!(err.contains("--config") && err.contains("cfg.dump()"), "{err}");
}
