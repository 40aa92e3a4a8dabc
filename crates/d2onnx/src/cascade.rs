//! Cascade R-CNN heads (`cascade_rcnn.py`): three box stages, each with its own
//! head, predictor and box weights, each refining the previous stage's clipped
//! boxes (never dropping empty ones, so rows stay aligned); scores averaged over
//! the stages; the mask head runs on the final detections.

use d2serve_registry::ModelSpec;

use crate::ConvertError;
use crate::boxes::ImageSize;
use crate::builder::{GraphBuilder, Weights};
use crate::onnx::Attr;
use crate::resnet::Feature;
use crate::roi_heads::{RoiOutputs, box_head, box_predictor, drop_background, fast_rcnn_inference, mask_branch, pool, predict_boxes};

pub fn cascade_roi_heads<'a>(
    g: &mut GraphBuilder<'a>,
    w: &mut Weights<'a>,
    spec: &ModelSpec,
    features: &[Feature],
    proposals: &str,
    size: &ImageSize,
) -> Result<RoiOutputs, ConvertError> {
    let heads = &spec.roi_heads;
    let stages = heads.bbox_reg_weights.len();
    if stages < 2 {
        return Err(ConvertError::Mismatch("a cascade needs box weights for at least two stages".into()));
    }
    let num_classes = spec.num_classes as usize;
    let bh = &spec.box_head;
    let channels = features[0].channels;
    let mut boxes = proposals.to_string();
    let mut probs_sum: Option<String> = None;
    let mut last_boxes = String::new();
    for (k, weights) in heads.bbox_reg_weights.iter().enumerate() {
        let n = format!("cascade{k}");
        let pooled = pool(g, &format!("{n}.box_pooler"), features, &boxes, bh.pooler_resolution, bh.pooler_sampling_ratio);
        let (feat, width) = box_head(g, w, &format!("roi_heads.box_head.{k}"), bh, &pooled, channels)?;
        let pred = box_predictor(
            g,
            w,
            &format!("roi_heads.box_predictor.{k}"),
            &feat,
            width,
            num_classes,
            heads.cls_agnostic_bbox_reg,
        )?;
        let probs = g.op("Softmax", &format!("{n}.probs"), &[&pred.logits], vec![("axis", Attr::Int(-1))]);
        // Python's sum(): ((s0 + s1) + s2), in float32.
        probs_sum = Some(match probs_sum {
            None => probs,
            Some(acc) => g.op("Add", &format!("{n}.probs_sum"), &[&acc, &probs], vec![]),
        });
        // Decoded and clipped: [R, K|1, 4]. The next stage's proposals are the
        // clipped boxes themselves (class-agnostic regression: one per row).
        last_boxes = predict_boxes(g, &format!("{n}.pred_boxes"), &boxes, &pred.deltas, pred.boxes_per_row, *weights, size);
        if k + 1 < stages {
            if !heads.cls_agnostic_bbox_reg {
                return Err(ConvertError::Unsupported("cascade stages with class-specific box regression".into()));
            }
            let axis = g.const_i64(&[1]);
            boxes = g.op("Squeeze", &format!("{n}.next_proposals"), &[&last_boxes, &axis], vec![]);
        }
    }
    // `* (1.0 / num_stages)`: a multiplication by the float32-rounded reciprocal, not a division.
    let inv = g.scalar_f32((1.0f64 / stages as f64) as f32);
    let mean = g.op("Mul", "cascade.probs_mean", &[&probs_sum.expect("stages"), &inv], vec![]);
    let scores = drop_background(g, "det.class_scores", &mean, num_classes);
    let det = fast_rcnn_inference(g, &scores, &last_boxes, num_classes, heads);
    let mask_probs = mask_branch(g, w, spec, features, &det)?;
    Ok(RoiOutputs { det, mask_probs })
}
