//! What a Mask R-CNN is, independently of where it came from: the
//! architecture and test-time settings the converter builds a graph from.
//! A catalog entry (`models.toml`) and a user's own Detectron2 config both
//! produce a [`ModelSpec`]; the converter sees nothing else.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Channel order the network expects ("BGR" or "RGB").
    pub format: String,
    pub pixel_mean: [f32; 3],
    pub pixel_std: [f32; 3],
    pub min_size_test: u32,
    pub max_size_test: u32,
    /// Pad height and width up to a multiple of this (0: no padding).
    pub size_divisibility: u32,
    /// A fixed test size `[height, width]` that replaces ResizeShortestEdge:
    /// Detectron2's `Resize(shape)`, which Supervisely's training app records
    /// when "keep aspect ratio" is off. Boxes and masks are scaled back per axis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_size: Option<[u32; 2]>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Norm {
    #[serde(rename = "")]
    None,
    FrozenBN,
    BN,
    GN,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Backbone {
    Resnet {
        depth: u32,
        num_groups: u32,
        width_per_group: u32,
        stride_in_1x1: bool,
        norm: Norm,
        stem_out_channels: u32,
        res2_out_channels: u32,
        res5_dilation: u32,
        /// res2..res5.
        deform_on_per_stage: [bool; 4],
        deform_modulated: bool,
        deform_num_groups: u32,
    },
    Regnet {
        stem_width: u32,
        depth: u32,
        w_a: f64,
        w_0: u32,
        w_m: f64,
        group_width: u32,
        se_ratio: f64,
        bottleneck_ratio: f64,
        norm: Norm,
        stage_widths: [u32; 4],
        stage_depths: [u32; 4],
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Neck {
    Fpn {
        out_channels: u32,
        norm: Norm,
        fuse_type: String,
        top_block: String,
    },
    /// RPN and ROI pooling on res4; res5 runs per ROI as the box head.
    C4,
    /// res5 dilated (stride 16); RPN and ROI heads on res5.
    Dc5,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RpnSpec {
    pub in_features: Vec<String>,
    /// One list of sizes per input feature (or one list shared by a single feature).
    pub anchor_sizes: Vec<Vec<f32>>,
    pub aspect_ratios: Vec<f32>,
    pub anchor_offset: f32,
    pub num_convs: u32,
    pub pre_nms_topk_test: u32,
    pub post_nms_topk_test: u32,
    pub nms_thresh: f32,
    pub min_box_size: f32,
    pub bbox_reg_weights: [f32; 4],
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RoiHeadsKind {
    Standard,
    Res5,
    Cascade,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoiHeadsSpec {
    pub kind: RoiHeadsKind,
    pub in_features: Vec<String>,
    pub score_thresh_test: f32,
    pub nms_thresh_test: f32,
    pub detections_per_image: u32,
    pub cls_agnostic_bbox_reg: bool,
    /// One set of (wx, wy, ww, wh) per stage: one, or three for cascade.
    pub bbox_reg_weights: Vec<[f32; 4]>,
    /// Training-only IoU thresholds of the cascade stages (recorded for reference).
    pub cascade_ious: Vec<f32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BoxHeadSpec {
    pub pooler_resolution: u32,
    pub pooler_sampling_ratio: u32,
    pub pooler_type: String,
    pub num_conv: u32,
    pub conv_dim: u32,
    pub num_fc: u32,
    pub fc_dim: u32,
    pub norm: Norm,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MaskHeadSpec {
    pub pooler_resolution: u32,
    pub pooler_sampling_ratio: u32,
    pub pooler_type: String,
    pub num_conv: u32,
    pub conv_dim: u32,
    pub norm: Norm,
    /// Side of the predicted mask (28, or 14 for C4).
    pub resolution: u32,
    pub cls_agnostic: bool,
    /// Pasted mask probabilities at or above this are foreground.
    pub threshold: f32,
}


/// The whole architecture and test-time behaviour of one Mask R-CNN.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// K: foreground classes (the box predictor has K + 1 scores).
    pub num_classes: u32,
    pub input: InputSpec,
    pub backbone: Backbone,
    pub neck: Neck,
    pub rpn: RpnSpec,
    pub roi_heads: RoiHeadsSpec,
    pub box_head: BoxHeadSpec,
    pub mask_head: MaskHeadSpec,
}

impl ModelSpec {
    /// Check that the pieces fit together and that every value is one the
    /// converter builds. The message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let s = self;
        if s.num_classes == 0 {
            return Err("num_classes must be at least 1".into());
        }
        if !matches!(s.input.format.as_str(), "BGR" | "RGB") {
            return Err(format!("input.format `{}` must be BGR or RGB", s.input.format));
        }
        if s.input.pixel_std.iter().any(|&s| s <= 0.0) {
            return Err("input.pixel_std must be positive".into());
        }
        if s.input.fixed_size.is_some_and(|[h, w]| h == 0 || w == 0) {
            return Err("input.fixed_size must be positive".into());
        }
        if s.input.min_size_test == 0 || s.input.max_size_test < s.input.min_size_test {
            return Err("input sizes need 0 < min_size_test <= max_size_test".into());
        }
        let (rpn_feats, roi_feats, div): (Vec<&str>, Vec<&str>, u32) = match s.neck {
            Neck::Fpn { .. } => (
                vec!["p2", "p3", "p4", "p5", "p6"],
                vec!["p2", "p3", "p4", "p5"],
                32,
            ),
            Neck::C4 => (vec!["res4"], vec!["res4"], 0),
            Neck::Dc5 => (vec!["res5"], vec!["res5"], 0),
        };
        if s.rpn.in_features != rpn_feats || s.roi_heads.in_features != roi_feats {
            return Err(format!(
                "this neck needs rpn.in_features {rpn_feats:?} and roi_heads.in_features {roi_feats:?}"
            ));
        }
        if s.input.size_divisibility != div {
            return Err(format!("this neck needs input.size_divisibility {div}"));
        }
        if s.rpn.anchor_sizes.len() != s.rpn.in_features.len() || s.rpn.aspect_ratios.is_empty() {
            return Err("rpn.anchor_sizes needs one list per RPN input feature".into());
        }
        if !(1..=2).contains(&s.rpn.num_convs) {
            return Err("rpn.num_convs must be 1 or 2".into());
        }
        let stages = s.roi_heads.bbox_reg_weights.len();
        match s.roi_heads.kind {
            RoiHeadsKind::Cascade if stages < 2 => {
                return Err("cascade roi_heads need one bbox_reg_weights entry per stage".into());
            }
            RoiHeadsKind::Standard | RoiHeadsKind::Res5 if stages != 1 => {
                return Err("roi_heads.bbox_reg_weights needs exactly one entry".into());
            }
            _ => {}
        }
        if (s.roi_heads.kind == RoiHeadsKind::Res5) != (s.neck == Neck::C4) {
            return Err("C4 models (and only they) use roi_heads.kind = \"res5\"".into());
        }
        if s.roi_heads.kind != RoiHeadsKind::Res5 && s.box_head.num_conv + s.box_head.num_fc == 0 {
            return Err("box_head needs at least one conv or fc layer".into());
        }
        if s.mask_head.resolution != 2 * s.mask_head.pooler_resolution
            && !(s.neck == Neck::C4 && s.mask_head.resolution == s.mask_head.pooler_resolution)
        {
            return Err("mask_head.resolution must be twice its pooler resolution".into());
        }
        for (name, v) in [
            ("roi_heads.score_thresh_test", s.roi_heads.score_thresh_test),
            ("roi_heads.nms_thresh_test", s.roi_heads.nms_thresh_test),
            ("rpn.nms_thresh", s.rpn.nms_thresh),
            ("mask_head.threshold", s.mask_head.threshold),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must lie in [0, 1]"));
            }
        }
        match &s.backbone {
            Backbone::Resnet {
                depth,
                deform_on_per_stage,
                ..
            } => {
                if ![50, 101, 152].contains(depth) {
                    return Err(format!("backbone.depth {depth} is not 50, 101 or 152"));
                }
                if deform_on_per_stage[0] {
                    return Err("deformable res2 is not supported by Detectron2".into());
                }
            }
            Backbone::Regnet { .. } => {
                if !matches!(s.neck, Neck::Fpn { .. }) {
                    return Err("RegNet backbones are used with FPN only".into());
                }
            }
        }
        Ok(())
    }
}
