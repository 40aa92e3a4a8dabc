//! Region Proposal Network (`rpn.py`, `find_top_rpn_proposals`): a head shared
//! by every input level, anchors generated from each feature's shape, per-level
//! top-k on the raw logits, decoding, clipping, empty-box removal, NMS within
//! each level, then the best `post_nms_topk` over all levels.

use d2serve_registry::catalog::{Norm, RpnSpec};

use crate::ConvertError;
use crate::boxes::{ImageSize, decode, nonempty};
use crate::builder::{GraphBuilder, Weights, strs};
use crate::layers::{ConvGeom, column, load_conv, take_i64};
use crate::onnx::Attr;
use crate::resnet::Feature;

pub struct Proposals {
    /// `[P, 4]` x0, y0, x1, y1 in the resized image, by objectness, descending.
    pub boxes: String,
    /// `[P]` objectness logits.
    pub logits: String,
}

/// Cell anchors of one level (`DefaultAnchorGenerator.generate_cell_anchors`):
/// computed in f64, stored as f32, size-major then ratio.
pub fn cell_anchors(sizes: &[f32], ratios: &[f32]) -> Vec<f32> {
    let mut out = Vec::new();
    for &size in sizes {
        let area = (size as f64).powi(2);
        for &r in ratios {
            let w = (area / r as f64).sqrt();
            let h = r as f64 * w;
            out.extend([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0].map(|v| v as f32));
        }
    }
    out
}

/// `[H·W·A, 4]` anchors of a feature map, in (y, x, anchor) order.
fn grid_anchors(g: &mut GraphBuilder<'_>, name: &str, feature: &str, stride: usize, offset: f32, cell: &[f32]) -> String {
    let shape = g.op("Shape", &format!("{name}.shape"), &[feature], vec![]);
    let h = take_i64(g, &format!("{name}.h"), &shape, 2);
    let w = take_i64(g, &format!("{name}.w"), &shape, 3);
    let zero = g.scalar_i64(0);
    let one = g.scalar_i64(1);
    let axis0 = g.const_i64(&[0]);
    let coords = |g: &mut GraphBuilder<'_>, n: &str, len: &str| {
        let len = g.op("Squeeze", &format!("{name}.{n}_len"), &[len, &axis0], vec![]);
        let r = g.op("Range", &format!("{name}.{n}_range"), &[&zero, &len, &one], vec![]);
        let f = g.op("Cast", &format!("{name}.{n}_f"), &[&r], vec![("to", Attr::Int(1))]);
        let s = g.scalar_f32(stride as f32);
        let v = g.op("Mul", &format!("{name}.{n}_shift"), &[&f, &s], vec![]);
        if offset != 0.0 {
            let o = g.scalar_f32(offset * stride as f32);
            g.op("Add", &format!("{name}.{n}_offset"), &[&v, &o], vec![])
        } else {
            v
        }
    };
    let xs = coords(g, "x", &w);
    let ys = coords(g, "y", &h);
    let hw = g.op("Concat", &format!("{name}.hw"), &[&h, &w], vec![("axis", Attr::Int(0))]);
    let row = g.const_i64(&[1, -1]);
    let col = g.const_i64(&[-1, 1]);
    let xs = g.op("Reshape", &format!("{name}.x_row"), &[&xs, &row], vec![]);
    let ys = g.op("Reshape", &format!("{name}.y_col"), &[&ys, &col], vec![]);
    let xx = g.op("Expand", &format!("{name}.xx"), &[&xs, &hw], vec![]);
    let yy = g.op("Expand", &format!("{name}.yy"), &[&ys, &hw], vec![]);
    let last = g.const_i64(&[-1]);
    let xx = g.op("Unsqueeze", &format!("{name}.xx1"), &[&xx, &last], vec![]);
    let yy = g.op("Unsqueeze", &format!("{name}.yy1"), &[&yy, &last], vec![]);
    let shifts = g.op("Concat", &format!("{name}.shifts"), &[&xx, &yy, &xx, &yy], vec![("axis", Attr::Int(-1))]);
    let flat = g.const_i64(&[-1, 1, 4]);
    let shifts = g.op("Reshape", &format!("{name}.shifts_flat"), &[&shifts, &flat], vec![]);
    let a = (cell.len() / 4) as i64;
    let cell = g.const_f32(&[1, a, 4], cell);
    let anchors = g.op("Add", &format!("{name}.grid"), &[&shifts, &cell], vec![]);
    let boxes = g.const_i64(&[-1, 4]);
    g.op("Reshape", name, &[&anchors, &boxes], vec![])
}

