//! One image through a converted model, exactly like Detectron2's
//! `DefaultPredictor` + `detector_postprocess`: resize (Pillow bilinear),
//! the graph, boxes scaled back and clipped, empty boxes dropped, masks pasted
//! at box-local size and thresholded.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use d2serve_registry::Manifest;

use crate::decode::RgbImage;
use crate::paste::{RegionMask, paste_mask, rescale_box};
use crate::resize::{output_size, resize_bilinear_rgb};
use crate::runtime::{Model, RuntimeError};

/// An inclusive pixel rectangle of the original image (Supervisely ROI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roi {
    pub left: usize,
    pub top: usize,
    pub right: usize,
    pub bottom: usize,
}

/// The one default object confidence threshold of `zoo predict`, `serve`
/// and `batch`: the Supervisely app's (`conf_thres: 0.45` in its
/// custom_settings.yaml), so every way of asking gives the same answer.
pub const DEFAULT_CONF_THRES: f64 = 0.45;

#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Keep instances with score >= this.
    pub conf_thres: f64,
    /// Keep only these class names (None: all).
    pub classes: Option<Vec<String>>,
    pub roi: Option<Roi>,
}

#[derive(Debug, Clone)]
pub struct Instance {
    pub class_id: usize,
    pub score: f32,
    /// x0, y0, x1, y1 in the original image.
    pub bbox: [f32; 4],
    /// Tight mask in original-image coordinates.
    pub mask: RegionMask,
}

#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub resize: Duration,
    pub infer: Duration,
    pub postprocess: Duration,
}

#[derive(Debug, Clone)]
pub struct Prediction {
    /// Original image size (the full image, also with an ROI).
    pub height: usize,
    pub width: usize,
    pub instances: Vec<Instance>,
    pub timings: Timings,
}

