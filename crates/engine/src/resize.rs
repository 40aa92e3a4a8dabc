//! Bit-exact re-implementation of the preprocessing resize used by the
//! Detectron2 reference pipeline: `ResizeShortestEdge` size selection followed
//! by Pillow's `Image.resize(..., Image.BILINEAR)` on an RGB uint8 image.
//!
//! Pillow's "bilinear" is not textbook 2x2 interpolation: it is a separable
//! antialiasing convolution with a triangle kernel whose width grows with the
//! downscale factor, evaluated in 22-bit fixed point (libImaging/Resample.c).
//! Every float expression below mirrors the C source in operation order so
//! that the quantized coefficients, and therefore the output bytes, match.

/// The network input size (height, width) for an image of (h, w) under a
/// manifest's rule: Detectron2's `Resize(shape)` (a fixed size, aspect ratio
/// not kept) or `ResizeShortestEdge`.
pub fn output_size(rule: &d2serve_registry::manifest::ResizeRule, h: usize, w: usize) -> (usize, usize) {
    match rule.size {
        Some([fh, fw]) if rule.rule == "Resize" => (fh as usize, fw as usize),
        _ => shortest_edge_size(h, w, rule.min_size, rule.max_size),
    }
}

/// Detectron2 ResizeShortestEdge output size (height, width) for an image of (h, w).
pub fn shortest_edge_size(h: usize, w: usize, short_edge: u32, max_size: u32) -> (usize, usize) {
    // Same float64 sequence as detectron2 `ResizeShortestEdge.get_output_shape`.
    let (hf, wf) = (h as f64, w as f64);
    let size = short_edge as f64 * 1.0;
    let scale = size / hf.min(wf);
    let (mut newh, mut neww) = if h < w {
        (size, scale * wf)
    } else {
        (scale * hf, size)
    };
    let longest = newh.max(neww);
    if longest > max_size as f64 {
        let scale = max_size as f64 * 1.0 / longest;
        newh *= scale;
        neww *= scale;
    }
    // Python `int(x + 0.5)`: truncation toward zero (values are positive).
    ((newh + 0.5) as usize, (neww + 0.5) as usize)
}

/// Fixed-point precision of Pillow's 8-bit resampler: 32 - 8 - 2.
const PRECISION_BITS: u32 = 22;

/// Quantized filter taps for one axis: output index `i` reads `len[i]` source
/// samples starting at `start[i]`, with weights `k[i * ksize ..][.. len[i]]`.
struct Coeffs {
    ksize: usize,
    start: Vec<usize>,
    len: Vec<usize>,
    k: Vec<i32>,
}

/// Port of `precompute_coeffs` + `normalize_coeffs_8bpc` for the BILINEAR
/// filter (support 1.0) with the default box `(0, in_size)`.
fn precompute_coeffs(in_size: usize, out_size: usize) -> Coeffs {
    // C: `scale = (double)(in1 - in0) / outSize` with float box coords; sizes
    // are small integers so the float subtraction is exact.
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 1.0 * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let inv_filterscale = 1.0 / filterscale; // C multiplies by the inverse, not divides
    let mut c = Coeffs {
        ksize,
        start: Vec::with_capacity(out_size),
        len: Vec::with_capacity(out_size),
        k: vec![0; out_size * ksize],
    };
    let mut w = vec![0f64; ksize];
    for xx in 0..out_size {
        // C: `in0 + (xx + 0.5) * scale` with in0 = 0.0 for the default box.
        let center = (xx as f64 + 0.5) * scale;
        // `(int)` casts truncate toward zero, exactly like Rust `as i64`.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) - xmin;
        let n = xmax.max(0) as usize;
        let mut ww = 0.0;
        for (x, wx) in w.iter_mut().take(n).enumerate() {
            // C: `(x + xmin - center + 0.5) * inv_filterscale`, int sum first.
            let t = (((x as i64 + xmin) as f64 - center) + 0.5) * inv_filterscale;
            *wx = (1.0 - t.abs()).max(0.0); // bilinear_filter
            ww += *wx;
        }
        let row = &mut c.k[xx * ksize..xx * ksize + n];
        for (kq, &wx) in row.iter_mut().zip(&w) {
            let wn = if ww != 0.0 { wx / ww } else { wx };
            // normalize_coeffs_8bpc: round half away from zero, then truncate.
            let f = wn * (1u32 << PRECISION_BITS) as f64;
            *kq = if wn < 0.0 {
                (-0.5 + f) as i32
            } else {
                (0.5 + f) as i32
            };
        }
        c.start.push(xmin as usize);
        c.len.push(n);
    }
    c
}

