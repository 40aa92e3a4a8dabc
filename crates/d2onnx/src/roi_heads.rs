//! ROI heads (`roi_heads.py`, `fast_rcnn.py`, `mask_head.py`): multi-level
//! ROIAlign, the box head and predictor, Fast R-CNN inference (softmax,
//! class-specific decoding, score threshold, NMS per class, top detections), and
//! the mask head on the final boxes.

use d2serve_registry::ModelSpec;
use d2serve_registry::catalog::{BoxHeadSpec, MaskHeadSpec, RoiHeadsSpec};

use crate::ConvertError;
use crate::boxes::{ImageSize, decode};
use crate::builder::{GraphBuilder, Weights, f32_bytes, strs};
use crate::layers::{ConvGeom, column, linear, load_conv, split4, take_i64};
use crate::onnx::{Attr, Data};
use crate::resnet::Feature;
use crate::rpn::{gather0, top_k};

/// Detectron2 `ROIPooler` level assignment constants.
const CANONICAL_BOX_SIZE: f32 = 224.0;
const CANONICAL_LEVEL: f32 = 4.0;

fn roi_align(g: &mut GraphBuilder<'_>, name: &str, feature: &Feature, rois: &str, resolution: u32, sampling: u32) -> String {
    // batch index 0 for every ROI (single image).
    let zero = g.scalar_i64(0);
    let idx = g.op("Shape", &format!("{name}.n"), &[rois], vec![]);
    let n = take_i64(g, &format!("{name}.n0"), &idx, 0);
    let batch = g.op("Expand", &format!("{name}.batch"), &[&zero, &n], vec![]);
    g.op(
        "RoiAlign",
        name,
        &[&feature.value, rois, &batch],
        vec![
            ("coordinate_transformation_mode", Attr::Str("half_pixel".into())),
            ("mode", Attr::Str("avg".into())),
            ("output_height", Attr::Int(resolution as i64)),
            ("output_width", Attr::Int(resolution as i64)),
            ("sampling_ratio", Attr::Int(sampling as i64)),
            ("spatial_scale", Attr::Float(1.0 / feature.stride as f32)),
        ],
    )
}

