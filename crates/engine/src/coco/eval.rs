//! COCO average precision, step for step as pycocotools' `COCOeval`
//! (evaluate, accumulate, summarize) with its default parameters, so that a
//! figure here is the figure Detectron2's COCOEvaluator prints.

use std::collections::HashMap;

use super::dataset::{Dataset, Detection, Object};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IouType {
    Bbox,
    Segm,
}

/// numpy's `linspace(start, stop, num)`, value for value.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    v[num - 1] = stop;
    v
}

pub const MAX_DETS: [usize; 3] = [1, 10, 100];
const AREA_RANGES: [(f64, f64); 4] = [(0.0, 1e10), (0.0, 1024.0), (1024.0, 9216.0), (9216.0, 1e10)];

/// pycocotools' twelve summary numbers (AP and AR; -1 where undefined), and AP per category.
#[derive(Debug, Clone)]
pub struct Summary {
    /// AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl (0-1).
    pub stats: [f64; 12],
    /// AP (IoU .50:.95, all areas, 100 detections) per category id; -1 if it has no ground truth.
    pub per_category: Vec<(i64, f64)>,
}

pub const STAT_NAMES: [&str; 12] = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"];

struct Gt<'a> {
    obj: &'a Object,
    /// Pixels of its mask (0 when evaluating boxes).
    mask_area: u64,
}

struct Dt<'a> {
    det: &'a Detection,
    /// Its mask's pixels (segm), else its box's area: the area range it falls in.
    area: f64,
}

