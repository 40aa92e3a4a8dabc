//! COCO instance annotations (`instances.json`) and results files, read the
//! way pycocotools' `COCO` and `COCO.loadRes` read them.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use super::rle::{Rle, box_polygon, from_polygon};

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("not COCO instances JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("annotation {id}: {detail}")]
    Annotation { id: String, detail: String },
    #[error("annotation {id} names image {image_id}, which is not in `images`")]
    UnknownImage { id: String, image_id: i64 },
    #[error("detection {index} names image {image_id}, which is not in the annotations' `images`")]
    ResultImage { index: usize, image_id: i64 },
    #[error("detection {index}: {detail}")]
    Result { index: usize, detail: String },
}

#[derive(Debug, Clone, Deserialize)]
pub struct ImageInfo {
    pub id: i64,
    pub file_name: String,
    pub height: usize,
    pub width: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Category {
    pub id: i64,
    pub name: String,
}

#[derive(Deserialize)]
struct RawAnnotation {
    id: Value,
    image_id: i64,
    category_id: i64,
    #[serde(default)]
    segmentation: Option<Value>,
    #[serde(default)]
    area: Option<f64>,
    bbox: [f64; 4],
    #[serde(default)]
    iscrowd: Option<Value>,
}

#[derive(Deserialize)]
struct RawDataset {
    images: Vec<ImageInfo>,
    #[serde(default)]
    annotations: Vec<RawAnnotation>,
    categories: Vec<Category>,
}

/// One ground-truth or detected object.
#[derive(Debug, Clone)]
pub struct Object {
    pub image_id: i64,
    pub category_id: i64,
    /// [x, y, w, h].
    pub bbox: [f64; 4],
    /// The mask, when the object has one (always for ground truth with a segmentation).
    pub mask: Option<Rle>,
    /// Ground truth: the file's `area`; detections: as pycocotools computes it
    /// (box w*h for box evaluation, mask area for mask evaluation: see `Detection`).
    pub area: f64,
    pub iscrowd: bool,
}

/// A ground-truth dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub images: Vec<ImageInfo>,
    pub categories: Vec<Category>,
    pub annotations: Vec<Object>,
}

/// One detection, as in a COCO results file.
#[derive(Debug, Clone)]
pub struct Detection {
    pub image_id: i64,
    pub category_id: i64,
    pub score: f64,
    pub bbox: [f64; 4],
    pub mask: Option<Rle>,
    /// Whether the file gave `bbox` (else it is the mask's): pycocotools then
    /// takes a detection's area from its box, else from its mask.
    pub bbox_given: bool,
}

fn is_truthy(v: &Option<Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(_) => true,
    }
}

/// pycocotools' `annToRLE`: polygons (merged), uncompressed or compressed RLE.
pub fn segmentation_to_rle(seg: &Value, height: usize, width: usize) -> Result<Rle, String> {
    match seg {
        Value::Array(polys) => {
            let mut rles = Vec::new();
            for p in polys {
                let xy: Vec<f64> = p
                    .as_array()
                    .ok_or("a polygon must be a list of numbers")?
                    .iter()
                    .map(|v| v.as_f64().ok_or("a polygon must be a list of numbers"))
                    .collect::<Result<_, _>>()?;
                // As pycocotools: a 4-number "polygon" is a box.
                let xy = if xy.len() == 4 { box_polygon([xy[0], xy[1], xy[2], xy[3]]) } else { xy };
                rles.push(from_polygon(&xy, height, width));
            }
            Rle::union(&rles).ok_or_else(|| "an empty polygon list".to_string())
        }
        Value::Object(o) => {
            let size = o.get("size").and_then(Value::as_array).ok_or("an RLE needs `size`: [height, width]")?;
            let dims: Vec<usize> = size.iter().filter_map(|v| v.as_u64().map(|n| n as usize)).collect();
            let [h, w] = dims[..] else { return Err("`size` must be [height, width]".into()) };
            if (h, w) != (height, width) {
                return Err(format!("its RLE is {h}x{w}, but its image is {height}x{width}"));
            }
            match o.get("counts") {
                Some(Value::String(s)) => Rle::from_string(h, w, s).map_err(|e| e.to_string()),
                Some(Value::Array(c)) => {
                    let counts: Vec<u32> =
                        c.iter().map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or("RLE counts must be integers")).collect::<Result<_, _>>()?;
                    Rle::from_counts(h, w, counts).map_err(|e| e.to_string())
                }
                _ => Err("an RLE needs `counts`: a string or a list of integers".into()),
            }
        }
        _ => Err("`segmentation` must be polygons or an RLE".into()),
    }
}

impl Dataset {
    pub fn from_slice(bytes: &[u8]) -> Result<Dataset, DatasetError> {
        let raw: RawDataset = serde_json::from_slice(bytes)?;
        let dims: HashMap<i64, (usize, usize)> = raw.images.iter().map(|i| (i.id, (i.height, i.width))).collect();
        let mut annotations = Vec::with_capacity(raw.annotations.len());
        for a in raw.annotations {
            let id = a.id.to_string();
            let &(h, w) = dims.get(&a.image_id).ok_or(DatasetError::UnknownImage { id: id.clone(), image_id: a.image_id })?;
            let mask = match &a.segmentation {
                None | Some(Value::Null) => None,
                Some(s) => Some(segmentation_to_rle(s, h, w).map_err(|detail| DatasetError::Annotation { id: id.clone(), detail })?),
            };
            let area = match (a.area, &mask) {
                (Some(area), _) => area,
                (None, Some(m)) => m.area() as f64,
                (None, None) => a.bbox[2] * a.bbox[3],
            };
            annotations.push(Object { image_id: a.image_id, category_id: a.category_id, bbox: a.bbox, mask, area, iscrowd: is_truthy(&a.iscrowd) });
        }
        Ok(Dataset { images: raw.images, categories: raw.categories, annotations })
    }
}

#[derive(Deserialize)]
struct RawResult {
    image_id: i64,
    category_id: i64,
    score: f64,
    #[serde(default)]
    bbox: Option<[f64; 4]>,
    #[serde(default)]
    segmentation: Option<Value>,
}

/// A COCO results file (a list of detections), checked against the dataset's images.
pub fn read_results(bytes: &[u8], gt: &Dataset) -> Result<Vec<Detection>, DatasetError> {
    let raw: Vec<RawResult> = serde_json::from_slice(bytes)?;
    let dims: HashMap<i64, (usize, usize)> = gt.images.iter().map(|i| (i.id, (i.height, i.width))).collect();
    raw.into_iter()
        .enumerate()
        .map(|(index, r)| {
            let &(h, w) = dims.get(&r.image_id).ok_or(DatasetError::ResultImage { index, image_id: r.image_id })?;
            let mask = match &r.segmentation {
                None | Some(Value::Null) => None,
                Some(s) => Some(segmentation_to_rle(s, h, w).map_err(|detail| DatasetError::Result { index, detail })?),
            };
            let bbox = match (r.bbox, &mask) {
                (Some(b), _) => b,
                (None, Some(m)) => m.bbox(),
                (None, None) => return Err(DatasetError::Result { index, detail: "neither `bbox` nor `segmentation`".into() }),
            };
            Ok(Detection { image_id: r.image_id, category_id: r.category_id, score: r.score, bbox, mask, bbox_given: r.bbox.is_some() })
        })
        .collect()
}
