//! The embedded catalog against the zoo tables (detectron2 MODEL_ZOO.md, as
//! transcribed in docs), and the catalog parser's refusals.

use d2serve_registry::catalog::{Backbone, Neck, RoiHeadsKind};
use d2serve_registry::{Catalog, ClassList};

/// (key, model id, file, classes, box AP, mask AP) from the zoo tables.
const ZOO: &[(&str, u64, &str, u32, Option<f64>, f64)] = &[
    ("COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x", 137259246, "model_final_9243eb.pkl", 80, Some(36.8), 32.2),
    ("COCO-InstanceSegmentation/mask_rcnn_R_50_DC5_3x", 137849551, "model_final_84107b.pkl", 80, Some(40.0), 35.9),
    ("new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ", 42047764, "model_final_bb69de.pkl", 80, Some(44.6), 40.3),
    ("new_baselines/mask_rcnn_R_50_FPN_400ep_LSJ", 42019571, "model_final_14d201.pkl", 80, Some(47.4), 42.5),
    ("new_baselines/mask_rcnn_R_101_FPN_100ep_LSJ", 42025812, "model_final_4f7b58.pkl", 80, Some(46.4), 41.6),
    ("new_baselines/mask_rcnn_R_101_FPN_400ep_LSJ", 42073830, "model_final_f96b26.pkl", 80, Some(48.9), 43.7),
    ("new_baselines/mask_rcnn_regnetx_4gf_dds_FPN_100ep_LSJ", 42047771, "model_final_b7fbab.pkl", 80, Some(46.0), 41.3),
    ("new_baselines/mask_rcnn_regnetx_4gf_dds_FPN_400ep_LSJ", 42025447, "model_final_f1362d.pkl", 80, Some(48.6), 43.5),
    ("new_baselines/mask_rcnn_regnety_4gf_dds_FPN_100ep_LSJ", 42047784, "model_final_6ba57e.pkl", 80, Some(46.1), 41.6),
    ("new_baselines/mask_rcnn_regnety_4gf_dds_FPN_400ep_LSJ", 42045954, "model_final_ef3a80.pkl", 80, Some(48.2), 43.3),
    ("LVISv0.5-InstanceSegmentation/mask_rcnn_R_50_FPN_1x", 144219072, "model_final_571f7c.pkl", 1230, Some(23.6), 24.4),
    ("LVISv0.5-InstanceSegmentation/mask_rcnn_R_101_FPN_1x", 144219035, "model_final_824ab5.pkl", 1230, Some(25.6), 25.9),
    ("LVISv0.5-InstanceSegmentation/mask_rcnn_X_101_32x8d_FPN_1x", 144219108, "model_final_5e3439.pkl", 1230, Some(26.7), 27.1),
    ("Cityscapes/mask_rcnn_R_50_FPN", 142423278, "model_final_af9cf5.pkl", 8, None, 36.5),
    ("Misc/mask_rcnn_R_50_FPN_3x_dconv_c3-c5", 144998336, "model_final_821d0b.pkl", 80, Some(42.7), 38.5),
    ("Misc/cascade_mask_rcnn_R_50_FPN_3x", 144998488, "model_final_480dd8.pkl", 80, Some(44.3), 38.5),
    ("Misc/mask_rcnn_R_50_FPN_3x_gn", 138602888, "model_final_dc5d9e.pkl", 80, Some(42.6), 38.6),
    ("Misc/cascade_mask_rcnn_X_152_32x8d_FPN_IN5k_gn_dconv", 18131413, "model_0039999_e76410.pkl", 80, Some(50.2), 44.0),
    ("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x", 137849600, "model_final_f10217.pkl", 80, Some(41.0), 37.2),
    ("COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x", 138205316, "model_final_a3ec72.pkl", 80, Some(42.9), 38.6),
    ("COCO-InstanceSegmentation/mask_rcnn_X_101_32x8d_FPN_3x", 139653917, "model_final_2d9806.pkl", 80, Some(44.3), 39.5),
];

#[test]
fn embedded_catalog_holds_the_21_zoo_models() {
    let cat = Catalog::embedded().expect("embedded catalog parses and validates");
    assert_eq!(cat.models.len(), 21);
    for (key, id, file, classes, box_ap, mask_ap) in ZOO {
        let m = cat.get(key).unwrap_or_else(|| panic!("{key} missing"));
        assert_eq!(m.model_id, *id, "{key}");
        assert_eq!(m.file, *file, "{key}");
        assert_eq!(m.num_classes, *classes, "{key}");
        assert_eq!(cat.classes(m).len(), *classes as usize, "{key}");
        assert_eq!(m.box_ap, *box_ap, "{key}");
        assert_eq!(m.mask_ap, *mask_ap, "{key}");
        assert_eq!(
            m.url,
            format!("https://dl.fbaipublicfiles.com/detectron2/{key}/{id}/{file}")
        );
    }
}

