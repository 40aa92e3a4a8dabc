//! C4 models' `Res5ROIHeads`: ROIAlign 14×14 on res4, then ResNet's res5 stage
//! per ROI as the box head (mean-pooled to one vector), and the same pooler +
//! res5 again on the final boxes for the deconv-only mask head.

use d2serve_registry::ModelSpec;
use d2serve_registry::catalog::Backbone;

use crate::ConvertError;
use crate::boxes::ImageSize;
use crate::builder::{GraphBuilder, Weights};
use crate::onnx::Attr;
use crate::resnet::{BlockStyle, Bottleneck, Feature, apply_stage, blocks_per_stage, load_stage};
use crate::roi_heads::{RoiOutputs, box_predictor, class_scores, fast_rcnn_inference, mask_head, pool, predict_boxes};

/// `_shared_roi_transform`: pool `boxes` from res4 and run res5: `[R, 2048, 7, 7]`.
fn shared_roi_transform(g: &mut GraphBuilder<'_>, name: &str, spec: &ModelSpec, res4: &Feature, res5: &[Bottleneck], boxes: &str) -> String {
    let bh = &spec.box_head;
    let pooled = pool(g, name, std::slice::from_ref(res4), boxes, bh.pooler_resolution, bh.pooler_sampling_ratio);
    apply_stage(g, res5, &pooled)
}

pub fn res5_roi_heads<'a>(
    g: &mut GraphBuilder<'a>,
    w: &mut Weights<'a>,
    spec: &ModelSpec,
    res4: &Feature,
    proposals: &str,
    size: &ImageSize,
) -> Result<RoiOutputs, ConvertError> {
    let Backbone::Resnet {
        depth,
        num_groups,
        stride_in_1x1,
        norm,
        ..
    } = &spec.backbone
    else {
        return Err(ConvertError::Unsupported("Res5ROIHeads need a ResNet backbone".into()));
    };
    let blocks = blocks_per_stage(*depth).ok_or_else(|| ConvertError::Unsupported(format!("ResNet depth {depth}")))?;
    let style = BlockStyle {
        norm: *norm,
        stride_in_1x1: *stride_in_1x1,
        num_groups: *num_groups as usize,
    };
    let (res5, channels) = load_stage(g, w, "roi_heads.res5", res4.channels, blocks[3], 2, 1, false, style)?;

    let num_classes = spec.num_classes as usize;
    let x = shared_roi_transform(g, "box_pooler", spec, res4, &res5, proposals);
    let axes = g.const_i64(&[2, 3]);
    let feat = g.op("ReduceMean", "roi_heads.box_features", &[&x, &axes], vec![("keepdims", Attr::Int(0))]);
    let pred = box_predictor(g, w, "roi_heads.box_predictor", &feat, channels, num_classes, spec.roi_heads.cls_agnostic_bbox_reg)?;
    let scores = class_scores(g, "det.class_scores", &pred.logits, num_classes);
    let boxes = predict_boxes(g, "det.pred_boxes", proposals, &pred.deltas, pred.boxes_per_row, spec.roi_heads.bbox_reg_weights[0], size);
    let det = fast_rcnn_inference(g, &scores, &boxes, num_classes, &spec.roi_heads);

    let x = shared_roi_transform(g, "mask_pooler", spec, res4, &res5, &det.boxes);
    let mask_probs = mask_head(g, w, &spec.mask_head, &x, channels, &det.classes, num_classes)?;
    Ok(RoiOutputs { det, mask_probs })
}
