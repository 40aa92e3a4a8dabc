//! Detectron2 mask post-processing, bit-exact with its CPU path:
//! `detector_postprocess` box scaling and `paste_masks_in_image` (`_do_paste_mask`,
//! skip_empty=True) followed by the `>= threshold` binarisation. Each mask is produced only
//! over Detectron2's per-box paste region, never as a full-image buffer.
//!
//! All arithmetic is f32 in PyTorch's operation order. Sampling follows PyTorch's vectorized
//! CPU grid_sample kernel (bilinear, zeros padding, align_corners=False), which unnormalises
//! as `(g + 1) * (M / 2) - 0.5` (the scalar fallback's `((g + 1) * M - 1) / 2` can differ by
//! an ulp) and accumulates `((nw + ne) + sw) + se` without fused multiply-adds.

/// A binary mask covering the rectangle [x0, x0+width) x [y0, y0+height) of the full image; row-major, one bool per pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionMask {
    pub x0: usize,
    pub y0: usize,
    pub width: usize,
    pub height: usize,
    pub bits: Vec<bool>,
}

impl RegionMask {
    /// Shrink to the tight bounding rectangle of the set pixels; None if no pixel is set.
    pub fn tight(&self) -> Option<RegionMask> {
        let (mut cx0, mut cy0, mut cx1, mut cy1) = (usize::MAX, usize::MAX, 0, 0);
        for (i, _) in self.bits.iter().enumerate().filter(|(_, b)| **b) {
            let (x, y) = (i % self.width, i / self.width);
            cx0 = cx0.min(x);
            cy0 = cy0.min(y);
            cx1 = cx1.max(x + 1);
            cy1 = cy1.max(y + 1);
        }
        if cx0 == usize::MAX {
            return None;
        }
        let (w, h) = (cx1 - cx0, cy1 - cy0);
        let mut bits = Vec::with_capacity(w * h);
        for y in cy0..cy1 {
            let row = (y * self.width)..((y + 1) * self.width);
            bits.extend_from_slice(&self.bits[row][cx0..cx1]);
        }
        Some(RegionMask {
            x0: self.x0 + cx0,
            y0: self.y0 + cy0,
            width: w,
            height: h,
            bits,
        })
    }

    pub fn count(&self) -> usize {
        self.bits.iter().filter(|b| **b).count()
    }
}