/// ROIAlignV2 of `boxes` (`[R, 4]`) over one or several feature levels
/// (`ROIPooler`): each box is pooled from the level its size selects. Returns `[R, C, res, res]`.
pub fn pool(g: &mut GraphBuilder<'_>, name: &str, features: &[Feature], boxes: &str, resolution: u32, sampling: u32) -> String {
    if features.len() == 1 {
        return roi_align(g, name, &features[0], boxes, resolution, sampling);
    }
    let min_level = features[0].stride.trailing_zeros() as f32;
    let max_level = features.last().expect("levels").stride.trailing_zeros() as f32;
    let [x0, y0, x1, y1] = split4(g, &format!("{name}.split"), boxes);
    let w = g.op("Sub", &format!("{name}.w"), &[&x1, &x0], vec![]);
    let h = g.op("Sub", &format!("{name}.h"), &[&y1, &y0], vec![]);
    let area = g.op("Mul", &format!("{name}.area"), &[&w, &h], vec![]);
    let size = g.op("Sqrt", &format!("{name}.size"), &[&area], vec![]);
    let canon = g.scalar_f32(CANONICAL_BOX_SIZE);
    let rel = g.op("Div", &format!("{name}.rel"), &[&size, &canon], vec![]);
    let eps = g.scalar_f32(1e-8);
    let rel = g.op("Add", &format!("{name}.rel_eps"), &[&rel, &eps], vec![]);
    let ln = g.op("Log", &format!("{name}.ln"), &[&rel], vec![]);
    let ln2 = g.scalar_f32(std::f32::consts::LN_2);
    let log2 = g.op("Div", &format!("{name}.log2"), &[&ln, &ln2], vec![]);
    let lvl0 = g.scalar_f32(CANONICAL_LEVEL);
    let lvl = g.op("Add", &format!("{name}.lvl_f"), &[&log2, &lvl0], vec![]);
    let lvl = g.op("Floor", &format!("{name}.lvl_floor"), &[&lvl], vec![]);
    let lo = g.scalar_f32(min_level);
    let hi = g.scalar_f32(max_level);
    let lvl = g.op("Clip", &format!("{name}.lvl_clip"), &[&lvl, &lo, &hi], vec![]);
    let last = g.const_i64(&[-1]);
    let lvl = g.op("Squeeze", &format!("{name}.lvl"), &[&lvl, &last], vec![]);

    let mut outs = Vec::new();
    let mut idxs = Vec::new();
    for f in features {
        let n = format!("{name}.{}", f.name);
        let l = g.scalar_f32(f.stride.trailing_zeros() as f32);
        let mask = g.op("Equal", &format!("{n}.mask"), &[&lvl, &l], vec![]);
        let nz = g.op("NonZero", &format!("{n}.nz"), &[&mask], vec![]);
        let first = g.const_i64(&[0]);
        let idx = g.op("Squeeze", &format!("{n}.idx"), &[&nz, &first], vec![]);
        let rois = gather0(g, &format!("{n}.rois"), boxes, &idx);
        outs.push(roi_align(g, &format!("{n}.align"), f, &rois, resolution, sampling));
        idxs.push(nz);
    }
    let pooled = g.op("Concat", &format!("{name}.pooled_by_level"), &strs(&outs), vec![("axis", Attr::Int(0))]);
    let order = g.op("Concat", &format!("{name}.order"), &strs(&idxs), vec![("axis", Attr::Int(1))]);
    let order = g.op("Transpose", &format!("{name}.order_col"), &[&order], vec![("perm", Attr::Ints(vec![1, 0]))]);
    // Scatter every pooled box back to its original row.
    let shape = g.op("Shape", &format!("{name}.shape"), &[&pooled], vec![]);
    let zero = g.scalar_f32(0.0);
    let empty = g.op("Expand", &format!("{name}.zeros"), &[&zero, &shape], vec![]);
    g.op("ScatterND", name, &[&empty, &order, &pooled], vec![])
}

/// `FastRCNNConvFCHead`: convs (3×3 + norm + ReLU), flatten, fcs (+ ReLU). Returns (features, width).
pub fn box_head<'a>(
    g: &mut GraphBuilder<'a>,
    w: &mut Weights<'a>,
    prefix: &str,
    spec: &BoxHeadSpec,
    x: &str,
    in_channels: usize,
) -> Result<(String, usize), ConvertError> {
    let mut x = x.to_string();
    let mut c = in_channels;
    for i in 1..=spec.num_conv {
        let conv = load_conv(g, w, &format!("{prefix}.conv{i}"), c, ConvGeom::same(3), spec.norm)?;
        x = conv.apply(g, &x, true);
        c = conv.out_channels;
    }
    let mut width = c * (spec.pooler_resolution as usize).pow(2);
    x = g.op("Flatten", &format!("{prefix}.flatten"), &[&x], vec![("axis", Attr::Int(1))]);
    for i in 1..=spec.num_fc {
        let (y, out) = linear(g, w, &format!("{prefix}.fc{i}"), &x, width, true)?;
        x = y;
        width = out;
    }
    Ok((x, width))
}

/// What `box_predictor` adds: class logits `[R, K+1]`, box deltas `[R, 4K]` or `[R, 4]`,
/// and how many boxes each row's deltas decode to (K, or 1 when class-agnostic).
pub struct BoxPredictions {
    pub logits: String,
    pub deltas: String,
    pub boxes_per_row: usize,
}

