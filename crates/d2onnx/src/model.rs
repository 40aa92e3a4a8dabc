//! Assembles the whole graph of a model description from the architecture modules.

use d2serve_registry::catalog::{Backbone, Neck, RoiHeadsKind};

use crate::ConvertError;
use crate::convert::{ModelDescription, Origin};
use crate::builder::{GraphBuilder, Weights};
use crate::onnx::{Attr, Dim, ElemType, Model, ValueInfo};
use crate::pickle::Checkpoint;
use crate::preprocess::{INPUT, preprocess};
use crate::cascade::cascade_roi_heads;
use crate::regnet::regnet;
use crate::res5_head::res5_roi_heads;
use crate::resnet::resnet;
use crate::roi_heads::{RoiOutputs, standard_roi_heads};
use crate::{fpn, rpn};

/// ONNX opset of every converted graph: 21 has RoiAlign with `half_pixel` (16+)
/// and DeformConv (19). (GroupNorm is written out from basic ops: see layers.rs.)
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

/// Build the ONNX model of `model` from its checkpoint weights.
pub fn build<'a>(model: &ModelDescription, ckpt: Checkpoint<'a>, opts: &GraphOptions) -> Result<Model<'a>, ConvertError> {
    let spec = &model.spec;
    let mut w = Weights::new(ckpt);
    let mut g = GraphBuilder::new();
    let input = preprocess(&mut g, &spec.input);

    // Backbone + neck: the features the RPN sees and the ones ROI heads pool from.
    let (rpn_features, roi_features) = match &spec.neck {
        Neck::Fpn { norm, fuse_type, top_block, .. } => {
            let bottom_up = match &spec.backbone {
                Backbone::Resnet { .. } => resnet(&mut g, &mut w, "backbone.bottom_up", &spec.backbone, &input.tensor, 5)?,
                Backbone::Regnet { .. } => regnet(&mut g, &mut w, "backbone.bottom_up", &spec.backbone, &input.tensor)?,
            };
            let pyramid = fpn::fpn(&mut g, &mut w, &bottom_up, *norm, fuse_type, top_block)?;
            let roi = pyramid[..4].to_vec();
            (pyramid, roi)
        }
        Neck::C4 | Neck::Dc5 => {
            if !matches!(spec.backbone, Backbone::Resnet { .. }) {
                return Err(ConvertError::Unsupported("C4/DC5 heads on a RegNet backbone".into()));
            }
            // C4: the backbone stops at res4 (res5 is the box head); DC5: res5 dilated.
            let last = if spec.neck == Neck::C4 { 4 } else { 5 };
            let stages = resnet(&mut g, &mut w, "backbone", &spec.backbone, &input.tensor, last)?;
            let top = vec![stages.last().expect("stages").clone()];
            (top.clone(), top)
        }
    };
    if (spec.neck == Neck::C4) != (spec.roi_heads.kind == RoiHeadsKind::Res5) {
        return Err(ConvertError::Unsupported(format!(
            "{:?} ROI heads with a {:?} neck (the zoo pairs res5 heads with C4, and only them)",
            spec.roi_heads.kind, spec.neck
        )));
    }

    let proposals = rpn::rpn(&mut g, &mut w, &spec.rpn, &rpn_features, &input.size)?;
    let heads = match spec.roi_heads.kind {
        RoiHeadsKind::Standard => standard_roi_heads(&mut g, &mut w, spec, &roi_features, &proposals.boxes, &input.size)?,
        RoiHeadsKind::Res5 => res5_roi_heads(&mut g, &mut w, spec, &roi_features[0], &proposals.boxes, &input.size)?,
        RoiHeadsKind::Cascade => cascade_roi_heads(&mut g, &mut w, spec, &roi_features, &proposals.boxes, &input.size)?,
    };
    let RoiOutputs { det, mask_probs: probs } = heads;
    let mh = &spec.mask_head;

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
        // The features the RPN sees (p2..p6, or res4 / res5), on the padded input.
        for f in &rpn_features {
            let (c, h, w) = (f.channels.to_string(), format!("{}_h", f.name), format!("{}_w", f.name));
            outputs.push((f.value.clone(), value(&format!("feature.{}", f.name), ElemType::Float, &["1", &c, &h, &w])));
        }
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
        graph_name: model.key.clone(),
        doc: format!(
            "{} ({}), converted from {}. Input: uint8 RGB [H, W, 3], already resized. Outputs in the input's pixel frame.",
            model.name,
            model.key,
            match &model.origin {
                Origin::Zoo { model_id, .. } => format!("Detectron2 model zoo id {model_id}"),
                Origin::Custom => "a user's own Detectron2 checkpoint".to_string(),
            }
        ),
        nodes: g.nodes,
        initializers: g.initializers,
        inputs: vec![value(INPUT, ElemType::Uint8, &["H", "W", "3"])],
        outputs: output_infos,
        metadata: std::iter::once(("d2serve.key".to_string(), model.key.clone()))
            .chain(match &model.origin {
                Origin::Zoo { model_id, .. } => Some(("d2serve.zoo_id".to_string(), model_id.to_string())),
                Origin::Custom => None,
            })
            .collect(),
    })
}
