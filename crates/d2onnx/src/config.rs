//! A user's own Detectron2 config, read into the [`ModelSpec`] the converter
//! builds from (docs/custom-models.md §2).
//!
//! Three forms arrive with a trained model:
//! - yacs YAML: `cfg.dump()` (`OUTPUT_DIR/config.yaml`, every key present), a
//!   zoo-style file with `_BASE_` chains, or Supervisely's tagged
//!   `model_config.yaml` ([`crate::yacs`] reads all three into one tree);
//!   keys a partial file leaves out take Detectron2's defaults
//!   (`detectron2/config/defaults.py`, transcribed in [`D2_DEFAULTS`]);
//! - Supervisely's `model_config.json`: a sparse overlay of LazyConfig values
//!   plus `model_id`, applied over the catalog's full description of that zoo
//!   model ([`spec_from_supervisely_json`]).
//!
//! Every key that changes the graph or the answer is either honoured or
//! refused by name; an architecture the converter does not build (keypoints,
//! panoptic, RetinaNet, rotated boxes, sigmoid classifiers, …) is refused by
//! name instead of being served wrong.

use std::path::{Path, PathBuf};

use d2serve_registry::catalog::Catalog;
use d2serve_registry::spec::{
    Backbone, BoxHeadSpec, InputSpec, MaskHeadSpec, ModelSpec, Neck, Norm, RoiHeadsKind, RoiHeadsSpec, RpnSpec,
};

use crate::yacs::{self, CfgMap, CfgValue, YacsError};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Yacs(#[from] YacsError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not valid JSON: {source}")]
    Json { path: String, source: serde_json::Error },
    /// A key holds a value of the wrong type or outside what Detectron2 accepts.
    #[error("config key {key}: {why}")]
    Value { key: String, why: String },
    /// A key asks for something the converter does not build.
    #[error("config key {key} = {value}: {why}")]
    Unsupported { key: String, value: String, why: String },
    #[error("{0}")]
    Other(String),
}

fn unsupported(key: &str, value: &CfgValue, why: impl Into<String>) -> ConfigError {
    ConfigError::Unsupported { key: key.into(), value: value.to_string(), why: why.into() }
}

/// Detectron2's defaults (`detectron2/config/defaults.py` at 02b5c4e) for the
/// keys that shape a Mask R-CNN at test time. A partial config (a zoo-style
/// file with `_BASE_`) is merged over these, as `get_cfg()` does.
pub const D2_DEFAULTS: &str = r#"
MODEL:
  META_ARCHITECTURE: GeneralizedRCNN
  MASK_ON: false
  KEYPOINT_ON: false
  LOAD_PROPOSALS: false
  PIXEL_MEAN: [103.53, 116.28, 123.675]
  PIXEL_STD: [1.0, 1.0, 1.0]
  BACKBONE: {NAME: build_resnet_backbone}
  FPN: {IN_FEATURES: [], OUT_CHANNELS: 256, NORM: "", FUSE_TYPE: sum}
  PROPOSAL_GENERATOR: {NAME: RPN, MIN_SIZE: 0}
  ANCHOR_GENERATOR:
    NAME: DefaultAnchorGenerator
    SIZES: [[32, 64, 128, 256, 512]]
    ASPECT_RATIOS: [[0.5, 1.0, 2.0]]
    OFFSET: 0.0
  RPN:
    HEAD_NAME: StandardRPNHead
    IN_FEATURES: [res4]
    BBOX_REG_WEIGHTS: [1.0, 1.0, 1.0, 1.0]
    PRE_NMS_TOPK_TEST: 6000
    POST_NMS_TOPK_TEST: 1000
    NMS_THRESH: 0.7
    CONV_DIMS: [-1]
  ROI_HEADS:
    NAME: Res5ROIHeads
    NUM_CLASSES: 80
    IN_FEATURES: [res4]
    SCORE_THRESH_TEST: 0.05
    NMS_THRESH_TEST: 0.5
  ROI_BOX_HEAD:
    NAME: ""
    BBOX_REG_WEIGHTS: [10.0, 10.0, 5.0, 5.0]
    NUM_FC: 0
    FC_DIM: 1024
    NUM_CONV: 0
    CONV_DIM: 256
    NORM: ""
    POOLER_RESOLUTION: 14
    POOLER_SAMPLING_RATIO: 0
    POOLER_TYPE: ROIAlignV2
    CLS_AGNOSTIC_BBOX_REG: false
    USE_SIGMOID_CE: false
  ROI_BOX_CASCADE_HEAD:
    BBOX_REG_WEIGHTS: [[10.0, 10.0, 5.0, 5.0], [20.0, 20.0, 10.0, 10.0], [30.0, 30.0, 15.0, 15.0]]
    IOUS: [0.5, 0.6, 0.7]
  ROI_MASK_HEAD:
    NAME: MaskRCNNConvUpsampleHead
    POOLER_RESOLUTION: 14
    POOLER_SAMPLING_RATIO: 0
    NUM_CONV: 0
    CONV_DIM: 256
    NORM: ""
    CLS_AGNOSTIC_MASK: false
    POOLER_TYPE: ROIAlignV2
  RESNETS:
    DEPTH: 50
    OUT_FEATURES: [res4]
    NUM_GROUPS: 1
    NORM: FrozenBN
    WIDTH_PER_GROUP: 64
    STRIDE_IN_1X1: true
    RES5_DILATION: 1
    RES2_OUT_CHANNELS: 256
    STEM_OUT_CHANNELS: 64
    DEFORM_ON_PER_STAGE: [false, false, false, false]
    DEFORM_MODULATED: false
    DEFORM_NUM_GROUPS: 1
INPUT: {FORMAT: BGR, MIN_SIZE_TEST: 800, MAX_SIZE_TEST: 1333}
TEST: {DETECTIONS_PER_IMAGE: 100, AUG: {ENABLED: false}}
"#;

/// What a config says beyond the graph: the test-time resize Supervisely
/// records separately, and notes for the user.
#[derive(Debug, Clone)]
pub struct ReadConfig {
    pub spec: ModelSpec,
    /// Things the user should know (keys read but without effect here).
    pub notes: Vec<String>,
}

/// The config files a trained model may carry, in the order they are looked
/// for beside its checkpoint: Detectron2's `cfg.dump()`, then Supervisely's.
pub const CONFIG_NAMES: [&str; 3] = ["config.yaml", "model_config.yaml", "model_config.json"];

