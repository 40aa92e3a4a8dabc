//! Fixture loading for the end-to-end tests: .npy arrays, Detectron2 golden
//! outputs, and the ONNX Runtime availability rule.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A little-endian .npy array (f32, u8, i64 or bool), C order.
pub struct Npy {
    pub shape: Vec<usize>,
    pub descr: String,
    pub data: Vec<u8>,
}

impl Npy {
    pub fn read(path: &Path) -> Npy {
        let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(&b[..6], b"\x93NUMPY", "{} is not .npy", path.display());
        let (hlen, start) = if b[6] == 1 {
            (u16::from_le_bytes([b[8], b[9]]) as usize, 10)
        } else {
            (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12)
        };
        let header = std::str::from_utf8(&b[start..start + hlen]).unwrap();
        let field = |k: &str| {
            let i = header.find(k).unwrap() + k.len();
            header[i..].trim_start_matches([':', ' ', '\'']).to_string()
        };
        let descr = field("'descr'");
        let descr = descr[..descr.find('\'').unwrap()].to_string();
        assert!(field("'fortran_order'").starts_with("False"), "{}: Fortran order", path.display());
        let shape_s = field("'shape'");
        let shape_s = &shape_s[shape_s.find('(').unwrap() + 1..shape_s.find(')').unwrap()];
        let shape = shape_s.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse().unwrap()).collect();
        Npy { shape, descr, data: b[start + hlen..].to_vec() }
    }

    pub fn f32(&self) -> Vec<f32> {
        assert_eq!(self.descr, "<f4");
        self.data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    }
}

/// The network input of a fixture image as the graph takes it: uint8 RGB HWC.
/// (`NAME.preprocessed.npy` is float CHW in the model's channel order, BGR here.)
pub fn graph_input(family_dir: &Path, image: &str, bgr: bool) -> (Vec<u8>, usize, usize) {
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(family_dir.join(format!("{image}.json"))).unwrap()).unwrap();
    let rel = info["preprocessed"].as_str().unwrap();
    let npy = Npy::read(&family_dir.join(rel));
    let (c, h, w) = (npy.shape[0], npy.shape[1], npy.shape[2]);
    assert_eq!(c, 3);
    let v = npy.f32();
    let mut out = vec![0u8; h * w * 3];
    for y in 0..h {
        for x in 0..w {
            for ch in 0..3 {
                let src = if bgr { 2 - ch } else { ch };
                out[(y * w + x) * 3 + ch] = v[src * h * w + y * w + x].round() as u8;
            }
        }
    }
    (out, h, w)
}

pub use d2serve_engine::testing::ort_available;

pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let ix = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let iy = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ix * iy;
    let ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    inter / ua.max(1e-9)
}

/// The parity contract's instance matching: for each reference instance in order
/// (score order), the unused detection of `det` with the same class, |score
/// difference| <= `score_tolerance` (1e-3, or the image's Detectron2 spread
/// bound in parity.rs) and the highest box IoU, if that IoU is >= 0.99. Returns
/// (reference index, detection index, IoU) per match.
pub fn match_instances(
    reference: impl IntoIterator<Item = ([f32; 4], f32, i64)>,
    det: &d2serve_engine::runtime::RawDetections,
    score_tolerance: f32,
) -> Vec<(usize, usize, f32)> {
    let mut used = vec![false; det.scores.len()];
    let mut pairs = Vec::new();
    for (i, (gb, score, class)) in reference.into_iter().enumerate() {
        let best = (0..det.scores.len())
            .filter(|&j| !used[j] && det.classes[j] == class && (det.scores[j] - score).abs() <= score_tolerance)
            .map(|j| (j, iou(&gb, &det.boxes[j])))
            .filter(|&(_, v)| v >= 0.99)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((j, v)) = best {
            used[j] = true;
            pairs.push((i, j, v));
        }
    }
    pairs
}
