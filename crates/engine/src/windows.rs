//! Sliding-window inference as Supervisely's serving SDK defines it: windows
//! laid over the image by its rule (the last window of each axis shifted back
//! to the border), each window inferred like a whole image, and the windows'
//! instances merged by concatenation ("basic", what Detectron2's app serves) or
//! by class-agnostic NMS at IoU 0.5 ("advanced"). Used by `serve`; a library
//! module so that `batch` can run the same windows.

use std::time::Duration;

use crate::decode::RgbImage;
use crate::pipeline::{Instance, LoadedModel, PredictError, Prediction, Roi, Settings, Timings};

/// Window size, overlap and border rule (Supervisely's `sliding_window_params`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowParams {
    /// None: the image's height (Supervisely's default).
    pub height: Option<usize>,
    /// None: the image's width.
    pub width: Option<usize>,
    pub overlap_y: usize,
    pub overlap_x: usize,
    pub border: BorderStrategy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BorderStrategy {
    /// The last window of each axis moves back inside the image (the default).
    ShiftWindow,
    /// Windows of the stride's size, clipped to the image.
    ChangeSize,
}

impl BorderStrategy {
    pub fn parse(s: &str) -> Result<Self, WindowError> {
        match s {
            "shift_window" => Ok(Self::ShiftWindow),
            "change_size" => Ok(Self::ChangeSize),
            // Supervisely's own "add_padding" crops past the image and always fails there.
            other => Err(WindowError(format!("borderStrategy `{other}` is not supported: use \"shift_window\" (the default) or \"change_size\""))),
        }
    }
}

/// How the windows' instances become the image's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeMode {
    /// Every window's instances, in window order; duplicates in overlaps stay.
    Basic,
    /// Class-agnostic NMS over the instances' boxes at IoU 0.5, highest score first.
    Advanced,
}

impl MergeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Basic => "basic",
            Self::Advanced => "advanced",
        }
    }
}

/// Bad window parameters for this image (a client's fault: HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WindowError(pub String);

/// The windows over an `image_h` × `image_w` image, in row-major order, as
/// inclusive rectangles.
pub fn sliding_windows(image_h: usize, image_w: usize, p: &WindowParams) -> Result<Vec<Roi>, WindowError> {
    let (wh, ww) = (p.height.unwrap_or(image_h), p.width.unwrap_or(image_w));
    if wh == 0 || ww == 0 {
        return Err(WindowError("windowHeight and windowWidth must be at least 1".into()));
    }
    if p.overlap_y >= wh || p.overlap_x >= ww {
        return Err(WindowError(format!(
            "Wrong sliding window settings, overlap is too high: overlap {}x{} must be smaller than the window {wh}x{ww} (height x width)",
            p.overlap_y, p.overlap_x
        )));
    }
    let (sy, sx) = (wh - p.overlap_y, ww - p.overlap_x);
    match p.border {
        BorderStrategy::ShiftWindow => {
            if wh > image_h || ww > image_w {
                return Err(WindowError(format!("Sliding window: window {wh}x{ww} is larger than the {image_h}x{image_w} image (height x width)")));
            }
            let (ly, lx) = (image_h - wh, image_w - ww);
            let mut out = Vec::new();
            for t in (0..ly + sy).step_by(sy) {
                for l in (0..lx + sx).step_by(sx) {
                    let (top, left) = (t.min(ly), l.min(lx));
                    out.push(Roi { left, top, right: left + ww - 1, bottom: top + wh - 1 });
                }
            }
            Ok(out)
        }
        BorderStrategy::ChangeSize => {
            let mut out = Vec::new();
            for top in (0..image_h).step_by(sy) {
                for left in (0..image_w).step_by(sx) {
                    out.push(Roi { left, top, right: (left + sx).min(image_w) - 1, bottom: (top + sy).min(image_h) - 1 });
                }
            }
            Ok(out)
        }
    }
}

/// One window's answer.
#[derive(Debug, Clone)]
pub struct WindowPrediction {
    pub window: Roi,
    /// In full-image coordinates.
    pub instances: Vec<Instance>,
}