/// The folder a checkpoint lies in (`.` for a bare file name).
pub(crate) fn checkpoint_dir(checkpoint: &Path) -> &Path {
    match checkpoint.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// The config beside `checkpoint`, if one of [`CONFIG_NAMES`] is there.
pub fn find_config(checkpoint: &Path) -> Option<PathBuf> {
    let dir = checkpoint_dir(checkpoint);
    CONFIG_NAMES.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// What to bring instead of a LazyConfig file, which only Python can evaluate.
const LAZYCONFIG_ADVICE: &str = "use the run's yacs config (`cfg.dump()`), or a Supervisely-style model_config.json \
     naming the zoo model you fine-tuned and what you changed, e.g. \
     {\"model_id\": 42047764, \"model\": {\"roi_heads\": {\"num_classes\": 3}}} (ids: `zoo list`)";

/// Read a config file of any supported form into a model description.
pub fn read_config(path: &Path, catalog: &Catalog) -> Result<ReadConfig, ConfigError> {
    let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Io { path: path.display().to_string(), source })?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|source| ConfigError::Json { path: path.display().to_string(), source })?;
        return spec_from_supervisely_json(&CfgValue::from_json(&json), catalog);
    }
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("py")) {
        return Err(ConfigError::Other(format!(
            "{}: a LazyConfig .py file cannot be read without running Python; {LAZYCONFIG_ADVICE}",
            path.display()
        )));
    }
    let builtin = |name: &str| builtin_base(name, catalog);
    let lazy = || {
        ConfigError::Other(format!(
            "{}: this is a LazyConfig YAML (LazyConfig.save: `_target_` entries under a lower-case `model:` tree), \
             which only Python can evaluate; {LAZYCONFIG_ADVICE}",
            path.display()
        ))
    };
    let cfg = match yacs::load_yaml_file(path, &builtin) {
        Ok(cfg) => cfg,
        // LazyConfig.save writes callables as `!!python/name:` tags: say what the file is, not just which tag.
        Err(e) if std::fs::read_to_string(path).is_ok_and(|t| t.contains("_target_:")) => {
            return Err(ConfigError::Other(format!("{} ({e})", lazy())));
        }
        Err(e) => return Err(e.into()),
    };
    if cfg.as_map().is_some_and(|m| m.contains_key("model") && !m.contains_key("MODEL")) {
        return Err(lazy());
    }
    spec_from_yacs(&cfg)
}

/// A `_BASE_` that is not beside the including file: the zoo's
/// `Base-RCNN-*.yaml` and every catalog config, written from the catalog's
/// description (as JSON, which YAML reads).
fn builtin_base(name: &str, catalog: &Catalog) -> Option<String> {
    let trimmed = name.trim_start_matches("./").trim_start_matches("../");
    let file = Path::new(trimmed).file_name()?.to_str()?;
    let entry = match file {
        "Base-RCNN-FPN.yaml" => catalog.get("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x"),
        "Base-RCNN-C4.yaml" => catalog.get("COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x"),
        "Base-RCNN-DilatedC5.yaml" => catalog.get("COCO-InstanceSegmentation/mask_rcnn_R_50_DC5_3x"),
        _ => catalog.models.iter().find(|m| trimmed.ends_with(&m.config) && m.config.ends_with(".yaml")),
    }?;
    Some(cfg_to_json(&CfgValue::Map(yacs_from_spec(&entry.spec()))).to_string())
}

fn cfg_to_json(v: &CfgValue) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        CfgValue::Null => J::Null,
        CfgValue::Bool(b) => J::Bool(*b),
        CfgValue::Int(i) => J::from(*i),
        CfgValue::Float(f) => serde_json::Number::from_f64(*f).map(J::Number).unwrap_or(J::Null),
        CfgValue::Str(s) => J::String(s.clone()),
        CfgValue::List(items) => J::Array(items.iter().map(cfg_to_json).collect()),
        CfgValue::Map(m) => J::Object(m.iter().map(|(k, v)| (k.to_string(), cfg_to_json(v))).collect()),
    }
}

/// Typed access to a merged yacs tree, with errors naming the key.
struct Keys<'a> {
    root: &'a CfgValue,
}

impl<'a> Keys<'a> {
    fn get(&self, key: &str) -> Result<&'a CfgValue, ConfigError> {
        self.root.get(key).ok_or_else(|| ConfigError::Value { key: key.into(), why: "missing".into() })
    }
    /// The key's value is one the converter does not build: say which and why.
    fn refuse(&self, key: &str, why: impl Into<String>) -> ConfigError {
        unsupported(key, self.root.get(key).unwrap_or(&CfgValue::Null), why)
    }
    fn bad(&self, key: &str, want: &str) -> ConfigError {
        let v = self.root.get(key).map(|v| format!("{v} ({})", v.type_name())).unwrap_or_default();
        ConfigError::Value { key: key.into(), why: format!("expected {want}, found {v}") }
    }
    fn str(&self, key: &str) -> Result<&'a str, ConfigError> {
        self.get(key)?.as_str().ok_or_else(|| self.bad(key, "a string"))
    }
    fn bool(&self, key: &str) -> Result<bool, ConfigError> {
        self.get(key)?.as_bool().ok_or_else(|| self.bad(key, "true or false"))
    }
    fn f64(&self, key: &str) -> Result<f64, ConfigError> {
        self.get(key)?.as_f64().ok_or_else(|| self.bad(key, "a number"))
    }
    fn f32(&self, key: &str) -> Result<f32, ConfigError> {
        Ok(self.f64(key)? as f32)
    }
    fn u32(&self, key: &str) -> Result<u32, ConfigError> {
        let v = self.get(key)?;
        v.as_i64().and_then(|i| u32::try_from(i).ok()).ok_or_else(|| self.bad(key, "a non-negative integer"))
    }
    fn list(&self, key: &str) -> Result<&'a [CfgValue], ConfigError> {
        self.get(key)?.as_list().ok_or_else(|| self.bad(key, "a list"))
    }
    fn strs(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        self.list(key)?
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| self.bad(key, "a list of strings")))
            .collect()
    }
    fn f32s(&self, key: &str) -> Result<Vec<f32>, ConfigError> {
        self.list(key)?
            .iter()
            .map(|v| v.as_f64().map(|f| f as f32).ok_or_else(|| self.bad(key, "a list of numbers")))
            .collect()
    }
    fn f32_lists(&self, key: &str) -> Result<Vec<Vec<f32>>, ConfigError> {
        self.list(key)?
            .iter()
            .map(|l| l.as_list().and_then(|l| l.iter().map(|x| x.as_f64().map(|f| f as f32)).collect::<Option<Vec<_>>>()))
            .collect::<Option<_>>()
            .ok_or_else(|| self.bad(key, "a list of lists of numbers"))
    }
    fn f32x3(&self, key: &str) -> Result<[f32; 3], ConfigError> {
        let v = self.f32s(key)?;
        <[f32; 3]>::try_from(v.as_slice()).map_err(|_| self.bad(key, "three numbers (one per channel)"))
    }
    fn f32x4(&self, v: &CfgValue, key: &str) -> Result<[f32; 4], ConfigError> {
        let items: Option<Vec<f32>> = v.as_list().map(|l| l.iter().filter_map(|x| x.as_f64().map(|f| f as f32)).collect());
        match items {
            Some(items) if items.len() == 4 && v.as_list().unwrap().len() == 4 => Ok([items[0], items[1], items[2], items[3]]),
            _ => Err(self.bad(key, "four numbers")),
        }
    }
    fn norm(&self, key: &str) -> Result<Norm, ConfigError> {
        let v = self.get(key)?;
        match self.str(key)? {
            "" => Ok(Norm::None),
            "FrozenBN" => Ok(Norm::FrozenBN),
            // At test time every batch norm is the same affine map of its running statistics.
            "BN" | "SyncBN" | "naiveSyncBN" | "naiveSyncBN_N" | "nnSyncBN" => Ok(Norm::BN),
            "GN" => Ok(Norm::GN),
            _ => Err(unsupported(key, v, "the converter builds FrozenBN, BN (incl. SyncBN variants), GN or no norm")),
        }
    }
}

