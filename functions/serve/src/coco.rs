//! COCO-style results (`?format=coco`): boxes as [x, y, w, h] and masks as
//! compressed RLE (pycocotools' `rleToString`), column-major over the image.

use d2serve_engine::paste::RegionMask;
use serde_json::Value;

/// One COCO result object, with the class name beside its index.
pub fn result(category_id: usize, class_name: &str, score: f32, bbox: [f32; 4], mask: &RegionMask, h: usize, w: usize) -> Value {
    let rle = d2serve_engine::coco::Rle::from_region(mask, h, w);
    let mut v = d2serve_engine::coco::result_json(category_id as i64, score, bbox, &rle);
    v["category_name"] = Value::from(class_name);
    v
}