/// `FastRCNNOutputLayers`: the class-score and box-delta linear layers.
pub fn box_predictor<'a>(
    g: &mut GraphBuilder<'a>,
    w: &mut Weights<'a>,
    prefix: &str,
    x: &str,
    width: usize,
    num_classes: usize,
    agnostic: bool,
) -> Result<BoxPredictions, ConvertError> {
    let (logits, k1) = linear(g, w, &format!("{prefix}.cls_score"), x, width, false)?;
    let (deltas, d) = linear(g, w, &format!("{prefix}.bbox_pred"), x, width, false)?;
    let expected_d = if agnostic { 4 } else { 4 * num_classes };
    if k1 != num_classes + 1 || d != expected_d {
        return Err(ConvertError::Mismatch(format!(
            "{prefix}: the checkpoint predicts {} classes (+ background) and {d} box deltas; the model description (catalog or config) has {num_classes} classes ({} regression)",
            k1.saturating_sub(1),
            if agnostic { "class-agnostic" } else { "class-specific" }
        )));
    }
    Ok(BoxPredictions { logits, deltas, boxes_per_row: if agnostic { 1 } else { num_classes } })
}

/// Per-class boxes `[R, K, 4]` (class-agnostic: `[R, 1, 4]`), decoded and clipped.
/// `boxes_per_row` is K (or 1): spelled out, since `-1` cannot be inferred when R = 0.
pub fn predict_boxes(
    g: &mut GraphBuilder<'_>,
    name: &str,
    proposals: &str,
    deltas: &str,
    boxes_per_row: usize,
    weights: [f32; 4],
    size: &ImageSize,
) -> String {
    let shape = g.const_i64(&[-1, boxes_per_row as i64, 4]);
    let d = g.op("Reshape", &format!("{name}.deltas"), &[deltas, &shape], vec![]);
    let one = g.const_i64(&[1]);
    let p = g.op("Unsqueeze", &format!("{name}.proposals"), &[proposals, &one], vec![]);
    decode(g, name, &p, &d, weights, Some(size))
}

pub struct Detections {
    /// `[D, 4]`, `[D]`, `[D]` (int64), by score, descending.
    pub boxes: String,
    pub scores: String,
    pub classes: String,
}

/// `fast_rcnn_inference_single_image`: `scores` `[R, K]` (background dropped),
/// `boxes` `[R, K|1, 4]` clipped. Strict score threshold, NMS within each class on
/// the original coordinates, the best `detections_per_image`.
pub fn fast_rcnn_inference(g: &mut GraphBuilder<'_>, scores: &str, boxes: &str, num_classes: usize, spec: &RoiHeadsSpec) -> Detections {
    let k = num_classes as i64;
    let boxes = if spec.cls_agnostic_bbox_reg {
        let shape = g.const_i64(&[1, k, 4]);
        g.op("Expand", "det.boxes_per_class", &[boxes, &shape], vec![])
    } else {
        boxes.to_string()
    };
    // NMS batch = class: boxes [K, R, 4], scores [K, 1, R].
    let boxes_t = g.op("Transpose", "det.boxes_kr", &[&boxes], vec![("perm", Attr::Ints(vec![1, 0, 2]))]);
    let scores_t = g.op("Transpose", "det.scores_kr", &[scores], vec![("perm", Attr::Ints(vec![1, 0]))]);
    let one = g.const_i64(&[1]);
    let scores_3d = g.op("Unsqueeze", "det.scores_k1r", &[&scores_t, &one], vec![]);
    let max_out = g.const_i64(&[i32::MAX as i64]);
    let iou = g.const_f32(&[1], &[spec.nms_thresh_test]);
    let thr = g.const_f32(&[1], &[spec.score_thresh_test]);
    let sel = g.op("NonMaxSuppression", "det.nms", &[&boxes_t, &scores_3d, &max_out, &iou, &thr], vec![]);
    let last = g.const_i64(&[-1]);
    let cls = column(g, "det.sel_class", &sel, 0);
    let cls = g.op("Squeeze", "det.sel_class_1d", &[&cls, &last], vec![]);
    let row = column(g, "det.sel_row", &sel, 2);
    let row = g.op("Squeeze", "det.sel_row_1d", &[&row, &last], vec![]);
    let r_shape = g.op("Shape", "det.r_shape", &[scores], vec![]);
    let r = take_i64(g, "det.r", &r_shape, 0);
    let flat = g.op("Mul", "det.flat_base", &[&cls, &r], vec![]);
    let flat = g.op("Add", "det.flat", &[&flat, &row], vec![]);
    let rows4 = g.const_i64(&[-1, 4]);
    let all_boxes = g.op("Reshape", "det.all_boxes", &[&boxes_t, &rows4], vec![]);
    let all_scores = g.op("Reshape", "det.all_scores", &[&scores_t, &last], vec![]);
    let cand_boxes = gather0(g, "det.cand_boxes", &all_boxes, &flat);
    let cand_scores = gather0(g, "det.cand_scores", &all_scores, &flat);
    let (det_scores, best) = top_k(g, "det.topk", &cand_scores, spec.detections_per_image);
    let boxes = gather0(g, "det.boxes", &cand_boxes, &best);
    let classes = gather0(g, "det.classes", &cls, &best);
    Detections {
        boxes,
        scores: det_scores,
        classes,
    }
}