/// `clip8`: arithmetic shift then clamp (Pillow uses a lookup table over
/// -640..639, equivalent to this clamp for every reachable value).
#[inline(always)]
fn clip8(ss: i32) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

const ROUND: i32 = 1 << (PRECISION_BITS - 1);

/// Horizontal pass over rows `y0..y1` of an RGB image of width `w`.
fn resample_horizontal(src: &[u8], w: usize, y0: usize, y1: usize, c: &Coeffs) -> Vec<u8> {
    let new_w = c.start.len();
    let mut out = vec![0u8; (y1 - y0) * new_w * 3];
    for (y, line_out) in (y0..y1).zip(out.chunks_exact_mut(new_w * 3)) {
        let line_in = &src[y * w * 3..(y + 1) * w * 3];
        for (xx, px) in line_out.chunks_exact_mut(3).enumerate() {
            let (s, n) = (c.start[xx], c.len[xx]);
            let k = &c.k[xx * c.ksize..xx * c.ksize + n];
            let (mut s0, mut s1, mut s2) = (ROUND, ROUND, ROUND);
            for (p, &kk) in line_in[s * 3..(s + n) * 3].chunks_exact(3).zip(k) {
                s0 += p[0] as i32 * kk;
                s1 += p[1] as i32 * kk;
                s2 += p[2] as i32 * kk;
            }
            px[0] = clip8(s0);
            px[1] = clip8(s1);
            px[2] = clip8(s2);
        }
    }
    out
}