/// Map a merged yacs config (any of the YAML forms) to a model description,
/// with Detectron2's defaults under it.
pub fn spec_from_yacs(cfg: &CfgValue) -> Result<ReadConfig, ConfigError> {
    let mut merged = yacs::parse_yaml(D2_DEFAULTS).expect("the built-in defaults parse");
    merged.merge_from(cfg.clone());
    let k = Keys { root: &merged };
    let mut notes = Vec::new();

    let meta = k.str("MODEL.META_ARCHITECTURE")?;
    if meta != "GeneralizedRCNN" {
        let why = match meta {
            "RetinaNet" => "RetinaNet is a one-stage detector without masks; d2serve serves Mask R-CNN",
            "PanopticFPN" => "panoptic segmentation is not served; d2serve serves instance segmentation (Mask R-CNN)",
            "SemanticSegmentor" => "semantic segmentation is not served; d2serve serves instance segmentation (Mask R-CNN)",
            "ProposalNetwork" => "an RPN-only model gives proposals, not instances",
            _ => "d2serve converts Mask R-CNN (GeneralizedRCNN) models only",
        };
        return Err(k.refuse("MODEL.META_ARCHITECTURE", why));
    }
    if !k.bool("MODEL.MASK_ON")? {
        return Err(k.refuse("MODEL.MASK_ON", "a model without a mask head (Faster R-CNN) is not served: d2serve answers with instance masks",
        ));
    }
    if k.bool("MODEL.KEYPOINT_ON")? {
        return Err(k.refuse("MODEL.KEYPOINT_ON", "keypoint heads are not converted"));
    }
    if k.bool("MODEL.LOAD_PROPOSALS")? {
        return Err(k.refuse("MODEL.LOAD_PROPOSALS", "precomputed proposals cannot be served; the model must have its own RPN",
        ));
    }
    let pg = k.str("MODEL.PROPOSAL_GENERATOR.NAME")?;
    if pg != "RPN" {
        return Err(k.refuse("MODEL.PROPOSAL_GENERATOR.NAME", "only the standard RPN is converted"));
    }
    for (key, want) in [
        ("MODEL.ANCHOR_GENERATOR.NAME", "DefaultAnchorGenerator"),
        ("MODEL.RPN.HEAD_NAME", "StandardRPNHead"),
        ("MODEL.ROI_MASK_HEAD.NAME", "MaskRCNNConvUpsampleHead"),
    ] {
        if k.str(key)? != want {
            return Err(k.refuse(key, format!("only {want} is converted")));
        }
    }
    if k.bool("MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE")? {
        return Err(k.refuse("MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE", "sigmoid class scores are not converted (the graph applies softmax)",
        ));
    }
    if merged.get("TEST.AUG.ENABLED").and_then(CfgValue::as_bool) == Some(true) {
        notes.push("TEST.AUG.ENABLED is ignored: Detectron2's DefaultPredictor does not use test-time augmentation either".into());
    }

    // Backbone and neck.
    let backbone_name = k.str("MODEL.BACKBONE.NAME")?;
    let roi_name = k.str("MODEL.ROI_HEADS.NAME")?;
    let dilation = k.u32("MODEL.RESNETS.RES5_DILATION")?;
    let neck = match backbone_name {
        "build_resnet_fpn_backbone" => {
            let in_features = k.strs("MODEL.FPN.IN_FEATURES")?;
            if in_features != ["res2", "res3", "res4", "res5"] {
                return Err(k.refuse("MODEL.FPN.IN_FEATURES", "the converter builds FPNs on [res2, res3, res4, res5]",
                ));
            }
            let fuse = k.str("MODEL.FPN.FUSE_TYPE")?;
            if !matches!(fuse, "sum" | "avg") {
                return Err(k.refuse("MODEL.FPN.FUSE_TYPE", "must be sum or avg"));
            }
            if dilation != 1 {
                return Err(k.refuse("MODEL.RESNETS.RES5_DILATION", "an FPN needs res5 undilated (1)"));
            }
            Neck::Fpn {
                out_channels: k.u32("MODEL.FPN.OUT_CHANNELS")?,
                norm: k.norm("MODEL.FPN.NORM")?,
                fuse_type: fuse.to_string(),
                top_block: "maxpool".into(),
            }
        }
        "build_resnet_backbone" => match (roi_name, dilation) {
            ("Res5ROIHeads", 1) => Neck::C4,
            ("StandardROIHeads", 2) => Neck::Dc5,
            ("Res5ROIHeads", _) => {
                return Err(k.refuse("MODEL.RESNETS.RES5_DILATION", "C4 models (Res5ROIHeads) need res5 undilated"));
            }
            _ => {
                return Err(k.refuse("MODEL.ROI_HEADS.NAME", "a plain ResNet backbone is served as C4 (Res5ROIHeads) or DC5 (StandardROIHeads with RES5_DILATION 2)",
                ));
            }
        },
        _ => {
            return Err(k.refuse("MODEL.BACKBONE.NAME", "the converter builds build_resnet_fpn_backbone and build_resnet_backbone (C4, DC5); RegNet models are read from the catalog",
            ));
        }
    };
    let depth = k.u32("MODEL.RESNETS.DEPTH")?;
    if ![50, 101, 152].contains(&depth) {
        return Err(k.refuse("MODEL.RESNETS.DEPTH", "ResNet-50, -101 and -152 are converted (18/34 use basic blocks)"));
    }
    let deform: Vec<bool> = k
        .list("MODEL.RESNETS.DEFORM_ON_PER_STAGE")?
        .iter()
        .map(|v| v.as_bool())
        .collect::<Option<_>>()
        .ok_or_else(|| k.bad("MODEL.RESNETS.DEFORM_ON_PER_STAGE", "four booleans"))?;
    let deform_on_per_stage =
        <[bool; 4]>::try_from(deform.as_slice()).map_err(|_| k.bad("MODEL.RESNETS.DEFORM_ON_PER_STAGE", "four booleans"))?;
    let out_features = k.strs("MODEL.RESNETS.OUT_FEATURES")?;
    let needed: &[&str] = match neck {
        Neck::Fpn { .. } => &["res2", "res3", "res4", "res5"],
        Neck::C4 => &["res4"],
        Neck::Dc5 => &["res5"],
    };
    if let Some(missing) = needed.iter().find(|f| !out_features.iter().any(|o| o == *f)) {
        return Err(k.refuse("MODEL.RESNETS.OUT_FEATURES", format!("this architecture needs {missing}")));
    }
    let backbone = Backbone::Resnet {
        depth,
        num_groups: k.u32("MODEL.RESNETS.NUM_GROUPS")?,
        width_per_group: k.u32("MODEL.RESNETS.WIDTH_PER_GROUP")?,
        stride_in_1x1: k.bool("MODEL.RESNETS.STRIDE_IN_1X1")?,
        norm: k.norm("MODEL.RESNETS.NORM")?,
        stem_out_channels: k.u32("MODEL.RESNETS.STEM_OUT_CHANNELS")?,
        res2_out_channels: k.u32("MODEL.RESNETS.RES2_OUT_CHANNELS")?,
        res5_dilation: dilation,
        deform_on_per_stage,
        deform_modulated: k.bool("MODEL.RESNETS.DEFORM_MODULATED")?,
        deform_num_groups: k.u32("MODEL.RESNETS.DEFORM_NUM_GROUPS")?,
    };

    // Input.
    let format = k.str("INPUT.FORMAT")?;
    if !matches!(format, "BGR" | "RGB") {
        return Err(k.refuse("INPUT.FORMAT", "the served input is a colour photo: BGR or RGB"));
    }
    let min_size_test = k.u32("INPUT.MIN_SIZE_TEST")?;
    if min_size_test == 0 {
        return Err(k.refuse("INPUT.MIN_SIZE_TEST", "0 (no resize) is not served: set the test size the model was evaluated at",
        ));
    }
    let mut input = InputSpec {
        format: format.to_string(),
        pixel_mean: k.f32x3("MODEL.PIXEL_MEAN")?,
        pixel_std: k.f32x3("MODEL.PIXEL_STD")?,
        min_size_test,
        max_size_test: k.u32("INPUT.MAX_SIZE_TEST")?,
        size_divisibility: if matches!(neck, Neck::Fpn { .. }) { 32 } else { 0 },
        fixed_size: None,
    };
    if let Some(transform) = merged.get("inference_resize_transform") {
        apply_supervisely_resize(transform, &mut input, &mut notes)?;
    }

    // RPN.
    let rpn_in = k.strs("MODEL.RPN.IN_FEATURES")?;
    let want_rpn_in: Vec<&str> = match neck {
        Neck::Fpn { .. } => vec!["p2", "p3", "p4", "p5", "p6"],
        Neck::C4 => vec!["res4"],
        Neck::Dc5 => vec!["res5"],
    };
    if rpn_in != want_rpn_in {
        return Err(k.refuse("MODEL.RPN.IN_FEATURES", format!("this architecture's RPN runs on {want_rpn_in:?}")));
    }
    let sizes: Vec<Vec<f32>> = k.f32_lists("MODEL.ANCHOR_GENERATOR.SIZES")?;
    // Detectron2 broadcasts a single list to every feature map (_broadcast_params).
    let anchor_sizes = match sizes.len() {
        n if n == rpn_in.len() => sizes,
        1 => vec![sizes[0].clone(); rpn_in.len()],
        _ => {
            return Err(ConfigError::Value {
                key: "MODEL.ANCHOR_GENERATOR.SIZES".into(),
                why: format!("{} lists of sizes for {} RPN feature maps (need one, or one per map)", sizes.len(), rpn_in.len()),
            });
        }
    };
    let ratios: Vec<Vec<f32>> = k.f32_lists("MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS")?;
    let aspect_ratios = match ratios.as_slice() {
        [one] => one.clone(),
        [first, rest @ ..] if rest.iter().all(|r| r == first) => first.clone(),
        _ => {
            return Err(k.refuse("MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", "one list of aspect ratios shared by every feature map is converted",
            ));
        }
    };
    let conv_dims = k.list("MODEL.RPN.CONV_DIMS")?;
    if conv_dims.is_empty() || conv_dims.len() > 2 || conv_dims.iter().any(|d| d.as_i64() != Some(-1)) {
        return Err(k.refuse("MODEL.RPN.CONV_DIMS", "the converter builds RPN heads of one or two convs that keep the channel count ([-1] or [-1, -1])",
        ));
    }
    let rpn = RpnSpec {
        in_features: rpn_in,
        anchor_sizes,
        aspect_ratios,
        anchor_offset: k.f32("MODEL.ANCHOR_GENERATOR.OFFSET")?,
        num_convs: conv_dims.len() as u32,
        pre_nms_topk_test: k.u32("MODEL.RPN.PRE_NMS_TOPK_TEST")?,
        post_nms_topk_test: k.u32("MODEL.RPN.POST_NMS_TOPK_TEST")?,
        nms_thresh: k.f32("MODEL.RPN.NMS_THRESH")?,
        min_box_size: k.f32("MODEL.PROPOSAL_GENERATOR.MIN_SIZE")?,
        bbox_reg_weights: k.f32x4(k.get("MODEL.RPN.BBOX_REG_WEIGHTS")?, "MODEL.RPN.BBOX_REG_WEIGHTS")?,
    };

    // ROI heads.
    let kind = match roi_name {
        "StandardROIHeads" => RoiHeadsKind::Standard,
        "Res5ROIHeads" => RoiHeadsKind::Res5,
        "CascadeROIHeads" => RoiHeadsKind::Cascade,
        _ => {
            return Err(k.refuse("MODEL.ROI_HEADS.NAME", "StandardROIHeads, Res5ROIHeads and CascadeROIHeads are converted",
            ));
        }
    };
    if kind == RoiHeadsKind::Cascade && !matches!(neck, Neck::Fpn { .. }) {
        return Err(k.refuse("MODEL.ROI_HEADS.NAME", "cascade heads are converted on FPN models"));
    }
    let roi_in = k.strs("MODEL.ROI_HEADS.IN_FEATURES")?;
    let want_roi_in: Vec<&str> = match neck {
        Neck::Fpn { .. } => vec!["p2", "p3", "p4", "p5"],
        Neck::C4 => vec!["res4"],
        Neck::Dc5 => vec!["res5"],
    };
    if roi_in != want_roi_in {
        return Err(k.refuse("MODEL.ROI_HEADS.IN_FEATURES", format!("this architecture's ROI heads pool from {want_roi_in:?}")));
    }
    let bbox_reg_weights = if kind == RoiHeadsKind::Cascade {
        let stages = k.list("MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS")?;
        stages
            .iter()
            .map(|w| k.f32x4(w, "MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS"))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![k.f32x4(k.get("MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS")?, "MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS")?]
    };
    let cascade_ious = if kind == RoiHeadsKind::Cascade { k.f32s("MODEL.ROI_BOX_CASCADE_HEAD.IOUS")? } else { vec![] };
    if kind == RoiHeadsKind::Cascade && cascade_ious.len() != bbox_reg_weights.len() {
        return Err(ConfigError::Value {
            key: "MODEL.ROI_BOX_CASCADE_HEAD.IOUS".into(),
            why: format!("{} IoUs for {} stages of BBOX_REG_WEIGHTS", cascade_ious.len(), bbox_reg_weights.len()),
        });
    }
    let num_classes = k.u32("MODEL.ROI_HEADS.NUM_CLASSES")?;
    let roi_heads = RoiHeadsSpec {
        kind,
        in_features: roi_in,
        score_thresh_test: k.f32("MODEL.ROI_HEADS.SCORE_THRESH_TEST")?,
        nms_thresh_test: k.f32("MODEL.ROI_HEADS.NMS_THRESH_TEST")?,
        detections_per_image: k.u32("TEST.DETECTIONS_PER_IMAGE")?,
        cls_agnostic_bbox_reg: k.bool("MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG")?,
        bbox_reg_weights,
        cascade_ious,
    };
    if kind != RoiHeadsKind::Res5 {
        let name = k.str("MODEL.ROI_BOX_HEAD.NAME")?;
        if name != "FastRCNNConvFCHead" {
            return Err(k.refuse("MODEL.ROI_BOX_HEAD.NAME", "only FastRCNNConvFCHead is converted"));
        }
    }
    let box_head = BoxHeadSpec {
        pooler_resolution: k.u32("MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION")?,
        pooler_sampling_ratio: k.u32("MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO")?,
        pooler_type: pooler_type(&k, "MODEL.ROI_BOX_HEAD.POOLER_TYPE")?,
        num_conv: k.u32("MODEL.ROI_BOX_HEAD.NUM_CONV")?,
        conv_dim: k.u32("MODEL.ROI_BOX_HEAD.CONV_DIM")?,
        num_fc: k.u32("MODEL.ROI_BOX_HEAD.NUM_FC")?,
        fc_dim: k.u32("MODEL.ROI_BOX_HEAD.FC_DIM")?,
        norm: k.norm("MODEL.ROI_BOX_HEAD.NORM")?,
    };
    let mask_pooler = k.u32("MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION")?;
    // C4: the mask head deconvolves res5's output on the box pooler's ROIs
    // (res5 halves it), so the mask is as large as the box pooler.
    let resolution = if neck == Neck::C4 { box_head.pooler_resolution } else { 2 * mask_pooler };
    let mask_head = MaskHeadSpec {
        pooler_resolution: mask_pooler,
        pooler_sampling_ratio: k.u32("MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO")?,
        pooler_type: pooler_type(&k, "MODEL.ROI_MASK_HEAD.POOLER_TYPE")?,
        num_conv: k.u32("MODEL.ROI_MASK_HEAD.NUM_CONV")?,
        conv_dim: k.u32("MODEL.ROI_MASK_HEAD.CONV_DIM")?,
        norm: k.norm("MODEL.ROI_MASK_HEAD.NORM")?,
        resolution,
        cls_agnostic: k.bool("MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK")?,
        threshold: 0.5,
    };

    let spec = ModelSpec { num_classes, input, backbone, neck, rpn, roi_heads, box_head, mask_head };
    spec.validate().map_err(|e| ConfigError::Other(format!("the config describes a model the converter cannot build: {e}")))?;
    Ok(ReadConfig { spec, notes })
}