/// Softmax class scores without the background column: `[R, K]`.
pub fn class_scores(g: &mut GraphBuilder<'_>, name: &str, logits: &str, num_classes: usize) -> String {
    let probs = g.op("Softmax", &format!("{name}.softmax"), &[logits], vec![("axis", Attr::Int(-1))]);
    drop_background(g, name, &probs, num_classes)
}

/// The first `num_classes` columns of `[R, K+1]` probabilities (background is last).
pub fn drop_background(g: &mut GraphBuilder<'_>, name: &str, probs: &str, num_classes: usize) -> String {
    let start = g.const_i64(&[0]);
    let end = g.const_i64(&[num_classes as i64]);
    let axis = g.const_i64(&[1]);
    g.op("Slice", name, &[probs, &start, &end, &axis], vec![])
}

/// `MaskRCNNConvUpsampleHead` on pooled features `[D, C, r, r]`, then the
/// predicted class's mask through a sigmoid: `[D, M, M]`.
#[allow(clippy::too_many_arguments)]
pub fn mask_head<'a>(
    g: &mut GraphBuilder<'a>,
    w: &mut Weights<'a>,
    spec: &MaskHeadSpec,
    pooled: &str,
    in_channels: usize,
    classes: &str,
    num_classes: usize,
) -> Result<String, ConvertError> {
    let prefix = "roi_heads.mask_head";
    let mut x = pooled.to_string();
    let mut c = in_channels;
    for i in 1..=spec.num_conv {
        let conv = load_conv(g, w, &format!("{prefix}.mask_fcn{i}"), c, ConvGeom::same(3), spec.norm)?;
        x = conv.apply(g, &x, true);
        c = conv.out_channels;
    }
    let dw = w.take(&format!("{prefix}.deconv.weight"), &[Some(c), None, Some(2), Some(2)])?;
    let out = dw.shape[1];
    let db = w.take(&format!("{prefix}.deconv.bias"), &[Some(out)])?;
    let dwn = g.weight(&format!("{prefix}.deconv.weight"), &dw);
    let dbn = g.weight(&format!("{prefix}.deconv.bias"), &db);
    x = g.op(
        "ConvTranspose",
        &format!("{prefix}.deconv"),
        &[&x, &dwn, &dbn],
        vec![("kernel_shape", Attr::Ints(vec![2, 2])), ("strides", Attr::Ints(vec![2, 2]))],
    );
    x = g.op("Relu", &format!("{prefix}.deconv_relu"), &[&x], vec![]);
    let k = if spec.cls_agnostic { 1 } else { num_classes };
    let pw = w.take(&format!("{prefix}.predictor.weight"), &[Some(k), Some(out), Some(1), Some(1)])?;
    let pb = w.take(&format!("{prefix}.predictor.bias"), &[Some(k)])?;
    // Only the predicted class's channel is needed: gather its 1×1 filter per ROI
    // instead of computing all K masks (1230 for LVIS).
    let pwn = g.init(&format!("{prefix}.predictor.weight"), vec![k as i64, out as i64], Data::RawF32(f32_bytes(&pw)));
    let pbn = g.weight(&format!("{prefix}.predictor.bias"), &pb);
    let index = if spec.cls_agnostic {
        let zero = g.scalar_i64(0);
        g.op("Mul", &format!("{prefix}.agnostic_index"), &[classes, &zero], vec![])
    } else {
        classes.to_string()
    };
    let filt = gather0(g, &format!("{prefix}.class_filter"), &pwn, &index);
    let shape = g.const_i64(&[-1, out as i64, 1, 1]);
    let filt = g.op("Reshape", &format!("{prefix}.class_filter_4d"), &[&filt, &shape], vec![]);
    let prod = g.op("Mul", &format!("{prefix}.weighted"), &[&x, &filt], vec![]);
    let axis = g.const_i64(&[1]);
    let logits = g.op("ReduceSum", &format!("{prefix}.logits_nobias"), &[&prod, &axis], vec![("keepdims", Attr::Int(0))]);
    let bias = gather0(g, &format!("{prefix}.class_bias"), &pbn, &index);
    let bshape = g.const_i64(&[-1, 1, 1]);
    let bias = g.op("Reshape", &format!("{prefix}.class_bias_3d"), &[&bias, &bshape], vec![]);
    let logits = g.op("Add", &format!("{prefix}.logits"), &[&logits, &bias], vec![]);
    Ok(g.op("Sigmoid", &format!("{prefix}.probs"), &[&logits], vec![]))
}