/// Greedy NMS over one set of boxes; returns the kept indices `[K]`, by score, descending.
pub fn nms_indices(g: &mut GraphBuilder<'_>, name: &str, boxes: &str, scores: &str, iou: f32) -> String {
    let a0 = g.const_i64(&[0]);
    let b = g.op("Unsqueeze", &format!("{name}.boxes"), &[boxes, &a0], vec![]);
    let a01 = g.const_i64(&[0, 1]);
    let s = g.op("Unsqueeze", &format!("{name}.scores"), &[scores, &a01], vec![]);
    let max_out = g.const_i64(&[i32::MAX as i64]);
    let thr = g.const_f32(&[1], &[iou]);
    let sel = g.op("NonMaxSuppression", name, &[&b, &s, &max_out, &thr], vec![]);
    let idx = column(g, &format!("{name}.col"), &sel, 2);
    let last = g.const_i64(&[-1]);
    g.op("Squeeze", &format!("{name}.kept"), &[&idx, &last], vec![])
}

/// The best `k` rows of `scores` (`[N]`): (values, indices), descending; k = min(N, limit).
pub fn top_k(g: &mut GraphBuilder<'_>, name: &str, scores: &str, limit: u32) -> (String, String) {
    let shape = g.op("Shape", &format!("{name}.n"), &[scores], vec![]);
    let cap = g.const_i64(&[limit as i64]);
    let k = g.op("Min", &format!("{name}.k"), &[&shape, &cap], vec![]);
    let out = g.op_n(
        "TopK",
        name,
        &[scores, &k],
        2,
        vec![("axis", Attr::Int(0)), ("largest", Attr::Int(1)), ("sorted", Attr::Int(1))],
    );
    (out[0].clone(), out[1].clone())
}

pub fn gather0(g: &mut GraphBuilder<'_>, name: &str, x: &str, idx: &str) -> String {
    g.op("Gather", name, &[x, idx], vec![("axis", Attr::Int(0))])
}