fn pooler_type(k: &Keys<'_>, key: &str) -> Result<String, ConfigError> {
    let v = k.str(key)?;
    if v != "ROIAlignV2" {
        return Err(k.refuse(key, "only ROIAlignV2 pooling is converted (the zoo's Mask R-CNNs all use it)"));
    }
    Ok(v.to_string())
}

/// Supervisely's `inference_resize_transform` (docs/custom-models.md §2.3):
/// `{class: ResizeShortestEdge, params: {short_edge_length: [S, S], max_size: M}}`
/// replaces the test sizes; a fixed `Resize` is refused by name.
fn apply_supervisely_resize(t: &CfgValue, input: &mut InputSpec, notes: &mut Vec<String>) -> Result<(), ConfigError> {
    let key = "inference_resize_transform";
    let class = t.get("class").and_then(CfgValue::as_str).unwrap_or("");
    let params = t.get("params").unwrap_or(&CfgValue::Null);
    match class {
        "ResizeShortestEdge" => {
            let short = params.get("short_edge_length");
            let sizes: Option<Vec<i64>> = match short {
                Some(CfgValue::Int(i)) => Some(vec![*i]),
                Some(CfgValue::List(l)) => l.iter().map(CfgValue::as_i64).collect(),
                _ => None,
            };
            let sizes = sizes.filter(|s| !s.is_empty() && s.iter().all(|&x| x > 0)).ok_or_else(|| ConfigError::Value {
                key: format!("{key}.params.short_edge_length"),
                why: "expected a positive size or a list of them".into(),
            })?;
            if sizes.iter().any(|&s| s != sizes[0]) {
                return Err(unsupported(
                    &format!("{key}.params.short_edge_length"),
                    short.unwrap(),
                    "a size range is sampled at random per image; a served model needs one test size",
                ));
            }
            let max = params.get("max_size").and_then(CfgValue::as_i64).filter(|&m| m > 0).ok_or_else(|| ConfigError::Value {
                key: format!("{key}.params.max_size"),
                why: "expected a positive size".into(),
            })?;
            input.min_size_test = sizes[0] as u32;
            input.max_size_test = (max as u32).max(input.min_size_test);
            input.fixed_size = None;
            notes.push(format!(
                "test resize from Supervisely's inference_resize_transform: shortest edge {}, longest at most {}",
                input.min_size_test, input.max_size_test
            ));
            Ok(())
        }
        "Resize" => {
            let shape = params.get("shape");
            let hw: Option<Vec<i64>> = shape.and_then(CfgValue::as_list).and_then(|l| l.iter().map(CfgValue::as_i64).collect());
            let hw = hw.filter(|v| v.len() == 2 && v.iter().all(|&x| x > 0 && x <= 16384)).ok_or_else(|| ConfigError::Value {
                key: format!("{key}.params.shape"),
                why: "expected [height, width] in pixels".into(),
            })?;
            let (h, w) = (hw[0] as u32, hw[1] as u32);
            input.fixed_size = Some([h, w]);
            input.min_size_test = h.min(w);
            input.max_size_test = h.max(w);
            notes.push(format!(
                "test resize from Supervisely's inference_resize_transform: every image to {h}x{w} (height x width, aspect ratio not kept), results scaled back per axis"
            ));
            Ok(())
        }
        _ => Err(unsupported(key, t, "Supervisely's test resize is ResizeShortestEdge or Resize")),
    }
}