#[test]
fn architectures_match_the_zoo_configs() {
    let cat = Catalog::embedded().unwrap();
    let c4 = cat.get("COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x").unwrap();
    assert_eq!(c4.neck, Neck::C4);
    assert_eq!(c4.roi_heads.kind, RoiHeadsKind::Res5);
    assert_eq!(c4.mask_head.resolution, 14);
    assert_eq!(c4.rpn.pre_nms_topk_test, 6000);
    assert_eq!(c4.input.size_divisibility, 0);

    let x152 = cat.get("x152-cascade").unwrap();
    assert_eq!(x152.roi_heads.kind, RoiHeadsKind::Cascade);
    assert_eq!(x152.roi_heads.bbox_reg_weights.len(), 3);
    assert!(x152.roi_heads.cls_agnostic_bbox_reg);
    assert_eq!(x152.mask_head.num_conv, 8);
    match &x152.backbone {
        Backbone::Resnet { depth, num_groups, width_per_group, deform_on_per_stage, stride_in_1x1, .. } => {
            assert_eq!((*depth, *num_groups, *width_per_group), (152, 32, 8));
            assert_eq!(*deform_on_per_stage, [false, true, true, true]);
            assert!(!stride_in_1x1);
        }
        other => panic!("X152 backbone is {other:?}"),
    }

    let lvis = cat.get("LVISv0.5-InstanceSegmentation/mask_rcnn_R_50_FPN_1x").unwrap();
    assert_eq!(lvis.roi_heads.score_thresh_test, 0.0001);
    assert_eq!(lvis.roi_heads.detections_per_image, 300);

    let city = cat.get("Cityscapes/mask_rcnn_R_50_FPN").unwrap();
    assert_eq!((city.input.min_size_test, city.input.max_size_test), (1024, 2048));

    let regy = cat.get("new_baselines/mask_rcnn_regnety_4gf_dds_FPN_100ep_LSJ").unwrap();
    match &regy.backbone {
        Backbone::Regnet { stage_widths, stage_depths, se_ratio, .. } => {
            assert_eq!(*stage_widths, [128, 192, 512, 1088]);
            assert_eq!(*stage_depths, [2, 6, 12, 2]);
            assert_eq!(*se_ratio, 0.25);
        }
        other => panic!("RegNetY backbone is {other:?}"),
    }
    assert_eq!(regy.rpn.num_convs, 2);
    assert_eq!(regy.box_head.num_conv, 4);
}

#[test]
fn class_lists_have_the_zoo_counts_and_distinct_colours() {
    for (name, count, first, last) in [
        ("coco", 80, "person", "toothbrush"),
        ("lvis_v0.5", 1230, "acorn", "zucchini"),
        ("cityscapes", 8, "person", "bicycle"),
    ] {
        let list = ClassList::builtin(name).unwrap();
        assert_eq!(list.len(), count, "{name}");
        assert_eq!(list.classes.first().unwrap().name, first);
        assert_eq!(list.classes.last().unwrap().name, last);
        for (i, c) in list.classes.iter().enumerate() {
            assert_eq!(c.id as usize, i, "{name}: ids are contiguous");
        }
        let colours: std::collections::HashSet<_> = list.classes.iter().map(|c| c.color).collect();
        assert_eq!(colours.len(), count, "{name}: one distinct colour per class");
    }
    assert_eq!(ClassList::builtin("coco").unwrap().classes[0].hex_color(), "#DC143C");
}

#[test]
fn lookup_by_alias_and_suggestions_for_typos() {
    let cat = Catalog::embedded().unwrap();
    assert_eq!(cat.get("r50-fpn-3x").unwrap().key, "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x");
    let err = cat.require("cascade").unwrap_err().to_string();
    assert!(err.contains("did you mean"), "{err}");
    assert!(err.contains("Misc/cascade_mask_rcnn_R_50_FPN_3x"), "{err}");
}

/// The embedded catalog with its entries replaced by `entry`.
fn with_entry(entry: &str) -> String {
    let text = d2serve_registry::catalog::EMBEDDED_CATALOG;
    let head = &text[..text.find("\n[[models]]").unwrap()];
    format!("{head}{entry}")
}

const GOOD: &str = r#"
[[models]]
key = "Private/mask_rcnn_R_50_FPN_custom"
name = "Custom"
model_id = 7
config = "Private/mask_rcnn_R_50_FPN_custom.yaml"
url = "https://dl.fbaipublicfiles.com/detectron2/Private/mask_rcnn_R_50_FPN_custom/7/model_final_abc123.pkl"
file = "model_final_abc123.pkl"
md5_prefix = "abc123"
mask_ap = 1.0
inference_s_per_im = 0.1
base = "fpn"
"#;

#[test]
fn a_private_catalog_in_the_same_format_parses() {
    let cat = Catalog::parse(&with_entry(GOOD), "test").unwrap();
    assert_eq!(cat.models.len(), 1);
    assert_eq!(cat.models[0].rpn.post_nms_topk_test, 1000);
}

#[test]
fn broken_entries_are_refused_with_the_reason() {
    let cases = [
        (GOOD.replace("mask_ap = 1.0\n", ""), "missing field `mask_ap`"),
        (GOOD.replace("base = \"fpn\"", "base = \"fpn\"\nmask_apx = 3"), "unknown field `mask_apx`"),
        (GOOD.replace("base = \"fpn\"", "base = \"nope\""), "unknown base `nope`"),
        (GOOD.replace("md5_prefix = \"abc123\"", "md5_prefix = \"abc124\""), "md5_prefix"),
        (GOOD.replace("/7/model_final", "/8/model_final"), "url should be"),
        (GOOD.replace("base = \"fpn\"", "base = \"fpn\"\nnum_classes = 81"), "num_classes is 81"),
        (
            GOOD.replace("base = \"fpn\"", "base = \"fpn\"\n[models.neck]\nkind = \"c4\""),
            "rpn.in_features",
        ),
        (format!("{GOOD}{GOOD}"), "used twice"),
    ];
    for (text, expected) in cases {
        let err = Catalog::parse(&with_entry(&text), "test").unwrap_err().to_string();
        assert!(err.contains(expected), "expected `{expected}` in: {err}");
        assert!(err.contains("Private/mask_rcnn_R_50_FPN_custom"), "names the model: {err}");
    }
    let err = Catalog::parse("schema = 1\nzoo_base_url = 3", "bad.toml").unwrap_err().to_string();
    assert!(err.contains("bad.toml"), "{err}");
}