/// A sliding-window answer: each window's instances, all of them, and the merged ones.
#[derive(Debug, Clone)]
pub struct WindowedPrediction {
    pub windows: Vec<WindowPrediction>,
    pub all: Vec<Instance>,
    pub mode: MergeMode,
    /// The merged instances as the image's prediction (full image size, summed timings).
    pub merged: Prediction,
}

/// Run `model` on each window of `image` (each window inferred like a whole
/// image, with `settings`' threshold and classes) and merge.
pub fn predict_windows(model: &LoadedModel, image: &RgbImage, settings: &Settings, params: &WindowParams, mode: MergeMode) -> Result<WindowedPrediction, PredictError> {
    let rois = sliding_windows(image.height, image.width, params).map_err(|e| PredictError::Windows(e.0))?;
    let mut timings = Timings::default();
    let mut windows = Vec::with_capacity(rois.len());
    for window in rois {
        let p = model.predict(image, &Settings { roi: Some(window), ..settings.clone() })?;
        add(&mut timings, &p.timings);
        windows.push(WindowPrediction { window, instances: p.instances });
    }
    let all: Vec<Instance> = windows.iter().flat_map(|w| w.instances.iter().cloned()).collect();
    let merged = match mode {
        MergeMode::Basic => all.clone(),
        MergeMode::Advanced => agnostic_nms(&all, 0.5),
    };
    Ok(WindowedPrediction {
        windows,
        all,
        mode,
        merged: Prediction { height: image.height, width: image.width, instances: merged, timings },
    })
}

impl WindowedPrediction {
    /// Supervisely's `data` of a sliding-window answer: one slide per window
    /// (its inclusive rectangle, its labels), then the whole image, one pixel
    /// past it as the SDK writes it, with every window's labels, and again with
    /// the merged ones.
    pub fn slides_json(&self, model: &LoadedModel) -> serde_json::Value {
        let rect = |left: usize, top: usize, right: usize, bottom: usize| serde_json::json!({"points": {"exterior": [[left, top], [right, bottom]], "interior": []}});
        let (h, w) = (self.merged.height, self.merged.width);
        let mut slides: Vec<serde_json::Value> = self
            .windows
            .iter()
            .map(|s| serde_json::json!({"rectangle": rect(s.window.left, s.window.top, s.window.right, s.window.bottom), "labels": model.objects(&s.instances)}))
            .collect();
        slides.push(serde_json::json!({"rectangle": rect(0, 0, w, h), "labels": model.objects(&self.all)}));
        slides.push(serde_json::json!({"rectangle": rect(0, 0, w, h), "labels": model.objects(&self.merged.instances)}));
        serde_json::json!({"slides": slides})
    }
}

fn add(total: &mut Timings, t: &Timings) {
    let sum = |a: Duration, b: Duration| a + b;
    total.resize = sum(total.resize, t.resize);
    total.infer = sum(total.infer, t.infer);
    total.postprocess = sum(total.postprocess, t.postprocess);
}

/// Intersection over union of two boxes `[x0, y0, x1, y1]`.
fn iou(a: &[f32; 4], b: &[f32; 4]) -> f64 {
    crate::paste::box_iou(&a.map(f64::from), &b.map(f64::from))
}

