//! COCO formats and metrics: run-length masks, instance datasets and results
//! files, and average precision computed as pycocotools computes it (what
//! `zoo eval` reports and the native API's `format=coco` writes).

pub mod dataset;
pub mod eval;
pub mod predict;
pub mod rle;

pub use dataset::{Category, Dataset, DatasetError, Detection, ImageInfo, read_results};
pub use eval::{IouType, STAT_NAMES, Summary, evaluate};
pub use rle::Rle;

use serde_json::{Value, json};

/// One COCO result object: box (x0, y0, x1, y1) written as [x, y, w, h], mask
/// as compressed RLE over the whole image (what Detectron2's
/// `instances_to_coco_json` writes).
pub fn result_json(category_id: i64, score: f32, bbox: [f32; 4], mask: &Rle) -> Value {
    json!({
        "category_id": category_id,
        "score": f64::from(score),
        "bbox": [bbox[0], bbox[1], bbox[2] - bbox[0], bbox[3] - bbox[1]],
        "segmentation": {"size": [mask.height, mask.width], "counts": mask.to_compact_string()},
    })
}
