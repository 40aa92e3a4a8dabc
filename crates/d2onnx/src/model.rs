//! Assembles the whole graph of a catalog entry from the architecture modules.

use d2serve_registry::ModelEntry;
use d2serve_registry::catalog::{Backbone, Neck, RoiHeadsKind};

use crate::ConvertError;
use crate::builder::{GraphBuilder, Weights};
use crate::onnx::{Attr, Dim, ElemType, Model, ValueInfo};
use crate::pickle::Checkpoint;
use crate::preprocess::{INPUT, preprocess};
use crate::resnet::resnet;
use crate::roi_heads::{box_head, box_predictor, class_scores, fast_rcnn_inference, mask_head, pool, predict_boxes};
use crate::{fpn, rpn};

/// ONNX opset of every converted graph: 21 has RoiAlign with `half_pixel` (16+),
/// GroupNormalization with per-channel affine (21) and DeformConv (19).
pub const OPSET: i64 = 21;
/// IR 9 is accepted by every ONNX Runtime that runs opset 21 (and by older tools).
pub const IR_VERSION: i64 = 9;

#[derive(Debug, Clone, Default)]
pub struct GraphOptions {
    /// Also output the RPN proposals and their objectness logits.
    pub debug_outputs: bool,
}

fn value(name: &str, elem: ElemType, dims: &[&str]) -> ValueInfo {
    ValueInfo {
        name: name.to_string(),
        elem,
        dims: dims
            .iter()
            .map(|d| match d.parse::<i64>() {
                Ok(n) => Dim::Fixed(n),
                Err(_) => Dim::Named(d.to_string()),
            })
            .collect(),
    }
}

/// Build the ONNX model of `entry` from its checkpoint weights.
pub fn build<'a>(entry: &ModelEntry, ckpt: Checkpoint<'a>, opts: &GraphOptions) -> Result<Model<'a>, ConvertError> {
    let mut w = Weights::new(ckpt);
    let mut g = GraphBuilder::new();
    let input = preprocess(&mut g, &entry.input);
    let num_classes = entry.num_classes as usize;

    let (rpn_features, roi_features) = match (&entry.backbone, &entry.neck) {
        (Backbone::Resnet { .. }, Neck::Fpn { norm, fuse_type, top_block, .. }) => {
            let stages = resnet(&mut g, &mut w, "backbone.bottom_up", &entry.backbone, &input.tensor, 5)?;
            let pyramid = fpn::fpn(&mut g, &mut w, &stages, *norm, fuse_type, top_block)?;
            let roi = pyramid[..4].to_vec();
            (pyramid, roi)
        }
        (Backbone::Regnet { .. }, _) => {
            return Err(ConvertError::Unsupported("RegNet backbones are not supported by this converter version yet".into()));
        }
        (_, Neck::C4 | Neck::Dc5) => {
            return Err(ConvertError::Unsupported("C4 and DC5 models are not supported by this converter version yet".into()));
        }
    };
    if entry.roi_heads.kind != RoiHeadsKind::Standard {
        return Err(ConvertError::Unsupported(format!(
            "{:?} ROI heads are not supported by this converter version yet",
            entry.roi_heads.kind
        )));
    }

    let proposals = rpn::rpn(&mut g, &mut w, &entry.rpn, &rpn_features, &input.size)?;

    let bh = &entry.box_head;
    let channels = roi_features[0].channels;
    let pooled = pool(&mut g, "box_pooler", &roi_features, &proposals.boxes, bh.pooler_resolution, bh.pooler_sampling_ratio);
    let (feat, width) = box_head(&mut g, &mut w, "roi_heads.box_head", bh, &pooled, channels)?;
    let agnostic = entry.roi_heads.cls_agnostic_bbox_reg;
    let (logits, deltas) = box_predictor(&mut g, &mut w, "roi_heads.box_predictor", &feat, width, num_classes, agnostic)?;
    let scores = class_scores(&mut g, "det.class_scores", &logits, num_classes);
    let boxes = predict_boxes(&mut g, "det.pred_boxes", &proposals.boxes, &deltas, entry.roi_heads.bbox_reg_weights[0], &input.size);
    let det = fast_rcnn_inference(&mut g, &scores, &boxes, num_classes, &entry.roi_heads);

    let mh = &entry.mask_head;
    let mask_pooled = pool(&mut g, "mask_pooler", &roi_features, &det.boxes, mh.pooler_resolution, mh.pooler_sampling_ratio);
    let probs = mask_head(&mut g, &mut w, mh, &mask_pooled, channels, &det.classes, num_classes)?;

    let unused = w.unused();
    if !unused.is_empty() {
        return Err(ConvertError::ExtraWeights(unused));
    }

    let m = mh.resolution.to_string();
    let mut outputs = vec![
        (det.boxes, value("boxes", ElemType::Float, &["N", "4"])),
        (det.scores, value("scores", ElemType::Float, &["N"])),
        (det.classes, value("classes", ElemType::Int64, &["N"])),
        (probs, value("mask_probs", ElemType::Float, &["N", &m, &m])),
    ];
    if opts.debug_outputs {
        outputs.push((proposals.boxes, value("proposals", ElemType::Float, &["P", "4"])));
        outputs.push((proposals.logits, value("proposal_logits", ElemType::Float, &["P"])));
    }
    let mut output_infos = Vec::new();
    for (src, info) in outputs {
        g.op("Identity", &info.name, &[&src], Vec::<(&str, Attr)>::new());
        g.name_last_output(&info.name);
        output_infos.push(info);
    }
    Ok(Model {
        ir_version: IR_VERSION,
        opset: OPSET,
        producer: "d2serve".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph_name: entry.key.clone(),
        doc: format!(
            "{} ({}), converted from Detectron2 model zoo id {}. Input: uint8 RGB [H, W, 3], already resized. Outputs in the input's pixel frame.",
            entry.name, entry.key, entry.model_id
        ),
        nodes: g.nodes,
        initializers: g.initializers,
        inputs: vec![value(INPUT, ElemType::Uint8, &["H", "W", "3"])],
        outputs: output_infos,
        metadata: vec![
            ("d2serve.key".into(), entry.key.clone()),
            ("d2serve.zoo_id".into(), entry.model_id.to_string()),
        ],
    })
}