/// Intersection over union of two [x0, y0, x1, y1] boxes (0 when both are empty):
/// the one box IoU of the sliding-window merge and the tracker.
pub fn box_iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: &[f64; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// detector_postprocess on one box (x0,y0,x1,y1 in the resized frame of size (rh, rw)) for an output image (oh, ow):
/// scale by (ow/rw, oh/rh) (computed in f64, then rounded to f32 and multiplied in f32, as PyTorch does), clip x to [0, ow], y to [0, oh].
/// Returns None when the result is empty (width <= 0 or height <= 0), which Detectron2 drops.
/// Non-finite boxes (Detectron2 asserts on them) and zero-sized frames also give None.
pub fn rescale_box(b: [f32; 4], rh: usize, rw: usize, oh: usize, ow: usize) -> Option<[f32; 4]> {
    if rh == 0 || rw == 0 || b.iter().any(|v| !v.is_finite()) {
        return None;
    }
    // Python float scale; PyTorch's f32 `*=` with a Python scalar rounds it to f32 first.
    let sx = (ow as f64 / rw as f64) as f32;
    let sy = (oh as f64 / rh as f64) as f32;
    let (w, h) = (ow as f32, oh as f32);
    let x0 = (b[0] * sx).max(0.0).min(w);
    let y0 = (b[1] * sy).max(0.0).min(h);
    let x1 = (b[2] * sx).max(0.0).min(w);
    let y1 = (b[3] * sy).max(0.0).min(h);
    // Boxes.nonempty(): widths > 0 and heights > 0.
    (x1 - x0 > 0.0 && y1 - y0 > 0.0).then_some([x0, y0, x1, y1])
}

/// Per-axis sampling parameters for output pixels lo..hi against a box side [b0, b1]:
/// (floor index, weight of the lower neighbour, weight of the upper neighbour).
fn axis(lo: i64, hi: i64, b0: f32, b1: f32, m: usize) -> Vec<(i64, f32, f32)> {
    let half = m as f32 / 2.0;
    (lo..hi)
        .map(|p| {
            // img = (arange + 0.5 - b0) / (b1 - b0) * 2 - 1, each op rounded to f32.
            let g = (p as f32 + 0.5 - b0) / (b1 - b0) * 2.0 - 1.0;
            let c = (g + 1.0) * half - 0.5;
            let f = c.floor();
            let frac = c - f;
            (f as i64, 1.0 - frac, frac)
        })
        .collect()
}

/// paste_masks_in_image for one instance (M x M probabilities, row-major) with its final box in the output frame (image oh x ow),
/// thresholded with `>= threshold` (0.5 in Detectron2). Computed only over Detectron2's CPU paste region.
/// Degenerate inputs (probs.len() != m*m, m == 0, a non-finite or empty box, a box wholly
/// outside the image) give an empty region (width or height 0) instead of panicking.
pub fn paste_mask(
    probs: &[f32],
    m: usize,
    b: [f32; 4],
    oh: usize,
    ow: usize,
    threshold: f32,
) -> RegionMask {
    let [bx0, by0, bx1, by1] = b;
    let ok = m > 0
        && m.checked_mul(m) == Some(probs.len())
        && b.iter().all(|v| v.is_finite())
        && bx1 > bx0
        && by1 > by0;
    // Paste region: clamp(floor(x0) - 1, min=0) .. clamp(ceil(x1) + 1, max=W), in f32 then int.
    let (x0i, y0i) = (
        (bx0.floor() - 1.0).max(0.0) as i64,
        (by0.floor() - 1.0).max(0.0) as i64,
    );
    let x1i = ((bx1.ceil() + 1.0).min(ow as f32) as i64).max(x0i);
    let y1i = ((by1.ceil() + 1.0).min(oh as f32) as i64).max(y0i);
    if !ok || x1i == x0i || y1i == y0i {
        let (x0, y0) = (x0i.min(ow as i64) as usize, y0i.min(oh as i64) as usize);
        return RegionMask {
            x0,
            y0,
            width: 0,
            height: 0,
            bits: Vec::new(),
        };
    }
    let xs = axis(x0i, x1i, bx0, bx1, m);
    let ys = axis(y0i, y1i, by0, by1, m);
    // Zeros padding: a neighbour outside [0, M-1] contributes 0.
    let at = |y: i64, x: i64| -> f32 {
        if (0..m as i64).contains(&y) && (0..m as i64).contains(&x) {
            probs[y as usize * m + x as usize]
        } else {
            0.0
        }
    };
    let mut bits = Vec::with_capacity(xs.len() * ys.len());
    for &(iy, s, n) in &ys {
        for &(ix, e, w) in &xs {
            let v = at(iy, ix) * (s * e)
                + at(iy, ix + 1) * (s * w)
                + at(iy + 1, ix) * (n * e)
                + at(iy + 1, ix + 1) * (n * w);
            bits.push(v >= threshold);
        }
    }
    RegionMask {
        x0: x0i as usize,
        y0: y0i as usize,
        width: xs.len(),
        height: ys.len(),
        bits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A 2x2 mask in a 10x10 image.
    fn p2(probs: &[f32], b: [f32; 4], thr: f32) -> RegionMask {
        paste_mask(probs, 2, b, 10, 10, thr)
    }

    fn rows(r: &RegionMask) -> Vec<String> {
        let ch = |b: &bool| if *b { '#' } else { '.' };
        r.bits
            .chunks(r.width)
            .map(|c| c.iter().map(ch).collect())
            .collect()
    }

    #[test]
    fn ones_2x2_fill_exactly_the_box() {
        // 1-D weights over pixels 1..7 are [.25,.75,1,1,.75,.25]; >= .5 keeps exactly [2,6).
        let r = p2(&[1.0; 4], [2.0, 2.0, 6.0, 6.0], 0.5);
        assert_eq!((r.x0, r.y0, r.width, r.height), (1, 1, 6, 6));
        let inner = ".####.";
        let want = ["......", inner, inner, inner, inner, "......"];
        assert_eq!(rows(&r), want);
        let t = r.tight().unwrap();
        assert_eq!((t.x0, t.y0, t.width, t.height, t.count()), (2, 2, 4, 4, 16));
        assert!(t.bits.iter().all(|&b| b));
        // The corner weight is .25 * .25 exactly; every region pixel reaches it.
        assert_eq!(p2(&[1.0; 4], [2.0, 2.0, 6.0, 6.0], 0.0625).count(), 36);
    }

    #[test]
    fn box_partly_outside_and_region_clamps() {
        let r = p2(&[1.0; 4], [-2.0, -2.0, 2.0, 2.0], 0.5);
        assert_eq!((r.x0, r.y0, r.width, r.height), (0, 0, 3, 3));
        assert_eq!(rows(&r), ["##.", "##.", "..."]);
        let r = p2(&[1.0; 4], [8.5, 8.5, 10.0, 10.0], 0.5);
        assert_eq!((r.x0, r.y0, r.width, r.height), (7, 7, 3, 3));
        assert_eq!(r.tight().unwrap().x0, 8);
    }

    #[test]
    fn degenerate_inputs_give_empty_regions() {
        assert_eq!(p2(&[1.0; 4], [20.0, 20.0, 30.0, 30.0], 0.5).width, 0);
        assert_eq!(p2(&[1.0; 4], [3.0, 3.0, 3.0, 5.0], 0.5).count(), 0);
        assert!(p2(&[1.0; 3], [1.0, 1.0, 5.0, 5.0], 0.5).bits.is_empty());
        let r = p2(&[0.0; 4], [1.0, 1.0, 5.0, 5.0], 0.5);
        assert_eq!((r.width, r.height, r.count()), (6, 6, 0));
        assert_eq!(r.tight(), None);
    }

    #[test]
    fn rescale_scales_clips_and_drops() {
        let half = rescale_box([10.0, 20.0, 30.0, 40.0], 100, 200, 50, 100);
        assert_eq!(half, Some([5.0, 10.0, 15.0, 20.0]));
        let rb = |b: [f32; 4]| rescale_box(b, 100, 200, 100, 200);
        assert_eq!(rb([-5.0, 0.0, 250.0, 90.0]), Some([0.0, 0.0, 200.0, 90.0]));
        assert_eq!(rb([210.0, 10.0, 250.0, 20.0]), None);
        assert_eq!(rb([1.0, 5.0, 2.0, 5.0]), None);
        assert_eq!(rb([f32::NAN, 0.0, 1.0, 1.0]), None);
        // Golden Detectron2 values (chelsea fixture); an f64 multiply would miss some by an ulp.
        let b = [129.02061, 91.82254, 147.94817, 134.37749];
        let want = [120.973595, 86.08363, 138.72063, 125.9789];
        assert_eq!(rescale_box(b, 320, 481, 300, 451), Some(want));
    }
}
