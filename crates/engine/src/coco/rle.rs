//! COCO run-length masks, bit for bit as pycocotools reads and writes them:
//! runs alternate starting with zeros, column-major over an `h × w` image;
//! the compact string form is pycocotools' `rleToString`.

use crate::paste::RegionMask;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rle {
    pub height: usize,
    pub width: usize,
    /// Run lengths, the first one of zeros (possibly 0).
    pub counts: Vec<u32>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RleError {
    #[error("RLE counts cover {got} pixels, but the mask is {height}x{width} = {want}")]
    WrongLength { got: u64, want: u64, height: usize, width: usize },
    #[error("RLE counts string is malformed at character {0}")]
    BadString(usize),
}

impl Rle {
    /// Runs of a column-major boolean image.
    pub fn from_column_major(height: usize, width: usize, bits: impl IntoIterator<Item = bool>) -> Rle {
        let mut counts = Vec::new();
        let (mut current, mut run) = (false, 0u32);
        for b in bits {
            if b != current {
                counts.push(run);
                current = b;
                run = 0;
            }
            run += 1;
        }
        counts.push(run);
        Rle { height, width, counts }
    }

    /// `mask` (a tight box-local mask) placed in an `h × w` image.
    pub fn from_region(mask: &RegionMask, height: usize, width: usize) -> Rle {
        let bits = (0..width).flat_map(move |x| {
            (0..height).map(move |y| {
                x >= mask.x0
                    && x < mask.x0 + mask.width
                    && y >= mask.y0
                    && y < mask.y0 + mask.height
                    && mask.bits[(y - mask.y0) * mask.width + (x - mask.x0)]
            })
        });
        Rle::from_column_major(height, width, bits)
    }

    /// Uncompressed COCO RLE (`{"size": [h, w], "counts": [..]}`), checked for length.
    pub fn from_counts(height: usize, width: usize, counts: Vec<u32>) -> Result<Rle, RleError> {
        let got: u64 = counts.iter().map(|&c| u64::from(c)).sum();
        let want = (height * width) as u64;
        if got != want {
            return Err(RleError::WrongLength { got, want, height, width });
        }
        Ok(Rle { height, width, counts })
    }

    /// pycocotools' `rleFrString`: the compact string form, checked for length.
    pub fn from_string(height: usize, width: usize, s: &str) -> Result<Rle, RleError> {
        let bytes = s.as_bytes();
        let mut counts: Vec<u32> = Vec::new();
        let mut p = 0;
        while p < bytes.len() {
            let (mut x, mut k, mut more) = (0i64, 0u32, true);
            while more {
                let c = i64::from(bytes.get(p).copied().ok_or(RleError::BadString(p))?) - 48;
                if !(0..64).contains(&c) || k > 55 {
                    return Err(RleError::BadString(p));
                }
                x |= (c & 0x1f) << (5 * k);
                more = c & 0x20 != 0;
                p += 1;
                k += 1;
                if !more && (c & 0x10) != 0 {
                    x |= -1i64 << (5 * k);
                }
            }
            if counts.len() > 2 {
                x += i64::from(counts[counts.len() - 2]);
            }
            counts.push(u32::try_from(x).map_err(|_| RleError::BadString(p))?);
        }
        Rle::from_counts(height, width, counts)
    }

    /// pycocotools' `rleToString`.
    pub fn to_compact_string(&self) -> String {
        let mut s = String::new();
        for i in 0..self.counts.len() {
            let mut x = i64::from(self.counts[i]);
            if i > 2 {
                x -= i64::from(self.counts[i - 2]);
            }
            loop {
                let mut c = (x & 0x1f) as u8;
                x >>= 5;
                let more = if c & 0x10 != 0 { x != -1 } else { x != 0 };
                if more {
                    c |= 0x20;
                }
                s.push((c + 48) as char);
                if !more {
                    break;
                }
            }
        }
        s
    }

    /// Set pixels.
    pub fn area(&self) -> u64 {
        self.counts.iter().skip(1).step_by(2).map(|&c| u64::from(c)).sum()
    }

    /// Column-major bits.
    pub fn decode(&self) -> Vec<bool> {
        let mut bits = Vec::with_capacity(self.height * self.width);
        let mut v = false;
        for &c in &self.counts {
            bits.extend(std::iter::repeat_n(v, c as usize));
            v = !v;
        }
        bits
    }

    /// Union of masks of one size (pycocotools' `merge` without `intersect`).
    pub fn union(rles: &[Rle]) -> Option<Rle> {
        let first = rles.first()?;
        let mut bits = first.decode();
        for r in &rles[1..] {
            for (b, o) in bits.iter_mut().zip(r.decode()) {
                *b |= o;
            }
        }
        Some(Rle::from_column_major(first.height, first.width, bits))
    }

    /// pycocotools' `toBbox`: [x, y, w, h] of the set pixels (all zero when empty).
    pub fn bbox(&self) -> [f64; 4] {
        let h = self.height as u64;
        if h == 0 {
            return [0.0; 4];
        }
        let (mut xs, mut ys, mut xe, mut ye) = (u64::MAX, u64::MAX, 0u64, 0u64);
        let mut pos = 0u64;
        let mut any = false;
        for (i, &c) in self.counts.iter().enumerate() {
            let c = u64::from(c);
            if i % 2 == 1 && c > 0 {
                any = true;
                let (first, last) = (pos, pos + c - 1);
                let (x0, x1) = (first / h, last / h);
                xs = xs.min(x0);
                xe = xe.max(x1);
                if x0 == x1 {
                    ys = ys.min(first % h);
                    ye = ye.max(last % h);
                } else {
                    // The run wraps a column: it touches the top and bottom rows.
                    ys = 0;
                    ye = h - 1;
                }
            }
            pos += c;
        }
        if !any {
            return [0.0; 4];
        }
        [xs as f64, ys as f64, (xe - xs + 1) as f64, (ye - ys + 1) as f64]
    }

    /// Pixels set in both masks.
    pub fn intersection(&self, other: &Rle) -> u64 {
        let (mut a, mut b) = (self.counts.iter().copied(), other.counts.iter().copied());
        let (mut ca, mut cb) = (a.next().unwrap_or(0), b.next().unwrap_or(0));
        let (mut va, mut vb) = (false, false);
        let mut inter = 0u64;
        loop {
            while ca == 0 {
                match a.next() {
                    Some(c) => {
                        ca = c;
                        va = !va;
                    }
                    None => return inter,
                }
            }
            while cb == 0 {
                match b.next() {
                    Some(c) => {
                        cb = c;
                        vb = !vb;
                    }
                    None => return inter,
                }
            }
            let c = ca.min(cb);
            if va && vb {
                inter += u64::from(c);
            }
            ca -= c;
            cb -= c;
        }
    }
}

/// pycocotools' `frBbox`: a box [x, y, w, h] as the polygon of its corners.
pub fn box_polygon(b: [f64; 4]) -> Vec<f64> {
    let (x1, y1, x2, y2) = (b[0], b[1], b[0] + b[2], b[1] + b[3]);
    vec![x1, y1, x1, y2, x2, y2, x2, y1]
}

/// pycocotools' `rleFrPoly`: a polygon rasterised the way COCO's own masks were,
/// by walking its edges on a 5× upsampled grid and keeping, per column, the
/// y-boundary crossings at pixel centres.
pub fn from_polygon(xy: &[f64], height: usize, width: usize) -> Rle {
    let k = xy.len() / 2;
    let scale = 5.0f64;
    // C's (int) cast truncates toward zero; Rust's `as` does too (and saturates).
    let mut x: Vec<i64> = (0..k).map(|j| (scale * xy[2 * j] + 0.5) as i32 as i64).collect();
    let mut y: Vec<i64> = (0..k).map(|j| (scale * xy[2 * j + 1] + 0.5) as i32 as i64).collect();
    if k == 0 {
        return Rle { height, width, counts: vec![(height * width) as u32] };
    }
    x.push(x[0]);
    y.push(y[0]);
    let (mut u, mut v) = (Vec::new(), Vec::new());
    for j in 0..k {
        let (mut xs, mut xe, mut ys, mut ye) = (x[j], x[j + 1], y[j], y[j + 1]);
        let dx = (xe - xs).abs();
        let dy = (ys - ye).abs();
        let flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
        if flip {
            std::mem::swap(&mut xs, &mut xe);
            std::mem::swap(&mut ys, &mut ye);
        }
        if dx >= dy {
            let s = (ye - ys) as f64 / dx as f64;
            for d in 0..=dx {
                let t = if flip { dx - d } else { d };
                u.push(t + xs);
                // dx == 0 (a repeated vertex) gives NaN here, as in C; such a
                // point shares its column with its neighbours and is never used.
                v.push((ys as f64 + s * t as f64 + 0.5) as i32 as i64);
            }
        } else {
            let s = (xe - xs) as f64 / dy as f64;
            for d in 0..=dy {
                let t = if flip { dy - d } else { d };
                v.push(t + ys);
                u.push((xs as f64 + s * t as f64 + 0.5) as i32 as i64);
            }
        }
    }
    let (h, w) = (height as i64, width as i64);
    let mut a: Vec<u64> = Vec::new();
    for j in 1..u.len() {
        if u[j] == u[j - 1] {
            continue;
        }
        let xd = (if u[j] < u[j - 1] { u[j] } else { u[j] - 1 }) as f64;
        let xd = (xd + 0.5) / scale - 0.5;
        if xd.floor() != xd || xd < 0.0 || xd > (w - 1) as f64 {
            continue;
        }
        let yd = (if v[j] < v[j - 1] { v[j] } else { v[j - 1] }) as f64;
        let mut yd = (yd + 0.5) / scale - 0.5;
        if yd < 0.0 {
            yd = 0.0;
        } else if yd > h as f64 {
            yd = h as f64;
        }
        let yd = yd.ceil();
        a.push((xd as i64 * h + yd as i64) as u64);
    }
    a.push((h * w) as u64);
    a.sort_unstable();
    let mut prev = 0u64;
    for e in a.iter_mut() {
        let t = *e;
        *e -= prev;
        prev = t;
    }
    let mut counts: Vec<u32> = Vec::with_capacity(a.len());
    let mut j = 0;
    counts.push(a[j] as u32);
    j += 1;
    while j < a.len() {
        if a[j] > 0 {
            counts.push(a[j] as u32);
            j += 1;
        } else {
            j += 1;
            if j < a.len() {
                *counts.last_mut().expect("one run pushed") += a[j] as u32;
                j += 1;
            }
        }
    }
    Rle { height, width, counts }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_as_pycocotools_writes_them() {
        // 3x3 image, pixel (row 1, col 1) set: column-major zeros 4, one 1, zeros 4.
        let m = RegionMask { x0: 1, y0: 1, width: 1, height: 1, bits: vec![true] };
        let r = Rle::from_region(&m, 3, 3);
        assert_eq!(r.counts, vec![4, 1, 4]);
        assert_eq!(r.to_compact_string(), "414");
        // A mask starting with a set pixel begins with a zero-length run.
        let m = RegionMask { x0: 0, y0: 0, width: 2, height: 1, bits: vec![true, true] };
        assert_eq!(Rle::from_region(&m, 2, 2).counts, vec![0, 1, 1, 1, 1]);
        // pycocotools: rleToString([100, 5, 200, 7]) == "T35X62" (continuations, deltas from i > 2).
        let r = Rle { height: 24, width: 13, counts: vec![100, 5, 200, 7] };
        assert_eq!(r.to_compact_string(), "T35X62");
        assert_eq!(Rle::from_string(24, 13, "T35X62").unwrap(), r);
        // A negative delta (run shorter than the one two before).
        let r = Rle { height: 10, width: 100, counts: vec![500, 300, 20, 3, 177] };
        assert_eq!(Rle::from_string(10, 100, &r.to_compact_string()).unwrap(), r);
        assert!(matches!(Rle::from_string(3, 3, "41"), Err(RleError::WrongLength { .. })));
    }

    #[test]
    fn area_bbox_and_intersection() {
        // 4x4, column-major: col 0 empty, col 1 rows 1-2, col 2 rows 3 + col 3 rows 0-1 (a wrapping run).
        let r = Rle { height: 4, width: 4, counts: vec![5, 2, 4, 3, 2] };
        assert_eq!(r.area(), 5);
        assert_eq!(r.bbox(), [1.0, 0.0, 3.0, 4.0]);
        let s = Rle { height: 4, width: 4, counts: vec![6, 10] };
        assert_eq!(r.intersection(&s), 4);
        let bits_inter = r.decode().iter().zip(s.decode()).filter(|(a, b)| **a && *b).count() as u64;
        assert_eq!(bits_inter, 4);
        assert_eq!(Rle::union(&[r.clone(), s.clone()]).unwrap().area(), 11);
    }

    #[test]
    fn polygon_rasterisation_matches_pycocotools() {
        // pycocotools: decode(frPyObjects([[1,1, 6,1, 6,4, 1,4]], 6, 8)) sets columns 1..=5 and
        // rows 1..=3 (counts "7330000000;"): a pixel is in when its centre is, right/bottom edges out.
        let r = from_polygon(&[1.0, 1.0, 6.0, 1.0, 6.0, 4.0, 1.0, 4.0], 6, 8);
        let bits = r.decode();
        let set: Vec<(usize, usize)> = (0..48).filter(|&i| bits[i]).map(|i| (i / 6, i % 6)).collect();
        let want: Vec<(usize, usize)> = (1..6).flat_map(|x| (1..4).map(move |y| (x, y))).collect();
        assert_eq!(set, want);
        assert_eq!(r.to_compact_string(), "7330000000;");
    }
}