/// What every ROI-heads variant produces: the final detections and their masks.
pub struct RoiOutputs {
    pub det: Detections,
    /// `[D, M, M]` mask probabilities of the predicted classes.
    pub mask_probs: String,
}

/// `StandardROIHeads`: pool the proposals, box head, predictor, Fast R-CNN
/// inference, then the mask head on the final boxes.
pub fn standard_roi_heads<'a>(
    g: &mut GraphBuilder<'a>,
    w: &mut Weights<'a>,
    spec: &ModelSpec,
    features: &[Feature],
    proposals: &str,
    size: &ImageSize,
) -> Result<RoiOutputs, ConvertError> {
    let num_classes = spec.num_classes as usize;
    let bh = &spec.box_head;
    let channels = features[0].channels;
    let pooled = pool(g, "box_pooler", features, proposals, bh.pooler_resolution, bh.pooler_sampling_ratio);
    let (feat, width) = box_head(g, w, "roi_heads.box_head", bh, &pooled, channels)?;
    let pred = box_predictor(g, w, "roi_heads.box_predictor", &feat, width, num_classes, spec.roi_heads.cls_agnostic_bbox_reg)?;
    let scores = class_scores(g, "det.class_scores", &pred.logits, num_classes);
    let boxes = predict_boxes(g, "det.pred_boxes", proposals, &pred.deltas, pred.boxes_per_row, spec.roi_heads.bbox_reg_weights[0], size);
    let det = fast_rcnn_inference(g, &scores, &boxes, num_classes, &spec.roi_heads);
    let mask_probs = mask_branch(g, w, spec, features, &det)?;
    Ok(RoiOutputs { det, mask_probs })
}

/// The mask pooler and mask head on the final detections (`forward_with_given_boxes`).
pub fn mask_branch<'a>(
    g: &mut GraphBuilder<'a>,
    w: &mut Weights<'a>,
    spec: &ModelSpec,
    features: &[Feature],
    det: &Detections,
) -> Result<String, ConvertError> {
    let mh = &spec.mask_head;
    let pooled = pool(g, "mask_pooler", features, &det.boxes, mh.pooler_resolution, mh.pooler_sampling_ratio);
    mask_head(g, w, mh, &pooled, features[0].channels, &det.classes, spec.num_classes as usize)
}