pub fn rpn<'a>(
    g: &mut GraphBuilder<'a>,
    w: &mut Weights<'a>,
    spec: &RpnSpec,
    features: &[Feature],
    size: &ImageSize,
) -> Result<Proposals, ConvertError> {
    let channels = features[0].channels;
    let head = "proposal_generator.rpn_head";
    let mut convs = Vec::new();
    let mut c = channels;
    for i in 0..spec.num_convs {
        let prefix = if spec.num_convs == 1 {
            format!("{head}.conv")
        } else {
            format!("{head}.conv.conv{i}")
        };
        let conv = load_conv(g, w, &prefix, c, ConvGeom::same(3), Norm::None)?;
        c = conv.out_channels;
        convs.push(conv);
    }
    let objectness = load_conv(g, w, &format!("{head}.objectness_logits"), c, ConvGeom::same(1), Norm::None)?;
    let deltas_conv = load_conv(g, w, &format!("{head}.anchor_deltas"), c, ConvGeom::same(1), Norm::None)?;
    let a = spec.anchor_sizes[0].len() * spec.aspect_ratios.len();
    if objectness.out_channels != a || deltas_conv.out_channels != 4 * a {
        return Err(ConvertError::Mismatch(format!(
            "the RPN head predicts {} anchors per location, the catalog's anchors give {a}",
            objectness.out_channels
        )));
    }

    let mut level_boxes = Vec::new();
    let mut level_scores = Vec::new();
    for (feat, sizes) in features.iter().zip(&spec.anchor_sizes) {
        let n = format!("rpn.{}", feat.name);
        let mut t = feat.value.clone();
        for conv in &convs {
            t = conv.apply(g, &t, true);
        }
        let logits = objectness.apply(g, &t, false);
        let deltas = deltas_conv.apply(g, &t, false);
        let logits = g.op("Transpose", &format!("{n}.logits_nhwa"), &[&logits], vec![("perm", Attr::Ints(vec![0, 2, 3, 1]))]);
        let flat = g.const_i64(&[-1]);
        let logits = g.op("Reshape", &format!("{n}.logits"), &[&logits, &flat], vec![]);
        let shape = g.const_i64(&[1, a as i64, 4, -1]);
        let deltas = g.op("Reshape", &format!("{n}.deltas_a4"), &[&deltas, &shape], vec![]);
        let deltas = g.op("Transpose", &format!("{n}.deltas_hwa4"), &[&deltas], vec![("perm", Attr::Ints(vec![0, 3, 1, 2]))]);
        let rows = g.const_i64(&[-1, 4]);
        let deltas = g.op("Reshape", &format!("{n}.deltas"), &[&deltas, &rows], vec![]);
        let cell = cell_anchors(sizes, &spec.aspect_ratios);
        let anchors = grid_anchors(g, &format!("{n}.anchors"), &feat.value, feat.stride, spec.anchor_offset, &cell);

        let (top_scores, top_idx) = top_k(g, &format!("{n}.topk"), &logits, spec.pre_nms_topk_test);
        let top_anchors = gather0(g, &format!("{n}.top_anchors"), &anchors, &top_idx);
        let top_deltas = gather0(g, &format!("{n}.top_deltas"), &deltas, &top_idx);
        let boxes = decode(g, &format!("{n}.boxes"), &top_anchors, &top_deltas, spec.bbox_reg_weights, Some(size));
        let keep = if spec.min_box_size > 0.0 {
            return Err(ConvertError::Unsupported("rpn.min_box_size > 0".into()));
        } else {
            nonempty(g, &format!("{n}.nonempty"), &boxes)
        };
        let boxes = g.op("Compress", &format!("{n}.kept_boxes"), &[&boxes, &keep], vec![("axis", Attr::Int(0))]);
        let scores = g.op("Compress", &format!("{n}.kept_scores"), &[&top_scores, &keep], vec![("axis", Attr::Int(0))]);
        let kept = nms_indices(g, &format!("{n}.nms"), &boxes, &scores, spec.nms_thresh);
        level_boxes.push(gather0(g, &format!("{n}.nms_boxes"), &boxes, &kept));
        level_scores.push(gather0(g, &format!("{n}.nms_scores"), &scores, &kept));
    }
    let boxes = g.op("Concat", "rpn.all_boxes", &strs(&level_boxes), vec![("axis", Attr::Int(0))]);
    let scores = g.op("Concat", "rpn.all_scores", &strs(&level_scores), vec![("axis", Attr::Int(0))]);
    let (logits, idx) = top_k(g, "rpn.post_topk", &scores, spec.post_nms_topk_test);
    let boxes = gather0(g, "rpn.proposals", &boxes, &idx);
    Ok(Proposals { boxes, logits })
}

#[cfg(test)]
mod tests {
    #[test]
    fn cell_anchors_match_detectron2() {
        // size 32, ratios 0.5/1/2: w = sqrt(1024/r), h = r·w.
        let a = super::cell_anchors(&[32.0], &[0.5, 1.0, 2.0]);
        let w0 = (2048f64).sqrt() as f32;
        assert_eq!(&a[..4], &[-w0 / 2.0, -(0.5 * (2048f64).sqrt() / 2.0) as f32, w0 / 2.0, (0.5 * (2048f64).sqrt() / 2.0) as f32]);
        assert_eq!(&a[4..8], &[-16.0, -16.0, 16.0, 16.0]);
        assert_eq!(a.len(), 12);
    }
}