/// Vertical pass. `row_offset` is subtracted from the tap rows because the
/// horizontal pass only produced rows `row_offset..` (Pillow's ybox trick).
/// Integer accumulation is exact, so looping taps-outer/columns-inner (which
/// vectorizes) gives the same sums as Pillow's columns-outer loop.
fn resample_vertical(src: &[u8], w: usize, row_offset: usize, c: &Coeffs) -> Vec<u8> {
    let stride = w * 3;
    let mut out = vec![0u8; c.start.len() * stride];
    let mut acc = vec![0i32; stride];
    for (yy, line_out) in out.chunks_exact_mut(stride).enumerate() {
        let (s, n) = (c.start[yy] - row_offset, c.len[yy]);
        acc.iter_mut().for_each(|a| *a = ROUND);
        for (t, &kk) in c.k[yy * c.ksize..yy * c.ksize + n].iter().enumerate() {
            let line_in = &src[(s + t) * stride..(s + t + 1) * stride];
            for (a, &p) in acc.iter_mut().zip(line_in) {
                *a += p as i32 * kk;
            }
        }
        for (o, &a) in line_out.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

/// Pass order of Pillow 13.0 (`ImagingResampleInner`, python-pillow/Pillow#9549,
/// confirmed by disassembling the 13.0.0 wheel and on 2303 random cases):
/// the vertical pass runs first iff the height shrinks by more than twice
/// as many pixels as the width does. Pillow <= 12.x always ran horizontal
/// first; the order matters because the intermediate image is rounded to u8.
fn vertical_first(h: usize, w: usize, new_h: usize, new_w: usize) -> bool {
    let dh = h as i64 - new_h as i64;
    dh > 0 && dh > 2 * (w as i64 - new_w as i64)
}

/// Pillow's `Image.resize((new_w, new_h), Image.BILINEAR)` on an RGB uint8 image (HWC, row-major), reproduced bit for bit.
///
/// Matches Pillow 13.0.0 (see [`vertical_first`]); a pass is skipped when its
/// dimension is unchanged. Returns an empty vector if either output
/// dimension is zero (Pillow would raise).
pub fn resize_bilinear_rgb(src: &[u8], h: usize, w: usize, new_h: usize, new_w: usize) -> Vec<u8> {
    assert_eq!(src.len(), h * w * 3, "src must be h * w * 3 bytes");
    if new_h == 0 || new_w == 0 || h == 0 || w == 0 {
        return Vec::new();
    }
    if new_h == h && new_w == w {
        return src.to_vec(); // Image.resize returns self.copy()
    }
    if new_w == w {
        return resample_vertical(src, w, 0, &precompute_coeffs(h, new_h));
    }
    let horiz = precompute_coeffs(w, new_w);
    if new_h == h {
        return resample_horizontal(src, w, 0, h, &horiz);
    }
    let vert = precompute_coeffs(h, new_h);
    if vertical_first(h, w, new_h, new_w) {
        let tmp = resample_vertical(src, w, 0, &vert);
        return resample_horizontal(&tmp, w, 0, new_h, &horiz);
    }
    // Horizontal first: only the source rows the vertical taps read
    // (Pillow's ybox_first..ybox_last) are resampled.
    let first = vert.start[0];
    let last = vert.start[new_h - 1] + vert.len[new_h - 1];
    let tmp = resample_horizontal(src, w, first, last, &horiz);
    resample_vertical(&tmp, new_w, first, &vert)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_detectron2() {
        assert_eq!(shortest_edge_size(512, 512, 320, 512), (320, 320));
        assert_eq!(shortest_edge_size(400, 600, 320, 512), (320, 480));
        assert_eq!(shortest_edge_size(300, 451, 320, 512), (320, 481));
        assert_eq!(shortest_edge_size(350, 741, 320, 512), (242, 512));
        assert_eq!(shortest_edge_size(480, 640, 800, 1333), (800, 1067));
        assert_eq!(shortest_edge_size(640, 480, 800, 1333), (1067, 800));
    }

    // 4x5 RGB image (numpy default_rng(42)); expected bytes from Pillow 13.0.0
    // `Image.fromarray(a).resize((new_w, new_h), Image.BILINEAR)`.
    const IN_4X5: [u8; 60] = [
        136, 38, 217, 22, 205, 251, 33, 198, 193, 255, 145, 167, 97, 86, 90, 112, 36, 22, 218, 110,
        194, 18, 205, 219, 141, 136, 0, 22, 14, 182, 134, 178, 235, 129, 147, 51, 181, 1, 28, 24,
        140, 83, 199, 134, 237, 98, 194, 249, 113, 68, 90, 188, 47, 13, 218, 194, 64, 151, 172,
        183,
    ];

    #[test]
    fn pillow_4x5_to_3x7_vertical_first() {
        let want: [u8; 63] = [
            129, 37, 159, 102, 117, 202, 66, 184, 225, 29, 200, 201, 166, 159, 141, 158, 109, 117,
            75, 64, 118, 123, 107, 129, 152, 120, 126, 153, 122, 123, 100, 103, 124, 88, 128, 65,
            95, 111, 114, 111, 74, 210, 109, 189, 245, 114, 134, 150, 137, 75, 61, 186, 33, 17,
            167, 137, 55, 162, 171, 125, 165, 161, 199,
        ];
        assert_eq!(resize_bilinear_rgb(&IN_4X5, 4, 5, 3, 7), want);
    }

    #[test]
    fn pillow_4x5_to_2x2_horizontal_first() {
        let want: [u8; 12] = [108, 128, 169, 113, 124, 132, 134, 115, 117, 142, 125, 106];
        assert_eq!(resize_bilinear_rgb(&IN_4X5, 4, 5, 2, 2), want);
    }

    #[test]
    fn pillow_4x5_to_4x2_horizontal_only() {
        let want: [u8; 24] = [
            71, 148, 223, 144, 141, 152, 135, 109, 136, 79, 112, 116, 138, 123, 106, 120, 107, 118,
            130, 109, 122, 185, 148, 91,
        ];
        assert_eq!(resize_bilinear_rgb(&IN_4X5, 4, 5, 4, 2), want);
    }

    #[test]
    fn pillow_4x5_to_2x5_vertical_only() {
        let want: [u8; 30] = [
            125, 57, 136, 121, 156, 198, 48, 173, 181, 173, 140, 83, 79, 62, 150, 115, 165, 211,
            135, 108, 88, 161, 50, 49, 124, 163, 63, 153, 133, 206,
        ];
        assert_eq!(resize_bilinear_rgb(&IN_4X5, 4, 5, 2, 5), want);
    }

    #[test]
    fn pass_order_rule() {
        assert!(vertical_first(4, 5, 3, 7)); // the 3x7 vector above needs it
        assert!(!vertical_first(4, 5, 2, 2));
        assert!(vertical_first(2000, 900, 1333, 600)); // tall photo at 800/1333
        assert!(!vertical_first(480, 640, 800, 1067)); // upscales: horizontal first
    }

    #[test]
    fn same_size_is_copy() {
        assert_eq!(resize_bilinear_rgb(&IN_4X5, 4, 5, 4, 5), IN_4X5);
    }
}