/// Class-agnostic NMS: instances by descending score (ties in input order),
/// each kept unless it overlaps a kept one by more than `threshold` IoU.
pub fn agnostic_nms(instances: &[Instance], threshold: f32) -> Vec<Instance> {
    let mut order: Vec<usize> = (0..instances.len()).collect();
    order.sort_by(|&a, &b| instances[b].score.total_cmp(&instances[a].score).then(a.cmp(&b)));
    let mut kept: Vec<&Instance> = Vec::new();
    for i in order {
        let cand = &instances[i];
        if kept.iter().all(|k| iou(&k.bbox, &cand.bbox) <= f64::from(threshold)) {
            kept.push(cand);
        }
    }
    kept.into_iter().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paste::RegionMask;

    fn params(h: usize, w: usize, oy: usize, ox: usize) -> WindowParams {
        WindowParams { height: Some(h), width: Some(w), overlap_y: oy, overlap_x: ox, border: BorderStrategy::ShiftWindow }
    }

    #[test]
    fn windows_follow_supervisely_rule() {
        // The protocol's example: 400x600, 256x256, overlap 32: tops 0, 144; lefts 0, 224, 344.
        let w = sliding_windows(400, 600, &params(256, 256, 32, 32)).unwrap();
        let corners: Vec<(usize, usize)> = w.iter().map(|r| (r.top, r.left)).collect();
        assert_eq!(corners, [(0, 0), (0, 224), (0, 344), (144, 0), (144, 224), (144, 344)]);
        assert!(w.iter().all(|r| r.bottom - r.top + 1 == 256 && r.right - r.left + 1 == 256 && r.bottom < 400 && r.right < 600));
        // A window the size of the image is the image, once.
        assert_eq!(sliding_windows(10, 20, &params(10, 20, 0, 0)).unwrap(), [Roi { left: 0, top: 0, right: 19, bottom: 9 }]);
        // Unset sizes default to the image.
        let whole = WindowParams { height: None, width: None, overlap_y: 0, overlap_x: 0, border: BorderStrategy::ShiftWindow };
        assert_eq!(sliding_windows(7, 9, &whole).unwrap().len(), 1);
        // Windows per axis = ceil(L / s) + 1, no duplicates.
        let w = sliding_windows(1000, 300, &params(300, 300, 100, 0)).unwrap();
        assert_eq!(w.iter().map(|r| r.top).collect::<Vec<_>>(), [0, 200, 400, 600, 700]);
    }

    #[test]
    fn change_size_windows_are_the_stride_clipped() {
        let w = sliding_windows(10, 10, &WindowParams { border: BorderStrategy::ChangeSize, ..params(6, 6, 2, 2) }).unwrap();
        let r: Vec<(usize, usize, usize, usize)> = w.iter().map(|r| (r.top, r.left, r.bottom, r.right)).collect();
        assert_eq!(r, [(0, 0, 3, 3), (0, 4, 3, 7), (0, 8, 3, 9), (4, 0, 7, 3), (4, 4, 7, 7), (4, 8, 7, 9), (8, 0, 9, 3), (8, 4, 9, 7), (8, 8, 9, 9)]);
    }

    #[test]
    fn bad_parameters_are_refused_with_the_reason() {
        let e = sliding_windows(400, 600, &params(256, 256, 256, 0)).unwrap_err();
        assert!(e.0.contains("overlap is too high"), "{e}");
        let e = sliding_windows(100, 600, &params(256, 256, 0, 0)).unwrap_err();
        assert!(e.0.contains("larger than the 100x600 image"), "{e}");
        assert!(sliding_windows(100, 100, &params(0, 10, 0, 0)).is_err());
        assert!(BorderStrategy::parse("add_padding").unwrap_err().0.contains("shift_window"));
    }

    fn inst(score: f32, bbox: [f32; 4]) -> Instance {
        Instance { class_id: 0, score, bbox, mask: RegionMask { x0: 0, y0: 0, width: 1, height: 1, bits: vec![true] } }
    }

    #[test]
    fn agnostic_nms_keeps_the_best_of_overlapping_boxes() {
        let a = inst(0.6, [0.0, 0.0, 10.0, 10.0]);
        let b = inst(0.9, [1.0, 0.0, 11.0, 10.0]); // IoU 0.82 with a
        let c = inst(0.7, [20.0, 20.0, 30.0, 30.0]);
        let d = inst(0.5, [5.0, 0.0, 15.0, 10.0]); // IoU 0.33 with a, 0.43 with b: kept
        let kept = agnostic_nms(&[a, b, c, d], 0.5);
        let scores: Vec<f32> = kept.iter().map(|i| i.score).collect();
        assert_eq!(scores, [0.9, 0.7, 0.5]);
    }
}