/// Box IoU of [x, y, w, h] boxes (pycocotools' `bbIou`); a crowd truth divides by the detection's area.
fn box_iou(d: &[f64; 4], g: &[f64; 4], crowd: bool) -> f64 {
    let w = (d[0] + d[2]).min(g[0] + g[2]) - d[0].max(g[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (d[1] + d[3]).min(g[1] + g[3]) - d[1].max(g[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let i = w * h;
    let da = d[2] * d[3];
    let u = if crowd { da } else { da + g[2] * g[3] - i };
    i / u
}

/// Mask IoU from the two masks and their areas (computed once per mask, not per pair).
fn mask_iou((d, d_area): (&super::Rle, f64), (g, g_area): (&super::Rle, u64), crowd: bool) -> f64 {
    if (d.height, d.width) != (g.height, g.width) {
        return -1.0;
    }
    let i = d.intersection(g);
    if i == 0 {
        return 0.0;
    }
    let u = if crowd { d_area } else { d_area + g_area as f64 - i as f64 };
    i as f64 / u
}

/// The per-image, per-category, per-area-range matching (`evaluateImg`).
struct ImageEval {
    /// Detection scores, best first, at most 100.
    scores: Vec<f64>,
    /// [threshold][detection]: matched a ground truth.
    matched: Vec<Vec<bool>>,
    /// [threshold][detection]: ignored.
    ignored: Vec<Vec<bool>>,
    /// Ground truths not ignored.
    counted_gt: usize,
}

/// `evaluateImg` for one area range: greedy matching, best detection first, at
/// each IoU threshold. `ious[d][g]` has the ground truth in its given order.
fn match_in_range(g: &[Gt], d: &[Dt], ious: &[Vec<f64>], (lo, hi): (f64, f64), iou_thrs: &[f64]) -> ImageEval {
    // Ground truth: not-ignored first (stable).
    let ignore: Vec<bool> = g.iter().map(|x| x.obj.iscrowd || x.obj.area < lo || x.obj.area > hi).collect();
    let mut order: Vec<usize> = (0..g.len()).collect();
    order.sort_by_key(|&i| ignore[i]);
    let g_ignore: Vec<bool> = order.iter().map(|&i| ignore[i]).collect();
    let g_crowd: Vec<bool> = order.iter().map(|&i| g[i].obj.iscrowd).collect();
    let t_n = iou_thrs.len();
    let mut matched = vec![vec![false; d.len()]; t_n];
    let mut ignored = vec![vec![false; d.len()]; t_n];
    for (ti, &t) in iou_thrs.iter().enumerate() {
        let mut gt_taken = vec![false; g.len()];
        for di in 0..d.len() {
            let mut best = t.min(1.0 - 1e-10);
            let mut m: Option<usize> = None;
            for (gi, &go) in order.iter().enumerate() {
                if gt_taken[gi] && !g_crowd[gi] {
                    continue;
                }
                // Matched a counted truth already and only ignored ones remain.
                if let Some(mi) = m
                    && !g_ignore[mi]
                    && g_ignore[gi]
                {
                    break;
                }
                let iou = ious[di][go];
                if iou < best {
                    continue;
                }
                best = iou;
                m = Some(gi);
            }
            if let Some(mi) = m {
                ignored[ti][di] = g_ignore[mi];
                matched[ti][di] = true;
                gt_taken[mi] = true;
            }
        }
        // Unmatched detections outside the area range are ignored.
        for di in 0..d.len() {
            if !matched[ti][di] && (d[di].area < lo || d[di].area > hi) {
                ignored[ti][di] = true;
            }
        }
    }
    ImageEval {
        scores: d.iter().map(|x| x.det.score).collect(),
        matched,
        ignored,
        counted_gt: g_ignore.iter().filter(|i| !**i).count(),
    }
}

/// Errors a dataset or results can cause when evaluated.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("mask evaluation needs masks: ground truth {0} of image {1} has no segmentation")]
    GtWithoutMask(usize, i64),
    #[error("mask evaluation needs masks: a detection on image {0} has no segmentation")]
    DtWithoutMask(i64),
}

/// Evaluate `dets` against `gt` (all images and categories of `gt`, as COCOeval's defaults).
pub fn evaluate(gt: &Dataset, dets: &[Detection], iou_type: IouType) -> Result<Summary, EvalError> {
    let iou_thrs = linspace(0.5, 0.95, 10);
    let rec_thrs = linspace(0.0, 1.0, 101);
    let max_det = *MAX_DETS.last().expect("three");
    let mut img_ids: Vec<i64> = gt.images.iter().map(|i| i.id).collect();
    img_ids.sort_unstable();
    img_ids.dedup();
    let mut cat_ids: Vec<i64> = gt.categories.iter().map(|c| c.id).collect();
    cat_ids.sort_unstable();
    cat_ids.dedup();

    let mut gts: HashMap<(i64, i64), Vec<Gt>> = HashMap::new();
    for (n, o) in gt.annotations.iter().enumerate() {
        if iou_type == IouType::Segm && o.mask.is_none() {
            return Err(EvalError::GtWithoutMask(n, o.image_id));
        }
        let mask_area = match (iou_type, &o.mask) {
            (IouType::Segm, Some(m)) => m.area(),
            _ => 0,
        };
        gts.entry((o.image_id, o.category_id)).or_default().push(Gt { obj: o, mask_area });
    }
    let mut dts: HashMap<(i64, i64), Vec<Dt>> = HashMap::new();
    for d in dets {
        let area = match (iou_type, &d.mask) {
            (IouType::Segm, Some(m)) => m.area() as f64,
            (IouType::Segm, None) => return Err(EvalError::DtWithoutMask(d.image_id)),
            (IouType::Bbox, Some(m)) if !d.bbox_given => m.area() as f64,
            (IouType::Bbox, _) => d.bbox[2] * d.bbox[3],
        };
        dts.entry((d.image_id, d.category_id)).or_default().push(Dt { det: d, area });
    }
    // Best first, stable (numpy's mergesort), at most 100 per image and category.
    for v in dts.values_mut() {
        v.sort_by(|a, b| b.det.score.partial_cmp(&a.det.score).unwrap_or(std::cmp::Ordering::Equal));
        v.truncate(max_det);
    }

    let t_n = iou_thrs.len();
    // evals[cat][area][image]
    let mut evals: Vec<Vec<Vec<Option<ImageEval>>>> = Vec::with_capacity(cat_ids.len());
    for &cat in &cat_ids {
        let mut per_area: Vec<Vec<Option<ImageEval>>> = (0..AREA_RANGES.len()).map(|_| Vec::with_capacity(img_ids.len())).collect();
        for &img in &img_ids {
            let g = gts.get(&(img, cat)).map(Vec::as_slice).unwrap_or(&[]);
            let d = dts.get(&(img, cat)).map(Vec::as_slice).unwrap_or(&[]);
            if g.is_empty() && d.is_empty() {
                per_area.iter_mut().for_each(|v| v.push(None));
                continue;
            }
            // Once per image and category (pycocotools' computeIoU), ground truth in
            // its own order; each area range below only reorders the columns.
            let ious: Vec<Vec<f64>> = d
                .iter()
                .map(|dt| {
                    g.iter()
                        .map(|gt| {
                            let go = gt.obj;
                            match iou_type {
                                IouType::Bbox => box_iou(&dt.det.bbox, &go.bbox, go.iscrowd),
                                IouType::Segm => mask_iou(
                                    (dt.det.mask.as_ref().expect("checked"), dt.area),
                                    (go.mask.as_ref().expect("checked"), gt.mask_area),
                                    go.iscrowd,
                                ),
                            }
                        })
                        .collect()
                })
                .collect();
            for (a, &(lo, hi)) in AREA_RANGES.iter().enumerate() {
                per_area[a].push(Some(match_in_range(g, d, &ious, (lo, hi), &iou_thrs)));
            }
        }
        evals.push(per_area);
    }

    // accumulate: precision[t][r][k][a][m], recall[t][k][a][m]
    let (k_n, a_n, m_n, r_n) = (cat_ids.len(), AREA_RANGES.len(), MAX_DETS.len(), rec_thrs.len());
    let idx_p = |t: usize, r: usize, k: usize, a: usize, m: usize| (((t * r_n + r) * k_n + k) * a_n + a) * m_n + m;
    let idx_r = |t: usize, k: usize, a: usize, m: usize| ((t * k_n + k) * a_n + a) * m_n + m;
    let mut precision = vec![-1.0f64; t_n * r_n * k_n * a_n * m_n];
    let mut recall = vec![-1.0f64; t_n * k_n * a_n * m_n];
    let eps = f64::EPSILON; // np.spacing(1)
    for k in 0..k_n {
        for a in 0..a_n {
            for (m, &md) in MAX_DETS.iter().enumerate() {
                let e: Vec<&ImageEval> = evals[k][a].iter().flatten().collect();
                if e.is_empty() {
                    continue;
                }
                let npig: usize = e.iter().map(|x| x.counted_gt).sum();
                if npig == 0 {
                    continue;
                }
                // (score, image eval, detection index), concatenated in image order, then stably sorted.
                let mut all: Vec<(f64, usize, usize)> = Vec::new();
                for (ei, x) in e.iter().enumerate() {
                    for di in 0..x.scores.len().min(md) {
                        all.push((x.scores[di], ei, di));
                    }
                }
                all.sort_by(|p, q| q.0.partial_cmp(&p.0).unwrap_or(std::cmp::Ordering::Equal));
                for t in 0..t_n {
                    let (mut tp, mut fp) = (0.0f64, 0.0f64);
                    let mut rc = Vec::with_capacity(all.len());
                    let mut pr = Vec::with_capacity(all.len());
                    for &(_, ei, di) in &all {
                        let (mt, ig) = (e[ei].matched[t][di], e[ei].ignored[t][di]);
                        if mt && !ig {
                            tp += 1.0;
                        }
                        if !mt && !ig {
                            fp += 1.0;
                        }
                        rc.push(tp / npig as f64);
                        pr.push(tp / (fp + tp + eps));
                    }
                    recall[idx_r(t, k, a, m)] = rc.last().copied().unwrap_or(0.0);
                    for i in (1..pr.len()).rev() {
                        if pr[i] > pr[i - 1] {
                            pr[i - 1] = pr[i];
                        }
                    }
                    // searchsorted(rc, recThrs, 'left'); past the end leaves 0 (pycocotools' try/except).
                    for (ri, &thr) in rec_thrs.iter().enumerate() {
                        let pi = rc.partition_point(|&x| x < thr);
                        precision[idx_p(t, ri, k, a, m)] = if pi < pr.len() { pr[pi] } else { 0.0 };
                    }
                }
            }
        }
    }

    let mean_defined = |vals: &mut dyn Iterator<Item = f64>| {
        let (mut sum, mut n) = (0.0f64, 0usize);
        for v in vals.filter(|v| *v > -1.0) {
            sum += v;
            n += 1;
        }
        if n == 0 { -1.0 } else { sum / n as f64 }
    };
    let m100 = MAX_DETS.len() - 1;
    let ap = |t: Option<usize>, a: usize, m: usize, k: Option<usize>| {
        let ts: Vec<usize> = t.map_or((0..t_n).collect(), |t| vec![t]);
        let ks: Vec<usize> = k.map_or((0..k_n).collect(), |k| vec![k]);
        let mut vals = Vec::with_capacity(ts.len() * r_n * ks.len());
        for &t in &ts {
            for r in 0..r_n {
                for &k in &ks {
                    vals.push(precision[idx_p(t, r, k, a, m)]);
                }
            }
        }
        mean_defined(&mut vals.into_iter())
    };
    let ar = |a: usize, m: usize| {
        let mut it = (0..t_n).flat_map(|t| (0..k_n).map(move |k| (t, k))).map(|(t, k)| recall[idx_r(t, k, a, m)]);
        mean_defined(&mut it)
    };
    let i50 = 0;
    let i75 = iou_thrs.iter().position(|&t| t == 0.75).expect("0.75 is one of linspace(.5, .95, 10)");
    let stats = [
        ap(None, 0, m100, None),
        ap(Some(i50), 0, m100, None),
        ap(Some(i75), 0, m100, None),
        ap(None, 1, m100, None),
        ap(None, 2, m100, None),
        ap(None, 3, m100, None),
        ar(0, 0),
        ar(0, 1),
        ar(0, m100),
        ar(1, m100),
        ar(2, m100),
        ar(3, m100),
    ];
    let per_category = cat_ids.iter().enumerate().map(|(k, &c)| (c, ap(None, 0, m100, Some(k)))).collect();
    Ok(Summary { stats, per_category })
}

/// pycocotools' `summarize()` printout.
pub fn summary_lines(s: &Summary) -> Vec<String> {
    let rows = [
        ("Average Precision", "(AP)", "0.50:0.95", "all", 100),
        ("Average Precision", "(AP)", "0.50", "all", 100),
        ("Average Precision", "(AP)", "0.75", "all", 100),
        ("Average Precision", "(AP)", "0.50:0.95", "small", 100),
        ("Average Precision", "(AP)", "0.50:0.95", "medium", 100),
        ("Average Precision", "(AP)", "0.50:0.95", "large", 100),
        ("Average Recall", "(AR)", "0.50:0.95", "all", 1),
        ("Average Recall", "(AR)", "0.50:0.95", "all", 10),
        ("Average Recall", "(AR)", "0.50:0.95", "all", 100),
        ("Average Recall", "(AR)", "0.50:0.95", "small", 100),
        ("Average Recall", "(AR)", "0.50:0.95", "medium", 100),
        ("Average Recall", "(AR)", "0.50:0.95", "large", 100),
    ];
    rows.iter()
        .zip(s.stats)
        .map(|((title, short, iou, area, md), v)| format!(" {title:<18} {short} @[ IoU={iou:<9} | area={area:>6} | maxDets={md:>3} ] = {v:0.3}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_numpys() {
        let t = linspace(0.5, 0.95, 10);
        assert_eq!(t[0], 0.5);
        assert_eq!(t[5], 0.75);
        assert_eq!(t[9], 0.95);
        assert_eq!(linspace(0.0, 1.0, 101)[100], 1.0);
    }

    #[test]
    fn box_iou_and_crowd() {
        let a = [0.0, 0.0, 10.0, 10.0];
        let b = [5.0, 0.0, 10.0, 10.0];
        assert!((box_iou(&a, &b, false) - 50.0 / 150.0).abs() < 1e-12);
        // Against a crowd region: the share of the detection inside it.
        assert!((box_iou(&a, &b, true) - 0.5).abs() < 1e-12);
        assert_eq!(box_iou(&a, &[10.0, 0.0, 5.0, 5.0], false), 0.0);
    }
}