/// The yacs keys of a model description: the inverse of [`spec_from_yacs`]
/// for everything a description holds. Serves the zoo's configs as `_BASE_`s
/// without shipping Detectron2's files.
pub fn yacs_from_spec(spec: &ModelSpec) -> CfgMap {
    let s = |v: &str| CfgValue::Str(v.to_string());
    let i = |v: u32| CfgValue::Int(v as i64);
    let f = |v: f32| CfgValue::Float(v as f64);
    let b = CfgValue::Bool;
    let fl = |v: &[f32]| CfgValue::List(v.iter().map(|&x| f(x)).collect());
    let sl = |v: &[String]| CfgValue::List(v.iter().map(|x| s(x)).collect());
    let norm = |n: Norm| {
        s(match n {
            Norm::None => "",
            Norm::FrozenBN => "FrozenBN",
            Norm::BN => "BN",
            Norm::GN => "GN",
        })
    };
    fn map(items: Vec<(&str, CfgValue)>) -> CfgValue {
        CfgValue::Map(items.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }
    let mut model = vec![
        ("META_ARCHITECTURE", s("GeneralizedRCNN")),
        ("MASK_ON", b(true)),
        ("PIXEL_MEAN", fl(&spec.input.pixel_mean)),
        ("PIXEL_STD", fl(&spec.input.pixel_std)),
    ];
    let (backbone_name, out_features): (&str, &[&str]) = match spec.neck {
        Neck::Fpn { .. } => ("build_resnet_fpn_backbone", &["res2", "res3", "res4", "res5"]),
        Neck::C4 => ("build_resnet_backbone", &["res4"]),
        Neck::Dc5 => ("build_resnet_backbone", &["res5"]),
    };
    model.push(("BACKBONE", map(vec![("NAME", s(backbone_name))])));
    if let Backbone::Resnet {
        depth,
        num_groups,
        width_per_group,
        stride_in_1x1,
        norm: n,
        stem_out_channels,
        res2_out_channels,
        res5_dilation,
        deform_on_per_stage,
        deform_modulated,
        deform_num_groups,
    } = &spec.backbone
    {
        model.push((
            "RESNETS",
            map(vec![
                ("DEPTH", i(*depth)),
                ("OUT_FEATURES", CfgValue::List(out_features.iter().map(|x| s(x)).collect())),
                ("NUM_GROUPS", i(*num_groups)),
                ("WIDTH_PER_GROUP", i(*width_per_group)),
                ("STRIDE_IN_1X1", b(*stride_in_1x1)),
                ("NORM", norm(*n)),
                ("STEM_OUT_CHANNELS", i(*stem_out_channels)),
                ("RES2_OUT_CHANNELS", i(*res2_out_channels)),
                ("RES5_DILATION", i(*res5_dilation)),
                ("DEFORM_ON_PER_STAGE", CfgValue::List(deform_on_per_stage.iter().map(|&x| b(x)).collect())),
                ("DEFORM_MODULATED", b(*deform_modulated)),
                ("DEFORM_NUM_GROUPS", i(*deform_num_groups)),
            ]),
        ));
    }
    if let Neck::Fpn { out_channels, norm: n, fuse_type, .. } = &spec.neck {
        model.push((
            "FPN",
            map(vec![
                ("IN_FEATURES", CfgValue::List(["res2", "res3", "res4", "res5"].iter().map(|x| s(x)).collect())),
                ("OUT_CHANNELS", i(*out_channels)),
                ("NORM", norm(*n)),
                ("FUSE_TYPE", s(fuse_type)),
            ]),
        ));
    }
    let r = &spec.rpn;
    model.push(("PROPOSAL_GENERATOR", map(vec![("NAME", s("RPN")), ("MIN_SIZE", f(r.min_box_size))])));
    model.push((
        "ANCHOR_GENERATOR",
        map(vec![
            ("SIZES", CfgValue::List(r.anchor_sizes.iter().map(|l| fl(l)).collect())),
            ("ASPECT_RATIOS", CfgValue::List(vec![fl(&r.aspect_ratios)])),
            ("OFFSET", f(r.anchor_offset)),
        ]),
    ));
    model.push((
        "RPN",
        map(vec![
            ("IN_FEATURES", sl(&r.in_features)),
            ("BBOX_REG_WEIGHTS", fl(&r.bbox_reg_weights)),
            ("PRE_NMS_TOPK_TEST", i(r.pre_nms_topk_test)),
            ("POST_NMS_TOPK_TEST", i(r.post_nms_topk_test)),
            ("NMS_THRESH", f(r.nms_thresh)),
            ("CONV_DIMS", CfgValue::List(vec![CfgValue::Int(-1); r.num_convs as usize])),
        ]),
    ));
    let rh = &spec.roi_heads;
    model.push((
        "ROI_HEADS",
        map(vec![
            (
                "NAME",
                s(match rh.kind {
                    RoiHeadsKind::Standard => "StandardROIHeads",
                    RoiHeadsKind::Res5 => "Res5ROIHeads",
                    RoiHeadsKind::Cascade => "CascadeROIHeads",
                }),
            ),
            ("NUM_CLASSES", i(spec.num_classes)),
            ("IN_FEATURES", sl(&rh.in_features)),
            ("SCORE_THRESH_TEST", f(rh.score_thresh_test)),
            ("NMS_THRESH_TEST", f(rh.nms_thresh_test)),
        ]),
    ));
    let bh = &spec.box_head;
    model.push((
        "ROI_BOX_HEAD",
        map(vec![
            ("NAME", s(if rh.kind == RoiHeadsKind::Res5 { "" } else { "FastRCNNConvFCHead" })),
            ("BBOX_REG_WEIGHTS", fl(&rh.bbox_reg_weights[0])),
            ("NUM_FC", i(bh.num_fc)),
            ("FC_DIM", i(bh.fc_dim)),
            ("NUM_CONV", i(bh.num_conv)),
            ("CONV_DIM", i(bh.conv_dim)),
            ("NORM", norm(bh.norm)),
            ("POOLER_RESOLUTION", i(bh.pooler_resolution)),
            ("POOLER_SAMPLING_RATIO", i(bh.pooler_sampling_ratio)),
            ("POOLER_TYPE", s(&bh.pooler_type)),
            ("CLS_AGNOSTIC_BBOX_REG", b(rh.cls_agnostic_bbox_reg)),
        ]),
    ));
    if rh.kind == RoiHeadsKind::Cascade {
        model.push((
            "ROI_BOX_CASCADE_HEAD",
            map(vec![
                ("BBOX_REG_WEIGHTS", CfgValue::List(rh.bbox_reg_weights.iter().map(|w| fl(w)).collect())),
                ("IOUS", fl(&rh.cascade_ious)),
            ]),
        ));
    }
    let mh = &spec.mask_head;
    model.push((
        "ROI_MASK_HEAD",
        map(vec![
            ("POOLER_RESOLUTION", i(mh.pooler_resolution)),
            ("POOLER_SAMPLING_RATIO", i(mh.pooler_sampling_ratio)),
            ("POOLER_TYPE", s(&mh.pooler_type)),
            ("NUM_CONV", i(mh.num_conv)),
            ("CONV_DIM", i(mh.conv_dim)),
            ("NORM", norm(mh.norm)),
            ("CLS_AGNOSTIC_MASK", b(mh.cls_agnostic)),
        ]),
    ));
    let mut root = CfgMap::new();
    root.insert("MODEL", map(model));
    root.insert(
        "INPUT",
        map(vec![
            ("FORMAT", s(&spec.input.format)),
            ("MIN_SIZE_TEST", i(spec.input.min_size_test)),
            ("MAX_SIZE_TEST", i(spec.input.max_size_test)),
        ]),
    );
    root.insert("TEST", map(vec![("DETECTIONS_PER_IMAGE", i(rh.detections_per_image))]));
    root
}

/// Supervisely's `model_config.json` (LazyConfig-trained runs): a sparse
/// overlay of scalar values plus `model_id`, applied over the catalog's full
/// description of that zoo model. Keys that change the answer are mapped;
/// training-only trees are ignored; any other `model.*` key is refused by
/// name unless it only restates what the zoo model already is.
pub fn spec_from_supervisely_json(cfg: &CfgValue, catalog: &Catalog) -> Result<ReadConfig, ConfigError> {
    let id_value = cfg.get("model_id").ok_or_else(|| ConfigError::Value {
        key: "model_id".into(),
        why: "missing: Supervisely's model_config.json names the zoo model it was trained from".into(),
    })?;
    let id = match id_value {
        CfgValue::Int(i) => i.to_string(),
        CfgValue::Str(s) => s.clone(),
        other => return Err(unsupported("model_id", other, "expected the zoo model's id")),
    };
    let entry = catalog
        .models
        .iter()
        .find(|m| m.model_id.to_string() == id || m.key == id || m.aliases.iter().any(|a| *a == id))
        .ok_or_else(|| ConfigError::Unsupported {
            key: "model_id".into(),
            value: id.clone(),
            why: "not a model of the catalog (`zoo list` shows them); use the run's cfg.dump() YAML instead".into(),
        })?;
    let mut spec = entry.spec();
    let mut notes = vec![format!("model_config.json is applied over the catalog's {} ({})", entry.name, entry.key)];
    let mut ignored = Vec::new();
    let mut leaves = Vec::new();
    collect_leaves(cfg, String::new(), &mut leaves);
    let mut class_counts: Vec<(String, u32)> = Vec::new();
    for (key, value) in leaves {
        let num = || value.as_f64().map(|f| f as f32).ok_or_else(|| ConfigError::Value { key: key.clone(), why: "expected a number".into() });
        let count = || {
            value
                .as_i64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| ConfigError::Value { key: key.clone(), why: "expected a non-negative integer".into() })
        };
        match key.as_str() {
            "model_id" => {}
            "model.roi_heads.num_classes" | "model.roi_heads.box_predictor.num_classes" | "model.roi_heads.mask_head.num_classes" => {
                class_counts.push((key.clone(), count()?));
            }
            "model.roi_heads.box_predictor.test_score_thresh" => spec.roi_heads.score_thresh_test = num()?,
            "model.roi_heads.box_predictor.test_nms_thresh" => spec.roi_heads.nms_thresh_test = num()?,
            "model.roi_heads.box_predictor.test_topk_per_image" => spec.roi_heads.detections_per_image = count()?,
            "model.roi_heads.box_predictor.cls_agnostic_bbox_reg" => {
                spec.roi_heads.cls_agnostic_bbox_reg = value.as_bool().ok_or_else(|| ConfigError::Value { key: key.clone(), why: "expected true or false".into() })?
            }
            "model.roi_heads.box_predictor.use_sigmoid_ce" if value.as_bool() == Some(true) => {
                return Err(unsupported(&key, &value, "sigmoid class scores are not converted (the graph applies softmax)"));
            }
            "model.proposal_generator.nms_thresh" => spec.rpn.nms_thresh = num()?,
            "model.proposal_generator.min_box_size" => spec.rpn.min_box_size = num()?,
            "model.proposal_generator.anchor_generator.offset" => spec.rpn.anchor_offset = num()?,
            "model.input_format" | "dataloader.test.mapper.image_format" => {
                let f = value.as_str().unwrap_or("");
                if !matches!(f, "BGR" | "RGB") {
                    return Err(unsupported(&key, &value, "the served input is a colour photo: BGR or RGB"));
                }
                spec.input.format = f.to_string();
            }
            "model.pixel_mean" | "model.pixel_std" => {
                let v: Option<Vec<f32>> = value.as_list().and_then(|l| l.iter().map(|x| x.as_f64().map(|f| f as f32)).collect());
                let v = v.and_then(|v| <[f32; 3]>::try_from(v.as_slice()).ok()).ok_or_else(|| ConfigError::Value {
                    key: key.clone(),
                    why: "expected three numbers".into(),
                })?;
                if key.ends_with("mean") {
                    spec.input.pixel_mean = v;
                } else {
                    spec.input.pixel_std = v;
                }
            }
            _ if key.starts_with("inference_resize_transform") => {}
            _ if ["train.", "optimizer.", "lr_multiplier.", "dataloader.train.", "dataloader.evaluator."]
                .iter()
                .any(|p| key.starts_with(p)) => {}
            _ if key.starts_with("model.") => ignored.push(key),
            _ => {}
        }
    }
    if let Some((first_key, n)) = class_counts.first() {
        if let Some((other_key, m)) = class_counts.iter().find(|(_, m)| m != n) {
            return Err(ConfigError::Value {
                key: other_key.clone(),
                why: format!("{m} classes, but {first_key} says {n}"),
            });
        }
        spec.num_classes = *n;
    } else {
        return Err(ConfigError::Value {
            key: "model.roi_heads.num_classes".into(),
            why: "missing: a fine-tuned model's class count must be in its config".into(),
        });
    }
    if let Some(t) = cfg.get("inference_resize_transform") {
        apply_supervisely_resize(t, &mut spec.input, &mut notes)?;
    }
    if !ignored.is_empty() {
        notes.push(format!(
            "{} other model.* keys of model_config.json are taken from the zoo model instead (their structure is the zoo's): {}",
            ignored.len(),
            ignored.iter().take(6).cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    spec.validate().map_err(|e| ConfigError::Other(format!("the config describes a model the converter cannot build: {e}")))?;
    Ok(ReadConfig { spec, notes })
}

fn collect_leaves(v: &CfgValue, prefix: String, out: &mut Vec<(String, CfgValue)>) {
    match v {
        CfgValue::Map(m) => {
            for (k, v) in m.iter() {
                let key = if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
                collect_leaves(v, key, out);
            }
        }
        other => out.push((prefix, other.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every catalog model, written as yacs keys and read back, is itself:
    /// the two directions agree on every field a description holds.
    #[test]
    fn every_yacs_catalog_model_round_trips() {
        let catalog = Catalog::embedded().unwrap();
        let mut n = 0;
        for entry in &catalog.models {
            let spec = entry.spec();
            if !matches!(spec.backbone, Backbone::Resnet { .. }) {
                continue;
            }
            let back = spec_from_yacs(&CfgValue::Map(yacs_from_spec(&spec))).unwrap_or_else(|e| panic!("{}: {e}", entry.key));
            assert_eq!(back.spec, spec, "{}", entry.key);
            n += 1;
        }
        assert!(n >= 15, "only {n} ResNet models in the catalog");
    }

    #[test]
    fn refusals_name_the_key() {
        let base = yacs_from_spec(&Catalog::embedded().unwrap().models[0].spec());
        let cases: &[(&str, &str, &str)] = &[
            ("{MODEL: {META_ARCHITECTURE: RetinaNet}}", "MODEL.META_ARCHITECTURE", "RetinaNet"),
            ("{MODEL: {META_ARCHITECTURE: PanopticFPN}}", "MODEL.META_ARCHITECTURE", "panoptic"),
            ("{MODEL: {KEYPOINT_ON: true}}", "MODEL.KEYPOINT_ON", "keypoint"),
            ("{MODEL: {MASK_ON: false}}", "MODEL.MASK_ON", "mask"),
            ("{MODEL: {ROI_BOX_HEAD: {USE_SIGMOID_CE: true}}}", "USE_SIGMOID_CE", "sigmoid"),
            ("{MODEL: {ANCHOR_GENERATOR: {NAME: RotatedAnchorGenerator}}}", "ANCHOR_GENERATOR.NAME", "DefaultAnchorGenerator"),
            ("{MODEL: {RESNETS: {DEPTH: 18}}}", "MODEL.RESNETS.DEPTH", "basic"),
            ("{INPUT: {FORMAT: L}}", "INPUT.FORMAT", "BGR"),
            ("{MODEL: {ROI_HEADS: {NUM_CLASSES: -3}}}", "NUM_CLASSES", "non-negative"),
            ("{MODEL: {RPN: {CONV_DIMS: [128]}}}", "CONV_DIMS", "channel"),
            ("{inference_resize_transform: {class: RandomCrop, params: {}}}", "inference_resize_transform", "Resize"),
            ("{inference_resize_transform: {class: Resize, params: {shape: [512]}}}", "params.shape", "height, width"),
            ("{inference_resize_transform: {class: ResizeShortestEdge, params: {short_edge_length: [480, 800], max_size: 1333}}}", "short_edge_length", "random"),
        ];
        for (overlay, key, word) in cases {
            let mut cfg = CfgValue::Map(base.clone());
            cfg.merge_from(yacs::parse_yaml(overlay).unwrap());
            let err = spec_from_yacs(&cfg).err().unwrap_or_else(|| panic!("{overlay} was accepted")).to_string();
            assert!(err.contains(key) && err.to_lowercase().contains(&word.to_lowercase()), "{overlay}: {err}");
        }
    }

    #[test]
    fn supervisely_resize_sets_the_test_size() {
        let base = yacs_from_spec(&Catalog::embedded().unwrap().models[0].spec());
        let mut cfg = CfgValue::Map(base);
        cfg.merge_from(
            yacs::parse_yaml("{inference_resize_transform: {class: ResizeShortestEdge, params: {short_edge_length: [512, 512], max_size: 512}}}")
                .unwrap(),
        );
        let read = spec_from_yacs(&cfg).unwrap();
        assert_eq!((read.spec.input.min_size_test, read.spec.input.max_size_test), (512, 512));
        assert_eq!(read.spec.input.fixed_size, None);
        cfg.merge_from(yacs::parse_yaml("{inference_resize_transform: {class: Resize, params: {shape: [480, 640]}}}").unwrap());
        let read = spec_from_yacs(&cfg).unwrap();
        assert_eq!(read.spec.input.fixed_size, Some([480, 640]));
    }
}