#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error("the rectangle [{left}, {top}, {right}, {bottom}] (left, top, right, bottom; inclusive) is not inside the {width}x{height} image")]
    RoiOutside {
        left: usize,
        top: usize,
        right: usize,
        bottom: usize,
        width: usize,
        height: usize,
    },
    #[error("unknown class `{0}` in settings.classes")]
    UnknownClass(String),
    /// Sliding-window parameters that do not fit the image.
    #[error("{0}")]
    Windows(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// A converted model ready to answer.
pub struct LoadedModel {
    pub manifest: Manifest,
    /// The artifact's version id (the registry's folder name; the sha256 of its
    /// manifest): what answers name as the artifact that computed them.
    pub version: String,
    pub file_bytes: u64,
    model: Mutex<Model>,
}

impl LoadedModel {
    pub fn new(manifest: Manifest, version: String, model: Model, file_bytes: u64) -> Self {
        Self {
            manifest,
            version,
            file_bytes,
            model: Mutex::new(model),
        }
    }

    /// The execution provider the session runs on (`auto` resolved).
    pub fn device(&self) -> crate::runtime::Device {
        self.model.lock().unwrap_or_else(|p| p.into_inner()).device()
    }

    /// The runtime the graph runs in (`auto` resolved).
    pub fn runtime(&self) -> crate::runtime::Runtime {
        self.model.lock().unwrap_or_else(|p| p.into_inner()).runtime()
    }

    /// The precision it runs in, as its runtime reports it.
    pub fn precision(&self) -> crate::runtime::Precision {
        self.model.lock().unwrap_or_else(|p| p.into_inner()).precision()
    }

    /// The Supervisely annotation of a prediction, one object per instance with this
    /// model's class names (what serve answers and batch stores).
    pub fn annotation(&self, p: &Prediction) -> serde_json::Value {
        crate::supervisely::annotation(p.height, p.width, self.objects(&p.instances))
    }

    /// Supervisely label objects of `instances`, with this model's class names.
    pub fn objects(&self, instances: &[Instance]) -> Vec<serde_json::Value> {
        instances.iter().map(|i| crate::supervisely::object(&self.manifest.classes[i.class_id].name, i.score, &i.mask)).collect()
    }

    /// Load a converted folder (`model.onnx` + `manifest.json`) directly.
    pub fn open(dir: &std::path::Path, opts: &crate::runtime::SessionOptions) -> Result<Self, RuntimeError> {
        let path = dir.join(d2serve_registry::manifest::MANIFEST_FILE);
        let unreadable = |detail: String| RuntimeError::Model { path: dir.display().to_string(), detail };
        let bytes = std::fs::read(&path).map_err(|e| unreadable(format!("{}: {e}", path.display())))?;
        let manifest = Manifest::from_slice(&bytes, &path.display().to_string()).map_err(|e| unreadable(e.to_string()))?;
        let version = Manifest::version_id(&bytes);
        let model = Model::load(&dir.join(d2serve_registry::manifest::MODEL_FILE), opts, manifest.spec.as_ref())?;
        let size = manifest.artifact.size;
        Ok(Self::new(manifest, version, model, size))
    }

    pub fn class_names(&self) -> impl Iterator<Item = &str> {
        self.manifest.classes.iter().map(|c| c.name.as_str())
    }

    /// Detect instances in `image` (the full original image).
    pub fn predict(&self, image: &RgbImage, settings: &Settings) -> Result<Prediction, PredictError> {
        let keep_class: Option<Vec<bool>> = match &settings.classes {
            None => None,
            Some(names) => {
                let mut keep = vec![false; self.manifest.classes.len()];
                for n in names {
                    let i = self
                        .manifest
                        .classes
                        .iter()
                        .position(|c| &c.name == n)
                        .ok_or_else(|| PredictError::UnknownClass(n.clone()))?;
                    keep[i] = true;
                }
                Some(keep)
            }
        };
        let cropped;
        let (img, dx, dy) = match settings.roi {
            None => (image, 0, 0),
            Some(r) => {
                if r.left > r.right || r.top > r.bottom || r.right >= image.width || r.bottom >= image.height {
                    return Err(PredictError::RoiOutside {
                        left: r.left,
                        top: r.top,
                        right: r.right,
                        bottom: r.bottom,
                        width: image.width,
                        height: image.height,
                    });
                }
                cropped = image.crop(r.left, r.top, r.right, r.bottom);
                (&cropped, r.left, r.top)
            }
        };
        let mut timings = Timings::default();
        let t = Instant::now();
        let (rh, rw) = output_size(&self.manifest.resize, img.height, img.width);
        let resized = resize_bilinear_rgb(&img.data, img.height, img.width, rh, rw);
        timings.resize = t.elapsed();

        let t = Instant::now();
        let raw = {
            let mut m = self.model.lock().unwrap_or_else(|p| p.into_inner());
            m.run(&resized, rh, rw)?
        };
        timings.infer = t.elapsed();

        let t = Instant::now();
        let (oh, ow) = (img.height, img.width);
        let m = raw.mask_size;
        let threshold = self.manifest.thresholds.mask;
        let mut instances = Vec::new();
        for i in 0..raw.scores.len() {
            let score = raw.scores[i];
            let class_id = raw.classes[i].max(0) as usize;
            if f64::from(score) < settings.conf_thres || keep_class.as_ref().is_some_and(|k| !k.get(class_id).copied().unwrap_or(false)) {
                continue;
            }
            // Detectron2 drops boxes that are empty after scaling back.
            let Some(b) = rescale_box(raw.boxes[i], rh, rw, oh, ow) else { continue };
            let mask = paste_mask(&raw.mask_probs[i * m * m..(i + 1) * m * m], m, b, oh, ow, threshold);
            // An empty mask is not an object (Supervisely refuses empty bitmaps).
            let Some(mut mask) = mask.tight() else { continue };
            mask.x0 += dx;
            mask.y0 += dy;
            instances.push(Instance {
                class_id,
                score,
                bbox: [b[0] + dx as f32, b[1] + dy as f32, b[2] + dx as f32, b[3] + dy as f32],
                mask,
            });
        }
        timings.postprocess = t.elapsed();
        Ok(Prediction {
            height: image.height,
            width: image.width,
            instances,
            timings,
        })
    }
}
