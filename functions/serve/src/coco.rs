//! COCO-style results (`?format=coco`): boxes as [x, y, w, h] and masks as
//! compressed RLE (pycocotools' `rleToString`), column-major over the image.

use d2serve_engine::paste::RegionMask;
use serde_json::{Value, json};

/// Run lengths (starting with zeros) of `mask` placed in an `h × w` image, column-major.
fn runs(mask: &RegionMask, h: usize, w: usize) -> Vec<u64> {
    let mut counts = Vec::new();
    let mut current = false;
    let mut run = 0u64;
    let mut push = |v: bool, n: u64, counts: &mut Vec<u64>| {
        if n == 0 {
            return;
        }
        if v == current {
            run += n;
        } else {
            counts.push(run);
            current = v;
            run = n;
        }
    };
    for x in 0..w {
        if x < mask.x0 || x >= mask.x0 + mask.width {
            push(false, h as u64, &mut counts);
            continue;
        }
        push(false, mask.y0 as u64, &mut counts);
        for y in 0..mask.height {
            push(mask.bits[y * mask.width + (x - mask.x0)], 1, &mut counts);
        }
        push(false, (h - mask.y0 - mask.height) as u64, &mut counts);
    }
    counts.push(run);
    counts
}

/// pycocotools' compact string encoding of run lengths.
fn rle_string(counts: &[u64]) -> String {
    let mut s = String::new();
    for i in 0..counts.len() {
        let mut x = counts[i] as i64;
        if i > 2 {
            x -= counts[i - 2] as i64;
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

/// One COCO result object.
pub fn result(category_id: usize, class_name: &str, score: f32, bbox: [f32; 4], mask: &RegionMask, h: usize, w: usize) -> Value {
    json!({
        "category_id": category_id,
        "category_name": class_name,
        "score": f64::from(score),
        "bbox": [bbox[0], bbox[1], bbox[2] - bbox[0], bbox[3] - bbox[1]],
        "segmentation": {"size": [h, w], "counts": rle_string(&runs(mask, h, w))},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rle_matches_pycocotools() {
        // 3x3 image, pixel (row 1, col 1) set: column-major zeros 4, one 1, zeros 4.
        let m = RegionMask { x0: 1, y0: 1, width: 1, height: 1, bits: vec![true] };
        assert_eq!(runs(&m, 3, 3), vec![4, 1, 4]);
        // pycocotools rleToString of these runs:
        assert_eq!(rle_string(&[4, 1, 4]), "414");
        // A mask starting with a set pixel begins with a zero-length run.
        let m = RegionMask { x0: 0, y0: 0, width: 2, height: 1, bits: vec![true, true] };
        assert_eq!(runs(&m, 2, 2), vec![0, 1, 1, 1, 1]);
        // Larger values use continuation characters; deltas from i > 2.
        assert_eq!(rle_string(&[100, 5, 200, 7]), "T35X62");
    }
}
